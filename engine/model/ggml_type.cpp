// SPDX-License-Identifier: MIT
// GGML element types: traits table, IEEE half/bfloat16 conversions and row dequantization.
//
// Block layouts follow ggml (ggml-common.h / dequantize_row_* in ggml-quants.c), little-endian:
//   Q4_0  f16 d, u8 qs[16]                        x = (q - 8) * d
//   Q4_1  f16 d, f16 m, u8 qs[16]                 x = q * d + m
//   Q5_0  f16 d, u32 qh, u8 qs[16]                x = (q - 16) * d
//   Q5_1  f16 d, f16 m, u32 qh, u8 qs[16]         x = q * d + m
//   Q8_0  f16 d, i8 qs[32]                        x = q * d
//   Q4_K  f16 d, f16 dmin, u8 scales[12], u8 qs[128]             x = (d*sc) * q - dmin*m
//   Q5_K  f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]  x = (d*sc) * q - dmin*m
//   Q6_K  u8 ql[128], u8 qh[64], i8 scales[16], f16 d            x = (d*sc) * (q - 32)
//
// Every type has a portable scalar kernel; F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and
// Q6_K also have an AVX2 (+F16C, FMA) kernel. The two must give bit-identical floats, so the
// rounding steps are pinned down here: every "q * d + m" (Q4_1, Q5_1) and "d1 * q - m1" (K-quants)
// is ONE fused multiply-add (std::fma in the scalar path, _mm256_fmadd_ps in the AVX2 path).
// Writing it as a plain expression would let the compiler decide whether to contract it, which
// differs between GCC and Clang and between -ffp-contract settings. The products d*sc and dmin*m
// of the K-quants are rounded to float first, as in ggml. Compared with ggml's own (uncontracted)
// scalar code, fused results may differ in the last bit; that is far below quantization noise.
#include "engine/model/ggml_type.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>

#if defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
#define KVCHAT_GGML_AVX2 1
#include <immintrin.h>
#endif

namespace kvchat::engine {

namespace {

constexpr std::int64_t kQk = 32;   // elements per block of the Q4/Q5/Q8 "legacy" types
constexpr std::int64_t kQkK = 256; // elements per super-block of the K-quants

constexpr std::array<GgmlTypeTraits, 11> kTraits{{
    {GgmlType::F32, "F32", 1, 4},
    {GgmlType::F16, "F16", 1, 2},
    {GgmlType::BF16, "BF16", 1, 2},
    {GgmlType::Q8_0, "Q8_0", kQk, 2 + 32},
    {GgmlType::Q4_0, "Q4_0", kQk, 2 + 16},
    {GgmlType::Q4_1, "Q4_1", kQk, 2 + 2 + 16},
    {GgmlType::Q5_0, "Q5_0", kQk, 2 + 4 + 16},
    {GgmlType::Q5_1, "Q5_1", kQk, 2 + 2 + 4 + 16},
    {GgmlType::Q4_K, "Q4_K", kQkK, 2 + 2 + 12 + 128},
    {GgmlType::Q5_K, "Q5_K", kQkK, 2 + 2 + 12 + 32 + 128},
    {GgmlType::Q6_K, "Q6_K", kQkK, 128 + 64 + 16 + 2},
}};

// Unaligned little-endian loads: GGUF data is little-endian and tensor data need not be aligned
// to the field size inside a block (blocks of 18 or 22 bytes follow each other).
inline std::uint16_t loadU16(const std::byte *p)
{
    return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) | (std::to_integer<unsigned>(p[1]) << 8));
}

inline std::uint32_t loadU32(const std::byte *p)
{
    return static_cast<std::uint32_t>(loadU16(p)) | (static_cast<std::uint32_t>(loadU16(p + 2)) << 16);
}

inline float loadHalf(const std::byte *p)
{
    return halfToFloat(loadU16(p));
}

inline const std::uint8_t *asU8(const std::byte *p)
{
    return reinterpret_cast<const std::uint8_t *>(p);
}

