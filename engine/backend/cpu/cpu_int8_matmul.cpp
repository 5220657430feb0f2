// SPDX-License-Identifier: MIT
// Kernel file owned by the CPU-backend performance owner (STYLE.md §5 exception).
#include "engine/backend/cpu/cpu_int8_matmul.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <utility>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define KVCHAT_INT8_AVX2 1
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define KVCHAT_INT8_VNNI 1 // vpdpbusd on ymm through AVX-512 VL (Zen 4, Ice Lake and later)
#elif defined(__AVXVNNI__)
#define KVCHAT_INT8_VNNI 1
#define _mm256_dpbusd_epi32 _mm256_dpbusd_avx_epi32 // the VEX form (Alder Lake, Zen 5)
#endif
#endif

// GCC 12.2 with AVX512-VNNI (-march=native on Zen 4) vectorizes a scalar sum of
// int8_t(uint8 byte) * int8 products with vpdpbusd, which takes the first operand as unsigned:
// negative weights come out as +256. The scalar definitions below are kept out of the vectorizer.
#if defined(__GNUC__) && !defined(__clang__)
#define KVCHAT_SCALAR_DEFINITION __attribute__((optimize("no-tree-vectorize")))
#else
#define KVCHAT_SCALAR_DEFINITION
#endif

