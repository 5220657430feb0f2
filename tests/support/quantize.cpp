// SPDX-License-Identifier: MIT
// Reference quantizers and decoders for tests.
//
// The decoders are the oracle for the engine's dequantizeRow, so they are written element by
// element straight from the block descriptions (which byte, which bits, which scale) and share no
// code with the engine. They must still match it bit for bit, so they use the same rounding steps:
// "q * d + m" and "(d*sc) * q - dmin*m" are one fused multiply-add (std::fma), and the K-quant
// products d*sc and dmin*m are rounded to float first.
//
// The quantizers pick scales the simple way (max-abs, or min/max, per block; for the K-quants the
// sub-block scales are then quantized to 6 or 8 bits against a super-block scale). Quants are
// computed against the scales as stored (after rounding to half), so clamping only bites where a
// rounded-down scale no longer covers the block. Inputs must be finite.
#include "tests/support/quantize.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace kvchat::testing {

using engine::floatToHalf;
using engine::ggmlTypeTraits;

namespace {

// ---- little-endian byte helpers -------------------------------------------------------------

void putU16(std::uint8_t *p, std::uint16_t v)
{
    p[0] = static_cast<std::uint8_t>(v & 0xFF);
    p[1] = static_cast<std::uint8_t>(v >> 8);
}

std::uint16_t getU16(const std::uint8_t *p)
{
    return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}

// Stores f as half and returns the value a decoder will read back.
float putHalf(std::uint8_t *p, float f)
{
    const std::uint16_t h = floatToHalf(f);
    putU16(p, h);
    return engine::halfToFloat(h);
}

// Independent half decoder for the reference path: sign * significand * 2^exponent via ldexp
// rather than bit shuffling. NaNs come back quiet with their payload (IEEE conversion semantics).
float decodeHalf(std::uint16_t h)
{
    const bool negative = (h & 0x8000) != 0;
    const int exponentField = (h >> 10) & 0x1F;
    const int fraction = h & 0x3FF;
    float magnitude = 0.0f;
    if (exponentField == 31) {
        if (fraction == 0) {
            magnitude = std::numeric_limits<float>::infinity();
        } else {
            const std::uint32_t bits = 0x7FC00000u | (static_cast<std::uint32_t>(fraction) << 13);
            magnitude = std::bit_cast<float>(bits);
        }
    } else if (exponentField == 0) {
        magnitude = std::ldexp(static_cast<float>(fraction), -24); // subnormal: fraction * 2^-24
    } else {
        magnitude = std::ldexp(static_cast<float>(1024 + fraction), exponentField - 15 - 10);
    }
    return std::copysign(magnitude, negative ? -1.0f : 1.0f);
}

float readHalf(const std::uint8_t *p)
{
    return decodeHalf(getU16(p));
}

float decodeBf16(std::uint16_t b)
{
    // bfloat16 is the top half of a float32, by definition.
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

std::uint16_t encodeBf16(float f)
{
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u)
        return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);    // NaN stays a (quiet) NaN
    const std::uint32_t roundingBias = 0x7FFFu + ((bits >> 16) & 1u); // to nearest, ties to even
    return static_cast<std::uint16_t>((bits + roundingBias) >> 16);
}

int roundClamp(float x, int lo, int hi)
{
    if (!(x == x)) // NaN: only reachable with a zero scale, where every quant decodes to the same
        return lo;
    return std::clamp(static_cast<int>(std::lround(x)), lo, hi);
}

// The value with the largest magnitude, keeping its sign (Q4_0/Q5_0/Q6_K map it to the most
// negative quant so the full range of levels is used on that side).
float signedMaxAbs(const float *x, int n)
{
    float best = 0.0f;
    for (int i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > std::fabs(best))
            best = x[i];
    }
    return best;
}

// ---- legacy 32-element blocks ---------------------------------------------------------------

