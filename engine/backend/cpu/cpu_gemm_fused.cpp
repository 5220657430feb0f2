// SPDX-License-Identifier: MIT
// Kernel file owned by the CPU-backend performance owner (STYLE.md §5 exception).
//
// Fused decode kernels, one block decoder per type: F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K,
// Q5_K, Q6_K (F32 needs no decoding and goes through the tiles of cpu_gemm_tile.h). A decoder
// prepares a block's scales once and then yields its weights as groups of 8 floats in element
// order (group<G>), in registers; the same decoders also fill the prefill panels
// (dequantizeRows). Each group must be bit-identical to dequantizeRow's output (ggml_type.cpp
// pins the rounding: one multiply, or one fused multiply-add for "q * d + m" and "d1 * q - m1",
// with the K-quant scale products rounded to float first). The integer quants are widened to int32 and
// converted exactly, so the order of those steps does not matter; only the final float operation
// does, and it is the same.
#include "engine/backend/cpu/cpu_gemm_fused.h"

#include "engine/backend/cpu/cpu_gemm_tile.h"

#include <cstring>
#include <type_traits>
#include <utility>

namespace kvchat::engine::cpu::gemm {

#if KVCHAT_GEMM_AVX2
namespace {

inline float loadHalf(const std::byte *p)
{
    std::uint16_t h = 0;
    std::memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

// The half at p, converted and broadcast to all lanes.
inline __m256 broadcastHalf(const std::byte *p)
{
    std::uint16_t h = 0;
    std::memcpy(&h, p, sizeof h);
    return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(h)));
}

// The halves at p and p + 2, converted and each broadcast to all lanes (Q4_1/Q5_1's d and m).
inline void broadcastHalfPair(const std::byte *p, __m256 &first, __m256 &second)
{
    std::uint32_t pair = 0;
    std::memcpy(&pair, p, sizeof pair);
    const __m256 both = _mm256_cvtph_ps(_mm_set1_epi32(static_cast<int>(pair))); // first, second, first, ...
    first = _mm256_moveldup_ps(both);
    second = _mm256_movehdup_ps(both);
}

// Bytes p[0..7] zero- or sign-extended to 8 int32 lanes.
inline __m256i u8x8(const std::byte *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p)));
}

inline __m256i i8x8(const std::byte *p)
{
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p)));
}

inline __m256 toFloat(__m256i v)
{
    return _mm256_cvtepi32_ps(v);
}

// Lane j of the result is 16 when bit j of (bits >> shift) is set, else 0 (the fifth bit of Q5).
inline __m256i fifthBit8(std::uint32_t bits, int shift)
{
    const __m256i lanes = _mm256_set1_epi32(static_cast<int>((bits >> shift) & 0xFFu));
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_and_si256(lanes, bit), bit), _mm256_set1_epi32(16));
}

// Calls f(std::integral_constant<int, 0>) ... f(std::integral_constant<int, N - 1>) in order, so
// that each group index is a compile-time constant and every branch on it folds away.
template <int N, class F> inline void staticFor(F &&f)
{
    [&]<int... I>(std::integer_sequence<int, I...>)
    {
        (f(std::integral_constant<int, I>{}), ...);
    }
    (std::make_integer_sequence<int, N>{});
}

// Each decoder: kElements and kBytes per block, kGroups = kElements / 8, a State prepared once per
// block (scales), and group<G>(state, block) = the dequantized elements 8G .. 8G+7.

struct DecodeF16
{
    static constexpr std::int64_t kElements = 8;
    static constexpr std::size_t kBytes = 16;
    static constexpr int kGroups = 1;
    struct State
    {
    };
    static State prepare(const std::byte *) { return {}; }
    template <int G> static __m256 group(const State &, const std::byte *p)
    {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
    }
};

struct DecodeBf16
{
    static constexpr std::int64_t kElements = 8;
    static constexpr std::size_t kBytes = 16;
    static constexpr int kGroups = 1;
    struct State
    {
    };
    static State prepare(const std::byte *) { return {}; }
    template <int G> static __m256 group(const State &, const std::byte *p)
    {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
    }
};

// x = q * d
struct DecodeQ8_0
{
    static constexpr std::int64_t kElements = 32;
    static constexpr std::size_t kBytes = 34;
    static constexpr int kGroups = 4;
    struct State
    {
        __m256 d;
    };
    static State prepare(const std::byte *p) { return {broadcastHalf(p)}; }
    template <int G> static __m256 group(const State &s, const std::byte *p)
    {
        return _mm256_mul_ps(toFloat(i8x8(p + 2 + 8 * G)), s.d);
    }
};