namespace kvchat::engine::cpu {

namespace {

// Packed layouts, per group of 8 rows (r = row in the group, 0..7):
//   Q8_0, per block of 32:  8 x f16 d[r] | 8 chunks c of 32 bytes: byte 4r + i = q[r][4c + i]
//   Q4_0, per block of 32:  8 x f16 d[r] | 4 pairs p of 32 bytes: byte 4r + i holds nibble
//                           q[r][8p + i] (low) and q[r][8p + 4 + i] (high), as stored (0..15)
//   Q4_K, per block of 256: 8 x f16 d[r] | 8 x f16 dmin[r] | u8 sc[8 sub][8 r] | u8 m[8 sub][8 r]
//                           | 8 sub-blocks of 128 bytes, each laid out as Q4_0's nibbles
constexpr std::int64_t kQ8_0BlockBytes = 16 + 256;
constexpr std::int64_t kQ4_0BlockBytes = 16 + 128;
constexpr std::int64_t kQ4_KBlockBytes = 16 + 16 + 64 + 64 + 8 * 128;
constexpr std::int64_t kQkK = 256;

std::int64_t packedBlockBytes(GgmlType type)
{
    switch (type) {
    case GgmlType::Q8_0:
        return kQ8_0BlockBytes;
    case GgmlType::Q4_0:
        return kQ4_0BlockBytes;
    case GgmlType::Q4_K:
        return kQ4_KBlockBytes;
    default:
        return 0;
    }
}

std::int64_t blockElements(GgmlType type)
{
    return type == GgmlType::Q4_K ? kQkK : kInt8Block;
}

const std::uint8_t *u8(const std::byte *p)
{
    return reinterpret_cast<const std::uint8_t *>(p);
}

// The integer quant of element e (0..31) of a legacy 4-bit block's 16 quant bytes.
int nibble32(const std::uint8_t *qs, int e)
{
    return e < 16 ? qs[e] & 0x0F : qs[e - 16] >> 4;
}

// Q4_K: the nibble of element e (0..31) of sub-block s of a block's 128 quant bytes.
int nibbleK(const std::uint8_t *qs, int s, int e)
{
    return (qs[32 * (s / 2) + e] >> (4 * (s % 2))) & 0x0F;
}

// 128 bytes of interleaved nibbles for 8 rows of 32 quants, quant(r, e) giving element e of row r.
template <class Quant> void packNibbles(std::uint8_t *dst, Quant &&quant)
{
    for (int p = 0; p < 4; ++p)
        for (int r = 0; r < 8; ++r)
            for (int i = 0; i < 4; ++i)
                dst[32 * p + 4 * r + i] =
                    static_cast<std::uint8_t>(quant(r, 8 * p + i) | (quant(r, 8 * p + 4 + i) << 4));
}

void packGroup(const WeightMatrix &w, std::int64_t g, std::uint8_t *dst)
{
    const std::int64_t nBlocks = w.nIn / blockElements(w.type);
    const std::size_t srcBlockBytes = ggmlTypeTraits(w.type).blockBytes;
    auto srcBlock = [&](int r, std::int64_t b) {
        return u8(w.row(g * kInt8GroupRows + r)) + static_cast<std::size_t>(b) * srcBlockBytes;
    };
    for (std::int64_t b = 0; b < nBlocks; ++b, dst += packedBlockBytes(w.type)) {
        switch (w.type) {
        case GgmlType::Q8_0:
            for (int r = 0; r < 8; ++r)
                std::memcpy(dst + 2 * r, srcBlock(r, b), 2);
            for (int c = 0; c < 8; ++c)
                for (int r = 0; r < 8; ++r)
                    std::memcpy(dst + 16 + 32 * c + 4 * r, srcBlock(r, b) + 2 + 4 * c, 4);
            break;
        case GgmlType::Q4_0:
            for (int r = 0; r < 8; ++r)
                std::memcpy(dst + 2 * r, srcBlock(r, b), 2);
            packNibbles(dst + 16, [&](int r, int e) { return nibble32(srcBlock(r, b) + 2, e); });
            break;
        case GgmlType::Q4_K:
            for (int r = 0; r < 8; ++r) {
                std::memcpy(dst + 2 * r, srcBlock(r, b), 2);
                std::memcpy(dst + 16 + 2 * r, srcBlock(r, b) + 2, 2);
                for (int s = 0; s < 8; ++s) {
                    int sc = 0, m = 0;
                    kQuantScaleMin(srcBlock(r, b) + 4, s, sc, m);
                    dst[32 + 8 * s + r] = static_cast<std::uint8_t>(sc);
                    dst[96 + 8 * s + r] = static_cast<std::uint8_t>(m);
                }
            }
            for (int s = 0; s < 8; ++s)
                packNibbles(dst + 160 + 128 * s, [&](int r, int e) { return nibbleK(srcBlock(r, b) + 16, s, e); });
            break;
        default:
            break;
        }
    }
}

float half(const std::uint8_t *p)
{
    std::uint16_t h = 0;
    std::memcpy(&h, p, sizeof h);
    return halfToFloat(h);
}

// ---------------------------------------------------------------------------------------------
// Activation quantization.

#if KVCHAT_INT8_AVX2
// d = amax / 127, q = nearbyint(x * (1 / d)), sum = Σq: the portable version below, 8 lanes at a time (max and sums are exact in any
// order; x * id and round-to-nearest-even are the same IEEE operations).
void quantizeBlock(const float *x, std::int8_t *q, float &d, std::int32_t &sum)
{
    const __m256 signBit = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    __m256 mx = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
        v[j] = _mm256_loadu_ps(x + 8 * j);
        mx = _mm256_max_ps(mx, _mm256_andnot_ps(signBit, v[j]));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    d = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m256i iv[4];
    __m256i s = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
        iv[j] = _mm256_cvtps_epi32(
            _mm256_round_ps(_mm256_mul_ps(v[j], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        s = _mm256_add_epi32(s, iv[j]);
    }
    // int32 -> int8 keeping element order: the packs interleave 128-bit lanes, the permute undoes it.
    const __m256i p16a = _mm256_packs_epi32(iv[0], iv[1]);
    const __m256i p16b = _mm256_packs_epi32(iv[2], iv[3]);
    const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(q),
                        _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    sum = _mm_cvtsi128_si32(s4);
}
#else
void quantizeBlock(const float *x, std::int8_t *q, float &d, std::int32_t &sum)
{
    float amax = 0.0f;
    for (int i = 0; i < kInt8Block; ++i)
        amax = std::max(amax, std::fabs(x[i]));
    d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    sum = 0;
    for (int i = 0; i < kInt8Block; ++i) {
        const int v = static_cast<int>(std::nearbyint(x[i] * id));
        q[i] = static_cast<std::int8_t>(v);
        sum += v;
    }
}
#endif

// ---------------------------------------------------------------------------------------------
// Kernels: one group of 8 rows x T tokens; y[t * yStride + r] for r < 8.

struct ActView
{
    const std::int8_t *q;
    const float *d;
    const std::int32_t *sum;
    const float *scaledSum;
    std::int64_t nIn;
    std::int64_t nBlocks;
};

#if KVCHAT_INT8_AVX2

inline __m256i broadcast4(const std::int8_t *p)
{
    std::int32_t v = 0;
    std::memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

// acc + Σ over each group of 4 bytes of u (unsigned) * s (signed), exact for u <= 15 (4-bit quants).
inline __m256i dotU4(__m256i acc, __m256i u, __m256i s)
{
#if KVCHAT_INT8_VNNI
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

inline __m256 halves8(const std::uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
}

inline __m256 bytesToFloat8(const std::uint8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p))));
}

// Adds the 4-bit quants of one 32-element block (128 interleaved bytes at w) times the activation
// quants at x[t] into isum[t].
template <int T> inline void dotNibbles(const std::uint8_t *w, const std::int8_t *const *x, __m256i *isum)
{
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int p = 0; p < 4; ++p) {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(w + 32 * p));
        const __m256i lo = _mm256_and_si256(raw, low);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
        for (int t = 0; t < T; ++t) {
            isum[t] = dotU4(isum[t], lo, broadcast4(x[t] + 8 * p));
            isum[t] = dotU4(isum[t], hi, broadcast4(x[t] + 8 * p + 4));
        }
    }
}