void quantizeQ8_0(const float *x, std::uint8_t *block)
{
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i)
        amax = std::max(amax, std::fabs(x[i]));
    const float d = putHalf(block, amax / 127.0f);
    for (int i = 0; i < 32; ++i) {
        const int q = d != 0.0f ? roundClamp(x[i] / d, -127, 127) : 0;
        block[2 + i] = static_cast<std::uint8_t>(static_cast<std::int8_t>(q));
    }
}

// Q4_0 (bits == 4) and Q5_0 (bits == 5): x = (q - 2^(bits-1)) * d.
void quantizeSymmetric(const float *x, std::uint8_t *block, int bits)
{
    const int offset = 1 << (bits - 1);
    const float d = putHalf(block, signedMaxAbs(x, 32) / static_cast<float>(-offset));
    std::uint8_t *qs = block + (bits == 5 ? 6 : 2);
    std::uint32_t qh = 0;
    std::memset(qs, 0, 16);
    for (int i = 0; i < 32; ++i) {
        const int q = d != 0.0f ? roundClamp(x[i] / d + static_cast<float>(offset), 0, 2 * offset - 1) : offset;
        qs[i % 16] |= static_cast<std::uint8_t>((q & 0x0F) << (i < 16 ? 0 : 4));
        if (q & 0x10)
            qh |= 1u << i;
    }
    if (bits == 5) {
        putU16(block + 2, static_cast<std::uint16_t>(qh & 0xFFFF));
        putU16(block + 4, static_cast<std::uint16_t>(qh >> 16));
    }
}

// Q4_1 (bits == 4) and Q5_1 (bits == 5): x = q * d + m with m = block minimum.
void quantizeAffine(const float *x, std::uint8_t *block, int bits)
{
    const int levels = (1 << bits) - 1;
    const auto [lo, hi] = std::minmax_element(x, x + 32);
    const float d = putHalf(block, (*hi - *lo) / static_cast<float>(levels));
    const float m = putHalf(block + 2, *lo);
    std::uint8_t *qs = block + (bits == 5 ? 8 : 4);
    std::uint32_t qh = 0;
    std::memset(qs, 0, 16);
    for (int i = 0; i < 32; ++i) {
        const int q = d != 0.0f ? roundClamp((x[i] - m) / d, 0, levels) : 0;
        qs[i % 16] |= static_cast<std::uint8_t>((q & 0x0F) << (i < 16 ? 0 : 4));
        if (q & 0x10)
            qh |= 1u << i;
    }
    if (bits == 5) {
        putU16(block + 4, static_cast<std::uint16_t>(qh & 0xFFFF));
        putU16(block + 6, static_cast<std::uint16_t>(qh >> 16));
    }
}

// ---- K-quants (256-element super-blocks) ----------------------------------------------------

// Packs 8 six-bit scales and mins into the 12-byte layout of Q4_K/Q5_K.
void packScalesK(const int *sc, const int *mins, std::uint8_t *out)
{
    std::memset(out, 0, 12);
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            out[j] |= static_cast<std::uint8_t>(sc[j] & 63);
            out[j + 4] |= static_cast<std::uint8_t>(mins[j] & 63);
        } else {
            out[j + 4] = static_cast<std::uint8_t>((sc[j] & 0x0F) | ((mins[j] & 0x0F) << 4));
            out[j - 4] |= static_cast<std::uint8_t>((sc[j] >> 4) << 6);
            out[j] |= static_cast<std::uint8_t>((mins[j] >> 4) << 6);
        }
    }
}