// ---------------------------------------------------------------------------------------------
// Scalar kernels (portable; the definition of the results).

void dequantizeF32(const std::byte *src, float *dst, std::int64_t n)
{
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
}

void dequantizeF16Scalar(const std::byte *src, float *dst, std::int64_t n)
{
    for (std::int64_t i = 0; i < n; ++i)
        dst[i] = loadHalf(src + 2 * i);
}

void dequantizeBf16Scalar(const std::byte *src, float *dst, std::int64_t n)
{
    for (std::int64_t i = 0; i < n; ++i)
        dst[i] = bf16ToFloat(loadU16(src + 2 * i));
}

void dequantizeQ8_0Scalar(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 34, dst += kQk) {
        const float d = loadHalf(src);
        const auto *qs = reinterpret_cast<const std::int8_t *>(src + 2);
        for (int j = 0; j < kQk; ++j)
            dst[j] = static_cast<float>(qs[j]) * d;
    }
}

void dequantizeQ4_0Scalar(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 18, dst += kQk) {
        const float d = loadHalf(src);
        const std::uint8_t *qs = asU8(src + 2);
        for (int j = 0; j < 16; ++j) {
            dst[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
            dst[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
        }
    }
}

void dequantizeQ4_1Scalar(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 20, dst += kQk) {
        const float d = loadHalf(src);
        const float m = loadHalf(src + 2);
        const std::uint8_t *qs = asU8(src + 4);
        for (int j = 0; j < 16; ++j) {
            dst[j] = std::fma(static_cast<float>(qs[j] & 0x0F), d, m);
            dst[j + 16] = std::fma(static_cast<float>(qs[j] >> 4), d, m);
        }
    }
}

// Q5_0 and Q5_1 share the quant layout: bit j of qh is the fifth bit of element j.
void dequantizeQ5_0Scalar(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 22, dst += kQk) {
        const float d = loadHalf(src);
        const std::uint32_t qh = loadU32(src + 2);
        const std::uint8_t *qs = asU8(src + 6);
        for (int j = 0; j < 16; ++j) {
            const int lo = static_cast<int>((qs[j] & 0x0F) | (((qh >> j) & 1u) << 4));
            const int hi = static_cast<int>((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
            dst[j] = static_cast<float>(lo - 16) * d;
            dst[j + 16] = static_cast<float>(hi - 16) * d;
        }
    }
}

void dequantizeQ5_1Scalar(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 24, dst += kQk) {
        const float d = loadHalf(src);
        const float m = loadHalf(src + 2);
        const std::uint32_t qh = loadU32(src + 4);
        const std::uint8_t *qs = asU8(src + 8);
        for (int j = 0; j < 16; ++j) {
            const unsigned lo = (qs[j] & 0x0Fu) | (((qh >> j) & 1u) << 4);
            const unsigned hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4);
            dst[j] = std::fma(static_cast<float>(lo), d, m);
            dst[j + 16] = std::fma(static_cast<float>(hi), d, m);
        }
    }
}

// Q4_K: 4 chunks of 64 elements; chunk c uses qs[32c..32c+31], low nibbles for sub-block 2c and
// high nibbles for sub-block 2c+1.
void dequantizeQ4_KScalar(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 144) {
        const float d = loadHalf(src);
        const float dmin = loadHalf(src + 2);
        const std::uint8_t *scales = asU8(src + 4);
        const std::uint8_t *qs = asU8(src + 16);
        for (int c = 0; c < 4; ++c, qs += 32) {
            for (int half = 0; half < 2; ++half, dst += 32) {
                int sc = 0;
                int m = 0;
                kQuantScaleMin(scales, 2 * c + half, sc, m);
                const float d1 = d * static_cast<float>(sc);
                const float negM1 = -(dmin * static_cast<float>(m));
                const int shift = 4 * half;
                for (int l = 0; l < 32; ++l)
                    dst[l] = std::fma(static_cast<float>((qs[l] >> shift) & 0x0F), d1, negM1);
            }
        }
    }
}

