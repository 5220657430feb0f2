// SPDX-License-Identifier: MIT
#include "engine/backend/cpu/cpu_matmul.h"

#include "engine/backend/cpu/cpu_gemm_fused.h"
#include "engine/backend/cpu/cpu_gemm_tile.h"
#include "engine/backend/cpu/cpu_kernels.h"

#include <algorithm>
#include <array>
#include <utility>

namespace kvchat::engine::cpu {

namespace {

// Register tile of the prefill kernel: kTileRows weight rows x kTileTokens tokens.
constexpr std::int64_t kTileRows = 4;
constexpr std::int64_t kTileTokens = 3;
// A panel of dequantized rows is kept near this size (and at most kMaxPanelRows rows) so that it
// stays in L2 while every token of the batch passes over it.
constexpr std::int64_t kPanelBytes = 192 * 1024;
constexpr std::int64_t kMaxPanelRows = 64;

std::int64_t panelRows(std::int64_t nIn)
{
    const std::int64_t rows = kPanelBytes / (nIn * static_cast<std::int64_t>(sizeof(float)));
    return std::clamp(rows / kTileRows * kTileRows, kTileRows, kMaxPanelRows);
}

#if KVCHAT_GEMM_AVX2
using TileFn = void (*)(const float *, std::int64_t, const float *, std::int64_t, std::int64_t, float *, std::int64_t);

template <int R, int... T> constexpr std::array<TileFn, sizeof...(T)> tileRow(std::integer_sequence<int, T...>)
{
    return {&gemm::tile<R, T + 1>...};
}

template <int... R> constexpr auto tileTable(std::integer_sequence<int, R...>)
{
    return std::array{tileRow<R + 1>(std::make_integer_sequence<int, kTileTokens>{})...};
}

// kTiles[r - 1][t - 1] computes r rows x t tokens.
constexpr auto kTiles = tileTable(std::make_integer_sequence<int, kTileRows>{});
#endif

} // namespace

float *MatmulScratch::rows(int thread, std::size_t floats)
{
    if (m_perThread.size() <= static_cast<std::size_t>(thread))
        m_perThread.resize(static_cast<std::size_t>(thread) + 1);
    auto &buffer = m_perThread[static_cast<std::size_t>(thread)];
    if (buffer.size() < floats)
        buffer.resize(floats);
    return buffer.data();
}

void matmul(ThreadPool &pool, MatmulScratch &scratch, const WeightMatrix &w, const float *x, std::int64_t nTokens,
            float *y)
{
    const std::int64_t nIn = w.nIn, nOut = w.nOut;
    if (nTokens <= 0 || nOut <= 0)
        return;

    // Work is split in units of kTileRows rows so that both threads get near-equal row counts.
    const std::int64_t nUnits = (nOut + kTileRows - 1) / kTileRows;
    static_assert(gemm::kFusedRows == kTileRows);

    const bool fusedDecoders = gemm::hasFusedKernel(w);
    if (nTokens <= gemm::kMaxFusedTokens && fusedDecoders) {
        pool.parallelFor(nUnits, [&](std::int64_t unitBegin, std::int64_t unitEnd, int) {
            const std::int64_t r0 = unitBegin * kTileRows, r1 = std::min(unitEnd * kTileRows, nOut);
            gemm::fusedRows(w, r0, r1, x, nTokens, y + r0, nOut);
        });
        return;
    }

    const std::int64_t rowsPerPanel = panelRows(nIn);
    // Size every thread's buffer before the parallel loop: the vector of buffers must not grow
    // while workers hold pointers into it.
    if (w.type != GgmlType::F32)
        for (int t = 0; t < pool.size(); ++t)
            scratch.rows(t, static_cast<std::size_t>(rowsPerPanel * nIn));

    pool.parallelFor(nUnits, [&](std::int64_t unitBegin, std::int64_t unitEnd, int thread) {
        float *buffer = w.type == GgmlType::F32 ? nullptr : scratch.rows(thread, 0);
        const std::int64_t rowEnd = std::min(unitEnd * kTileRows, nOut);
        for (std::int64_t p0 = unitBegin * kTileRows; p0 < rowEnd; p0 += rowsPerPanel) {
            const std::int64_t nRows = std::min(rowsPerPanel, rowEnd - p0);
            const float *panel = nullptr;
            if (w.type == GgmlType::F32) {
                panel = reinterpret_cast<const float *>(w.row(p0));
            } else {
                if (fusedDecoders)
                    gemm::dequantizeRows(w, p0, nRows, buffer);
                else
                    for (std::int64_t r = 0; r < nRows; ++r)
                        dequantizeRow(w.type, w.row(p0 + r), buffer + r * nIn, nIn);
                panel = buffer;
            }
#if KVCHAT_GEMM_AVX2
            // Tokens outside, rows inside: a group of kTileTokens activations stays in L1 while
            // the panel streams from L2. (Splitting long rows into k spans, with the accumulators
            // carried between spans, did not pay on Zen 4 even at nIn = 5632.)
            for (std::int64_t t = 0; t < nTokens; t += kTileTokens) {
                const std::int64_t nt = std::min(kTileTokens, nTokens - t);
                for (std::int64_t r = 0; r < nRows; r += kTileRows) {
                    const std::int64_t nr = std::min(kTileRows, nRows - r);
                    kTiles[static_cast<std::size_t>(nr - 1)][static_cast<std::size_t>(nt - 1)](
                        panel + r * nIn, nIn, x + t * nIn, nIn, nIn, y + t * nOut + p0 + r, nOut);
                }
            }
#else
            for (std::int64_t t = 0; t < nTokens; ++t)
                for (std::int64_t r = 0; r < nRows; ++r)
                    y[t * nOut + p0 + r] = dot(panel + r * nIn, x + t * nIn, nIn);
#endif
        }
    });
}

} // namespace kvchat::engine::cpu