// The 4-bit quants of element 8G + j (legacy 32-element blocks): elements 0-15 are the low nibbles
// of qs[0..15], 16-31 the high nibbles.
template <int G> inline __m256i nibbles8(const std::byte *qs)
{
    const __m256i bytes = u8x8(qs + 8 * (G & 1));
    return G < 2 ? _mm256_and_si256(bytes, _mm256_set1_epi32(0x0F)) : _mm256_srli_epi32(bytes, 4);
}

// x = (q - 8) * d
struct DecodeQ4_0
{
    static constexpr std::int64_t kElements = 32;
    static constexpr std::size_t kBytes = 18;
    static constexpr int kGroups = 4;
    struct State
    {
        __m256 d;
    };
    static State prepare(const std::byte *p) { return {broadcastHalf(p)}; }
    template <int G> static __m256 group(const State &s, const std::byte *p)
    {
        return _mm256_mul_ps(toFloat(_mm256_sub_epi32(nibbles8<G>(p + 2), _mm256_set1_epi32(8))), s.d);
    }
};

// x = fma(q, d, m)
struct DecodeQ4_1
{
    static constexpr std::int64_t kElements = 32;
    static constexpr std::size_t kBytes = 20;
    static constexpr int kGroups = 4;
    struct State
    {
        __m256 d, m;
    };
    static State prepare(const std::byte *p)
    {
        State s;
        broadcastHalfPair(p, s.d, s.m);
        return s;
    }
    template <int G> static __m256 group(const State &s, const std::byte *p)
    {
        return _mm256_fmadd_ps(toFloat(nibbles8<G>(p + 4)), s.d, s.m);
    }
};

// Q5_0/Q5_1: as Q4_0/Q4_1 with bit j of qh as the fifth bit of element j. Q5_0: x = (q - 16) * d
struct DecodeQ5_0
{
    static constexpr std::int64_t kElements = 32;
    static constexpr std::size_t kBytes = 22;
    static constexpr int kGroups = 4;
    struct State
    {
        __m256 d;
        std::uint32_t qh;
    };
    static State prepare(const std::byte *p)
    {
        State s{broadcastHalf(p), 0};
        std::memcpy(&s.qh, p + 2, sizeof s.qh);
        return s;
    }
    template <int G> static __m256 group(const State &s, const std::byte *p)
    {
        const __m256i q = _mm256_or_si256(nibbles8<G>(p + 6), fifthBit8(s.qh, 8 * G));
        return _mm256_mul_ps(toFloat(_mm256_sub_epi32(q, _mm256_set1_epi32(16))), s.d);
    }
};

// Q5_1: x = fma(q, d, m)
struct DecodeQ5_1
{
    static constexpr std::int64_t kElements = 32;
    static constexpr std::size_t kBytes = 24;
    static constexpr int kGroups = 4;
    struct State
    {
        __m256 d, m;
        std::uint32_t qh;
    };
    static State prepare(const std::byte *p)
    {
        State s;
        broadcastHalfPair(p, s.d, s.m);
        std::memcpy(&s.qh, p + 4, sizeof s.qh);
        return s;
    }
    template <int G> static __m256 group(const State &s, const std::byte *p)
    {
        return _mm256_fmadd_ps(toFloat(_mm256_or_si256(nibbles8<G>(p + 8), fifthBit8(s.qh, 8 * G))), s.d, s.m);
    }
};

