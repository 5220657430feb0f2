// SPDX-License-Identifier: MIT
// Kernel file owned by the CUDA-backend owner (STYLE.md §5 exception).
//
// The CUDA backend's own kernels (cuda_kernels.h). All math is fp32 on CUDA cores; fp16 only where
// the header says a buffer is fp16. Launch shapes, and why:
//
// - embedKernel       grid nTokens, 256 threads. One block per token row; the threads stride over
//                     dim, so reads of the fp16 table row and writes of x are coalesced.
// - rmsNormKernel     grid nTokens, 256 threads. One block per row: each thread sums the squares of
//                     a strided part of the row in fp32, a warp-shuffle reduction and a shared-memory
//                     pass over the 8 warp sums give the row's scale, then the threads write the row.
// - ropeStoreKernel   grid nTokens, 256 threads. One block per token: the block rotates the token's
//                     q heads in place, rotates its k and writes it, and copies its v, into the KV rows
//                     of position startPos + t (block table lookup once per block).
// - siluMulKernel     grid min(ceil(count / 256), 65536), 256 threads, grid-stride loop (count is
//                     64-bit and may exceed what one thread per element would launch).
// - selectCandidatesKernel  grid ceil(n / 1024), 512 threads. Each block sorts 1024 candidate keys
//                     (logit and id in one uint64, cuda_kernels.h) in shared memory with a bitonic
//                     network (55 steps, one compare-exchange per thread each) and keeps its best k;
//                     levels repeat on the survivors until one block is left: 152k logits and k = 40
//                     take 3 levels (149, then 6, then 1 block).
// - attentionKernel   grid (ceil(nTokens * group / (4R)), nChunks, nKvHeads), 128 threads (4 warps).
//                     A block owns 4R "rows" (row = (token, query head of the KV head's GQA group),
//                     flattened token-major) and one chunk of context positions; R (rows per warp)
//                     is 4, or 1 or 2 when the whole batch has <= 4 or <= 8 rows (a decode step), so
//                     no warp computes empty rows and each K/V tile is still read by one block. The
//                     block stages its q rows in shared memory once, then walks its chunk in tiles of
//                     32 positions: the K and V rows of a tile are read through the block table (fp16
//                     arena, 8-byte loads widened to fp32) into shared memory and reused by all the
//                     block's rows.
//                     Warp w owns rows w, w+4, w+8, ... (interleaved so that a few rows still spread
//                     over the warps). Scores: lane j computes the dot products of key j with the
//                     warp's R rows (K rows padded to hd+4 floats: conflict-free float4 reads; q
//                     reads are broadcasts). Online softmax in fp32 per row (running max; each lane
//                     keeps its share of the running sum). Weighted sum: lane owns dims lane + 32*i,
//                     the probabilities are broadcast by shuffles. Causal mask per row: token t sees
//                     positions <= startPos + t; tiles past the block's last visible position are not
//                     loaded. With one chunk the block writes the normalized fp16 output itself;
//                     otherwise it writes (max, sum, unnormalized output) of every row to the
//                     workspace (also rows that see nothing of the chunk: max -inf, sum 0).
//                     Dynamic shared memory: (4R*hd + 32*(hd+4) + 32*hd) * 4 bytes (41,472 at
//                     hd = 128, R = 4); above 48 KiB (hd > 152) the opt-in attribute is set before
//                     the launch. Templated on the dims per lane (hd <= 64, 128, 256) and on R so
//                     the accumulators stay in registers.
// - attentionMmaKernel  the prefill form (>= 64 rows per KV head, hd 64 or 128): grid
//                     (ceil(nTokens * group / 64), nChunks, nKvHeads), 128 threads. 64 rows per block
//                     (16 per warp), tiles of 64 positions; S = Q K^T and P V on tensor cores (WMMA
//                     16x16x16, fp16 in, fp32 accumulate), the online softmax and O in fp32 shared
//                     memory (see the kernel). Shared memory: 71 KiB at hd 64, 111 KiB at hd 128,
//                     with the opt-in attribute (A100: 163 KiB, H100: 227 KiB per block).
// - attentionMerge    grid nTokens * nHeads, 128 threads. One block per (token, head): combines the
//                     chunks' partial results with weights exp(max_c - max) and writes fp16.
//
// Chunking (flash-decoding): nChunks = max(1, min(ceil(ctx / 256), 64, 1024 / nTokens)) with ctx =
// startPos + nTokens, chunk length ceil(ctx / nChunks). Short contexts (<= 256) and big batches use
// one chunk; a decode step over 32k positions uses 64 chunks of 512.
#include "engine/backend/cuda/cuda_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <cuda_fp16.h>
#include <mma.h>

