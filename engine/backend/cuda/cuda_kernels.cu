// SPDX-License-Identifier: MIT
// Kernel file owned by the CUDA-backend owner (STYLE.md §5 exception).
//
// The CUDA backend's per-row and element-wise kernels (cuda_kernels.h); attention is in
// cuda_attention.cu, the next-token candidates in cuda_candidates.cu. All math is fp32 on CUDA
// cores; fp16 only where the header says a buffer is fp16. Launch shapes, and why:
//
// - embedKernel       grid nTokens, 256 threads. One block per token row; the threads stride over
//                     dim, so reads of the table row (fp16, or packed codes, decoded one element a
//                     thread) and writes of x are coalesced.
// - dequantizeKernel  grid ceil(chunks / 256), 256 threads: a thread per 16-byte chunk of packed
//                     codes (one group), written as 32 or 16 fp16 values in 16-byte stores.
// - rmsNormKernel     grid nTokens, 256 threads. One block per row: each thread sums the squares of
//                     a strided part of the row in fp32, a warp-shuffle reduction and a shared-memory
//                     pass over the 8 warp sums give the row's scale, then the threads write the row.
// - ropeStoreKernel   grid nTokens, 256 threads. One block per token: the block rotates the token's
//                     q heads in place, rotates its k and writes it, and copies its v, into the KV rows
//                     of position startPos + t (block table lookup once per block).
// - siluMulKernel     grid min(ceil(count / 256), 65536), 256 threads, grid-stride loop (count is
//                     64-bit and may exceed what one thread per element would launch).
// - copySlicesKernel  grid nCopies, 256 threads. One block per copy, 16-byte loads and stores,
//                     four in flight per thread (a layer slice of a block is ~16-64 KiB: 4 to 16
//                     per thread), so that reads of pinned host memory keep the bus busy.
#include "engine/backend/cuda/cuda_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <cuda_fp16.h>

namespace kvchat::engine::cuda {
namespace {

#include "engine/backend/cuda/cuda_device_common.cuh"
#include "engine/backend/cuda/cuda_packed_weights.cuh"

// ---------------------------------------------------------------------------------------------
// Element-wise and per-row kernels


template <WeightFormat F>
__global__ void __launch_bounds__(kRowThreads)
    embedKernel(const DeviceWeights table, const std::int32_t *__restrict__ tokens, int dim, float *__restrict__ x)
{
    // The decode step's first kernel: the first layer's Q/K/V projection may start (and fetch its
    // weights) while it runs (an overlapped launch, cuda_device_common.cuh).
    allowOverlappedSuccessor();
    const std::int64_t t = blockIdx.x;
    const std::int64_t row = tokens[t];
    float *dst = x + t * dim;
    for (int i = static_cast<int>(threadIdx.x); i < dim; i += kRowThreads)
        dst[i] = rowElement<F>(table, row, dim, i);
}

template <WeightFormat F>
__global__ void __launch_bounds__(kRowThreads)
    dequantizeKernel(const DeviceWeights w, std::int64_t rowBegin, std::int64_t chunks, int dim, __half *out)
{
    constexpr int kElements = kChunkElements<F>;
    constexpr int kBits = kCodeBits<F>;
    const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * kRowThreads + threadIdx.x;
    if (c >= chunks)
        return;
    const std::int64_t perRow = dim / kElements;
    const std::int64_t r = c / perRow;
    const std::int64_t inRow = c % perRow;
    const uint4 codes = __ldg(rowChunks<F>(w, rowBegin + r, dim) + inRow);
    const float2 sm = __half22float2(__ldg(rowScaleMin<F>(w, rowBegin + r, dim) + inRow));
    uint4 *dst = reinterpret_cast<uint4 *>(out + r * dim + inRow * kElements);
#pragma unroll
    for (int q = 0; q < kElements / 8; ++q) {
        unsigned bits[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const float2 code = __half22float2(chunkCodePair<kBits>(codes, 4 * q + j));
            const __half2 v = __floats2half2_rn(fmaf(sm.x, code.x, sm.y), fmaf(sm.x, code.y, sm.y));
            std::memcpy(&bits[j], &v, sizeof v);
        }
        dst[q] = make_uint4(bits[0], bits[1], bits[2], bits[3]);
    }
}

__global__ void __launch_bounds__(kRowThreads)
    rmsNormKernel(const float *__restrict__ x, const float *__restrict__ weight, int dim, float eps,
                  __half *__restrict__ out)
{
    const std::int64_t t = blockIdx.x;
    const float *row = x + t * dim;
    const float scale = blockRmsScale(row, dim, eps);
    __half *dst = out + t * dim;
    for (int i = static_cast<int>(threadIdx.x); i < dim; i += kRowThreads)
        dst[i] = __float2half_rn(row[i] * scale * weight[i]);
}

struct KvArgs
{
    __half *arena;
    const std::int32_t *blockTable;
    std::size_t blockElements;
    int blockTokens;
    int layer;
    int kvDim;
};

__global__ void __launch_bounds__(kRowThreads)
    ropeStoreKernel(float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,
                    std::int64_t qStride, std::int64_t kvStride, const float *__restrict__ cosSin, int cosSinByPosition, int nHeads, int headDim, int nRot,
                    KvArgs kv, int startPos, const std::int32_t *__restrict__ deviceStartPos)
{
    const int t = static_cast<int>(blockIdx.x);
    const int pos = (deviceStartPos != nullptr ? *deviceStartPos : startPos) + t;
    const float *cs = cosSin + static_cast<std::int64_t>(cosSinByPosition ? pos : t) * nRot;
    const int halfDim = headDim / 2;
    const int rotPairs = nRot / 2;

    // q: pair j is elements 2j, 2j+1 of the token's row = pair i = j % halfDim of head j / halfDim.
    float *qRow = q + t * qStride;
    for (int j = static_cast<int>(threadIdx.x); j < nHeads * halfDim; j += kRowThreads) {
        const int i = j % halfDim;
        if (i < rotPairs) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float a = qRow[2 * j], b = qRow[2 * j + 1];
            qRow[2 * j] = a * c - b * s;
            qRow[2 * j + 1] = a * s + b * c;
        }
    }