// Q4_K (kHighBits false) and Q5_K: 8 sub-blocks of 32; sub-block 2c takes the low nibbles of
// qs[32c..32c+31], 2c+1 the high nibbles; Q5_K's bit s of qh[l] is the fifth bit of element l of
// sub-block s. x = fma(q, d * sc, -(dmin * m)).
template <bool kHighBits> struct DecodeQ45_K
{
    static constexpr std::int64_t kElements = 256;
    static constexpr std::size_t kBytes = kHighBits ? 176 : 144;
    static constexpr int kGroups = 32;
    struct State
    {
        // d * sc and -(dmin * m) of the 8 sub-blocks, each product rounded to float as in
        // dequantizeRow (the negation is a sign flip, exact).
        alignas(32) float d1[8];
        alignas(32) float negM1[8];
    };
    static State prepare(const std::byte *p)
    {
        // The 8 six-bit scales and mins as bytes, unpacked 32 bits at a time as ggml does (the
        // same values as kScaleMin in ggml_type.cpp), then widened in registers.
        std::uint32_t u[3];
        std::memcpy(u, p + 4, sizeof u);
        constexpr std::uint32_t kLow6 = 0x3F3F3F3F, kLow4 = 0x0F0F0F0F, kLow2 = 0x03030303;
        const std::uint64_t scales =
            (u[0] & kLow6) | static_cast<std::uint64_t>((u[2] & kLow4) | (((u[0] >> 6) & kLow2) << 4)) << 32;
        const std::uint64_t mins =
            (u[1] & kLow6) | static_cast<std::uint64_t>(((u[2] >> 4) & kLow4) | (((u[1] >> 6) & kLow2) << 4)) << 32;
        State s;
        const __m256 scf = toFloat(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(scales))));
        const __m256 mf = toFloat(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(mins))));
        _mm256_store_ps(s.d1, _mm256_mul_ps(_mm256_set1_ps(loadHalf(p)), scf));
        _mm256_store_ps(s.negM1,
                        _mm256_xor_ps(_mm256_mul_ps(_mm256_set1_ps(loadHalf(p + 2)), mf), _mm256_set1_ps(-0.0f)));
        return s;
    }
    template <int G> static __m256 group(const State &s, const std::byte *p)
    {
        constexpr int kSub = G / 4, kJ = G % 4;
        const std::byte *qs = p + (kHighBits ? 48 : 16) + 32 * (kSub / 2) + 8 * kJ;
        const __m256i bytes = u8x8(qs);
        __m256i q = (kSub & 1) ? _mm256_srli_epi32(bytes, 4) : _mm256_and_si256(bytes, _mm256_set1_epi32(0x0F));
        if constexpr (kHighBits) {
            const __m256i h = _mm256_and_si256(_mm256_srli_epi32(u8x8(p + 16 + 8 * kJ), kSub), _mm256_set1_epi32(1));
            q = _mm256_or_si256(q, _mm256_slli_epi32(h, 4));
        }
        return _mm256_fmadd_ps(toFloat(q), _mm256_broadcast_ss(s.d1 + kSub), _mm256_broadcast_ss(s.negM1 + kSub));
    }
};

// Q6_K: halves h of 128; quarter k of a half takes its low 4 bits from ql[64h + 32(k&1) + l] (low
// nibble for k < 2, high for k >= 2) and its top 2 bits from bits 2k..2k+1 of qh[32h + l]; each
// 16 elements share one int8 scale. x = (d * scale) * (q - 32).
struct DecodeQ6_K
{
    static constexpr std::int64_t kElements = 256;
    static constexpr std::size_t kBytes = 210;
    static constexpr int kGroups = 32;
    struct State
    {
        alignas(32) float ds[16]; // d * scale, rounded to float
    };
    static State prepare(const std::byte *p)
    {
        const __m128i scales = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p + 192));
        const __m256 d = _mm256_set1_ps(loadHalf(p + 208));
        State s;
        _mm256_store_ps(s.ds, _mm256_mul_ps(d, toFloat(_mm256_cvtepi8_epi32(scales))));
        _mm256_store_ps(s.ds + 8, _mm256_mul_ps(d, toFloat(_mm256_cvtepi8_epi32(_mm_srli_si128(scales, 8)))));
        return s;
    }
    template <int G> static __m256 group(const State &s, const std::byte *p)
    {
        constexpr int kH = G / 16, kK = (G / 4) % 4, kJ = G % 4;
        const __m256i lowBytes = u8x8(p + 64 * kH + 32 * (kK & 1) + 8 * kJ);
        const __m256i low =
            kK < 2 ? _mm256_and_si256(lowBytes, _mm256_set1_epi32(0x0F)) : _mm256_srli_epi32(lowBytes, 4);
        const __m256i high =
            _mm256_and_si256(_mm256_srli_epi32(u8x8(p + 128 + 32 * kH + 8 * kJ), 2 * kK), _mm256_set1_epi32(3));
        const __m256i q = _mm256_sub_epi32(_mm256_or_si256(low, _mm256_slli_epi32(high, 4)), _mm256_set1_epi32(32));
        return _mm256_mul_ps(toFloat(q), _mm256_broadcast_ss(s.ds + 8 * kH + 2 * kK + kJ / 2));
    }
};

