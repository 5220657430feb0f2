// SPDX-License-Identifier: MIT
// Kernel file owned by the CUDA-backend owner (STYLE.md §5 exception).
//
// Reading weight rows on the device, fp16 or packed (engine/backend/packed_weights.h: every element
// scale * code + min, unsigned codes in 32-bit words, element 2k of a word in bits [b*k, b*k + b),
// element 2k + 1 in bits [16 + b*k, ...)). A row is read in 16-byte chunks: 8 fp16 weights, or 4
// words of codes (32 four-bit or 16 eight-bit codes, exactly one group, so one (scale, min) pair a
// chunk). Included like cuda_device_common.cuh (after it, inside a file's anonymous namespace;
// includes nothing).
#pragma once

template <WeightFormat F> constexpr int kCodeBits = F == WeightFormat::Q4G32 ? 4 : 8;
template <WeightFormat F> constexpr int kChunkElements = weightChunkElements(F);

// Row r's 16-byte chunks, and (packed) its (scale, min) pairs.
template <WeightFormat F> __device__ __forceinline__ const uint4 *rowChunks(const DeviceWeights &w, std::int64_t r, int dim)
{
    return static_cast<const uint4 *>(w.data) + r * (dim / kChunkElements<F>);
}

template <WeightFormat F>
__device__ __forceinline__ const __half2 *rowScaleMin(const DeviceWeights &w, std::int64_t r, int dim)
{
    return reinterpret_cast<const __half2 *>(w.scaleMin) + r * (dim / kChunkElements<F>);
}

// Pair k of a word of Bits-bit codes: its two elements as fp16 codes, exactly. Setting fp16
// 1024's exponent bits over a code gives 1024 + code (10 mantissa bits hold codes up to 1023);
// subtracting 1024 is exact. No integer-to-float conversion, whose throughput is a quarter of an
// FMA's and would bound the 4-bit decode.
template <int Bits> __device__ __forceinline__ __half2 codePair(unsigned word, int k)
{
    constexpr unsigned kMask = Bits == 4 ? 0x000F000Fu : 0x00FF00FFu;
    const unsigned bits = ((word >> (Bits * k)) & kMask) | 0x64006400u;
    __half2 h;
    std::memcpy(&h, &bits, sizeof h);
    return __hsub2(h, __floats2half2_rn(1024.0f, 1024.0f));
}

// The codes of a packed chunk, pair by pair (pair p holds elements 2p and 2p + 1 of the chunk).
template <int Bits> __device__ __forceinline__ __half2 chunkCodePair(const uint4 &chunk, int p)
{
    constexpr int kPairsPerWord = 16 / Bits;
    const unsigned words[4] = {chunk.x, chunk.y, chunk.z, chunk.w};
    return codePair<Bits>(words[p / kPairsPerWord], p % kPairsPerWord);
}

// A packed chunk's sum of code * x over its elements, in fp32 (code * x products are exact in
// fp32: 8-bit times 11-bit mantissas). x: the chunk's inputs, fp16, as uint4s of 8 elements,
// `stride` uint4s apart (the gemv kernels stage the input interleaved by chunk, so that a warp's
// lanes, each on its own chunk, read consecutive 16 bytes).
template <int Bits> __device__ __forceinline__ float chunkCodeDot(const uint4 &chunk, const uint4 *x, int stride)
{
    constexpr int kPairs = 64 / Bits; // 128 / Bits elements
    float sum = 0.0f;
#pragma unroll
    for (int q = 0; q < kPairs / 4; ++q) {
        const uint4 xv = x[q * stride];
        const unsigned xBits[4] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            __half2 xh;
            std::memcpy(&xh, &xBits[j], sizeof xh);
            const float2 c = __half22float2(chunkCodePair<Bits>(chunk, 4 * q + j));
            const float2 xf = __half22float2(xh);
            sum = fmaf(c.x, xf.x, sum);
            sum = fmaf(c.y, xf.y, sum);
        }
    }
    return sum;
}