// Q5_K: as Q4_K, plus bit s of qh[l] as the fifth bit of element l of sub-block s.
void dequantizeQ5_KScalar(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 176) {
        const float d = loadHalf(src);
        const float dmin = loadHalf(src + 2);
        const std::uint8_t *scales = asU8(src + 4);
        const std::uint8_t *qh = asU8(src + 16);
        const std::uint8_t *qs = asU8(src + 48);
        for (int c = 0; c < 4; ++c, qs += 32) {
            for (int half = 0; half < 2; ++half, dst += 32) {
                const int sub = 2 * c + half;
                int sc = 0;
                int m = 0;
                kQuantScaleMin(scales, sub, sc, m);
                const float d1 = d * static_cast<float>(sc);
                const float negM1 = -(dmin * static_cast<float>(m));
                const int shift = 4 * half;
                for (int l = 0; l < 32; ++l) {
                    const unsigned q = ((qs[l] >> shift) & 0x0Fu) | (((qh[l] >> sub) & 1u) << 4);
                    dst[l] = std::fma(static_cast<float>(q), d1, negM1);
                }
            }
        }
    }
}

// Q6_K: two halves of 128 elements. In half h, quarter k (32 elements) takes its low 4 bits from
// ql[64h + 32(k&1) + l] (low nibble for k < 2, high for k >= 2) and its top 2 bits from bits 2k..2k+1
// of qh[32h + l]; each 16 elements share one int8 scale, scales[8h + 2k + l/16].
void dequantizeQ6_KScalar(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 210) {
        const std::uint8_t *ql = asU8(src);
        const std::uint8_t *qh = asU8(src + 128);
        const auto *scales = reinterpret_cast<const std::int8_t *>(src + 192);
        const float d = loadHalf(src + 208);
        for (int h = 0; h < 2; ++h, ql += 64, qh += 32, scales += 8) {
            for (int k = 0; k < 4; ++k, dst += 32) {
                const std::uint8_t *low = ql + 32 * (k & 1);
                const int lowShift = k < 2 ? 0 : 4;
                for (int l = 0; l < 32; ++l) {
                    const int q =
                        static_cast<int>(((low[l] >> lowShift) & 0x0F) | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
                    const float ds = d * static_cast<float>(scales[2 * k + l / 16]);
                    dst[l] = ds * static_cast<float>(q);
                }
            }
        }
    }
}

#if defined(KVCHAT_GGML_AVX2)
// ---------------------------------------------------------------------------------------------
// AVX2 kernels. Each builds the 32 integer quants of a (sub-)block as int8 lanes in element order
// and then converts exactly (int8 -> int32 -> float) and applies the same single multiply or fused
// multiply-add as the scalar kernel, so the results are identical bit for bit.

// Block scales through F16C: identical to halfToFloat for every half (ggml_type_test checks all
// 65536 against the hardware) and much cheaper than its branches.
inline float loadHalfF16c(const std::byte *p)
{
    return _cvtsh_ss(loadU16(p));
}

// Bytes 8k..8k+7 of v as 8 floats (exact).
template <int k> inline __m256 int8GroupToFloat(__m256i v)
{
    const __m128i lane = _mm256_extracti128_si256(v, k / 2);
    const __m128i bytes = (k % 2) ? _mm_unpackhi_epi64(lane, lane) : lane;
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
}

// dst[i] = float(q[i]) * (i < 16 ? dLo : dHi)
inline void storeScaled32(float *dst, __m256i q, __m256 dLo, __m256 dHi)
{
    _mm256_storeu_ps(dst + 0, _mm256_mul_ps(int8GroupToFloat<0>(q), dLo));
    _mm256_storeu_ps(dst + 8, _mm256_mul_ps(int8GroupToFloat<1>(q), dLo));
    _mm256_storeu_ps(dst + 16, _mm256_mul_ps(int8GroupToFloat<2>(q), dHi));
    _mm256_storeu_ps(dst + 24, _mm256_mul_ps(int8GroupToFloat<3>(q), dHi));
}

