// SPDX-License-Identifier: MIT
#include "engine/backend/cpu/cpu_kernels.h"

#include "engine/backend/cpu/cpu_gemm_tile.h"

#include <cmath>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define KVCHAT_AVX2 1
#endif

namespace kvchat::engine::cpu {

#if KVCHAT_AVX2
namespace {

// The one fixed-order horizontal sum of the CPU backend.
using gemm::hsum;

// e^x for 8 lanes (Cephes expf: Cody-Waite reduction by ln 2 and a degree-5 polynomial, about
// 1 ulp). Results below 2^-126 flush to 0 and above FLT_MAX become inf. Only basic IEEE operations,
// so the same input gives the same bits on every x86-64 CPU and compiler, unlike libm's expf.
inline __m256 expPs(__m256 x)
{
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    const __m256 lo = _mm256_set1_ps(-87.3365447504f), hi = _mm256_set1_ps(88.3762626647949f);
    const __m256 inRange = _mm256_and_ps(_mm256_cmp_ps(x, lo, _CMP_GE_OQ), _mm256_cmp_ps(x, hi, _CMP_LE_OQ));
    // fx is in [-126, 127] wherever x is in range; elsewhere the blend below discards it.
    const __m256i n = _mm256_cvtps_epi32(_mm256_blendv_ps(_mm256_setzero_ps(), fx, inRange));
    const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
    const __m256 result = _mm256_mul_ps(y, scale);
    const __m256 outside =
        _mm256_blendv_ps(_mm256_setzero_ps(), _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    // NaN stays NaN: it is neither in range nor above hi, so take x itself.
    const __m256 isNan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm256_blendv_ps(_mm256_blendv_ps(outside, result, inRange), x, isNan);
}

// fn over the n % 8 elements left at the end, through an 8-lane buffer, so that every element goes
// through the same vector code.
template <class Fn> inline void tail8(float *x, std::int64_t n, Fn &&fn)
{
    float buffer[8] = {};
    for (std::int64_t i = 0; i < n; ++i)
        buffer[i] = x[i];
    _mm256_storeu_ps(buffer, fn(_mm256_loadu_ps(buffer)));
    for (std::int64_t i = 0; i < n; ++i)
        x[i] = buffer[i];
}

} // namespace

// The maximum is exact in any order. The sum runs in double over 8 lanes (element i in lane i % 8)
// and adds the lanes in a fixed order, then the tail elements in order.
void softmax(float *x, std::int64_t n)
{
    float maxValue = x[0];
    std::int64_t i = 0;
    if (n >= 8) {
        __m256 m = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8)
            m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, m);
        for (float v : lanes)
            maxValue = v > maxValue ? v : maxValue;
    }
    for (; i < n; ++i)
        maxValue = x[i] > maxValue ? x[i] : maxValue;

    const __m256 vmax = _mm256_set1_ps(maxValue);
    const auto shiftedExp = [&](__m256 v) { return expPs(_mm256_sub_ps(v, vmax)); };
    __m256d sumLo = _mm256_setzero_pd(), sumHi = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = shiftedExp(_mm256_loadu_ps(x + i));
        _mm256_storeu_ps(x + i, e);
        sumLo = _mm256_add_pd(sumLo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        sumHi = _mm256_add_pd(sumHi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    alignas(32) double lo[4], hi[4];
    _mm256_store_pd(lo, sumLo);
    _mm256_store_pd(hi, sumHi);
    double sum = ((lo[0] + lo[1]) + (lo[2] + lo[3])) + ((hi[0] + hi[1]) + (hi[2] + hi[3]));
    if (i < n) {
        tail8(x + i, n - i, shiftedExp);
        for (; i < n; ++i)
            sum += x[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    const __m256 vinv = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
    for (; i < n; ++i)
        x[i] *= inv;
}

void siluMul(float *gate, const float *up, std::int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    const auto silu = [&](__m256 g) {
        return _mm256_div_ps(g, _mm256_add_ps(one, expPs(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    };
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(silu(_mm256_loadu_ps(gate + i)), _mm256_loadu_ps(up + i)));
    if (i < n) {
        tail8(gate + i, n - i, silu);
        for (; i < n; ++i)
            gate[i] *= up[i];
    }
}

// Four accumulators over 32 elements per step, then the 8-wide remainder, then scalars.
float dot(const float *a, const float *b, std::int64_t n)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    std::int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; ++i)
        sum += a[i] * b[i];
    return sum;
}

void axpy(float *out, float a, const float *v, std::int64_t n)
{
    const __m256 va = _mm256_set1_ps(a);
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(v + i), _mm256_loadu_ps(out + i)));
    for (; i < n; ++i)
        out[i] = std::fma(a, v[i], out[i]);
}

#else // portable fallback

float dot(const float *a, const float *b, std::int64_t n)
{
    float acc[8] = {};
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k)
            acc[k] += a[i + k] * b[i + k];
    float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; ++i)
        sum += a[i] * b[i];
    return sum;
}

void axpy(float *out, float a, const float *v, std::int64_t n)
{
    for (std::int64_t i = 0; i < n; ++i)
        out[i] = std::fma(a, v[i], out[i]);
}

void softmax(float *x, std::int64_t n)
{
    float maxValue = x[0];
    for (std::int64_t i = 1; i < n; ++i)
        maxValue = x[i] > maxValue ? x[i] : maxValue;
    double sum = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - maxValue);
        sum += x[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (std::int64_t i = 0; i < n; ++i)
        x[i] *= inv;
}

void siluMul(float *gate, const float *up, std::int64_t n)
{
    for (std::int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

#endif

void rmsNorm(float *out, const float *x, const float *weight, std::int64_t n, float eps)
{
    double sumSquares = 0.0;
    for (std::int64_t i = 0; i < n; ++i)
        sumSquares += static_cast<double>(x[i]) * x[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(sumSquares / static_cast<double>(n) + eps));
    for (std::int64_t i = 0; i < n; ++i)
        out[i] = x[i] * scale * weight[i];
}

void add(float *out, const float *v, std::int64_t n)
{
    for (std::int64_t i = 0; i < n; ++i)
        out[i] += v[i];
}

void rope(float *x, std::int32_t nHeads, std::int32_t headDim, std::int32_t nRot, const float *cosSin)
{
    for (std::int32_t h = 0; h < nHeads; ++h) {
        float *v = x + static_cast<std::int64_t>(h) * headDim;
        for (std::int32_t i = 0; i < nRot / 2; ++i) {
            const float c = cosSin[2 * i], s = cosSin[2 * i + 1];
            const float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * c - b * s;
            v[2 * i + 1] = a * s + b * c;
        }
    }
}

} // namespace kvchat::engine::cpu