// Element i of a row (fp32): fp16 as stored, packed as scale * code + min.
template <WeightFormat F> __device__ __forceinline__ float rowElement(const DeviceWeights &w, std::int64_t r, int dim, int i)
{
    if constexpr (F == WeightFormat::F16) {
        return __half2float(static_cast<const __half *>(w.data)[r * dim + i]);
    } else {
        constexpr int kBits = kCodeBits<F>;
        const uint4 chunk = rowChunks<F>(w, r, dim)[i / kChunkElements<F>];
        const int e = i % kChunkElements<F>;
        const __half2 c = chunkCodePair<kBits>(chunk, e / 2);
        const float code = e % 2 == 0 ? __low2float(c) : __high2float(c);
        const float2 sm = __half22float2(rowScaleMin<F>(w, r, dim)[i / kChunkElements<F>]);
        return fmaf(sm.x, code, sm.y);
    }
}

// Integer products (the decode gemv's int8 path): the input quantized to int8 per group, so that a
// group's sum of code * x is exact integer arithmetic, four products a dp4a (llama.cpp's MMVQ does
// the same), instead of two instructions a weight to convert codes to fp16 and multiply in fp32.
// A group's int8 inputs are staged in the byte order of its codes, so that a masked (4-bit: and
// shifted) word of codes lines up with one word of inputs:
//   4-bit: word j holds elements 8j..8j+7; word & 0x0F0F0F0F is elements (0, 4, 1, 5) of it, and
//          (word >> 4) & 0x0F0F0F0F elements (2, 6, 3, 7); the inputs of word j are those 8 bytes.
//   8-bit: word j holds elements 4j..4j+3 in byte order (0, 2, 1, 3).
// The chunk's 16-byte pieces are interleaved across chunks (piece k of chunk c at 16 * (k * chunks
// + c)), as the fp16 staging is, so that the lanes of a warp read consecutive addresses.
template <WeightFormat F> __device__ __forceinline__ int int8StagedByte(int chunk, int element, int chunks)
{
    if constexpr (F == WeightFormat::Q4G32) {
        const int word = element / 8, r = element % 8;
        return ((word / 2) * chunks + chunk) * 16 + (word % 2) * 8 + 2 * (r % 4) + r / 4;
    } else {
        const int word = element / 4, r = element % 4;
        return chunk * 16 + word * 4 + 2 * (r % 2) + r / 2;
    }
}

// A packed chunk's sum of code * q over its elements, exactly, with q its int8 inputs (staged by
// int8StagedByte; `stride` uint4s between a chunk's pieces). 8-bit codes are offset by -128 to
// fit dp4a's signed bytes: the sum returned is of (code - 128) * q (the caller adds 128 * sum(q)).
template <WeightFormat F> __device__ __forceinline__ int chunkCodeDotInt8(const uint4 &chunk, const uint4 *q, int stride)
{
    int sum = 0;
    if constexpr (F == WeightFormat::Q4G32) {
        constexpr unsigned kLow = 0x0F0F0F0Fu;
        const uint4 q0 = q[0], q1 = q[stride];
        sum = __dp4a(static_cast<int>(chunk.x & kLow), static_cast<int>(q0.x), sum);
        sum = __dp4a(static_cast<int>((chunk.x >> 4) & kLow), static_cast<int>(q0.y), sum);
        sum = __dp4a(static_cast<int>(chunk.y & kLow), static_cast<int>(q0.z), sum);
        sum = __dp4a(static_cast<int>((chunk.y >> 4) & kLow), static_cast<int>(q0.w), sum);
        sum = __dp4a(static_cast<int>(chunk.z & kLow), static_cast<int>(q1.x), sum);
        sum = __dp4a(static_cast<int>((chunk.z >> 4) & kLow), static_cast<int>(q1.y), sum);
        sum = __dp4a(static_cast<int>(chunk.w & kLow), static_cast<int>(q1.z), sum);
        sum = __dp4a(static_cast<int>((chunk.w >> 4) & kLow), static_cast<int>(q1.w), sum);
    } else {
        constexpr unsigned kFlip = 0x80808080u; // code - 128 as a signed byte
        const uint4 q0 = q[0];
        sum = __dp4a(static_cast<int>(chunk.x ^ kFlip), static_cast<int>(q0.x), sum);
        sum = __dp4a(static_cast<int>(chunk.y ^ kFlip), static_cast<int>(q0.y), sum);
        sum = __dp4a(static_cast<int>(chunk.z ^ kFlip), static_cast<int>(q0.z), sum);
        sum = __dp4a(static_cast<int>(chunk.w ^ kFlip), static_cast<int>(q0.w), sum);
    }
    return sum;
}
