// SPDX-License-Identifier: MIT
// Test utility: reference quantizers (fp32 -> every supported GgmlType) and plain scalar
// dequantizers written from the format descriptions, independent of the engine's kernels. The
// quantizers pick scales the straightforward way (round-to-nearest of max-abs or min/max), which is
// all tests and random-weight benchmark models need.
#pragma once

#include "engine/model/ggml_type.h"

#include <cstdint>
#include <vector>

namespace kvchat::testing {

using engine::GgmlType;

// Quantizes values (a whole number of blocks of `type`) into the type's block layout.
std::vector<std::uint8_t> quantize(GgmlType type, const float *values, std::int64_t n);
// Scalar reference decoder of the same layout; never calls the engine's dequantizeRow.
std::vector<float> referenceDequantize(GgmlType type, const std::uint8_t *bytes, std::int64_t n);

} // namespace kvchat::testing
