// SPDX-License-Identifier: MIT
// Kernel file owned by the CPU-backend performance owner (STYLE.md §5 exception).
//
// The one per-output arithmetic of every matmul in the CPU backend (AVX2 build), shared by the
// register-blocked prefill tiles here and the fused dequantize-and-dot decode kernels in
// cpu_gemm_fused.cpp. For output (row r, token t) over nIn elements:
//
//   acc = 0 (8 fp32 lanes)
//   for k = 0, 8, 16, ... while k + 8 <= nIn:  acc = fma(w[k..k+7], x[k..k+7], acc)   (lane = k % 8)
//   s = hsum(acc)   fixed order: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))
//   for the remaining k:                       s = fma(w[k], x[k], s)
//
// where w[k] is the exact float that dequantizeRow produces for that weight. Nothing in it depends
// on how many rows or tokens a kernel computes at once, how rows are split between threads, or the
// batch size, so every kernel variant gives the same bits for the same (row, token).
//
// Variants here: tile<R, T> computes R rows x T tokens from fp32 rows (a dequantized panel in
// per-thread scratch, or F32 weights in place), one ymm accumulator per output; R*T <= 12 keeps
// the accumulators plus the loaded operands within the 16 ymm registers.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define KVCHAT_GEMM_AVX2 1
#endif

namespace kvchat::engine::cpu::gemm {

#if KVCHAT_GEMM_AVX2

// Horizontal sum of 8 lanes in the fixed order above.
inline float hsum(__m256 v)
{
    const __m128 lo = _mm256_castps256_ps128(v);
    const __m128 hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// hsum of a, b, c and d as lanes 0-3, each by exactly the operations of hsum (IEEE addition is
// commutative, so only the pairing matters, and it is the same), in about half the instructions.
inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    // s_i = v_i + v_{i+4}: [a's s0..s3 | c's s0..s3] and the same for b, d.
    const __m256 ac = _mm256_add_ps(_mm256_permute2f128_ps(a, c, 0x20), _mm256_permute2f128_ps(a, c, 0x31));
    const __m256 bd = _mm256_add_ps(_mm256_permute2f128_ps(b, d, 0x20), _mm256_permute2f128_ps(b, d, 0x31));
    // [a: s0+s2, b: s0+s2, a: s1+s3, b: s1+s3 | the same for c, d]
    const __m256 w = _mm256_add_ps(_mm256_unpacklo_ps(ac, bd), _mm256_unpackhi_ps(ac, bd));
    // (s0+s2) + (s1+s3) in lanes 0, 1 (a, b) and 4, 5 (c, d)
    const __m256 f = _mm256_add_ps(w, _mm256_permute_ps(w, 0x4E));
    return _mm_castpd_ps(
        _mm_unpacklo_pd(_mm_castps_pd(_mm256_castps256_ps128(f)), _mm_castps_pd(_mm256_extractf128_ps(f, 1))));
}

// y[t * yStride + r] = the canonical dot of w + r * wStride and x + t * xStride over n elements.
template <int R, int T>
inline void tile(const float *w, std::int64_t wStride, const float *x, std::int64_t xStride, std::int64_t n, float *y,
                 std::int64_t yStride)
{
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t)
            acc[r][t] = _mm256_setzero_ps();
    std::int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 xv[T];
        for (int t = 0; t < T; ++t)
            xv[t] = _mm256_loadu_ps(x + t * xStride + k);
        for (int r = 0; r < R; ++r) {
            const __m256 wv = _mm256_loadu_ps(w + r * wStride + k);
            for (int t = 0; t < T; ++t)
                acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    if (R == 4 && k == n) {
        for (int t = 0; t < T; ++t)
            _mm_storeu_ps(y + t * yStride, hsum4(acc[0][t], acc[1 % R][t], acc[2 % R][t], acc[3 % R][t]));
        return;
    }
    for (int r = 0; r < R; ++r) {
        for (int t = 0; t < T; ++t) {
            float s = hsum(acc[r][t]);
            for (std::int64_t j = k; j < n; ++j)
                s = std::fma(w[r * wStride + j], x[t * xStride + j], s);
            y[t * yStride + r] = s;
        }
    }
}

#endif // KVCHAT_GEMM_AVX2

} // namespace kvchat::engine::cpu::gemm