// The activation quants of block b for tokens t0 .. t0 + T - 1, and their integer sums zeroed.
template <int T> inline void startBlock(const ActView &a, std::int64_t t0, std::int64_t b, const std::int8_t **x, __m256i *isum)
{
    for (int t = 0; t < T; ++t) {
        x[t] = a.q + (t0 + t) * a.nIn + b * kInt8Block;
        isum[t] = _mm256_setzero_si256();
    }
}

template <int T> void kernelQ8_0(const std::uint8_t *g, const ActView &a, std::int64_t t0, float *y, std::int64_t yStride)
{
    __m256 acc[T];
    for (int t = 0; t < T; ++t)
        acc[t] = _mm256_setzero_ps();
    for (std::int64_t b = 0; b < a.nBlocks; ++b, g += kQ8_0BlockBytes) {
        const std::int8_t *x[T];
        __m256i isum[T];
        startBlock<T>(a, t0, b, x, isum);
        for (int c = 0; c < 8; ++c) {
            const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(g + 16 + 32 * c));
#if KVCHAT_INT8_VNNI
            // w + 128 as unsigned (the sign bit flipped); the 128 * Σq it adds is taken off below.
            const __m256i wu = _mm256_xor_si256(wq, _mm256_set1_epi8(static_cast<char>(0x80)));
            for (int t = 0; t < T; ++t)
                isum[t] = _mm256_dpbusd_epi32(isum[t], wu, broadcast4(x[t] + 4 * c));
#else
            // |w| * (x with w's sign): at most 2 * 128 * 127 per pair, inside int16.
            const __m256i wabs = _mm256_sign_epi8(wq, wq);
            for (int t = 0; t < T; ++t)
                isum[t] = _mm256_add_epi32(
                    isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(broadcast4(x[t] + 4 * c), wq)),
                                               _mm256_set1_epi16(1)));
#endif
        }
        const __m256 dw = halves8(g);
        for (int t = 0; t < T; ++t) {
            const std::int64_t tb = (t0 + t) * a.nBlocks + b;
#if KVCHAT_INT8_VNNI
            isum[t] = _mm256_sub_epi32(isum[t], _mm256_set1_epi32(128 * a.sum[tb]));
#endif
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, _mm256_set1_ps(a.d[tb])), acc[t]);
        }
    }
    for (int t = 0; t < T; ++t)
        _mm256_storeu_ps(y + t * yStride, acc[t]);
}

template <int T> void kernelQ4_0(const std::uint8_t *g, const ActView &a, std::int64_t t0, float *y, std::int64_t yStride)
{
    __m256 acc[T];
    for (int t = 0; t < T; ++t)
        acc[t] = _mm256_setzero_ps();
    for (std::int64_t b = 0; b < a.nBlocks; ++b, g += kQ4_0BlockBytes) {
        const std::int8_t *x[T];
        __m256i isum[T];
        startBlock<T>(a, t0, b, x, isum);
        dotNibbles<T>(g + 16, x, isum);
        const __m256 dw = halves8(g);
        for (int t = 0; t < T; ++t) {
            const std::int64_t tb = (t0 + t) * a.nBlocks + b;
            // Σ (nibble - 8) q = Σ nibble q - 8 Σ q
            isum[t] = _mm256_sub_epi32(isum[t], _mm256_set1_epi32(8 * a.sum[tb]));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, _mm256_set1_ps(a.d[tb])), acc[t]);
        }
    }
    for (int t = 0; t < T; ++t)
        _mm256_storeu_ps(y + t * yStride, acc[t]);
}

