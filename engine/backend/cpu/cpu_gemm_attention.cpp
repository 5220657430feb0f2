// SPDX-License-Identifier: MIT
// Kernel file owned by the CPU-backend performance owner (STYLE.md §5 exception).
//
// Variants: AVX2 (tiles of up to 3 queries that read the same KV head: scores 4 keys x 3 queries,
// weighted sums with the output rows held in registers across a chunk of positions; blocks of 8
// tiles pass over the positions together, a chunk at a time) and portable (one item at a time
// with cpu::dot and cpu::axpy). Both follow the per-output order of cpu_gemm_attention.h.
#include "engine/backend/cpu/cpu_gemm_attention.h"

#include "engine/backend/cpu/cpu_gemm_tile.h"
#include "engine/backend/cpu/cpu_kernels.h"

#include <algorithm>
#include <array>

namespace kvchat::engine::cpu {

#if KVCHAT_GEMM_AVX2
namespace {

using gemm::hsum;
using gemm::hsum4;

constexpr int kQueries = 3;            // queries per tile (they share one KV head)
constexpr int kKeys = 4;               // keys per score tile
constexpr std::size_t kBlockTiles = 8; // tiles that share each pass over the positions
constexpr std::int64_t kChunk = 64;    // positions per step of that pass (a multiple of kKeys)

// S[j][p + i] = dot(keys[i] + off, qs[j]) * scale for i < P, j < Q.
template <int P, int Q>
void scoreTile(const float *const *keys, std::int64_t off, const float *const *qs, std::int64_t d, float scale,
               float *const *S, std::int64_t p)
{
    __m256 acc[P][Q];
    for (int i = 0; i < P; ++i)
        for (int j = 0; j < Q; ++j)
            acc[i][j] = _mm256_setzero_ps();
    std::int64_t k = 0;
    for (; k + 8 <= d; k += 8) {
        __m256 qv[Q];
        for (int j = 0; j < Q; ++j)
            qv[j] = _mm256_loadu_ps(qs[j] + k);
        for (int i = 0; i < P; ++i) {
            const __m256 kv = _mm256_loadu_ps(keys[i] + off + k);
            for (int j = 0; j < Q; ++j)
                acc[i][j] = _mm256_fmadd_ps(kv, qv[j], acc[i][j]);
        }
    }
    if (P == kKeys && k == d) {
        const __m128 vscale = _mm_set1_ps(scale);
        for (int j = 0; j < Q; ++j)
            _mm_storeu_ps(S[j] + p, _mm_mul_ps(hsum4(acc[0][j], acc[1 % P][j], acc[2 % P][j], acc[3 % P][j]), vscale));
        return;
    }
    for (int i = 0; i < P; ++i) {
        for (int j = 0; j < Q; ++j) {
            float s = hsum(acc[i][j]);
            for (std::int64_t kk = k; kk < d; ++kk)
                s = std::fma(keys[i][off + kk], qs[j][kk], s);
            S[j][p + i] = s * scale;
        }
    }
}

using ScoreFn = void (*)(const float *const *, std::int64_t, const float *const *, std::int64_t, float, float *const *,
                         std::int64_t);

template <int P, int... Q> constexpr std::array<ScoreFn, sizeof...(Q)> scoreRow(std::integer_sequence<int, Q...>)
{
    return {&scoreTile<P, Q + 1>...};
}

template <int... P> constexpr auto scoreTable(std::integer_sequence<int, P...>)
{
    return std::array{scoreRow<P + 1>(std::make_integer_sequence<int, kQueries>{})...};
}

// kScoreTiles[p - 1][q - 1]: p keys x q queries.
constexpr auto kScoreTiles = scoreTable(std::make_integer_sequence<int, kKeys>{});

// outs[j][0 .. 8V) += probs[j][p] * values[p][off ..] for the positions p in [p0, p1) below nPos[j],
// in position order, starting from zero when p0 == 0 and otherwise from the partial sums stored
// in outs. nPos is non-decreasing, so positions below nPos[0] serve every query.
template <int Q, int V>
void weightedTile(const float *const *values, std::int64_t off, const float *const *probs, const std::int64_t *nPos,
                  std::int64_t p0, std::int64_t p1, float *const *outs)
{
    __m256 acc[Q][V];
    for (int j = 0; j < Q; ++j)
        for (int v = 0; v < V; ++v)
            acc[j][v] = p0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(outs[j] + 8 * v);
    const std::int64_t common = std::min(p1, nPos[0]);
    std::int64_t p = p0;
    for (; p < common; ++p) {
        const float *row = values[p] + off;
        __m256 prob[Q];
        for (int j = 0; j < Q; ++j)
            prob[j] = _mm256_broadcast_ss(probs[j] + p);
        for (int v = 0; v < V; ++v) {
            const __m256 value = _mm256_loadu_ps(row + 8 * v);
            for (int j = 0; j < Q; ++j)
                acc[j][v] = _mm256_fmadd_ps(prob[j], value, acc[j][v]);
        }
    }
    for (; p < std::min(p1, nPos[Q - 1]); ++p) {
        const float *row = values[p] + off;
        for (int j = 1; j < Q; ++j) {
            if (p >= nPos[j])
                continue;
            const __m256 prob = _mm256_broadcast_ss(probs[j] + p);
            for (int v = 0; v < V; ++v)
                acc[j][v] = _mm256_fmadd_ps(prob, _mm256_loadu_ps(row + 8 * v), acc[j][v]);
        }
    }
    for (int j = 0; j < Q; ++j)
        for (int v = 0; v < V; ++v)
            _mm256_storeu_ps(outs[j] + 8 * v, acc[j][v]);
}

// Dimensions [d0, d) of the outputs, one at a time (head sizes that are not a multiple of 8).
void weightedTail(const float *const *values, std::int64_t off, const float *const *probs, const std::int64_t *nPos,
                  int nq, std::int64_t p0, std::int64_t p1, float *const *outs, std::int64_t d0, std::int64_t d)
{
    for (int j = 0; j < nq; ++j) {
        for (std::int64_t i = d0; i < d; ++i) {
            float acc = p0 == 0 ? 0.0f : outs[j][i];
            for (std::int64_t p = p0; p < std::min(p1, nPos[j]); ++p)
                acc = std::fma(probs[j][p], values[p][off + i], acc);
            outs[j][i] = acc;
        }
    }
}

template <int Q>
void weightedSums(const float *const *values, std::int64_t off, const float *const *probs, const std::int64_t *nPos,
                  std::int64_t p0, std::int64_t p1, float *const *outs, std::int64_t d)
{
    // Up to 12 accumulators: a single query takes 64 dimensions per pass, 2 or 3 queries 32.
    constexpr int kWide = Q == 1 ? 8 : 4;
    std::int64_t d0 = 0;
    float *at[Q];
    const auto shifted = [&](std::int64_t by) {
        for (int j = 0; j < Q; ++j)
            at[j] = outs[j] + by;
        return at;
    };
    for (; d0 + 8 * kWide <= d; d0 += 8 * kWide)
        weightedTile<Q, kWide>(values, off + d0, probs, nPos, p0, p1, shifted(d0));
    for (; d0 + 8 <= d; d0 += 8)
        weightedTile<Q, 1>(values, off + d0, probs, nPos, p0, p1, shifted(d0));
    if (d0 < d)
        weightedTail(values, off, probs, nPos, Q, p0, p1, outs, d0, d);
}

// Up to kQueries queries that read the same KV head, with the positions each sees non-decreasing.
struct Tile
{
    int nq = 0;
    std::int64_t off = 0; // the KV head's offset in a K/V row
    const float *qs[kQueries] = {};
    float *outs[kQueries] = {};
    float *S[kQueries] = {};
    std::int64_t nPos[kQueries] = {};
};

struct CallScratch
{
    std::vector<const float *> keys, values; // row pointers by position
    std::vector<Tile> tiles;
};

} // namespace

void attendItems(const AttentionShape &shape, const KvSequence &seq, std::int32_t layer, std::int32_t startPos,
                 std::int64_t nTokens, const float *q, float *out, std::int64_t itemBegin, std::int64_t itemEnd,
                 std::vector<float> &scratch)
{
    if (itemBegin >= itemEnd)
        return;
    const std::int64_t nHeads = shape.nHeads, d = shape.headDim, qDim = nHeads * d;
    const std::int64_t group = shape.nHeads / shape.nKvHeads;
    const std::int64_t hFirst = itemBegin / nTokens, hLast = (itemEnd - 1) / nTokens;
    const std::int64_t tLast = hFirst == hLast ? (itemEnd - 1) % nTokens : nTokens - 1;
    const std::int64_t nPositions = startPos + tLast + 1;

    // Row pointers through the block table, looked up once per call rather than per head.
    thread_local CallScratch call;
    call.keys.resize(static_cast<std::size_t>(nPositions));
    call.values.resize(static_cast<std::size_t>(nPositions));
    for (std::int64_t p = 0; p < nPositions; ++p) {
        call.keys[static_cast<std::size_t>(p)] = seq.keyRow(layer, static_cast<std::int32_t>(p));
        call.values[static_cast<std::size_t>(p)] = seq.valueRow(layer, static_cast<std::int32_t>(p));
    }

    // Tiles: this call's items of each KV head in (token, head) order, kQueries at a time (the
    // heads of a GQA group at one token, or consecutive tokens of one head).
    call.tiles.clear();
    for (std::int64_t kvHead = hFirst / group; kvHead <= hLast / group; ++kvHead) {
        const std::size_t firstTile = call.tiles.size();
        for (std::int64_t t = 0; t < nTokens; ++t) {
            for (std::int64_t h = kvHead * group; h < (kvHead + 1) * group; ++h) {
                const std::int64_t item = h * nTokens + t;
                if (item < itemBegin || item >= itemEnd)
                    continue;
                if (call.tiles.size() == firstTile || call.tiles.back().nq == kQueries)
                    call.tiles.push_back(Tile{0, kvHead * d});
                Tile &tile = call.tiles.back();
                tile.qs[tile.nq] = q + t * qDim + h * d;
                tile.outs[tile.nq] = out + t * qDim + h * d;
                tile.nPos[tile.nq] = startPos + t + 1;
                ++tile.nq;
            }
        }
    }

    // Blocks of kBlockTiles tiles pass over the positions together, kChunk positions at a time,
    // so each chunk of K and V rows is read from memory once for all of them (and whole rows when
    // a block spans several KV heads, as in decode). Scores: [tile][query][stride].
    const std::int64_t stride = (nPositions + kKeys - 1) / kKeys * kKeys; // padded to whole score tiles
    const std::size_t scoreFloats = kBlockTiles * kQueries * static_cast<std::size_t>(stride);
    if (scratch.size() < scoreFloats)
        scratch.resize(scoreFloats);
    for (std::size_t b0 = 0; b0 < call.tiles.size(); b0 += kBlockTiles) {
        const std::size_t b1 = std::min(call.tiles.size(), b0 + kBlockTiles);
        std::int64_t blockPositions = 0;
        for (std::size_t i = b0; i < b1; ++i) {
            Tile &tile = call.tiles[i];
            for (int j = 0; j < tile.nq; ++j)
                tile.S[j] = scratch.data() + ((i - b0) * kQueries + static_cast<std::size_t>(j)) * stride;
            blockPositions = std::max(blockPositions, tile.nPos[tile.nq - 1]);
        }
        // Scores up to each tile's last query's positions (the extra ones of earlier queries unused).
        for (std::int64_t c0 = 0; c0 < blockPositions; c0 += kChunk) {
            for (std::size_t i = b0; i < b1; ++i) {
                const Tile &tile = call.tiles[i];
                const std::int64_t c1 = std::min(c0 + kChunk, tile.nPos[tile.nq - 1]);
                for (std::int64_t p = c0; p < c1; p += kKeys) {
                    const std::int64_t np = std::min<std::int64_t>(kKeys, c1 - p);
                    kScoreTiles[static_cast<std::size_t>(np - 1)][static_cast<std::size_t>(tile.nq - 1)](
                        call.keys.data() + p, tile.off, tile.qs, d, shape.scale, tile.S, p);
                }
            }
        }
        for (std::size_t i = b0; i < b1; ++i)
            for (int j = 0; j < call.tiles[i].nq; ++j)
                softmax(call.tiles[i].S[j], call.tiles[i].nPos[j]);
        for (std::int64_t c0 = 0; c0 < blockPositions; c0 += kChunk) {
            for (std::size_t i = b0; i < b1; ++i) {
                const Tile &tile = call.tiles[i];
                if (c0 >= tile.nPos[tile.nq - 1])
                    continue;
                const std::int64_t c1 = c0 + kChunk;
                const float *const *values = call.values.data();
                switch (tile.nq) {
                case 1:
                    weightedSums<1>(values, tile.off, tile.S, tile.nPos, c0, c1, tile.outs, d);
                    break;
                case 2:
                    weightedSums<2>(values, tile.off, tile.S, tile.nPos, c0, c1, tile.outs, d);
                    break;
                default:
                    weightedSums<3>(values, tile.off, tile.S, tile.nPos, c0, c1, tile.outs, d);
                    break;
                }
            }
        }
    }
}

#else // portable

void attendItems(const AttentionShape &shape, const KvSequence &seq, std::int32_t layer, std::int32_t startPos,
                 std::int64_t nTokens, const float *q, float *out, std::int64_t itemBegin, std::int64_t itemEnd,
                 std::vector<float> &scratch)
{
    const std::int64_t nHeads = shape.nHeads, d = shape.headDim, qDim = nHeads * d;
    const std::int32_t group = shape.nHeads / shape.nKvHeads;
    for (std::int64_t item = itemBegin; item < itemEnd; ++item) {
        const std::int64_t t = item % nTokens;
        const std::int32_t h = static_cast<std::int32_t>(item / nTokens);
        const std::int64_t off = static_cast<std::int64_t>(h / group) * d;
        const std::int32_t last = startPos + static_cast<std::int32_t>(t);
        if (scratch.size() < static_cast<std::size_t>(last + 1))
            scratch.resize(static_cast<std::size_t>(last + 1));
        float *scores = scratch.data();
        const float *qh = q + t * qDim + h * d;
        for (std::int32_t p = 0; p <= last; ++p)
            scores[p] = dot(qh, seq.keyRow(layer, p) + off, d) * shape.scale;
        softmax(scores, last + 1);
        float *o = out + t * qDim + h * d;
        std::fill(o, o + d, 0.0f);
        for (std::int32_t p = 0; p <= last; ++p)
            axpy(o, scores[p], seq.valueRow(layer, p) + off, d);
    }
}

#endif

} // namespace kvchat::engine::cpu