// Q4_K (bits == 4) and Q5_K (bits == 5): sub-block s of 32 decodes as (d*sc[s]) * q - dmin*m[s].
void quantizeK45(const float *x, std::uint8_t *block, int bits)
{
    const int levels = (1 << bits) - 1;
    float subScale[8];
    float subMin[8]; // as a positive offset: x >= -subMin
    for (int s = 0; s < 8; ++s) {
        const auto [lo, hi] = std::minmax_element(x + 32 * s, x + 32 * s + 32);
        const float low = std::min(*lo, 0.0f); // m is unsigned, so the offset can only go down
        subScale[s] = (*hi - low) / static_cast<float>(levels);
        subMin[s] = -low;
    }
    const float maxScale = *std::max_element(subScale, subScale + 8);
    const float maxMin = *std::max_element(subMin, subMin + 8);
    const float d = putHalf(block, maxScale / 63.0f);
    const float dmin = putHalf(block + 2, maxMin / 63.0f);
    int sc[8];
    int mins[8];
    for (int s = 0; s < 8; ++s) {
        sc[s] = d != 0.0f ? roundClamp(subScale[s] / d, 0, 63) : 0;
        mins[s] = dmin != 0.0f ? roundClamp(subMin[s] / dmin, 0, 63) : 0;
    }
    packScalesK(sc, mins, block + 4);

    std::uint8_t *qh = bits == 5 ? block + 16 : nullptr;
    std::uint8_t *qs = block + (bits == 5 ? 48 : 16);
    if (qh)
        std::memset(qh, 0, 32);
    std::memset(qs, 0, 128);
    for (int e = 0; e < 256; ++e) {
        const int s = e / 32;
        const int l = e % 32;
        const float d1 = d * static_cast<float>(sc[s]);
        const float m1 = dmin * static_cast<float>(mins[s]);
        const int q = d1 != 0.0f ? roundClamp((x[e] + m1) / d1, 0, levels) : 0;
        qs[32 * (s / 2) + l] |= static_cast<std::uint8_t>((q & 0x0F) << (s % 2 == 0 ? 0 : 4));
        if (qh && (q & 0x10))
            qh[l] |= static_cast<std::uint8_t>(1u << s);
    }
}

// Q6_K: 16 sub-blocks of 16 with int8 scales; x = (d*sc) * (q - 32).
void quantizeQ6_K(const float *x, std::uint8_t *block)
{
    std::uint8_t *ql = block;
    std::uint8_t *qh = block + 128;
    std::uint8_t *scales = block + 192;
    float subScale[16];
    float maxAbsScale = 0.0f;
    for (int g = 0; g < 16; ++g) {
        subScale[g] = signedMaxAbs(x + 16 * g, 16) / -32.0f;
        maxAbsScale = std::max(maxAbsScale, std::fabs(subScale[g]));
    }
    const float d = putHalf(block + 208, maxAbsScale / 127.0f);
    int sc[16];
    for (int g = 0; g < 16; ++g) {
        sc[g] = d != 0.0f ? roundClamp(subScale[g] / d, -128, 127) : 0;
        scales[g] = static_cast<std::uint8_t>(static_cast<std::int8_t>(sc[g]));
    }
    std::memset(ql, 0, 128);
    std::memset(qh, 0, 64);
    for (int e = 0; e < 256; ++e) {
        const float ds = d * static_cast<float>(sc[e / 16]);
        const int q = ds != 0.0f ? roundClamp(x[e] / ds + 32.0f, 0, 63) : 32;
        const int h = e / 128;
        const int k = (e % 128) / 32;
        const int l = e % 32;
        ql[64 * h + 32 * (k & 1) + l] |= static_cast<std::uint8_t>((q & 0x0F) << (k < 2 ? 0 : 4));
        qh[32 * h + l] |= static_cast<std::uint8_t>((q >> 4) << (2 * k));
    }
}

// ---- reference decoders: one element at a time ----------------------------------------------

float refQ4_0(const std::uint8_t *block, int i)
{
    const std::uint8_t byte = block[2 + i % 16];
    const int q = i < 16 ? (byte & 0x0F) : (byte >> 4);
    return static_cast<float>(q - 8) * readHalf(block);
}

float refQ4_1(const std::uint8_t *block, int i)
{
    const std::uint8_t byte = block[4 + i % 16];
    const int q = i < 16 ? (byte & 0x0F) : (byte >> 4);
    return std::fma(static_cast<float>(q), readHalf(block), readHalf(block + 2));
}