namespace kvchat::engine::cuda {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

cudaStream_t asStream(void *stream)
{
    return static_cast<cudaStream_t>(stream);
}

__device__ __forceinline__ float warpSum(float v)
{
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        v += __shfl_xor_sync(kFullMask, v, offset);
    return v;
}

__device__ __forceinline__ float warpMax(float v)
{
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
        v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
    return v;
}

// ---------------------------------------------------------------------------------------------
// Element-wise and per-row kernels

constexpr int kRowThreads = 256;

__global__ void __launch_bounds__(kRowThreads)
    embedKernel(const __half *__restrict__ table, const std::int32_t *__restrict__ tokens, int dim,
                float *__restrict__ x)
{
    const std::int64_t t = blockIdx.x;
    const __half *src = table + static_cast<std::int64_t>(tokens[t]) * dim;
    float *dst = x + t * dim;
    for (int i = static_cast<int>(threadIdx.x); i < dim; i += kRowThreads)
        dst[i] = __half2float(src[i]);
}

__global__ void __launch_bounds__(kRowThreads)
    rmsNormKernel(const float *__restrict__ x, const float *__restrict__ weight, int dim, float eps,
                  __half *__restrict__ out)
{
    constexpr int kWarps = kRowThreads / 32;
    __shared__ float warpSums[kWarps];
    __shared__ float rowScale;
    const std::int64_t t = blockIdx.x;
    const float *row = x + t * dim;
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const int warp = static_cast<int>(threadIdx.x) >> 5;

    float sumSquares = 0.0f;
    for (int i = static_cast<int>(threadIdx.x); i < dim; i += kRowThreads)
        sumSquares = fmaf(row[i], row[i], sumSquares);
    sumSquares = warpSum(sumSquares);
    if (lane == 0)
        warpSums[warp] = sumSquares;
    __syncthreads();
    if (warp == 0) {
        float total = lane < kWarps ? warpSums[lane] : 0.0f;
        total = warpSum(total);
        if (lane == 0)
            rowScale = 1.0f / sqrtf(total / static_cast<float>(dim) + eps);
    }
    __syncthreads();
    const float scale = rowScale;
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
                    const float *__restrict__ cosSin, int nHeads, int headDim, int nRot, KvArgs kv, int startPos)
{
    const int t = static_cast<int>(blockIdx.x);
    const int pos = startPos + t;
    const float *cs = cosSin + static_cast<std::int64_t>(t) * nRot;
    const int halfDim = headDim / 2;
    const int rotPairs = nRot / 2;

    // q: pair j is elements 2j, 2j+1 of the token's row = pair i = j % halfDim of head j / halfDim.
    float *qRow = q + static_cast<std::int64_t>(t) * nHeads * headDim;
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
    const float *kRow = k + static_cast<std::int64_t>(t) * kv.kvDim;
    const float *vRow = v + static_cast<std::int64_t>(t) * kv.kvDim;

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
    siluMulKernel(const float *__restrict__ gate, const float *__restrict__ up, std::int64_t count,
                  __half *__restrict__ out)
{
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kRowThreads;
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kRowThreads + threadIdx.x; i < count; i += stride) {
        const float g = gate[i];
        out[i] = __float2half_rn(g / (1.0f + expf(-g)) * up[i]);
    }
}

// ---------------------------------------------------------------------------------------------
// Next-token candidates

constexpr int kSelectSlots = 1024;  // keys one block sorts
constexpr int kSelectThreads = 512; // one compare-exchange of the bitonic network per thread and step

// Larger key = better candidate: the logit's bits made order-preserving in the high half (a NaN
// counts as -inf, and -0 as +0, as the host's comparisons see them), the complement of the id in
// the low half (lower id first among equal logits). 0 is below every real key.
__device__ __forceinline__ std::uint64_t candidateKey(float logit, int id)
{
    if (isnan(logit))
        logit = -INFINITY;
    if (logit == 0.0f)
        logit = 0.0f;
    std::uint32_t u = __float_as_uint(logit);
    u = (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
    return (static_cast<std::uint64_t>(u) << 32) | static_cast<std::uint32_t>(~static_cast<std::uint32_t>(id));
}

__global__ void __launch_bounds__(kRowThreads)
    repeatPenaltyKernel(float *__restrict__ logits, const std::int32_t *__restrict__ ids, int nIds, float penalty)
{
    const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < nIds) {
        const float l = logits[ids[i]];
        logits[ids[i]] = l > 0.0f ? l / penalty : l * penalty;
    }
}

// Block b sorts keys [b * kSelectSlots, (b + 1) * kSelectSlots) of its input (made from logits,
// or an earlier level's keys) in shared memory, largest first, and writes its best k to
// out[b * k, (b + 1) * k). Missing elements of the last block are key 0.
__global__ void __launch_bounds__(kSelectThreads)
    selectCandidatesKernel(const float *__restrict__ logits, const std::uint64_t *__restrict__ keysIn, int n, int k,
                           std::uint64_t *__restrict__ out)
{
    __shared__ std::uint64_t keys[kSelectSlots];
    const int base = static_cast<int>(blockIdx.x) * kSelectSlots;
    for (int i = static_cast<int>(threadIdx.x); i < kSelectSlots; i += kSelectThreads) {
        const int g = base + i;
        keys[i] = g >= n ? 0 : logits != nullptr ? candidateKey(logits[g], g) : keysIn[g];
    }
    __syncthreads();
    // Bitonic sort: for each (size, stride), thread t compares element i (bit `stride` clear) with
    // i + stride, in the direction of i's size-run (descending where bit `size` of i is clear).
    for (int size = 2; size <= kSelectSlots; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            const int t = static_cast<int>(threadIdx.x);
            const int i = 2 * t - (t & (stride - 1));
            const int j = i + stride;
            const bool descending = (i & size) == 0;
            const std::uint64_t a = keys[i], b = keys[j];
            if ((a < b) == descending) {
                keys[i] = b;
                keys[j] = a;
            }
            __syncthreads();
        }
    }
    for (int i = static_cast<int>(threadIdx.x); i < k; i += kSelectThreads)
        out[static_cast<std::size_t>(blockIdx.x) * static_cast<std::size_t>(k) + static_cast<std::size_t>(i)] = keys[i];
}
static_assert(kSelectSlots == 2 * kSelectThreads, "one compare-exchange per thread and step");
static_assert(kMaxDeviceCandidates * 2 <= kSelectSlots, "each level must at least halve the keys");

// ---------------------------------------------------------------------------------------------
// Attention

constexpr int kAttnWarps = 4;
constexpr int kAttnThreads = 32 * kAttnWarps;
constexpr int kMaxRowsPerWarp = 4; // rows (token, query head) per warp; a block has kAttnWarps times more
constexpr int kKeyTile = 32;       // positions per shared-memory tile: one per lane
constexpr int kKeyPad = 4;         // K row stride hd + 4: conflict-free float4 reads
constexpr int kMergeThreads = 128;
constexpr int kChunkMinPositions = 256; // a chunk has at least this many positions (unless ctx is less)
constexpr int kMaxChunks = 64;
constexpr std::int64_t kChunkTokenBudget = 1024; // nTokens * nChunks stays <= this (when nTokens <= it)
constexpr int kMaxHeadDim = 256;