template <int T> void kernelQ4_K(const std::uint8_t *g, const ActView &a, std::int64_t t0, float *y, std::int64_t yStride)
{
    __m256 acc[T];
    for (int t = 0; t < T; ++t)
        acc[t] = _mm256_setzero_ps();
    const std::int64_t nSuper = a.nBlocks / 8;
    for (std::int64_t sb = 0; sb < nSuper; ++sb, g += kQ4_KBlockBytes) {
        const __m256 d = halves8(g);
        const __m256 dmin = halves8(g + 16);
        for (int s = 0; s < 8; ++s) {
            const std::int64_t b = sb * 8 + s;
            const std::int8_t *x[T];
            __m256i isum[T];
            startBlock<T>(a, t0, b, x, isum);
            dotNibbles<T>(g + 160 + 128 * s, x, isum);
            const __m256 scale = _mm256_mul_ps(d, bytesToFloat8(g + 32 + 8 * s));
            const __m256 minv = _mm256_mul_ps(dmin, bytesToFloat8(g + 96 + 8 * s));
            for (int t = 0; t < T; ++t) {
                const std::int64_t tb = (t0 + t) * a.nBlocks + b;
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(scale, _mm256_set1_ps(a.d[tb])),
                                         acc[t]);
                acc[t] = _mm256_fnmadd_ps(minv, _mm256_set1_ps(a.scaledSum[tb]), acc[t]);
            }
        }
    }
    for (int t = 0; t < T; ++t)
        _mm256_storeu_ps(y + t * yStride, acc[t]);
}

// Tokens per register tile: each weight load serves T tokens. With AVX-512VL's 32 vector
// registers 8 tokens fit (2 x 8 accumulators plus operands); with 16, 4.
#if defined(__AVX512VL__)
constexpr int kTokenTile = 8;
#else
constexpr int kTokenTile = 4;
#endif

using KernelFn = void (*)(const std::uint8_t *, const ActView &, std::int64_t, float *, std::int64_t);

template <template <int> class K, int... T> constexpr std::array<KernelFn, sizeof...(T)> kernelTable(std::integer_sequence<int, T...>)
{
    return {&K<T + 1>::run...};
}

template <int T> struct RunQ8_0
{
    static void run(const std::uint8_t *g, const ActView &a, std::int64_t t0, float *y, std::int64_t s)
    {
        kernelQ8_0<T>(g, a, t0, y, s);
    }
};
template <int T> struct RunQ4_0
{
    static void run(const std::uint8_t *g, const ActView &a, std::int64_t t0, float *y, std::int64_t s)
    {
        kernelQ4_0<T>(g, a, t0, y, s);
    }
};
template <int T> struct RunQ4_K
{
    static void run(const std::uint8_t *g, const ActView &a, std::int64_t t0, float *y, std::int64_t s)
    {
        kernelQ4_K<T>(g, a, t0, y, s);
    }
};

// kernels[type][T - 1]
const std::array<KernelFn, kTokenTile> &kernelsFor(GgmlType type)
{
    static constexpr auto q8 = kernelTable<RunQ8_0>(std::make_integer_sequence<int, kTokenTile>{});
    static constexpr auto q4 = kernelTable<RunQ4_0>(std::make_integer_sequence<int, kTokenTile>{});
    static constexpr auto qk = kernelTable<RunQ4_K>(std::make_integer_sequence<int, kTokenTile>{});
    return type == GgmlType::Q8_0 ? q8 : type == GgmlType::Q4_0 ? q4 : qk;
}

void runGroup(GgmlType type, const std::uint8_t *g, const ActView &a, std::int64_t t0, std::int64_t nt, float *y,
              std::int64_t yStride)
{
    kernelsFor(type)[static_cast<std::size_t>(nt - 1)](g, a, t0, y, yStride);
}