// Fifth bit of element i: bit i of the little-endian 32-bit qh, i.e. bit i%8 of byte i/8.
int fifthBit(const std::uint8_t *qh, int i)
{
    return (qh[i / 8] >> (i % 8)) & 1;
}

float refQ5_0(const std::uint8_t *block, int i)
{
    const std::uint8_t byte = block[6 + i % 16];
    const int low = i < 16 ? (byte & 0x0F) : (byte >> 4);
    const int q = low + 16 * fifthBit(block + 2, i);
    return static_cast<float>(q - 16) * readHalf(block);
}

float refQ5_1(const std::uint8_t *block, int i)
{
    const std::uint8_t byte = block[8 + i % 16];
    const int low = i < 16 ? (byte & 0x0F) : (byte >> 4);
    const int q = low + 16 * fifthBit(block + 4, i);
    return std::fma(static_cast<float>(q), readHalf(block), readHalf(block + 2));
}

float refQ8_0(const std::uint8_t *block, int i)
{
    return static_cast<float>(static_cast<std::int8_t>(block[2 + i])) * readHalf(block);
}

// Six-bit scale (what == 0) or min (what == 1) of sub-block s from the 12 packed bytes.
// Sub-blocks 0-3: low 6 bits of byte s (scale) / byte s+4 (min).
// Sub-blocks 4-7: low 4 bits from byte s+4 (scale: low nibble, min: high nibble); high 2 bits
// from the top two bits of byte s-4 (scale) / byte s (min).
int sixBitK(const std::uint8_t *packed, int s, int what)
{
    if (s < 4)
        return packed[s + 4 * what] % 64;
    const int lowBits = what == 0 ? packed[s + 4] % 16 : packed[s + 4] / 16;
    const int highBits = packed[s - 4 + 4 * what] / 64;
    return lowBits + 16 * highBits;
}

float refQ4_K(const std::uint8_t *block, int e)
{
    const float d = readHalf(block);
    const float dmin = readHalf(block + 2);
    const std::uint8_t *packed = block + 4;
    const std::uint8_t *qs = block + 16;
    const int s = e / 32; // sub-block of 32
    const int l = e % 32; // position in it
    const std::uint8_t byte = qs[32 * (s / 2) + l];
    const int q = s % 2 == 0 ? byte % 16 : byte / 16;
    const float scale = d * static_cast<float>(sixBitK(packed, s, 0));
    const float offset = dmin * static_cast<float>(sixBitK(packed, s, 1));
    return std::fma(static_cast<float>(q), scale, -offset);
}

float refQ5_K(const std::uint8_t *block, int e)
{
    const float d = readHalf(block);
    const float dmin = readHalf(block + 2);
    const std::uint8_t *packed = block + 4;
    const std::uint8_t *qh = block + 16;
    const std::uint8_t *qs = block + 48;
    const int s = e / 32;
    const int l = e % 32;
    const std::uint8_t byte = qs[32 * (s / 2) + l];
    const int low = s % 2 == 0 ? byte % 16 : byte / 16;
    const int high = (qh[l] >> s) & 1;
    const int q = low + 16 * high;
    const float scale = d * static_cast<float>(sixBitK(packed, s, 0));
    const float offset = dmin * static_cast<float>(sixBitK(packed, s, 1));
    return std::fma(static_cast<float>(q), scale, -offset);
}

float refQ6_K(const std::uint8_t *block, int e)
{
    const std::uint8_t *ql = block;
    const std::uint8_t *qh = block + 128;
    const std::uint8_t *scales = block + 192;
    const float d = readHalf(block + 208);
    const int h = e / 128;        // which half of the super-block
    const int k = (e % 128) / 32; // which quarter of that half
    const int l = e % 32;
    const std::uint8_t lowByte = ql[64 * h + 32 * (k % 2) + l];
    const int low = k < 2 ? lowByte % 16 : lowByte / 16;
    const int high = (qh[32 * h + l] >> (2 * k)) % 4;
    const int q = low + 16 * high - 32;
    const int sc = static_cast<std::int8_t>(scales[e / 16]);
    return (d * static_cast<float>(sc)) * static_cast<float>(q);
}

