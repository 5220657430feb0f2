// SPDX-License-Identifier: MIT
// Vector kernels of the CPU backend (AVX2/FMA with a portable fallback). Every kernel computes each
// output with a fixed order of operations that does not depend on how many tokens are in a batch,
// so a batched prefill gives bit-identical results to feeding tokens one at a time, and restored KV
// gives the same logits as recomputed KV.
#pragma once

#include <cstdint>

namespace kvchat::engine::cpu {

// Sum of a[i] * b[i] for i < n (fp32, fixed association order).
float dot(const float *a, const float *b, std::int64_t n);
// The same for two vectors b0, b1 against one a; out[k] equals dot(a, bk, n) exactly.
void dot2(const float *a, const float *b0, const float *b1, std::int64_t n, float out[2]);

// out = x / rms(x) * weight, with the mean of squares accumulated in double.
void rmsNorm(float *out, const float *x, const float *weight, std::int64_t n, float eps);
// out[i] += a * v[i]
void axpy(float *out, float a, const float *v, std::int64_t n);
// In-place softmax of x[0..n).
void softmax(float *x, std::int64_t n);
// gate[i] = silu(gate[i]) * up[i]
void siluMul(float *gate, const float *up, std::int64_t n);
// out[i] += v[i]
void add(float *out, const float *v, std::int64_t n);

// Rotates pairs (x[2i], x[2i+1]) of each of nHeads heads (headDim apart) by the angles in
// cosSin (nRot/2 pairs of cos, sin for this position). Dimensions >= nRot are left as they are.
void rope(float *x, std::int32_t nHeads, std::int32_t headDim, std::int32_t nRot, const float *cosSin);

} // namespace kvchat::engine::cpu