#else // portable build: the definition, one lane at a time, from the packed layout

constexpr int kTokenTile = 1;

int packedQuant(GgmlType type, const std::uint8_t *blockQuants, int r, int e)
{
    if (type == GgmlType::Q8_0)
        return static_cast<std::int8_t>(blockQuants[32 * (e / 4) + 4 * r + e % 4]);
    const std::uint8_t byte = blockQuants[32 * (e / 8) + 4 * r + e % 4];
    return e % 8 < 4 ? byte & 0x0F : byte >> 4; // low nibbles: elements 8p..8p+3; high: 8p+4..8p+7
}

KVCHAT_SCALAR_DEFINITION void runGroup(GgmlType type, const std::uint8_t *g, const ActView &a, std::int64_t t0,
                                       std::int64_t nt, float *y, std::int64_t yStride)
{
    for (std::int64_t t = t0; t < t0 + nt; ++t) {
        for (int r = 0; r < 8; ++r) {
            float acc = 0.0f;
            const std::uint8_t *blk = g;
            for (std::int64_t b = 0; b < a.nBlocks; ++b) {
                const std::int8_t *x = a.q + t * a.nIn + b * kInt8Block;
                const std::int64_t tb = t * a.nBlocks + b;
                if (type == GgmlType::Q4_K) {
                    const int s = static_cast<int>(b % 8);
                    const std::uint8_t *quants = blk + 160 + 128 * s;
                    std::int32_t isum = 0;
                    for (int e = 0; e < 32; ++e)
                        isum += packedQuant(type, quants, r, e) * x[e];
                    const float scale = half(blk + 2 * r) * static_cast<float>(blk[32 + 8 * s + r]);
                    const float minv = half(blk + 16 + 2 * r) * static_cast<float>(blk[96 + 8 * s + r]);
                    acc = std::fma(static_cast<float>(isum), scale * a.d[tb], acc);
                    acc = std::fma(-minv, a.scaledSum[tb], acc);
                    if (s == 7)
                        blk += kQ4_KBlockBytes;
                } else {
                    const int offset = type == GgmlType::Q4_0 ? 8 : 0;
                    std::int32_t isum = 0;
                    for (int e = 0; e < 32; ++e)
                        isum += (packedQuant(type, blk + 16, r, e) - offset) * x[e];
                    acc = std::fma(static_cast<float>(isum), half(blk + 2 * r) * a.d[tb], acc);
                    blk += packedBlockBytes(type);
                }
            }
            y[(t - t0) * yStride + r] = acc;
        }
    }
}

#endif

// Weight bytes of a panel of groups that every token tile passes over while it stays in L2.
constexpr std::int64_t kPanelBytes = 256 * 1024;

} // namespace

bool canPackInt8(const WeightMatrix &w)
{
    return (w.type == GgmlType::Q8_0 || w.type == GgmlType::Q4_0 || w.type == GgmlType::Q4_K) && w.nOut > 0 &&
           w.nOut % kInt8GroupRows == 0 && w.nIn % blockElements(w.type) == 0;
}

PackedMatrix packInt8(ThreadPool &pool, const WeightMatrix &w)
{
    PackedMatrix p;
    p.type = w.type;
    p.nIn = w.nIn;
    p.nOut = w.nOut;
    p.groupBytes = w.nIn / blockElements(w.type) * packedBlockBytes(w.type);
    const std::int64_t nGroups = w.nOut / kInt8GroupRows;
    p.bytes = HugePageBuffer(static_cast<std::size_t>(nGroups * p.groupBytes));
    pool.parallelFor(nGroups, [&](std::int64_t g0, std::int64_t g1, int) {
        for (std::int64_t g = g0; g < g1; ++g)
            packGroup(w, g, p.bytes.data() + g * p.groupBytes);
    });
    return p;
}