// dst[i] = fma(float(q[i]), d, m)
inline void storeFma32(float *dst, __m256i q, __m256 d, __m256 m)
{
    _mm256_storeu_ps(dst + 0, _mm256_fmadd_ps(int8GroupToFloat<0>(q), d, m));
    _mm256_storeu_ps(dst + 8, _mm256_fmadd_ps(int8GroupToFloat<1>(q), d, m));
    _mm256_storeu_ps(dst + 16, _mm256_fmadd_ps(int8GroupToFloat<2>(q), d, m));
    _mm256_storeu_ps(dst + 24, _mm256_fmadd_ps(int8GroupToFloat<3>(q), d, m));
}

// 16 bytes of packed nibbles -> 32 bytes: low nibbles (elements 0-15), then high nibbles (16-31).
inline __m256i unpackNibbles16(const std::byte *qs)
{
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i *>(qs));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(packed, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    return _mm256_set_m128i(hi, lo);
}

// Byte i of the result is 0x10 when bit i of bits is set, else 0.
inline __m256i fifthBits32(std::uint32_t bits)
{
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                               _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                                                2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bitMask = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    const __m256i isSet = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bitMask), bitMask);
    return _mm256_and_si256(isSet, _mm256_set1_epi8(0x10));
}

void dequantizeF16Avx2(const std::byte *src, float *dst, std::int64_t n)
{
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    dequantizeF16Scalar(src + 2 * i, dst + i, n - i);
}

void dequantizeBf16Avx2(const std::byte *src, float *dst, std::int64_t n)
{
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src + 2 * i));
        const __m256i bits = _mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(bits));
    }
    dequantizeBf16Scalar(src + 2 * i, dst + i, n - i);
}

void dequantizeQ8_0Avx2(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 34, dst += kQk) {
        const __m256 d = _mm256_set1_ps(loadHalfF16c(src));
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(src + 2));
        storeScaled32(dst, q, d, d);
    }
}

void dequantizeQ4_0Avx2(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    const __m256i eight = _mm256_set1_epi8(8);
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 18, dst += kQk) {
        const __m256 d = _mm256_set1_ps(loadHalfF16c(src));
        const __m256i q = _mm256_sub_epi8(unpackNibbles16(src + 2), eight);
        storeScaled32(dst, q, d, d);
    }
}

void dequantizeQ4_1Avx2(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 20, dst += kQk) {
        const __m256 d = _mm256_set1_ps(loadHalfF16c(src));
        const __m256 m = _mm256_set1_ps(loadHalfF16c(src + 2));
        storeFma32(dst, unpackNibbles16(src + 4), d, m);
    }
}

void dequantizeQ5_0Avx2(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    const __m256i sixteen = _mm256_set1_epi8(16);
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 22, dst += kQk) {
        const __m256 d = _mm256_set1_ps(loadHalfF16c(src));
        const __m256i q = _mm256_or_si256(unpackNibbles16(src + 6), fifthBits32(loadU32(src + 2)));
        storeScaled32(dst, _mm256_sub_epi8(q, sixteen), d, d);
    }
}

void dequantizeQ5_1Avx2(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 24, dst += kQk) {
        const __m256 d = _mm256_set1_ps(loadHalfF16c(src));
        const __m256 m = _mm256_set1_ps(loadHalfF16c(src + 2));
        const __m256i q = _mm256_or_si256(unpackNibbles16(src + 8), fifthBits32(loadU32(src + 4)));
        storeFma32(dst, q, d, m);
    }
}

