// SPDX-License-Identifier: MIT
#include "engine/backend/cpu/cpu_kernels.h"

#include <cmath>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define KVCHAT_AVX2 1
#endif

namespace kvchat::engine::cpu {

#if KVCHAT_AVX2
namespace {

// Horizontal sum of 8 lanes in a fixed order.
inline float hsum(__m256 v)
{
    const __m128 lo = _mm256_castps256_ps128(v);
    const __m128 hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

} // namespace

// Four accumulators over 32 elements per step, then the 8-wide remainder, then scalars. dot2 runs
// the identical sequence for each of its two outputs.
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

void dot2(const float *a, const float *b0, const float *b1, std::int64_t n, float out[2])
{
    __m256 x0 = _mm256_setzero_ps(), x1 = _mm256_setzero_ps(), x2 = _mm256_setzero_ps(), x3 = _mm256_setzero_ps();
    __m256 y0 = _mm256_setzero_ps(), y1 = _mm256_setzero_ps(), y2 = _mm256_setzero_ps(), y3 = _mm256_setzero_ps();
    std::int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256 a0 = _mm256_loadu_ps(a + i), a1 = _mm256_loadu_ps(a + i + 8);
        const __m256 a2 = _mm256_loadu_ps(a + i + 16), a3 = _mm256_loadu_ps(a + i + 24);
        x0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b0 + i), x0);
        x1 = _mm256_fmadd_ps(a1, _mm256_loadu_ps(b0 + i + 8), x1);
        x2 = _mm256_fmadd_ps(a2, _mm256_loadu_ps(b0 + i + 16), x2);
        x3 = _mm256_fmadd_ps(a3, _mm256_loadu_ps(b0 + i + 24), x3);
        y0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b1 + i), y0);
        y1 = _mm256_fmadd_ps(a1, _mm256_loadu_ps(b1 + i + 8), y1);
        y2 = _mm256_fmadd_ps(a2, _mm256_loadu_ps(b1 + i + 16), y2);
        y3 = _mm256_fmadd_ps(a3, _mm256_loadu_ps(b1 + i + 24), y3);
    }
    for (; i + 8 <= n; i += 8) {
        const __m256 a0 = _mm256_loadu_ps(a + i);
        x0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b0 + i), x0);
        y0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b1 + i), y0);
    }
    float s0 = hsum(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)));
    float s1 = hsum(_mm256_add_ps(_mm256_add_ps(y0, y1), _mm256_add_ps(y2, y3)));
    for (; i < n; ++i) {
        s0 += a[i] * b0[i];
        s1 += a[i] * b1[i];
    }
    out[0] = s0;
    out[1] = s1;
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

void dot2(const float *a, const float *b0, const float *b1, std::int64_t n, float out[2])
{
    out[0] = dot(a, b0, n);
    out[1] = dot(a, b1, n);
}

void axpy(float *out, float a, const float *v, std::int64_t n)
{
    for (std::int64_t i = 0; i < n; ++i)
        out[i] = std::fma(a, v[i], out[i]);
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
