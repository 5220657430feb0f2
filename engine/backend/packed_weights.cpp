// SPDX-License-Identifier: MIT
#include "engine/backend/packed_weights.h"

#include <cmath>
#include <cstring>

namespace kvchat::engine {
namespace {

// One GGUF block as integer codes with a scale and min per 16 elements (every supported quantized
// type is affine per 16: the legacy types per 32, the K-quants per 32 or, Q6_K, per 16).
constexpr int kMaxBlock = 256;
constexpr int kSub = 16;
struct AffineBlock
{
    int elements = 0;
    std::uint8_t code[kMaxBlock];
    float scale[kMaxBlock / kSub];
    float min[kMaxBlock / kSub];
};

std::uint16_t u16(const std::byte *p)
{
    return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) | (std::to_integer<unsigned>(p[1]) << 8));
}

float half(const std::byte *p)
{
    return halfToFloat(u16(p));
}

const std::uint8_t *u8(const std::byte *p)
{
    return reinterpret_cast<const std::uint8_t *>(p);
}

void setGroups(AffineBlock &b, int firstSub, int nSubs, float scale, float min)
{
    for (int s = firstSub; s < firstSub + nSubs; ++s) {
        b.scale[s] = scale;
        b.min[s] = min;
    }
}

// Legacy 32-element types: element j (< 16) is the low nibble of qs[j], element j + 16 the high
// one; the fifth bit (Q5_*) is bit j (j + 16) of qh.
void decodeLegacy(GgmlType type, const std::byte *src, AffineBlock &b)
{
    b.elements = 32;
    const float d = half(src);
    switch (type) {
    case GgmlType::Q8_0: {
        const auto *qs = reinterpret_cast<const std::int8_t *>(src + 2);
        for (int j = 0; j < 32; ++j)
            b.code[j] = static_cast<std::uint8_t>(qs[j] + 128);
        setGroups(b, 0, 2, d, -128.0f * d);
        return;
    }
    case GgmlType::Q4_0:
    case GgmlType::Q4_1: {
        const bool hasMin = type == GgmlType::Q4_1;
        const std::uint8_t *qs = u8(src + (hasMin ? 4 : 2));
        for (int j = 0; j < 16; ++j) {
            b.code[j] = qs[j] & 0x0F;
            b.code[j + 16] = qs[j] >> 4;
        }
        setGroups(b, 0, 2, d, hasMin ? half(src + 2) : -8.0f * d);
        return;
    }
    case GgmlType::Q5_0:
    case GgmlType::Q5_1: {
        const bool hasMin = type == GgmlType::Q5_1;
        const std::byte *qhBytes = src + (hasMin ? 4 : 2);
        const std::uint32_t qh = static_cast<std::uint32_t>(u16(qhBytes)) | (std::uint32_t(u16(qhBytes + 2)) << 16);
        const std::uint8_t *qs = u8(qhBytes + 4);
        for (int j = 0; j < 16; ++j) {
            b.code[j] = static_cast<std::uint8_t>((qs[j] & 0x0F) | (((qh >> j) & 1u) << 4));
            b.code[j + 16] = static_cast<std::uint8_t>((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
        }
        setGroups(b, 0, 2, d, hasMin ? half(src + 2) : -16.0f * d);
        return;
    }
    default:
        b.elements = 0;
    }
}

// Q4_K / Q5_K: 8 sub-blocks of 32, each d * sc * q - dmin * m (see dequantizeQ4_KScalar).
void decodeQ45K(bool fiveBits, const std::byte *src, AffineBlock &b)
{
    b.elements = 256;
    const float d = half(src);
    const float dmin = half(src + 2);
    const std::uint8_t *scales = u8(src + 4);
    const std::uint8_t *qh = u8(src + 16);
    const std::uint8_t *qs = u8(src + (fiveBits ? 48 : 16));
    for (int sub = 0; sub < 8; ++sub) {
        int sc = 0, m = 0;
        kQuantScaleMin(scales, sub, sc, m);
        const std::uint8_t *q = qs + 32 * (sub / 2);
        const int shift = 4 * (sub % 2);
        for (int l = 0; l < 32; ++l) {
            unsigned code = (q[l] >> shift) & 0x0Fu;
            if (fiveBits)
                code |= ((qh[l] >> sub) & 1u) << 4;
            b.code[32 * sub + l] = static_cast<std::uint8_t>(code);
        }
        setGroups(b, 2 * sub, 2, d * static_cast<float>(sc), -(dmin * static_cast<float>(m)));
    }
}

// Q6_K: d * scale16 * (q - 32), q 6 bits (see dequantizeQ6_KScalar for the bit layout).
void decodeQ6K(const std::byte *src, AffineBlock &b)
{
    b.elements = 256;
    const std::uint8_t *ql = u8(src);
    const std::uint8_t *qh = u8(src + 128);
    const auto *scales = reinterpret_cast<const std::int8_t *>(src + 192);
    const float d = half(src + 208);
    int e = 0;
    for (int h = 0; h < 2; ++h, ql += 64, qh += 32, scales += 8)
        for (int k = 0; k < 4; ++k) {
            const std::uint8_t *low = ql + 32 * (k & 1);
            const int lowShift = k < 2 ? 0 : 4;
            for (int l = 0; l < 32; ++l, ++e)
                b.code[e] = static_cast<std::uint8_t>(((low[l] >> lowShift) & 0x0F) | (((qh[l] >> (2 * k)) & 3) << 4));
            for (int s = 0; s < 2; ++s) {
                const float scale = d * static_cast<float>(scales[2 * k + s]);
                setGroups(b, e / kSub - 2 + s, 1, scale, -32.0f * scale);
            }
        }
}

void decodeBlock(GgmlType type, const std::byte *src, AffineBlock &b)
{
    switch (type) {
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
        decodeQ45K(type == GgmlType::Q5_K, src, b);
        return;
    case GgmlType::Q6_K:
        decodeQ6K(src, b);
        return;
    default:
        decodeLegacy(type, src, b);
    }
}

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
    AffineBlock block;
    for (std::int64_t b0 = 0; b0 < nIn; b0 += traits.blockElements, src += traits.blockBytes) {
        decodeBlock(type, src, block);
        for (int e = 0; e < block.elements; ++e) {
            if (block.code[e] >= (1u << bits))
                return false;
            const std::size_t bit = fieldBit(bits, b0 + e);
            codes[bit / 8] = static_cast<std::uint8_t>(codes[bit / 8] | (block.code[e] << (bit % 8)));
        }
        for (int g = 0; g < block.elements / group; ++g) {
            const int sub = static_cast<int>(g * group / kSub);
            // A Q4G32 group spans two 16-element sub-groups, which must agree (they do for every
            // type packedFormatFor maps to it).
            if (group > kSub && (block.scale[sub] != block.scale[sub + 1] || block.min[sub] != block.min[sub + 1]))
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