// Shared by Q4_K (qh == nullptr) and Q5_K.
void dequantizeQ45_KAvx2(const std::byte *src, float *dst, std::int64_t nBlocks, bool hasHighBits)
{
    const std::size_t blockBytes = hasHighBits ? 176 : 144;
    const __m256i nibbleMask = _mm256_set1_epi8(0x0F);
    const __m256i sixteen = _mm256_set1_epi8(16);
    for (std::int64_t b = 0; b < nBlocks; ++b, src += blockBytes) {
        const float d = loadHalfF16c(src);
        const float dmin = loadHalfF16c(src + 2);
        const std::uint8_t *scales = asU8(src + 4);
        const std::byte *qs = src + (hasHighBits ? 48 : 16);
        const __m256i qh =
            hasHighBits ? _mm256_loadu_si256(reinterpret_cast<const __m256i *>(src + 16)) : _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c, qs += 32) {
            const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(qs));
            for (int half = 0; half < 2; ++half, dst += 32) {
                const int sub = 2 * c + half;
                int sc = 0;
                int m = 0;
                kQuantScaleMin(scales, sub, sc, m);
                const float d1 = d * static_cast<float>(sc);
                const float negM1 = -(dmin * static_cast<float>(m));
                __m256i q = half == 0 ? _mm256_and_si256(packed, nibbleMask)
                                      : _mm256_and_si256(_mm256_srli_epi16(packed, 4), nibbleMask);
                if (hasHighBits) {
                    const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << sub));
                    const __m256i isSet = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
                    q = _mm256_or_si256(q, _mm256_and_si256(isSet, sixteen));
                }
                storeFma32(dst, q, _mm256_set1_ps(d1), _mm256_set1_ps(negM1));
            }
        }
    }
}

void dequantizeQ6_KAvx2(const std::byte *src, float *dst, std::int64_t nBlocks)
{
    const __m256i nibbleMask = _mm256_set1_epi8(0x0F);
    const __m256i twoBits = _mm256_set1_epi8(3);
    const __m256i thirtyTwo = _mm256_set1_epi8(32);
    for (std::int64_t b = 0; b < nBlocks; ++b, src += 210) {
        const std::byte *ql = src;
        const std::byte *qhPtr = src + 128;
        const auto *scales = reinterpret_cast<const std::int8_t *>(src + 192);
        const float d = loadHalfF16c(src + 208);
        for (int h = 0; h < 2; ++h, ql += 64, qhPtr += 32, scales += 8) {
            const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(ql));
            const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(ql + 32));
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(qhPtr));
            for (int k = 0; k < 4; ++k, dst += 32) {
                const __m256i lowSrc = (k & 1) ? ql1 : ql0;
                const __m256i low = k < 2 ? _mm256_and_si256(lowSrc, nibbleMask)
                                          : _mm256_and_si256(_mm256_srli_epi16(lowSrc, 4), nibbleMask);
                // Shifting 16-bit lanes smears bits across byte boundaries; the mask keeps only the
                // two bits that belong to each byte.
                const __m256i high = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k)), twoBits);
                const __m256i q = _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 4)), thirtyTwo);
                const __m256 dLo = _mm256_set1_ps(d * static_cast<float>(scales[2 * k]));
                const __m256 dHi = _mm256_set1_ps(d * static_cast<float>(scales[2 * k + 1]));
                storeScaled32(dst, q, dLo, dHi);
            }
        }
    }
}
#endif // KVCHAT_GGML_AVX2

} // namespace

std::optional<GgmlTypeTraits> ggmlTypeTraits(std::uint32_t rawType)
{
    for (const GgmlTypeTraits &t : kTraits) {
        if (static_cast<std::uint32_t>(t.type) == rawType)
            return t;
    }
    return std::nullopt;
}

GgmlTypeTraits ggmlTypeTraits(GgmlType type)
{
    // Every enumerator is in the table; a value cast from an unchecked integer is a caller bug,
    // so fall back to F32's traits rather than reading out of bounds.
    const std::optional<GgmlTypeTraits> traits = ggmlTypeTraits(static_cast<std::uint32_t>(type));
    return traits ? *traits : kTraits[0];
}