    // KV rows of this position: block table[pos / blockTokens], row pos % blockTokens; layout
    // [layer][K, V][blockTokens][kvDim] inside the block.
    const std::int64_t blockId = kv.blockTable[pos / kv.blockTokens];
    const std::size_t rowInBlock = static_cast<std::size_t>(pos % kv.blockTokens);
    __half *blockBase = kv.arena + static_cast<std::size_t>(blockId) * kv.blockElements;
    const std::size_t kvRows = static_cast<std::size_t>(kv.blockTokens) * static_cast<std::size_t>(kv.kvDim);
    __half *kDst = blockBase + (static_cast<std::size_t>(kv.layer) * 2 + 0) * kvRows + rowInBlock * kv.kvDim;
    __half *vDst = blockBase + (static_cast<std::size_t>(kv.layer) * 2 + 1) * kvRows + rowInBlock * kv.kvDim;
    const float *kRow = k + t * kvStride;
    const float *vRow = v + t * kvStride;

    for (int j = static_cast<int>(threadIdx.x); j < kv.kvDim / 2; j += kRowThreads) {
        const int i = j % halfDim;
        float a = kRow[2 * j], b = kRow[2 * j + 1];
        if (i < rotPairs) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float ra = a * c - b * s;
            const float rb = a * s + b * c;
            a = ra;
            b = rb;
        }
        kDst[2 * j] = __float2half_rn(a);
        kDst[2 * j + 1] = __float2half_rn(b);
    }
    for (int e = static_cast<int>(threadIdx.x); e < kv.kvDim; e += kRowThreads)
        vDst[e] = __float2half_rn(vRow[e]);
}

__global__ void __launch_bounds__(kRowThreads)
    siluMulKernel(const float *__restrict__ gate, const float *__restrict__ up, std::int64_t count, int width,
                  std::int64_t rowStride, __half *__restrict__ out)
{
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kRowThreads;
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kRowThreads + threadIdx.x; i < count; i += stride) {
        const std::int64_t t = i / width;
        const std::int64_t in = t * rowStride + (i - t * width);
        const float g = gate[in];
        out[i] = __float2half_rn(g / (1.0f + expf(-g)) * up[in]);
    }
}

__global__ void __launch_bounds__(kRowThreads)
    copySlicesKernel(const SliceCopy *__restrict__ table, std::size_t offset, std::size_t vectors)
{
    const SliceCopy c = table[blockIdx.x];
    const uint4 *__restrict__ src = reinterpret_cast<const uint4 *>(static_cast<const char *>(c.src) + offset);
    uint4 *__restrict__ dst = reinterpret_cast<uint4 *>(static_cast<char *>(c.dst) + offset);
#pragma unroll 4
    for (std::size_t i = threadIdx.x; i < vectors; i += kRowThreads)
        dst[i] = src[i];
}

} // namespace

