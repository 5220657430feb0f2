// SPDX-License-Identifier: MIT
#include "engine/backend/cpu/cpu_matmul.h"

#include "engine/backend/cpu/cpu_kernels.h"

#include <algorithm>

namespace kvchat::engine::cpu {

namespace {
// Rows dequantized at once: 16 rows of 2048 fp32 = 128 KiB, which stays in L2 while every token of
// the batch passes over them.
constexpr std::int64_t kRowsPerChunk = 16;
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
    const std::int64_t nChunks = (nOut + kRowsPerChunk - 1) / kRowsPerChunk;
    // Size every thread's buffer before the parallel loop: the vector of buffers must not grow
    // while workers hold pointers into it.
    if (w.type != GgmlType::F32)
        for (int t = 0; t < pool.size(); ++t)
            scratch.rows(t, static_cast<std::size_t>(kRowsPerChunk * nIn));

    pool.parallelFor(nChunks, [&](std::int64_t chunkBegin, std::int64_t chunkEnd, int thread) {
        float *buffer = w.type == GgmlType::F32 ? nullptr : scratch.rows(thread, 0);
        for (std::int64_t chunk = chunkBegin; chunk < chunkEnd; ++chunk) {
            const std::int64_t r0 = chunk * kRowsPerChunk;
            const std::int64_t nRows = std::min(kRowsPerChunk, nOut - r0);
            const float *rows = nullptr;
            if (w.type == GgmlType::F32) {
                rows = reinterpret_cast<const float *>(w.row(r0));
            } else {
                for (std::int64_t r = 0; r < nRows; ++r)
                    dequantizeRow(w.type, w.row(r0 + r), buffer + r * nIn, nIn);
                rows = buffer;
            }
            std::int64_t t = 0;
            for (; t + 2 <= nTokens; t += 2) {
                const float *x0 = x + t * nIn, *x1 = x0 + nIn;
                for (std::int64_t r = 0; r < nRows; ++r) {
                    float out[2];
                    dot2(rows + r * nIn, x0, x1, nIn, out);
                    y[t * nOut + r0 + r] = out[0];
                    y[(t + 1) * nOut + r0 + r] = out[1];
                }
            }
            for (; t < nTokens; ++t)
                for (std::int64_t r = 0; r < nRows; ++r)
                    y[t * nOut + r0 + r] = dot(rows + r * nIn, x + t * nIn, nIn);
        }
    });
}

} // namespace kvchat::engine::cpu