std::string_view ggmlTypeName(GgmlType type)
{
    const std::optional<GgmlTypeTraits> traits = ggmlTypeTraits(static_cast<std::uint32_t>(type));
    return traits ? traits->name : std::string_view("unknown");
}

std::string_view supportedGgmlTypeNames()
{
    return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K";
}

std::optional<std::size_t> ggmlRowBytes(GgmlType type, std::int64_t nElements)
{
    const std::optional<GgmlTypeTraits> traits = ggmlTypeTraits(static_cast<std::uint32_t>(type));
    if (!traits || nElements < 0 || nElements % traits->blockElements != 0)
        return std::nullopt;
    return static_cast<std::size_t>(nElements / traits->blockElements) * traits->blockBytes;
}

void dequantizeRow(GgmlType type, const std::byte *src, float *dst, std::int64_t nElements)
{
    if (nElements <= 0)
        return;
    const std::int64_t nBlocks = nElements / ggmlTypeTraits(type).blockElements;
#if defined(KVCHAT_GGML_AVX2)
    switch (type) {
    case GgmlType::F32:
        dequantizeF32(src, dst, nElements);
        return;
    case GgmlType::F16:
        dequantizeF16Avx2(src, dst, nElements);
        return;
    case GgmlType::BF16:
        dequantizeBf16Avx2(src, dst, nElements);
        return;
    case GgmlType::Q8_0:
        dequantizeQ8_0Avx2(src, dst, nBlocks);
        return;
    case GgmlType::Q4_0:
        dequantizeQ4_0Avx2(src, dst, nBlocks);
        return;
    case GgmlType::Q4_1:
        dequantizeQ4_1Avx2(src, dst, nBlocks);
        return;
    case GgmlType::Q5_0:
        dequantizeQ5_0Avx2(src, dst, nBlocks);
        return;
    case GgmlType::Q5_1:
        dequantizeQ5_1Avx2(src, dst, nBlocks);
        return;
    case GgmlType::Q4_K:
        dequantizeQ45_KAvx2(src, dst, nBlocks, false);
        return;
    case GgmlType::Q5_K:
        dequantizeQ45_KAvx2(src, dst, nBlocks, true);
        return;
    case GgmlType::Q6_K:
        dequantizeQ6_KAvx2(src, dst, nBlocks);
        return;
    }
#endif
    // Portable path: the whole story without AVX2, unreachable with it (every type returned above).
    switch (type) {
    case GgmlType::F32:
        dequantizeF32(src, dst, nElements);
        return;
    case GgmlType::F16:
        dequantizeF16Scalar(src, dst, nElements);
        return;
    case GgmlType::BF16:
        dequantizeBf16Scalar(src, dst, nElements);
        return;
    case GgmlType::Q8_0:
        dequantizeQ8_0Scalar(src, dst, nBlocks);
        return;
    case GgmlType::Q4_0:
        dequantizeQ4_0Scalar(src, dst, nBlocks);
        return;
    case GgmlType::Q4_1:
        dequantizeQ4_1Scalar(src, dst, nBlocks);
        return;
    case GgmlType::Q5_0:
        dequantizeQ5_0Scalar(src, dst, nBlocks);
        return;
    case GgmlType::Q5_1:
        dequantizeQ5_1Scalar(src, dst, nBlocks);
        return;
    case GgmlType::Q4_K:
        dequantizeQ4_KScalar(src, dst, nBlocks);
        return;
    case GgmlType::Q5_K:
        dequantizeQ5_KScalar(src, dst, nBlocks);
        return;
    case GgmlType::Q6_K:
        dequantizeQ6_KScalar(src, dst, nBlocks);
        return;
    }
}