// Four consecutive fp16 values (8-byte aligned: head sizes are multiples of 8) as fp32.
__device__ __forceinline__ float4 loadHalf4(const __half *p)
{
    const uint2 bits = *reinterpret_cast<const uint2 *>(p);
    __half2 lo, hi;
    std::memcpy(&lo, &bits.x, sizeof lo);
    std::memcpy(&hi, &bits.y, sizeof hi);
    const float2 a = __half22float2(lo), b = __half22float2(hi);
    return make_float4(a.x, a.y, b.x, b.y);
}

struct AttnParams
{
    const float *q;
    const __half *arena;
    const std::int32_t *blockTable;
    std::size_t blockElements;
    int blockTokens;
    int layer;
    int kvDim;
    int nHeads;
    int group; // nHeads / nKvHeads
    int headDim;
    float scale;
    int nTokens;
    int startPos;
    int chunkLen;
    int direct; // 1: one chunk, write the normalized output; 0: write partials
    __half *out;
    float *partialO;  // [nChunks][nTokens][nHeads][headDim]
    float *partialML; // [nChunks][nTokens][nHeads][2]: running max, sum
};

std::size_t attentionSmemBytes(int headDim, int rowsPerWarp)
{
    const std::size_t hd = static_cast<std::size_t>(headDim);
    const std::size_t rows = static_cast<std::size_t>(kAttnWarps * rowsPerWarp);
    return (rows * hd + kKeyTile * (hd + kKeyPad) + kKeyTile * hd) * sizeof(float);
}

// DPL: head dims per lane, headDim <= 32 * DPL. R: rows per warp (the block has kAttnWarps * R).
template <int DPL, int R> __global__ void __launch_bounds__(kAttnThreads) attentionKernel(const AttnParams p)
{
    constexpr int kAttnRows = kAttnWarps * R;
    extern __shared__ float4 smemVec[]; // float4 for 16-byte alignment
    const int hd = p.headDim;
    const int hd4 = hd / 4;
    const int kStride = hd + kKeyPad;
    float *sQ = reinterpret_cast<float *>(smemVec); // [kAttnRows][hd]
    float *sK = sQ + kAttnRows * hd;                // [kKeyTile][hd + kKeyPad]
    float *sV = sK + kKeyTile * kStride;            // [kKeyTile][hd]

    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int kvHead = static_cast<int>(blockIdx.z);
    const int chunk = static_cast<int>(blockIdx.y);
    const int rowsTotal = p.nTokens * p.group;
    const int rowBase = static_cast<int>(blockIdx.x) * kAttnRows;
    const int nRows = min(kAttnRows, rowsTotal - rowBase); // >= 1 by the grid size
    const std::int64_t qRowStride = static_cast<std::int64_t>(p.nHeads) * hd;

    // Row r of the block: flattened row rowBase + r = token * group + (head within the group).
    for (int idx = tid; idx < kAttnRows * hd; idx += kAttnThreads) {
        const int r = idx / hd;
        const int d = idx - r * hd;
        float value = 0.0f;
        if (r < nRows) {
            const int row = rowBase + r;
            const int t = row / p.group;
            const int head = kvHead * p.group + (row - t * p.group);
            value = p.q[t * qRowStride + static_cast<std::int64_t>(head) * hd + d];
        }
        sQ[idx] = value;
    }

    // This warp's rows: slot s is block row s * kAttnWarps + warp. lastPos = -1 for a missing row.
    int lastPos[R];
    float runMax[R];
    float laneSum[R]; // this lane's part of the running sum (rescaled with the max)
    float acc[R][DPL];
#pragma unroll
    for (int s = 0; s < R; ++s) {
        const int r = s * kAttnWarps + warp;
        lastPos[s] = r < nRows ? p.startPos + (rowBase + r) / p.group : -1;
        runMax[s] = -INFINITY;
        laneSum[s] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; ++i)
            acc[s][i] = 0.0f;
    }

    const int ctx = p.startPos + p.nTokens;
    const int chunkStart = chunk * p.chunkLen;
    const int chunkEnd = min(chunkStart + p.chunkLen, ctx);
    const int blockLast = p.startPos + (rowBase + nRows - 1) / p.group; // the block's last visible position
    const int end = min(chunkEnd, blockLast + 1);
    // Within a block: K rows of this layer at ((layer * 2 + 0) * blockTokens + row) * kvDim, V rows
    // blockTokens * kvDim floats further; this KV head's slice starts at kvHead * hd.
    const std::size_t vOffset = static_cast<std::size_t>(p.blockTokens) * static_cast<std::size_t>(p.kvDim);
    const __half *arenaHead =
        p.arena + static_cast<std::size_t>(p.layer) * 2 * vOffset + static_cast<std::size_t>(kvHead) * hd;

    for (int tileStart = chunkStart; tileStart < end; tileStart += kKeyTile) {
        const int nKeys = min(kKeyTile, end - tileStart);
        __syncthreads(); // the previous tile is no longer read (first pass: nothing to wait for)
        for (int idx = tid; idx < kKeyTile * hd4; idx += kAttnThreads) {
            const int j = idx / hd4;
            const int c = idx - j * hd4;
            float4 kValue = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            float4 vValue = kValue; // positions past the tile end stay zero (0 * garbage could be NaN)
            if (j < nKeys) {
                const int pos = tileStart + j;
                const std::int64_t blockId = p.blockTable[pos / p.blockTokens];
                const __half *kRow = arenaHead + static_cast<std::size_t>(blockId) * p.blockElements +
                                     static_cast<std::size_t>(pos % p.blockTokens) * p.kvDim;
                kValue = loadHalf4(kRow + 4 * c);
                vValue = loadHalf4(kRow + vOffset + 4 * c);
            }
            reinterpret_cast<float4 *>(sK + j * kStride)[c] = kValue;
            reinterpret_cast<float4 *>(sV + j * hd)[c] = vValue;
        }
        __syncthreads(); // the tile (and, on the first pass, sQ) is in place

        // Scores: lane j takes key tileStart + j against the warp's rows.
        float dot[R];
#pragma unroll
        for (int s = 0; s < R; ++s)
            dot[s] = 0.0f;
        const float4 *kLane = reinterpret_cast<const float4 *>(sK + lane * kStride);
        for (int c = 0; c < hd4; ++c) {
            const float4 kk = kLane[c];
#pragma unroll
            for (int s = 0; s < R; ++s) {
                const float4 qq = reinterpret_cast<const float4 *>(sQ + (s * kAttnWarps + warp) * hd)[c];
                dot[s] = fmaf(qq.x, kk.x, dot[s]);
                dot[s] = fmaf(qq.y, kk.y, dot[s]);
                dot[s] = fmaf(qq.z, kk.z, dot[s]);
                dot[s] = fmaf(qq.w, kk.w, dot[s]);
            }
        }

        // Online softmax. A row takes part in this tile when it sees position tileStart (then lane 0's
        // score is finite, so the new maximum is finite and exp(old - new) is well defined).
        const int keyPos = tileStart + lane;
        float prob[R];
#pragma unroll
        for (int s = 0; s < R; ++s) {
            prob[s] = 0.0f;
            if (tileStart <= lastPos[s]) { // warp-uniform
                const bool visible = lane < nKeys && keyPos <= lastPos[s];
                const float score = visible ? dot[s] * p.scale : -INFINITY;
                const float newMax = fmaxf(runMax[s], warpMax(score));
                const float correction = expf(runMax[s] - newMax); // exp(-inf) = 0 on the first tile
                prob[s] = visible ? expf(score - newMax) : 0.0f;
                laneSum[s] = laneSum[s] * correction + prob[s];
#pragma unroll
                for (int i = 0; i < DPL; ++i)
                    acc[s][i] *= correction;
                runMax[s] = newMax;
            }
        }

        // Weighted sum of the V rows: lane owns dims lane + 32 * i.
        for (int j = 0; j < nKeys; ++j) {
            float pj[R];
#pragma unroll
            for (int s = 0; s < R; ++s)
                pj[s] = __shfl_sync(kFullMask, prob[s], j);
            const float *vRow = sV + j * hd;
#pragma unroll
            for (int i = 0; i < DPL; ++i) {
                const int d = lane + 32 * i;
                if (d < hd) {
                    const float value = vRow[d];
#pragma unroll
                    for (int s = 0; s < R; ++s)
                        acc[s][i] = fmaf(pj[s], value, acc[s][i]);
                }
            }
        }
    }