void copySlices(const SliceCopy *table, std::int32_t nCopies, std::size_t offset, std::size_t bytes, void *stream)
{
    if (nCopies <= 0 || bytes == 0)
        return;
    if (offset % 16 != 0 || bytes % 16 != 0) {
        unsupportedShapeKernel<<<0, 1, 0, asStream(stream)>>>();
        return;
    }
    const auto blocks = static_cast<unsigned>(nCopies);
    copySlicesKernel<<<blocks, kRowThreads, 0, asStream(stream)>>>(table, offset, bytes / 16);
}

void embedTokens(const DeviceWeights &table, const std::int32_t *tokens, std::int64_t nTokens, std::int32_t dim,
                 float *x, void *stream)
{
    if (nTokens <= 0 || dim <= 0)
        return;
    const auto blocks = static_cast<unsigned>(nTokens);
    const cudaStream_t s = asStream(stream);
    if (dim % weightChunkElements(table.format) != 0) {
        unsupportedShapeKernel<<<0, 1, 0, s>>>();
        return;
    }
    switch (table.format) {
    case WeightFormat::F16:
        embedKernel<WeightFormat::F16><<<blocks, kRowThreads, 0, s>>>(table, tokens, dim, x);
        return;
    case WeightFormat::Q4G32:
        embedKernel<WeightFormat::Q4G32><<<blocks, kRowThreads, 0, s>>>(table, tokens, dim, x);
        return;
    case WeightFormat::Q8G16:
        embedKernel<WeightFormat::Q8G16><<<blocks, kRowThreads, 0, s>>>(table, tokens, dim, x);
        return;
    }
}

void dequantizeWeights(const DeviceWeights &w, std::int64_t rowBegin, std::int64_t rows, std::int32_t dim, Half *out,
                       void *stream)
{
    const cudaStream_t s = asStream(stream);
    if (w.format == WeightFormat::F16 || dim <= 0 || dim % weightChunkElements(w.format) != 0) {
        unsupportedShapeKernel<<<0, 1, 0, s>>>();
        return;
    }
    const std::int64_t chunks = rows * (dim / weightChunkElements(w.format));
    if (chunks <= 0)
        return;
    const auto blocks = static_cast<unsigned>(ceilDiv(chunks, kRowThreads));
    __half *o = reinterpret_cast<__half *>(out);
    if (w.format == WeightFormat::Q4G32)
        dequantizeKernel<WeightFormat::Q4G32><<<blocks, kRowThreads, 0, s>>>(w, rowBegin, chunks, dim, o);
    else
        dequantizeKernel<WeightFormat::Q8G16><<<blocks, kRowThreads, 0, s>>>(w, rowBegin, chunks, dim, o);
}

void rmsNorm(const float *x, const float *weight, std::int64_t nTokens, std::int32_t dim, float eps, Half *out,
             void *stream)
{
    if (nTokens <= 0 || dim <= 0)
        return;
    rmsNormKernel<<<static_cast<unsigned>(nTokens), kRowThreads, 0, asStream(stream)>>>(
        x, weight, dim, eps, reinterpret_cast<__half *>(out));
}

void ropeAndStoreKv(float *q, const float *k, const float *v, std::int64_t qStride, std::int64_t kvStride,
                    const float *cosSin, bool cosSinByPosition, std::int64_t nTokens,
                    std::int32_t nHeads, std::int32_t nKvHeads, std::int32_t headDim, std::int32_t nRot,
                    const KvTarget &kv, std::int32_t startPos, void *stream, const std::int32_t *deviceStartPos)
{
    // k and v rows are kv.kvDim (== nKvHeads * headDim) wide; the kernel takes that width from kv.
    (void)nKvHeads;
    if (nTokens <= 0)
        return;
    const KvArgs args{reinterpret_cast<__half *>(kv.arena), kv.blockTable, kv.blockElements, kv.blockTokens, kv.layer,
                      kv.kvDim};
    ropeStoreKernel<<<static_cast<unsigned>(nTokens), kRowThreads, 0, asStream(stream)>>>(
        q, k, v, qStride, kvStride, cosSin, cosSinByPosition ? 1 : 0, nHeads, headDim, nRot, args, startPos, deviceStartPos);
}

void siluMul(const float *gate, const float *up, std::int64_t nRows, std::int32_t width, std::int64_t rowStride,
             Half *out, void *stream)
{
    const std::int64_t count = nRows * width;
    if (count <= 0)
        return;
    const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(ceilDiv(count, kRowThreads), 65536));
    siluMulKernel<<<blocks, kRowThreads, 0, asStream(stream)>>>(gate, up, count, width, rowStride,
                                                               reinterpret_cast<__half *>(out));
}

} // namespace kvchat::engine::cuda