std::int64_t checkedBlocks(GgmlType type, std::int64_t n)
{
    const engine::GgmlTypeTraits traits = ggmlTypeTraits(type);
    if (n < 0 || n % traits.blockElements != 0) {
        throw std::invalid_argument(std::to_string(n) + " elements is not a whole number of " +
                                    std::string(traits.name) + " blocks");
    }
    return n / traits.blockElements;
}

} // namespace

std::vector<std::uint8_t> quantize(GgmlType type, const float *values, std::int64_t n)
{
    const std::int64_t nBlocks = checkedBlocks(type, n);
    const engine::GgmlTypeTraits traits = ggmlTypeTraits(type);
    std::vector<std::uint8_t> out(static_cast<std::size_t>(nBlocks) * traits.blockBytes);
    for (std::int64_t b = 0; b < nBlocks; ++b) {
        const float *x = values + b * traits.blockElements;
        std::uint8_t *block = out.data() + b * static_cast<std::int64_t>(traits.blockBytes);
        switch (type) {
        case GgmlType::F32:
            std::memcpy(block, x, 4);
            break;
        case GgmlType::F16:
            putU16(block, floatToHalf(*x));
            break;
        case GgmlType::BF16:
            putU16(block, encodeBf16(*x));
            break;
        case GgmlType::Q8_0:
            quantizeQ8_0(x, block);
            break;
        case GgmlType::Q4_0:
            quantizeSymmetric(x, block, 4);
            break;
        case GgmlType::Q5_0:
            quantizeSymmetric(x, block, 5);
            break;
        case GgmlType::Q4_1:
            quantizeAffine(x, block, 4);
            break;
        case GgmlType::Q5_1:
            quantizeAffine(x, block, 5);
            break;
        case GgmlType::Q4_K:
            quantizeK45(x, block, 4);
            break;
        case GgmlType::Q5_K:
            quantizeK45(x, block, 5);
            break;
        case GgmlType::Q6_K:
            quantizeQ6_K(x, block);
            break;
        }
    }
    return out;
}

std::vector<float> referenceDequantize(GgmlType type, const std::uint8_t *bytes, std::int64_t n)
{
    checkedBlocks(type, n);
    const engine::GgmlTypeTraits traits = ggmlTypeTraits(type);
    std::vector<float> out(static_cast<std::size_t>(n));
    for (std::int64_t e = 0; e < n; ++e) {
        const std::uint8_t *block = bytes + (e / traits.blockElements) * static_cast<std::int64_t>(traits.blockBytes);
        const int i = static_cast<int>(e % traits.blockElements);
        float v = 0.0f;
        switch (type) {
        case GgmlType::F32:
            std::memcpy(&v, block, 4);
            break;
        case GgmlType::F16:
            v = readHalf(block);
            break;
        case GgmlType::BF16:
            v = decodeBf16(getU16(block));
            break;
        case GgmlType::Q8_0:
            v = refQ8_0(block, i);
            break;
        case GgmlType::Q4_0:
            v = refQ4_0(block, i);
            break;
        case GgmlType::Q4_1:
            v = refQ4_1(block, i);
            break;
        case GgmlType::Q5_0:
            v = refQ5_0(block, i);
            break;
        case GgmlType::Q5_1:
            v = refQ5_1(block, i);
            break;
        case GgmlType::Q4_K:
            v = refQ4_K(block, i);
            break;
        case GgmlType::Q5_K:
            v = refQ5_K(block, i);
            break;
        case GgmlType::Q6_K:
            v = refQ6_K(block, i);
            break;
        }
        out[static_cast<std::size_t>(e)] = v;
    }
    return out;
}

} // namespace kvchat::testing