#pragma unroll
    for (int s = 0; s < R; ++s) {
        const int r = s * kAttnWarps + warp;
        if (r >= nRows) // warp-uniform
            continue;
        const float sum = warpSum(laneSum[s]);
        const int row = rowBase + r;
        const int t = row / p.group;
        const int head = kvHead * p.group + (row - t * p.group);
        const std::int64_t outRow = static_cast<std::int64_t>(t) * p.nHeads + head; // [token][head]
        if (p.direct) {
            const float inv = 1.0f / sum; // sum > 0: the only chunk starts at position 0, seen by all
            __half *dst = p.out + outRow * hd;
#pragma unroll
            for (int i = 0; i < DPL; ++i) {
                const int d = lane + 32 * i;
                if (d < hd)
                    dst[d] = __float2half_rn(acc[s][i] * inv);
            }
        } else {
            const std::int64_t slot = static_cast<std::int64_t>(chunk) * p.nTokens * p.nHeads + outRow;
            float *dst = p.partialO + slot * hd;
#pragma unroll
            for (int i = 0; i < DPL; ++i) {
                const int d = lane + 32 * i;
                if (d < hd)
                    dst[d] = acc[s][i];
            }
            if (lane == 0) {
                p.partialML[2 * slot] = runMax[s];
                p.partialML[2 * slot + 1] = sum;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Attention on tensor cores (prefill)
//
// The same rows, chunks and outputs as attentionKernel, for batches of at least kMmaRows rows
// (query head x token) and head sizes 64 and 128: a block takes 64 rows of one KV head (4 warps x
// 16), walks its chunk in tiles of 64 positions, and computes S = Q K^T and P V with WMMA
// (16x16x16, fp16 inputs, fp32 accumulation). Q and P are rounded to fp16 in shared memory (K and V
// are fp16 in the arena already); scores, the online softmax and the output accumulator O stay fp32. O lives in shared
// memory because the row of a WMMA accumulator element is unspecified: each tile rescales O's rows
// by the softmax correction in plain code, then adds P V on the tensor cores.

namespace wmma = nvcuda::wmma;

constexpr int kMmaRows = 64;       // rows per block: 4 warps x 16
constexpr int kMmaKeys = 64;       // positions per tile
constexpr int kMmaThreads = 128;   // 4 warps

constexpr std::size_t align32(std::size_t bytes)
{
    return (bytes + 31) / 32 * 32;
}

// Shared memory of attentionMmaKernel<HD>; every array starts 32-byte aligned (WMMA pointers must
// be), and row strides are padded so that rows do not all start in the same bank.
template <int HD> struct MmaLayout
{
    static constexpr int qStride = HD + 8; // halves
    static constexpr int kvStride = HD + 8; // halves, K and V
    static constexpr int sStride = kMmaKeys + 4; // floats
    static constexpr int pStride = kMmaKeys + 8; // halves
    static constexpr int oStride = HD + 4; // floats
    static constexpr std::size_t q = 0;
    static constexpr std::size_t k = q + align32(sizeof(__half) * kMmaRows * qStride);
    static constexpr std::size_t v = k + align32(sizeof(__half) * kMmaKeys * kvStride);
    static constexpr std::size_t s = v + align32(sizeof(__half) * kMmaKeys * kvStride);
    static constexpr std::size_t p = s + align32(sizeof(float) * kMmaRows * sStride);
    static constexpr std::size_t o = p + align32(sizeof(__half) * kMmaRows * pStride);
    static constexpr std::size_t stats = o + align32(sizeof(float) * kMmaRows * oStride); // max, sum, correction
    static constexpr std::size_t bytes = stats + sizeof(float) * 3 * kMmaRows;
};

template <int HD> __global__ void __launch_bounds__(kMmaThreads) attentionMmaKernel(const AttnParams p)
{
    using L = MmaLayout<HD>;
    extern __shared__ float4 smemVec[];
    char *smem = reinterpret_cast<char *>(smemVec);
    __half *sQ = reinterpret_cast<__half *>(smem + L::q);
    __half *sK = reinterpret_cast<__half *>(smem + L::k);
    __half *sV = reinterpret_cast<__half *>(smem + L::v);
    float *sS = reinterpret_cast<float *>(smem + L::s);
    __half *sP = reinterpret_cast<__half *>(smem + L::p);
    float *sO = reinterpret_cast<float *>(smem + L::o);
    float *sMax = reinterpret_cast<float *>(smem + L::stats);
    float *sSum = sMax + kMmaRows;
    float *sCorrection = sSum + kMmaRows;

    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int kvHead = static_cast<int>(blockIdx.z);
    const int chunk = static_cast<int>(blockIdx.y);
    const int rowsTotal = p.nTokens * p.group;
    const int rowBase = static_cast<int>(blockIdx.x) * kMmaRows;
    const int nRows = min(kMmaRows, rowsTotal - rowBase); // >= 1 by the grid size
    const std::int64_t qRowStride = static_cast<std::int64_t>(p.nHeads) * HD;

    // Block row r is flattened row rowBase + r = token * group + (head within the group).
    for (int idx = tid; idx < kMmaRows * HD; idx += kMmaThreads) {
        const int r = idx / HD;
        const int d = idx - r * HD;
        float value = 0.0f;
        if (r < nRows) {
            const int row = rowBase + r;
            const int t = row / p.group;
            const int head = kvHead * p.group + (row - t * p.group);
            value = p.q[t * qRowStride + static_cast<std::int64_t>(head) * HD + d];
        }
        sQ[r * L::qStride + d] = __float2half_rn(value);
        sO[r * L::oStride + d] = 0.0f;
    }
    for (int r = tid; r < kMmaRows; r += kMmaThreads) {
        sMax[r] = -INFINITY;
        sSum[r] = 0.0f;
    }

    const int ctx = p.startPos + p.nTokens;
    const int chunkStart = chunk * p.chunkLen;
    const int chunkEnd = min(chunkStart + p.chunkLen, ctx);
    const int blockLast = p.startPos + (rowBase + nRows - 1) / p.group; // the block's last visible position
    const int end = min(chunkEnd, blockLast + 1);
    const std::size_t vOffset = static_cast<std::size_t>(p.blockTokens) * static_cast<std::size_t>(p.kvDim);
    const __half *arenaHead =
        p.arena + static_cast<std::size_t>(p.layer) * 2 * vOffset + static_cast<std::size_t>(kvHead) * HD;
    constexpr int hd4 = HD / 4;

    for (int tileStart = chunkStart; tileStart < end; tileStart += kMmaKeys) {
        const int nKeys = min(kMmaKeys, end - tileStart);
        __syncthreads(); // the previous tile's K, V and P are no longer read (and Q, O are in place)
        for (int idx = tid; idx < kMmaKeys * hd4; idx += kMmaThreads) {
            const int j = idx / hd4;
            const int c = idx - j * hd4;
            // Four halves (8 bytes) at a time, copied as they are: the arena is fp16 already.
            uint2 kBits = make_uint2(0u, 0u);
            uint2 vBits = kBits; // positions past the tile end stay zero (0 * garbage could be NaN)
            if (j < nKeys) {
                const int pos = tileStart + j;
                const std::int64_t blockId = p.blockTable[pos / p.blockTokens];
                const __half *kRow = arenaHead + static_cast<std::size_t>(blockId) * p.blockElements +
                                     static_cast<std::size_t>(pos % p.blockTokens) * p.kvDim;
                kBits = *reinterpret_cast<const uint2 *>(kRow + 4 * c);
                vBits = *reinterpret_cast<const uint2 *>(kRow + vOffset + 4 * c);
            }
            *reinterpret_cast<uint2 *>(sK + j * L::kvStride + 4 * c) = kBits;
            *reinterpret_cast<uint2 *>(sV + j * L::kvStride + 4 * c) = vBits;
        }
        __syncthreads();

        // S = Q K^T for the warp's 16 rows: K's rows are the columns of K^T (a col-major operand).
        {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> scores[kMmaKeys / 16];
#pragma unroll
            for (int n = 0; n < kMmaKeys / 16; ++n)
                wmma::fill_fragment(scores[n], 0.0f);
#pragma unroll
            for (int k0 = 0; k0 < HD; k0 += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
                wmma::load_matrix_sync(a, sQ + warp * 16 * L::qStride + k0, L::qStride);
#pragma unroll
                for (int n = 0; n < kMmaKeys / 16; ++n) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
                    wmma::load_matrix_sync(b, sK + n * 16 * L::kvStride + k0, L::kvStride);
                    wmma::mma_sync(scores[n], a, b, scores[n]);
                }
            }
#pragma unroll
            for (int n = 0; n < kMmaKeys / 16; ++n)
                wmma::store_matrix_sync(sS + warp * 16 * L::sStride + n * 16, scores[n], L::sStride,
                                        wmma::mem_row_major);
        }
        __syncthreads(); // S in place for every lane (a warp's lanes read what others stored)

        // Online softmax, one row at a time: lanes take positions lane and lane + 32.
        for (int rr = 0; rr < 16; ++rr) {
            const int r = warp * 16 + rr;
            const int lastPos = r < nRows ? p.startPos + (rowBase + r) / p.group : -1;
            float x[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int j = lane + 32 * h;
                const bool visible = j < nKeys && tileStart + j <= lastPos;
                x[h] = visible ? sS[r * L::sStride + j] * p.scale : -INFINITY;
            }
            const float oldMax = sMax[r];
            const float newMax = fmaxf(oldMax, warpMax(fmaxf(x[0], x[1])));
            float prob[2] = {0.0f, 0.0f};
            float correction = 1.0f;
            if (newMax != -INFINITY) { // warp-uniform: the row has seen a position
                correction = expf(oldMax - newMax); // exp(-inf) = 0 before the first one
                prob[0] = expf(x[0] - newMax);      // exp(-inf) = 0 for hidden positions
                prob[1] = expf(x[1] - newMax);
            }
            const float tileSum = warpSum(prob[0] + prob[1]);
            sP[r * L::pStride + lane] = __float2half_rn(prob[0]);
            sP[r * L::pStride + lane + 32] = __float2half_rn(prob[1]);
            if (lane == 0) {
                sMax[r] = newMax;
                sSum[r] = sSum[r] * correction + tileSum;
                sCorrection[r] = correction;
            }
        }
        __syncthreads(); // P and the corrections in place

        // O = O * correction + P V for the warp's rows.
        for (int idx = lane; idx < 16 * HD; idx += 32) {
            const int r = warp * 16 + idx / HD;
            const int d = idx % HD;
            sO[r * L::oStride + d] *= sCorrection[r];
        }
        __syncthreads(); // the rescaled O is what the accumulators load
#pragma unroll
        for (int n = 0; n < HD / 16; ++n) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
            float *oTile = sO + warp * 16 * L::oStride + n * 16;
            wmma::load_matrix_sync(o, oTile, L::oStride, wmma::mem_row_major);
#pragma unroll
            for (int k0 = 0; k0 < kMmaKeys; k0 += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
                wmma::load_matrix_sync(a, sP + warp * 16 * L::pStride + k0, L::pStride);
                wmma::load_matrix_sync(b, sV + k0 * L::kvStride + n * 16, L::kvStride);
                wmma::mma_sync(o, a, b, o);
            }
            wmma::store_matrix_sync(oTile, o, L::oStride, wmma::mem_row_major);
        }
    }
    __syncthreads(); // O and the sums complete

    for (int idx = tid; idx < kMmaRows * HD; idx += kMmaThreads) {
        const int r = idx / HD;
        const int d = idx - r * HD;
        if (r >= nRows)
            continue;
        const int row = rowBase + r;
        const int t = row / p.group;
        const int head = kvHead * p.group + (row - t * p.group);
        const std::int64_t outRow = static_cast<std::int64_t>(t) * p.nHeads + head; // [token][head]
        if (p.direct) {
            // sum > 0: the only chunk starts at position 0, which every row sees.
            p.out[outRow * HD + d] = __float2half_rn(sO[r * L::oStride + d] / sSum[r]);
        } else {
            const std::int64_t slot = static_cast<std::int64_t>(chunk) * p.nTokens * p.nHeads + outRow;
            p.partialO[slot * HD + d] = sO[r * L::oStride + d];
            if (d == 0) {
                p.partialML[2 * slot] = sMax[r];
                p.partialML[2 * slot + 1] = sSum[r];
            }
        }
    }
}

// One block per (token, head) row: out = sum_c w_c * O_c / sum_c w_c * l_c, w_c = exp(m_c - max m).
// Chunks with sum 0 (no visible position) are skipped; chunk 0 is never such a chunk.
__global__ void __launch_bounds__(kMergeThreads)
    attentionMergeKernel(const float *__restrict__ partialO, const float *__restrict__ partialML, int nChunks,
                         std::int64_t rowsAll, int headDim, __half *__restrict__ out)
{
    const std::int64_t row = blockIdx.x;
    float globalMax = -INFINITY;
    for (int c = 0; c < nChunks; ++c) {
        const std::int64_t slot = c * rowsAll + row;
        if (partialML[2 * slot + 1] > 0.0f)
            globalMax = fmaxf(globalMax, partialML[2 * slot]);
    }
    float total = 0.0f;
    for (int c = 0; c < nChunks; ++c) {
        const std::int64_t slot = c * rowsAll + row;
        const float l = partialML[2 * slot + 1];
        if (l > 0.0f)
            total += expf(partialML[2 * slot] - globalMax) * l;
    }
    const float inv = 1.0f / total;
    for (int d = static_cast<int>(threadIdx.x); d < headDim; d += kMergeThreads) {
        float value = 0.0f;
        for (int c = 0; c < nChunks; ++c) {
            const std::int64_t slot = c * rowsAll + row;
            if (partialML[2 * slot + 1] > 0.0f)
                value += expf(partialML[2 * slot] - globalMax) * partialO[slot * headDim + d];
        }
        out[row * headDim + d] = __float2half_rn(value * inv);
    }
}

__global__ void unsupportedShapeKernel() {}

std::int64_t ceilDiv(std::int64_t a, std::int64_t b)
{
    return (a + b - 1) / b;
}

// The chunk count of a call with nTokens new tokens over ctx positions in all (see the top comment).
std::int64_t attentionChunks(std::int64_t nTokens, std::int64_t ctx)
{
    const std::int64_t byLength = ceilDiv(ctx, kChunkMinPositions);
    const std::int64_t byTokens = kChunkTokenBudget / nTokens;
    return std::max<std::int64_t>(1, std::min({byLength, static_cast<std::int64_t>(kMaxChunks), byTokens}));
}

bool attentionShapeSupported(const AttentionShape &shape)
{
    return shape.nKvHeads > 0 && shape.nHeads > 0 && shape.nHeads % shape.nKvHeads == 0 && shape.headDim > 0 &&
           shape.headDim <= kMaxHeadDim && shape.headDim % 8 == 0;
}

template <int DPL, int R>
void launchAttention(const AttnParams &p, std::int64_t rowsTotal, std::int64_t nChunks, int nKvHeads,
                     cudaStream_t stream)
{
    const dim3 grid(static_cast<unsigned>(ceilDiv(rowsTotal, kAttnWarps * R)), static_cast<unsigned>(nChunks),
                    static_cast<unsigned>(nKvHeads));
    const std::size_t smemBytes = attentionSmemBytes(p.headDim, R);
    if (smemBytes > 48 * 1024)
        cudaFuncSetAttribute(attentionKernel<DPL, R>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smemBytes));
    attentionKernel<DPL, R><<<grid, kAttnThreads, smemBytes, stream>>>(p);
}

