// SPDX-License-Identifier: MIT
// Vector kernels of the CPU backend (AVX2/FMA with a portable fallback). Every kernel computes each
// output with a fixed order of operations that does not depend on how many tokens are in a batch,
// so a batched prefill gives bit-identical results to feeding tokens one at a time, and restored KV
// gives the same logits as recomputed KV.
#pragma once

#include <cstdint>

namespace kvchat::engine::cpu {

// Sum of a[i] * b[i] for i < n (fp32, fixed association order). Attention uses it; so do the
// matmuls of the portable build (the AVX2 matmuls use the kernels of cpu_gemm_tile.h).
float dot(const float *a, const float *b, std::int64_t n);

// out = x / rms(x) * weight, with the mean of squares accumulated in double.
void rmsNorm(float *out, const float *x, const float *weight, std::int64_t n, float eps);
// out[i] += a * v[i]
void axpy(float *out, float a, const float *v, std::int64_t n);
// In-place softmax of x[0..n), the sum of exponentials in double. The AVX2 build evaluates exp
// with its own vector routine (about 1 ulp, the same bits on every CPU), the portable one with
// std::exp; each result depends only on x[0..n).
void softmax(float *x, std::int64_t n);
// gate[i] = silu(gate[i]) * up[i], with the same exp as softmax.
void siluMul(float *gate, const float *up, std::int64_t n);
// out[i] += v[i]
void add(float *out, const float *v, std::int64_t n);

// Rotates pairs (x[2i], x[2i+1]) of each of nHeads heads (headDim apart) by the angles in
// cosSin (nRot/2 pairs of cos, sin for this position). Dimensions >= nRot are left as they are.
void rope(float *x, std::int32_t nHeads, std::int32_t headDim, std::int32_t nRot, const float *cosSin);

} // namespace kvchat::engine::cpu
