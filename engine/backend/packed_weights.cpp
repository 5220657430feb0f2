// SPDX-License-Identifier: MIT
#include "engine/backend/packed_weights.h"

#include <cmath>
#include <cstring>

namespace kvchat::engine {
namespace {

// Element i of a row's codes, in the word order of the header.
std::size_t fieldBit(int bits, std::int64_t i)
{
    const std::int64_t perWord = 32 / bits;
    const std::int64_t inWord = i % perWord;
    return static_cast<std::size_t>((i / perWord) * 32 + (inWord % 2) * 16 + (inWord / 2) * bits);
}

} // namespace

std::optional<PackedFormat> packedFormatFor(GgmlType type)
{
    switch (type) {
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q4_K:
        return PackedFormat::Q4G32;
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::Q8_0:
        return PackedFormat::Q8G16;
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
        break;
    }
    return std::nullopt;
}

PackedFormat widerPackedFormat(PackedFormat a, PackedFormat b)
{
    return a == PackedFormat::Q8G16 || b == PackedFormat::Q8G16 ? PackedFormat::Q8G16 : PackedFormat::Q4G32;
}

bool packRow(GgmlType type, const std::byte *src, std::int64_t nIn, PackedFormat format, std::uint8_t *codes,
             std::uint16_t *scaleMin)
{
    const GgmlTypeTraits traits = ggmlTypeTraits(type);
    const int bits = packedCodeBits(format);
    const std::int64_t group = packedGroupElements(format);
    if (!packedFormatFor(type) || nIn % traits.blockElements != 0 || traits.blockElements % group != 0)
        return false;
    std::memset(codes, 0, packedCodeBytes(format, nIn));
    AffineQuantBlock block;
    for (std::int64_t b0 = 0; b0 < nIn; b0 += traits.blockElements, src += traits.blockBytes) {
        decodeAffineBlock(type, src, block);
        for (int e = 0; e < block.elements; ++e) {
            if (block.code[e] >= (1u << bits))
                return false;
            const std::size_t bit = fieldBit(bits, b0 + e);
            codes[bit / 8] = static_cast<std::uint8_t>(codes[bit / 8] | (block.code[e] << (bit % 8)));
        }
        for (int g = 0; g < block.elements / group; ++g) {
            const int sub = static_cast<int>(g * group / kAffineGroup);
            // A Q4G32 group spans two 16-element sub-groups, which must agree (they do for every
            // type packedFormatFor maps to it).
            if (group > kAffineGroup &&
                (block.scale[sub] != block.scale[sub + 1] || block.min[sub] != block.min[sub + 1]))
                return false;
            const std::uint16_t scale = floatToHalf(block.scale[sub]);
            const std::uint16_t min = floatToHalf(block.min[sub]);
            if (!std::isfinite(halfToFloat(scale)) || !std::isfinite(halfToFloat(min)))
                return false;
            std::uint16_t *pair = scaleMin + 2 * ((b0 + g * group) / group);
            pair[0] = scale;
            pair[1] = min;
        }
    }
    return true;
}

void unpackRow(PackedFormat format, const std::uint8_t *codes, const std::uint16_t *scaleMin, std::int64_t nIn,
               float *out)
{
    const int bits = packedCodeBits(format);
    const std::int64_t group = packedGroupElements(format);
    const unsigned mask = (1u << bits) - 1;
    for (std::int64_t i = 0; i < nIn; ++i) {
        const std::size_t bit = fieldBit(bits, i);
        const unsigned code = (codes[bit / 8] >> (bit % 8)) & mask;
        const float scale = halfToFloat(scaleMin[2 * (i / group)]);
        const float min = halfToFloat(scaleMin[2 * (i / group) + 1]);
        out[i] = std::fma(scale, static_cast<float>(code), min);
    }
}

} // namespace kvchat::engine