// Rows per warp: as few as cover all rows of a small batch (a decode step of one token has `group`
// rows), so that no warp computes empty rows and one block still reads each K/V tile once.
template <int DPL>
void launchAttentionRows(const AttnParams &p, std::int64_t rowsTotal, std::int64_t nChunks, int nKvHeads,
                         cudaStream_t stream)
{
    if (rowsTotal <= kAttnWarps)
        launchAttention<DPL, 1>(p, rowsTotal, nChunks, nKvHeads, stream);
    else if (rowsTotal <= 2 * kAttnWarps)
        launchAttention<DPL, 2>(p, rowsTotal, nChunks, nKvHeads, stream);
    else
        launchAttention<DPL, kMaxRowsPerWarp>(p, rowsTotal, nChunks, nKvHeads, stream);
}

} // namespace

void embedTokens(const Half *table, const std::int32_t *tokens, std::int64_t nTokens, std::int32_t dim, float *x,
                 void *stream)
{
    if (nTokens <= 0 || dim <= 0)
        return;
    embedKernel<<<static_cast<unsigned>(nTokens), kRowThreads, 0, asStream(stream)>>>(
        reinterpret_cast<const __half *>(table), tokens, dim, x);
}

void rmsNorm(const float *x, const float *weight, std::int64_t nTokens, std::int32_t dim, float eps, Half *out,
             void *stream)
{
    if (nTokens <= 0 || dim <= 0)
        return;
    rmsNormKernel<<<static_cast<unsigned>(nTokens), kRowThreads, 0, asStream(stream)>>>(
        x, weight, dim, eps, reinterpret_cast<__half *>(out));
}

