// SPDX-License-Identifier: MIT
// Tensor element types of GGUF files (ggml's numbering) and how their blocks are laid out.
// The numeric values are part of the file format: do not reorder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace kvchat::engine {

enum class GgmlType : std::uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    BF16 = 30,
};

struct GgmlTypeTraits
{
    GgmlType type;
    std::string_view name;
    std::int64_t blockElements; // elements per block (1 for plain float types)
    std::size_t blockBytes;     // bytes per block
};

// Traits of a supported type, or nullopt for a value this engine does not support (the caller
// turns that into a clear error naming the type number).
std::optional<GgmlTypeTraits> ggmlTypeTraits(std::uint32_t rawType);
GgmlTypeTraits ggmlTypeTraits(GgmlType type);
std::string_view ggmlTypeName(GgmlType type);
// Comma-separated list of supported type names, for error messages.
std::string_view supportedGgmlTypeNames();

// Bytes of one row of nElements, or nullopt when nElements is not a whole number of blocks.
std::optional<std::size_t> ggmlRowBytes(GgmlType type, std::int64_t nElements);

// Dequantizes nElements (a whole number of blocks) starting at src into dst (fp32).
// Thread-safe; src need not be aligned.
void dequantizeRow(GgmlType type, const std::byte *src, float *dst, std::int64_t nElements);

// IEEE half and bfloat16 conversions (scalar; exact).
float halfToFloat(std::uint16_t h);
std::uint16_t floatToHalf(float f); // round to nearest even
float bf16ToFloat(std::uint16_t b);

// One block of a quantized type as an affine map of its integer quants: element e is
// code[e] * scale[e / kAffineGroup] + min[e / kAffineGroup], computed in fp32 as the scalar
// decoders compute it (every supported quantized type is affine per 16 elements: the legacy
// types per 32, the K-quants per 32 or, Q6_K, per 16). What the CUDA backend packs its weights from.
constexpr int kAffineGroup = 16;
struct AffineQuantBlock
{
    int elements = 0; // 32 or 256
    std::uint8_t code[256];
    float scale[256 / kAffineGroup];
    float min[256 / kAffineGroup];
};
// False for the float types.
bool decodeAffineBlock(GgmlType type, const std::byte *src, AffineQuantBlock &out);

// The 6-bit scale and min of sub-block j (0..7) from the 12 packed scale bytes of Q4_K/Q5_K: bytes
// 0-3 hold scales 0-3 (low 6 bits), bytes 4-7 mins 0-3; scales/mins 4-7 keep their low nibbles in
// bytes 8-11 and their top two bits in the spare top bits of bytes 0-3 and 4-7.
void kQuantScaleMin(const std::uint8_t *scales, int j, int &sc, int &m);

} // namespace kvchat::engine