namespace {

// The blocks of decodeAffineBlock (the bit layouts are those of the scalar decoders above).
void setGroups(AffineQuantBlock &b, int firstSub, int nSubs, float scale, float min)
{
    for (int s = firstSub; s < firstSub + nSubs; ++s) {
        b.scale[s] = scale;
        b.min[s] = min;
    }
}

// Legacy 32-element types: element j (< 16) is the low nibble of qs[j], element j + 16 the high
// one; the fifth bit (Q5_*) is bit j (j + 16) of qh.
void decodeLegacy(GgmlType type, const std::byte *src, AffineQuantBlock &b)
{
    b.elements = 32;
    const float d = loadHalf(src);
    switch (type) {
    case GgmlType::Q8_0: {
        const auto *qs = reinterpret_cast<const std::int8_t *>(src + 2);
        for (int j = 0; j < 32; ++j)
            b.code[j] = static_cast<std::uint8_t>(qs[j] + 128);
        setGroups(b, 0, 2, d, -128.0f * d);
        return;
    }
    case GgmlType::Q4_0:
    case GgmlType::Q4_1: {
        const bool hasMin = type == GgmlType::Q4_1;
        const std::uint8_t *qs = asU8(src + (hasMin ? 4 : 2));
        for (int j = 0; j < 16; ++j) {
            b.code[j] = qs[j] & 0x0F;
            b.code[j + 16] = qs[j] >> 4;
        }
        setGroups(b, 0, 2, d, hasMin ? loadHalf(src + 2) : -8.0f * d);
        return;
    }
    case GgmlType::Q5_0:
    case GgmlType::Q5_1: {
        const bool hasMin = type == GgmlType::Q5_1;
        const std::byte *qhBytes = src + (hasMin ? 4 : 2);
        const std::uint32_t qh =
            static_cast<std::uint32_t>(loadU16(qhBytes)) | (std::uint32_t(loadU16(qhBytes + 2)) << 16);
        const std::uint8_t *qs = asU8(qhBytes + 4);
        for (int j = 0; j < 16; ++j) {
            b.code[j] = static_cast<std::uint8_t>((qs[j] & 0x0F) | (((qh >> j) & 1u) << 4));
            b.code[j + 16] = static_cast<std::uint8_t>((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
        }
        setGroups(b, 0, 2, d, hasMin ? loadHalf(src + 2) : -16.0f * d);
        return;
    }
    default:
        b.elements = 0;
    }
}

// Q4_K / Q5_K: 8 sub-blocks of 32, each d * sc * q - dmin * m (see dequantizeQ4_KScalar).
void decodeQ45K(bool fiveBits, const std::byte *src, AffineQuantBlock &b)
{
    b.elements = 256;
    const float d = loadHalf(src);
    const float dmin = loadHalf(src + 2);
    const std::uint8_t *scales = asU8(src + 4);
    const std::uint8_t *qh = asU8(src + 16);
    const std::uint8_t *qs = asU8(src + (fiveBits ? 48 : 16));
    for (int sub = 0; sub < 8; ++sub) {
        int sc = 0, m = 0;
        kQuantScaleMin(scales, sub, sc, m);
        const std::uint8_t *q = qs + 32 * (sub / 2);
        const int shift = 4 * (sub % 2);
        for (int l = 0; l < 32; ++l) {
            unsigned code = (q[l] >> shift) & 0x0Fu;
            if (fiveBits)
                code |= ((qh[l] >> sub) & 1u) << 4;
            b.code[32 * sub + l] = static_cast<std::uint8_t>(code);
        }
        setGroups(b, 2 * sub, 2, d * static_cast<float>(sc), -(dmin * static_cast<float>(m)));
    }
}

// Q6_K: d * scale16 * (q - 32), q 6 bits (see dequantizeQ6_KScalar for the bit layout).
void decodeQ6K(const std::byte *src, AffineQuantBlock &b)
{
    b.elements = 256;
    const std::uint8_t *ql = asU8(src);
    const std::uint8_t *qh = asU8(src + 128);
    const auto *scales = reinterpret_cast<const std::int8_t *>(src + 192);
    const float d = loadHalf(src + 208);
    int e = 0;
    for (int h = 0; h < 2; ++h, ql += 64, qh += 32, scales += 8)
        for (int k = 0; k < 4; ++k) {
            const std::uint8_t *low = ql + 32 * (k & 1);
            const int lowShift = k < 2 ? 0 : 4;
            for (int l = 0; l < 32; ++l, ++e)
                b.code[e] = static_cast<std::uint8_t>(((low[l] >> lowShift) & 0x0F) | (((qh[l] >> (2 * k)) & 3) << 4));
            for (int s = 0; s < 2; ++s) {
                const float scale = d * static_cast<float>(scales[2 * k + s]);
                setGroups(b, e / kAffineGroup - 2 + s, 1, scale, -32.0f * scale);
            }
        }
}

} // namespace

bool decodeAffineBlock(GgmlType type, const std::byte *src, AffineQuantBlock &b)
{
    switch (type) {
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
        decodeQ45K(type == GgmlType::Q5_K, src, b);
        return true;
    case GgmlType::Q6_K:
        decodeQ6K(src, b);
        return true;
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
        return false;
    default:
        decodeLegacy(type, src, b);
        return b.elements > 0;
    }
}

void kQuantScaleMin(const std::uint8_t *scales, int j, int &sc, int &m)
{
    if (j < 4) {
        sc = scales[j] & 63;
        m = scales[j + 4] & 63;
    } else {
        sc = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
        m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

float halfToFloat(std::uint16_t h)
{
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1Fu;
    std::uint32_t mantissa = h & 0x3FFu;
    std::uint32_t bits = 0;
    if (exponent == 0x1F) {
        // Inf, or NaN with its payload kept and the quiet bit set, as F16C's vcvtph2ps does (and
        // as IEEE conversion of a signalling NaN requires).
        bits = sign | 0x7F800000u | (mantissa << 13) | (mantissa != 0 ? 0x00400000u : 0u);
    } else if (exponent != 0) {
        bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        // Subnormal half: every one is a normal float. Shift the leading one into the implicit
        // bit position; each shift lowers the exponent by one (2^-14 is biased exponent 113).
        std::uint32_t e = 127 - 14;
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            --e;
        }
        bits = sign | (e << 23) | ((mantissa & 0x3FFu) << 13);
    }
    return std::bit_cast<float>(bits);
}

std::uint16_t floatToHalf(float f)
{
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t a = x & 0x7FFFFFFFu;
    if (a > 0x7F800000u) // NaN: keep the top payload bits, force quiet so it stays a NaN
        return static_cast<std::uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
    if (a >= 0x47800000u) // |f| >= 65536 (and inf): beyond any rounding to 65504
        return static_cast<std::uint16_t>(sign | 0x7C00u);
    if (a >= 0x38800000u) {
        // Normal half range (|f| >= 2^-14): rebias, then round the 13 dropped bits to nearest
        // even. A carry out of the mantissa correctly bumps the exponent, up to inf at 65520.
        std::uint32_t h = (a - ((127u - 15u) << 23)) >> 13;
        const std::uint32_t rest = a & 0x1FFFu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
            ++h;
        return static_cast<std::uint16_t>(sign | h);
    }
    if (a <= 0x33000000u) // |f| <= 2^-25: rounds to zero (2^-25 itself is a tie, to even 0)
        return static_cast<std::uint16_t>(sign);
    // Subnormal half: value = m * 2^-24 with m = significand >> shift, rounded to nearest even.
    // A round-up to 0x400 gives the smallest normal, which is the right encoding.
    const std::uint32_t significand = (a & 0x7FFFFFu) | 0x800000u;
    const int exponent = static_cast<int>(a >> 23) - 127; // -25 .. -15
    const int shift = -exponent - 1;                      // 14 .. 24
    std::uint32_t h = significand >> shift;
    const std::uint32_t rest = significand & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (h & 1u)))
        ++h;
    return static_cast<std::uint16_t>(sign | h);
}

float bf16ToFloat(std::uint16_t b)
{
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

} // namespace kvchat::engine