void ropeAndStoreKv(float *q, const float *k, const float *v, const float *cosSin, std::int64_t nTokens,
                    std::int32_t nHeads, std::int32_t nKvHeads, std::int32_t headDim, std::int32_t nRot,
                    const KvTarget &kv, std::int32_t startPos, void *stream)
{
    // k and v rows are kv.kvDim (== nKvHeads * headDim) wide; the kernel takes that width from kv.
    (void)nKvHeads;
    if (nTokens <= 0)
        return;
    const KvArgs args{reinterpret_cast<__half *>(kv.arena), kv.blockTable, kv.blockElements, kv.blockTokens, kv.layer,
                      kv.kvDim};
    ropeStoreKernel<<<static_cast<unsigned>(nTokens), kRowThreads, 0, asStream(stream)>>>(
        q, k, v, cosSin, nHeads, headDim, nRot, args, startPos);
}

// Floats of workspace: partial outputs [nChunks][nTokens][nHeads][headDim] then (max, sum) pairs
// [nChunks][nTokens][nHeads][2], i.e. nChunks * nTokens * nHeads * (headDim + 2) for the call.
// Generous in two ways, so that one allocation sized for the largest batch and context covers every
// call: the context is taken as contextTokens + nTokens (right whether the caller counts the new
// tokens in contextTokens or not), and the value is the maximum over every batch size up to nTokens
// (the chunk count falls as the batch grows), which makes it non-decreasing in both arguments.
bool attentionUsesTensorCores(const AttentionShape &shape, std::int64_t nTokens)
{
    return attentionShapeSupported(shape) && (shape.headDim == 64 || shape.headDim == 128) &&
           nTokens * (shape.nHeads / shape.nKvHeads) >= kMmaRows;
}