// R rows x T tokens. Each block is prepared for all R rows; a 256-element block then goes group by
// group across the rows (group-major), so that the R accumulator chains interleave within the
// out-of-order window, where a whole row's block would not fit.
template <class Dec, int R, int T>
void fusedTile(const std::byte *row0, std::size_t rowBytes, const float *x, std::int64_t xStride, std::int64_t nIn,
               float *y, std::int64_t yStride)
{
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t)
            acc[r][t] = _mm256_setzero_ps();
    const std::int64_t nBlocks = nIn / Dec::kElements;
    for (std::int64_t b = 0; b < nBlocks; ++b) {
        const float *xb = x + b * Dec::kElements;
        const std::byte *wb = row0 + static_cast<std::size_t>(b) * Dec::kBytes;
        typename Dec::State state[R];
        for (int r = 0; r < R; ++r) {
            // The rows of the next tile follow these in memory; fetch them a tile ahead (every
            // cache line of a block: the K-quant blocks span several).
            for (std::size_t line = 0; line < Dec::kBytes; line += 64)
                _mm_prefetch(reinterpret_cast<const char *>(wb + (r + R) * rowBytes + line), _MM_HINT_T0);
            state[r] = Dec::prepare(wb + r * rowBytes);
        }
        if constexpr (Dec::kGroups <= 4) {
            // Short blocks: row by row, so that groups sharing loaded bytes sit together; the
            // out-of-order window still spans the R chains.
            for (int r = 0; r < R; ++r) {
                staticFor<Dec::kGroups>([&](auto g) {
                    const __m256 wv = Dec::template group<g()>(state[r], wb + r * rowBytes);
                    for (int t = 0; t < T; ++t)
                        acc[r][t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xb + t * xStride + 8 * g()), acc[r][t]);
                });
            }
        } else {
            staticFor<Dec::kGroups>([&](auto g) {
                __m256 xv[T];
                for (int t = 0; t < T; ++t)
                    xv[t] = _mm256_loadu_ps(xb + t * xStride + 8 * g());
                for (int r = 0; r < R; ++r) {
                    const __m256 wv = Dec::template group<g()>(state[r], wb + r * rowBytes);
                    for (int t = 0; t < T; ++t)
                        acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
                }
            });
        }
    }
    if constexpr (R == 4) {
        for (int t = 0; t < T; ++t)
            _mm_storeu_ps(y + t * yStride, hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]));
    } else {
        for (int r = 0; r < R; ++r)
            for (int t = 0; t < T; ++t)
                y[t * yStride + r] = hsum(acc[r][t]);
    }
}

template <class Dec> void dequantizeRowsOf(const WeightMatrix &w, std::int64_t r0, std::int64_t nRows, float *dst)
{
    const std::int64_t nBlocks = w.nIn / Dec::kElements;
    for (std::int64_t r = 0; r < nRows; ++r) {
        const std::byte *row = w.row(r0 + r);
        for (std::int64_t b = 0; b < nBlocks; ++b, dst += Dec::kElements) {
            const std::byte *block = row + static_cast<std::size_t>(b) * Dec::kBytes;
            for (std::size_t line = 0; line < Dec::kBytes; line += 64)
                _mm_prefetch(reinterpret_cast<const char *>(block + kFusedRows * w.rowBytes + line), _MM_HINT_T0);
            const typename Dec::State state = Dec::prepare(block);
            staticFor<Dec::kGroups>(
                [&](auto g) { _mm256_storeu_ps(dst + 8 * g(), Dec::template group<g()>(state, block)); });
        }
    }
}

template <class Dec, int T>
void fusedRowsOf(const WeightMatrix &w, std::int64_t r0, std::int64_t r1, const float *x, float *y,
                 std::int64_t yStride)
{
    std::int64_t r = r0;
    for (; r + kFusedRows <= r1; r += kFusedRows)
        fusedTile<Dec, kFusedRows, T>(w.row(r), w.rowBytes, x, w.nIn, w.nIn, y + (r - r0), yStride);
    for (; r < r1; ++r)
        fusedTile<Dec, 1, T>(w.row(r), w.rowBytes, x, w.nIn, w.nIn, y + (r - r0), yStride);
}

