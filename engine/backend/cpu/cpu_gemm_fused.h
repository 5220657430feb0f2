// SPDX-License-Identifier: MIT
// Kernel file owned by the CPU-backend performance owner (STYLE.md §5 exception).
//
// Fused dequantize-and-dot kernels for a few tokens (decode): each block of a weight row is
// dequantized into registers and multiplied into the accumulators at once, without the round trip
// through scratch memory. Each output follows the arithmetic of cpu_gemm_tile.h exactly (the same
// dequantized floats, the same lane per element, the same k order and final sum), so it is bitwise
// equal to what the prefill tiles compute for the same row and token.
#pragma once

#include "engine/model/llama_model.h"

#include <cstdint>

namespace kvchat::engine::cpu::gemm {

// The most tokens one fused call takes.
constexpr std::int64_t kMaxFusedTokens = 3;
// Rows one fused call computes together (its register block); callers split work in these units.
constexpr std::int64_t kFusedRows = 4;

// Whether fusedRows handles matrices of this type and shape (false in the portable build).
bool hasFusedKernel(const WeightMatrix &w);

// y[t * yStride + r - r0] for rows [r0, r1) of w and tokens t < nTokens (1..kMaxFusedTokens);
// x is [nTokens][w.nIn] row-major. Only for matrices where hasFusedKernel is true.
void fusedRows(const WeightMatrix &w, std::int64_t r0, std::int64_t r1, const float *x, std::int64_t nTokens, float *y,
               std::int64_t yStride);

// Rows [r0, r0 + nRows) of w dequantized into dst ([nRows][w.nIn]) by the same block decoders:
// bit-identical to dequantizeRow, with fewer instructions. Only where hasFusedKernel is true.
void dequantizeRows(const WeightMatrix &w, std::int64_t r0, std::int64_t nRows, float *dst);

} // namespace kvchat::engine::cpu::gemm
