// SPDX-License-Identifier: MIT
// Quantized weight rows repacked for the GPU. Decoding one token reads every weight once, so its
// speed is the weights' size: a Q4_K_M file kept as fp16 on the device reads 3.3x the bytes it
// needs (and a 7B model's 4 GB become 14 GB, more than most GPUs have). The CUDA backend keeps a
// quantized matrix in one of two packed formats instead, where every element is
//
//     value = scale * code + min
//
// with an unsigned integer code and one fp16 (scale, min) pair per group of elements:
//   - Q4G32: 4-bit codes, groups of 32 (5 bits a weight): Q4_0, Q4_1, Q4_K;
//   - Q8G16: 8-bit codes, groups of 16 (10 bits a weight): Q5_0, Q5_1, Q5_K, Q6_K, Q8_0 (Q6_K's
//     scales change every 16 elements, hence the smaller groups).
// Every GGUF block of these types is such an affine map of its integer quants, so the packing is
// exact, except that the K-quants' group scale (d * sc) and min (dmin * m) are rounded to fp16:
// each by at most 2^-11 relative, so an element moves by at most 2^-11 * (|scale * code| + |min|)
// (for an element near zero in a group with a large min, more than rounding the element itself
// to fp16 would; a fraction of a percent of the format's own quantization step).
//
// Codes sit in 32-bit little-endian words in an order made for the GPU's unpacking: with b-bit
// fields, a word holds 32 / b consecutive elements, element 2k in bits [b*k, b*k + b) and element
// 2k + 1 in bits [16 + b*k, 16 + b*k + b). Masking a shifted word with 0x000F000F (0x00FF00FF) and
// setting the exponent bits of fp16 1024 then gives a pair of adjacent elements as two halves,
// 1024 + code each, without any integer-to-float conversion.
#pragma once

#include "engine/model/ggml_type.h"

#include <cstddef>
#include <cstdint>
#include <optional>

namespace kvchat::engine {

enum class PackedFormat : std::uint8_t {
    Q4G32,
    Q8G16,
};

constexpr int packedCodeBits(PackedFormat format)
{
    return format == PackedFormat::Q4G32 ? 4 : 8;
}

constexpr std::int64_t packedGroupElements(PackedFormat format)
{
    return format == PackedFormat::Q4G32 ? 32 : 16;
}

// Bytes of one row's codes, and its (scale, min) pairs; nIn is a multiple of the group size.
constexpr std::size_t packedCodeBytes(PackedFormat format, std::int64_t nIn)
{
    return static_cast<std::size_t>(nIn) * static_cast<std::size_t>(packedCodeBits(format)) / 8;
}

constexpr std::int64_t packedGroups(PackedFormat format, std::int64_t nIn)
{
    return nIn / packedGroupElements(format);
}

// The narrowest format that holds rows of this type; nullopt for F32, F16 and BF16 (kept as fp16).
std::optional<PackedFormat> packedFormatFor(GgmlType type);

// A format that holds rows of both (a stacked matrix of two types: Q4_K_M files keep some V and
// down projections in Q6_K next to Q4_K ones).
PackedFormat widerPackedFormat(PackedFormat a, PackedFormat b);

// Packs one row of nIn elements (a whole number of blocks) of a quantized type: codes
// (packedCodeBytes) and scaleMin (2 * packedGroups halves: scale, then min, of each group). False,
// with the outputs unspecified, when the type does not fit the format, or a scale or min is not a
// finite fp16 (the caller then keeps the matrix in fp16).
bool packRow(GgmlType type, const std::byte *src, std::int64_t nIn, PackedFormat format, std::uint8_t *codes,
             std::uint16_t *scaleMin);

// Decodes a packed row into nIn floats, scale * code + min in fp32: the format's definition, which
// the GPU kernels are tested against.
void unpackRow(PackedFormat format, const std::uint8_t *codes, const std::uint16_t *scaleMin, std::int64_t nIn,
               float *out);

} // namespace kvchat::engine