template <class Dec>
void fusedRowsFor(const WeightMatrix &w, std::int64_t r0, std::int64_t r1, const float *x, std::int64_t nTokens,
                  float *y, std::int64_t yStride)
{
    switch (nTokens) {
    case 1:
        fusedRowsOf<Dec, 1>(w, r0, r1, x, y, yStride);
        return;
    case 2:
        fusedRowsOf<Dec, 2>(w, r0, r1, x, y, yStride);
        return;
    default:
        fusedRowsOf<Dec, 3>(w, r0, r1, x, y, yStride);
        return;
    }
}

} // namespace

void dequantizeRows(const WeightMatrix &w, std::int64_t r0, std::int64_t nRows, float *dst)
{
    switch (w.type) {
    case GgmlType::F16:
        return dequantizeRowsOf<DecodeF16>(w, r0, nRows, dst);
    case GgmlType::BF16:
        return dequantizeRowsOf<DecodeBf16>(w, r0, nRows, dst);
    case GgmlType::Q8_0:
        return dequantizeRowsOf<DecodeQ8_0>(w, r0, nRows, dst);
    case GgmlType::Q4_0:
        return dequantizeRowsOf<DecodeQ4_0>(w, r0, nRows, dst);
    case GgmlType::Q4_1:
        return dequantizeRowsOf<DecodeQ4_1>(w, r0, nRows, dst);
    case GgmlType::Q5_0:
        return dequantizeRowsOf<DecodeQ5_0>(w, r0, nRows, dst);
    case GgmlType::Q5_1:
        return dequantizeRowsOf<DecodeQ5_1>(w, r0, nRows, dst);
    case GgmlType::Q4_K:
        return dequantizeRowsOf<DecodeQ45_K<false>>(w, r0, nRows, dst);
    case GgmlType::Q5_K:
        return dequantizeRowsOf<DecodeQ45_K<true>>(w, r0, nRows, dst);
    case GgmlType::Q6_K:
        return dequantizeRowsOf<DecodeQ6_K>(w, r0, nRows, dst);
    case GgmlType::F32:
        return;
    }
}

bool hasFusedKernel(const WeightMatrix &w)
{
    switch (w.type) {
    case GgmlType::F16:
    case GgmlType::BF16:
        return w.nIn % 8 == 0; // the fused kernels have no scalar tail
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
        return true;
    case GgmlType::F32:
        return false;
    }
    return false;
}

void fusedRows(const WeightMatrix &w, std::int64_t r0, std::int64_t r1, const float *x, std::int64_t nTokens, float *y,
               std::int64_t yStride)
{
    switch (w.type) {
    case GgmlType::F16:
        return fusedRowsFor<DecodeF16>(w, r0, r1, x, nTokens, y, yStride);
    case GgmlType::BF16:
        return fusedRowsFor<DecodeBf16>(w, r0, r1, x, nTokens, y, yStride);
    case GgmlType::Q8_0:
        return fusedRowsFor<DecodeQ8_0>(w, r0, r1, x, nTokens, y, yStride);
    case GgmlType::Q4_0:
        return fusedRowsFor<DecodeQ4_0>(w, r0, r1, x, nTokens, y, yStride);
    case GgmlType::Q4_1:
        return fusedRowsFor<DecodeQ4_1>(w, r0, r1, x, nTokens, y, yStride);
    case GgmlType::Q5_0:
        return fusedRowsFor<DecodeQ5_0>(w, r0, r1, x, nTokens, y, yStride);
    case GgmlType::Q5_1:
        return fusedRowsFor<DecodeQ5_1>(w, r0, r1, x, nTokens, y, yStride);
    case GgmlType::Q4_K:
        return fusedRowsFor<DecodeQ45_K<false>>(w, r0, r1, x, nTokens, y, yStride);
    case GgmlType::Q5_K:
        return fusedRowsFor<DecodeQ45_K<true>>(w, r0, r1, x, nTokens, y, yStride);
    case GgmlType::Q6_K:
        return fusedRowsFor<DecodeQ6_K>(w, r0, r1, x, nTokens, y, yStride);
    case GgmlType::F32:
        return;
    }
}

#else // portable build: no fused kernels; cpu_matmul.cpp dequantizes into scratch instead

bool hasFusedKernel(const WeightMatrix &)
{
    return false;
}

void fusedRows(const WeightMatrix &, std::int64_t, std::int64_t, const float *, std::int64_t, float *, std::int64_t) {}

void dequantizeRows(const WeightMatrix &, std::int64_t, std::int64_t, float *) {}

#endif

} // namespace kvchat::engine::cpu::gemm