std::size_t attentionWorkspaceFloats(const AttentionShape &shape, std::int64_t nTokens, std::int32_t contextTokens)
{
    if (nTokens <= 0 || shape.nHeads <= 0 || shape.headDim <= 0)
        return 0;
    const std::int64_t ctx = std::max<std::int64_t>(contextTokens, 0) + nTokens;
    std::int64_t rowChunks = nTokens * attentionChunks(nTokens, ctx);
    for (std::int64_t n = 1; n <= std::min(nTokens, kChunkTokenBudget); ++n)
        rowChunks = std::max(rowChunks, n * attentionChunks(n, ctx));
    return static_cast<std::size_t>(rowChunks) * static_cast<std::size_t>(shape.nHeads) *
           static_cast<std::size_t>(shape.headDim + 2);
}

void attention(const AttentionShape &shape, const float *q, const KvTarget &kv, std::int64_t nTokens,
               std::int32_t startPos, float *workspace, Half *out, void *stream)
{
    if (nTokens <= 0)
        return;
    const cudaStream_t s = asStream(stream);
    if (!attentionShapeSupported(shape)) {
        // An empty grid fails with cudaErrorInvalidConfiguration: the caller's cudaGetLastError
        // reports the unsupported shape instead of a silent no-op.
        unsupportedShapeKernel<<<0, 1, 0, s>>>();
        return;
    }
    const int hd = shape.headDim;
    const int group = shape.nHeads / shape.nKvHeads;
    const std::int64_t ctx = startPos + nTokens;
    const std::int64_t nChunks = attentionChunks(nTokens, ctx);
    const std::int64_t chunkLen = ceilDiv(ctx, nChunks);
    const std::int64_t rowsTotal = nTokens * group; // per KV head
    const std::int64_t rowsAll = nTokens * shape.nHeads;

    AttnParams p{};
    p.q = q;
    p.arena = reinterpret_cast<const __half *>(kv.arena);
    p.blockTable = kv.blockTable;
    p.blockElements = kv.blockElements;
    p.blockTokens = kv.blockTokens;
    p.layer = kv.layer;
    p.kvDim = kv.kvDim;
    p.nHeads = shape.nHeads;
    p.group = group;
    p.headDim = hd;
    p.scale = shape.scale;
    p.nTokens = static_cast<int>(nTokens);
    p.startPos = startPos;
    p.chunkLen = static_cast<int>(chunkLen);
    p.direct = nChunks == 1 ? 1 : 0;
    p.out = reinterpret_cast<__half *>(out);
    p.partialO = workspace;
    p.partialML = workspace == nullptr ? nullptr : workspace + nChunks * rowsAll * hd;

    if (attentionUsesTensorCores(shape, nTokens)) {
        const dim3 grid(static_cast<unsigned>(ceilDiv(rowsTotal, kMmaRows)), static_cast<unsigned>(nChunks),
                        static_cast<unsigned>(shape.nKvHeads));
        if (hd == 64) {
            constexpr std::size_t smemBytes = MmaLayout<64>::bytes;
            cudaFuncSetAttribute(attentionMmaKernel<64>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(smemBytes));
            attentionMmaKernel<64><<<grid, kMmaThreads, smemBytes, s>>>(p);
        } else {
            constexpr std::size_t smemBytes = MmaLayout<128>::bytes;
            cudaFuncSetAttribute(attentionMmaKernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(smemBytes));
            attentionMmaKernel<128><<<grid, kMmaThreads, smemBytes, s>>>(p);
        }
    } else if (hd <= 64)
        launchAttentionRows<2>(p, rowsTotal, nChunks, shape.nKvHeads, s);
    else if (hd <= 128)
        launchAttentionRows<4>(p, rowsTotal, nChunks, shape.nKvHeads, s);
    else
        launchAttentionRows<8>(p, rowsTotal, nChunks, shape.nKvHeads, s);
    if (nChunks > 1)
        attentionMergeKernel<<<static_cast<unsigned>(rowsAll), kMergeThreads, 0, s>>>(
            p.partialO, p.partialML, static_cast<int>(nChunks), rowsAll, hd, p.out);
}