void quantizeActivations(ThreadPool &pool, const float *x, std::int64_t nTokens, std::int64_t nIn,
                         QuantizedActivations &out)
{
    const std::int64_t nBlocks = nIn / kInt8Block;
    out.nTokens = nTokens;
    out.nIn = nIn;
    auto grow = [](auto &v, std::int64_t n) {
        if (v.size() < static_cast<std::size_t>(n))
            v.resize(static_cast<std::size_t>(n));
    };
    grow(out.q, nTokens * nIn);
    grow(out.d, nTokens * nBlocks);
    grow(out.sum, nTokens * nBlocks);
    grow(out.scaledSum, nTokens * nBlocks);
    auto quantizeTokens = [&](std::int64_t t0, std::int64_t t1, int) {
        for (std::int64_t t = t0; t < t1; ++t)
            for (std::int64_t b = 0; b < nBlocks; ++b) {
                const std::int64_t tb = t * nBlocks + b;
                quantizeBlock(x + t * nIn + b * kInt8Block, out.q.data() + t * nIn + b * kInt8Block, out.d[tb],
                              out.sum[tb]);
                out.scaledSum[tb] = out.d[tb] * static_cast<float>(out.sum[tb]);
            }
    };
    if (nTokens == 1)
        quantizeTokens(0, 1, 0); // a decode step: cheaper than waking the pool
    else
        pool.parallelFor(nTokens, quantizeTokens);
}

void int8Matmul(ThreadPool &pool, const PackedMatrix &w, const QuantizedActivations &x, float *y)
{
    const std::int64_t nTokens = x.nTokens, nOut = w.nOut;
    const ActView a{x.q.data(), x.d.data(), x.sum.data(), x.scaledSum.data(), x.nIn, x.nIn / kInt8Block};
    const std::int64_t nGroups = nOut / kInt8GroupRows;
    const std::int64_t panelGroups = std::max<std::int64_t>(1, kPanelBytes / w.groupBytes);
    pool.parallelFor(nGroups, [&](std::int64_t g0, std::int64_t g1, int) {
        // Rows in L2-sized panels, tokens in register tiles over each panel.
        for (std::int64_t p0 = g0; p0 < g1; p0 += panelGroups) {
            const std::int64_t p1 = std::min(g1, p0 + panelGroups);
            for (std::int64_t t0 = 0; t0 < nTokens; t0 += kTokenTile) {
                const std::int64_t nt = std::min<std::int64_t>(kTokenTile, nTokens - t0);
                for (std::int64_t g = p0; g < p1; ++g)
                    runGroup(w.type, w.group(g), a, t0, nt, y + t0 * nOut + g * kInt8GroupRows, nOut);
            }
        }
    });
}

KVCHAT_SCALAR_DEFINITION float referenceInt8Dot(const WeightMatrix &w, std::int64_t row, const QuantizedActivations &x, std::int64_t token)
{
    const std::int64_t nBlocks = w.nIn / kInt8Block;
    const std::size_t srcBlockBytes = ggmlTypeTraits(w.type).blockBytes;
    const std::uint8_t *src = u8(w.row(row));
    float acc = 0.0f;
    for (std::int64_t b = 0; b < nBlocks; ++b) {
        const std::int8_t *q = x.q.data() + token * x.nIn + b * kInt8Block;
        const std::int64_t tb = token * nBlocks + b;
        std::int32_t isum = 0;
        if (w.type == GgmlType::Q4_K) {
            const std::uint8_t *blk = src + static_cast<std::size_t>(b / 8) * srcBlockBytes;
            const int s = static_cast<int>(b % 8);
            int sc = 0, m = 0;
            kQuantScaleMin(blk + 4, s, sc, m);
            for (int e = 0; e < 32; ++e)
                isum += nibbleK(blk + 16, s, e) * q[e];
            acc = std::fma(static_cast<float>(isum), half(blk) * static_cast<float>(sc) * x.d[tb], acc);
            acc = std::fma(-(half(blk + 2) * static_cast<float>(m)), x.scaledSum[tb], acc);
        } else {
            const std::uint8_t *blk = src + static_cast<std::size_t>(b) * srcBlockBytes;
            for (int e = 0; e < 32; ++e)
                isum += (w.type == GgmlType::Q8_0 ? static_cast<std::int8_t>(blk[2 + e]) : nibble32(blk + 2, e) - 8) * q[e];
            acc = std::fma(static_cast<float>(isum), half(blk) * x.d[tb], acc);
        }
    }
    return acc;
}

} // namespace kvchat::engine::cpu