void siluMul(const float *gate, const float *up, std::int64_t count, Half *out, void *stream)
{
    if (count <= 0)
        return;
    const std::int64_t blocks = std::min<std::int64_t>(ceilDiv(count, kRowThreads), 65536);
    siluMulKernel<<<static_cast<unsigned>(blocks), kRowThreads, 0, asStream(stream)>>>(gate, up, count,
                                                                                       reinterpret_cast<__half *>(out));
}

void applyRepeatPenalty(float *logits, const std::int32_t *ids, std::int32_t nIds, float penalty, void *stream)
{
    if (nIds <= 0)
        return;
    const auto blocks = static_cast<unsigned>(ceilDiv(nIds, kRowThreads));
    repeatPenaltyKernel<<<blocks, kRowThreads, 0, asStream(stream)>>>(logits, ids, nIds, penalty);
}

std::size_t candidatesWorkspaceKeys(std::int32_t n, std::int32_t k)
{
    return 2 * static_cast<std::size_t>(ceilDiv(std::max(n, 1), kSelectSlots)) * static_cast<std::size_t>(k);
}

void selectCandidates(const float *logits, std::int32_t n, std::int32_t k, std::uint64_t *workspace,
                      std::uint64_t *out, void *stream)
{
    const cudaStream_t s = asStream(stream);
    if (n <= 0 || k <= 0 || k > kMaxDeviceCandidates || k > n) {
        unsupportedShapeKernel<<<0, 1, 0, s>>>(); // reported by the caller's cudaGetLastError
        return;
    }
    // Levels: every block keeps its best k of kSelectSlots keys, until one block is left. The
    // number of levels depends only on n and k, so a decode graph keeps its shape.
    std::uint64_t *buffers[2] = {workspace, workspace + candidatesWorkspaceKeys(n, k) / 2};
    const float *fromLogits = logits;
    const std::uint64_t *fromKeys = nullptr;
    std::int64_t count = n;
    for (int level = 0;; ++level) {
        const std::int64_t blocks = ceilDiv(count, kSelectSlots);
        std::uint64_t *dst = blocks == 1 ? out : buffers[level % 2];
        selectCandidatesKernel<<<static_cast<unsigned>(blocks), kSelectThreads, 0, s>>>(
            fromLogits, fromKeys, static_cast<int>(count), k, dst);
        if (blocks == 1)
            return;
        fromLogits = nullptr;
        fromKeys = dst;
        count = blocks * k;
    }
}

TokenCandidateBits decodeCandidateKey(std::uint64_t key)
{
    std::uint32_t u = static_cast<std::uint32_t>(key >> 32);
    u = (u & 0x80000000u) != 0 ? (u & 0x7fffffffu) : ~u;
    float logit = 0.0f;
    std::memcpy(&logit, &u, sizeof logit);
    return {static_cast<std::int32_t>(~static_cast<std::uint32_t>(key)), logit};
}

} // namespace kvchat::engine::cuda
