// SPDX-License-Identifier: MIT
// Kernel file owned by the CUDA-backend owner (STYLE.md §5 exception).
//
// Causal GQA attention over the paged fp16 KV (cuda_kernels.h): a CUDA-core kernel for decode steps
// and small batches, a tensor-core kernel for prefill, and the merge of context chunks. Launch
// shapes, and why:
//
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
//                     16x16x16, fp16 in, fp32 accumulate), the online softmax in fp32, each warp's Q
//                     and its fp32 O accumulators in registers (see the kernel). Shared memory:
//                     50 KiB at hd 64, 66 KiB at hd 128, with the opt-in attribute; at hd 128 the
//                     registers (196 a thread for sm_90) allow 2 blocks an SM.
// - attentionMerge    grid nTokens * nHeads, 128 threads. One block per (token, head): combines the
//                     chunks' partial results with weights exp(max_c - max) and writes fp16.
//
// Chunking (flash-decoding): nChunks = max(1, min(ceil(ctx / 256), 64, 1024 / nTokens)) with ctx =
// startPos + nTokens, chunk length ceil(ctx / nChunks); for a decode step (one token)
// min(64, ceil(ctx / 64) rounded up to a power of two). A decode step has only `group` rows per KV head, so its blocks are few
// (nKvHeads x nChunks) and each walks its chunk tile after tile: short chunks keep that chain at
// two tiles up to 4,096 positions (64 chunks), at the cost of the merge kernel past 64 positions.
// Big batches use one chunk; a decode step over 32k positions uses 64 chunks of 512.
#include "engine/backend/cuda/cuda_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <cuda_fp16.h>
#include <mma.h>

namespace kvchat::engine::cuda {
namespace {

#include "engine/backend/cuda/cuda_device_common.cuh"

// ---------------------------------------------------------------------------------------------
// Attention

constexpr int kAttnWarps = 4;
constexpr int kAttnThreads = 32 * kAttnWarps;
constexpr int kMaxRowsPerWarp = 4; // rows (token, query head) per warp; a block has kAttnWarps times more
constexpr int kKeyTile = 32;       // positions per shared-memory tile: one per lane
constexpr int kKeyPad = 4;         // K row stride hd + 4: conflict-free float4 reads
constexpr int kMergeThreads = 128;
constexpr int kChunkMinPositions = 256; // a chunk has at least this many positions (unless ctx is less)
constexpr int kDecodeChunkMinPositions = 64; // the same for a one-token step
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
    std::int64_t qStride; // floats from one token's q row to the next
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
    int chunkLen; // ceil((startPos + nTokens) / nChunks), nChunks = gridDim.y
    const std::int32_t *deviceStartPos; // when set, startPos (and so chunkLen) is read there
    int direct; // 1: one chunk, write the normalized output; 0: write partials
    __half *out;
    float *partialO;  // [nChunks][nTokens][nHeads][headDim]
    float *partialML; // [nChunks][nTokens][nHeads][2]: running max, sum
};

// A block's rows: block row r is flattened row rowBase + r = token * group + (head within the
// KV head's group). Query element d of row r (0 past the batch):
__device__ __forceinline__ float queryElement(const AttnParams &p, int kvHead, int rowBase, int nRows, int r, int d)
{
    if (r >= nRows)
        return 0.0f;
    const int row = rowBase + r;
    const int t = row / p.group;
    const int head = kvHead * p.group + (row - t * p.group);
    return p.q[static_cast<std::int64_t>(t) * p.qStride + static_cast<std::int64_t>(head) * p.headDim + d];
}

// Where flattened row `row` of a KV head goes: index [token][head] of the output rows.
__device__ __forceinline__ std::int64_t outputRow(const AttnParams &p, int kvHead, int row)
{
    const int t = row / p.group;
    return static_cast<std::int64_t>(t) * p.nHeads + kvHead * p.group + (row - t * p.group);
}

// The K row of position pos in the KV head's slice that starts at arenaHead (through the block
// table); its V row is blockTokens * kvDim elements further.
__device__ __forceinline__ const __half *keyRow(const AttnParams &p, const __half *arenaHead, int pos)
{
    const std::int64_t blockId = p.blockTable[pos / p.blockTokens];
    return arenaHead + static_cast<std::size_t>(blockId) * p.blockElements +
           static_cast<std::size_t>(pos % p.blockTokens) * p.kvDim;
}

// What one attention block works on: its KV head, chunk and rows (rowBase .. rowBase + nRows of
// the KV head's flattened rows, nRows >= 1 by the grid size), the positions it walks
// [chunkStart, end) (its chunk, cut at the last position its rows can see), and where its KV head's
// slice of this layer starts. Within a block: K rows of a layer at ((layer * 2 + 0) * blockTokens
// + row) * kvDim, V rows vOffset = blockTokens * kvDim elements further.
// The parameters as the block sees them: with deviceStartPos, the position is read from device
// memory and the chunk length recomputed from it (the same formula as the host's), so that a
// captured decode step replays at the next position unchanged.
__device__ __forceinline__ AttnParams atDevicePosition(AttnParams p)
{
    if (p.deviceStartPos != nullptr) {
        p.startPos = *p.deviceStartPos;
        const int nChunks = static_cast<int>(gridDim.y);
        p.chunkLen = (p.startPos + p.nTokens + nChunks - 1) / nChunks;
    }
    return p;
}

struct BlockWork
{
    int kvHead;
    int chunk;
    int rowBase;
    int nRows;
    int chunkStart;
    int end;
    std::size_t vOffset;
    const __half *arenaHead;
};

__device__ __forceinline__ BlockWork blockWork(const AttnParams &p, int rowsPerBlock)
{
    BlockWork w;
    w.kvHead = static_cast<int>(blockIdx.z);
    w.chunk = static_cast<int>(blockIdx.y);
    w.rowBase = static_cast<int>(blockIdx.x) * rowsPerBlock;
    w.nRows = min(rowsPerBlock, p.nTokens * p.group - w.rowBase);
    const int ctx = p.startPos + p.nTokens;
    w.chunkStart = w.chunk * p.chunkLen;
    const int chunkEnd = min(w.chunkStart + p.chunkLen, ctx);
    const int blockLast = p.startPos + (w.rowBase + w.nRows - 1) / p.group; // its last visible position
    w.end = min(chunkEnd, blockLast + 1);
    w.vOffset = static_cast<std::size_t>(p.blockTokens) * static_cast<std::size_t>(p.kvDim);
    w.arenaHead = p.arena + static_cast<std::size_t>(p.layer) * 2 * w.vOffset +
                  static_cast<std::size_t>(w.kvHead) * static_cast<std::size_t>(p.headDim);
    return w;
}

std::size_t attentionSmemBytes(int headDim, int rowsPerWarp)
{
    const std::size_t hd = static_cast<std::size_t>(headDim);
    const std::size_t rows = static_cast<std::size_t>(kAttnWarps * rowsPerWarp);
    return (rows * hd + kKeyTile * (hd + kKeyPad) + kKeyTile * hd) * sizeof(float);
}

// DPL: head dims per lane, headDim <= 32 * DPL. R: rows per warp (the block has kAttnWarps * R).
template <int DPL, int R> __global__ void __launch_bounds__(kAttnThreads) attentionKernel(const AttnParams params)
{
    // Everything it reads (q, the new position's K and V) may come from the kernel before it.
    waitForPrecedingGrid();
    allowOverlappedSuccessor();
    const AttnParams p = atDevicePosition(params);
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
    const BlockWork w = blockWork(p, kAttnRows);
    const int kvHead = w.kvHead, chunk = w.chunk, rowBase = w.rowBase, nRows = w.nRows;

    for (int idx = tid; idx < kAttnRows * hd; idx += kAttnThreads) {
        const int r = idx / hd;
        sQ[idx] = queryElement(p, kvHead, rowBase, nRows, r, idx - r * hd);
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

    const int chunkStart = w.chunkStart, end = w.end;
    const std::size_t vOffset = w.vOffset;
    const __half *arenaHead = w.arenaHead;

    for (int tileStart = chunkStart; tileStart < end; tileStart += kKeyTile) {
        const int nKeys = min(kKeyTile, end - tileStart);
        __syncthreads(); // the previous tile is no longer read (first pass: nothing to wait for)
        for (int idx = tid; idx < kKeyTile * hd4; idx += kAttnThreads) {
            const int j = idx / hd4;
            const int c = idx - j * hd4;
            float4 kValue = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            float4 vValue = kValue; // positions past the tile end stay zero (0 * garbage could be NaN)
            if (j < nKeys) {
                const __half *kRow = keyRow(p, arenaHead, tileStart + j);
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
        const std::int64_t outRow = outputRow(p, kvHead, rowBase + r);
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
// (16x16x16, fp16 inputs, fp32 accumulation). Q (times the softmax scale) and P are rounded to fp16
// (K and V are fp16 in the arena already); scores, the online softmax and the output accumulator O
// stay fp32.
// Per warp, in registers for the whole walk: its Q rows as A fragments, and O as HD / 16
// accumulator fragments. Each tile rescales O's rows by the softmax correction in place, which
// needs the row of each accumulator element: WMMA leaves that mapping unspecified, so the kernel
// reads it once from a fragment loaded from a tile whose elements are their own row numbers.
// Only the K/V tile is shared by the block (two block barriers a tile); S, the softmax and P are
// the warp's own rows (warp barriers). Shared memory (Q's staging reused for S): 66 KiB at hd 128,
// 50 KiB at hd 64; registers (196 a thread at hd 128 for sm_90, 128 at hd 64) allow 2 and 4 blocks
// an SM.

namespace wmma = nvcuda::wmma;

constexpr int kMmaRows = 64;       // rows per block: 4 warps x 16
constexpr int kMmaKeys = 64;       // positions per tile
constexpr int kMmaThreads = 128;   // 4 warps

constexpr std::size_t align32(std::size_t bytes)
{
    return (bytes + 31) / 32 * 32;
}

// Shared memory of attentionMmaKernel<HD>; every array starts 32-byte aligned (WMMA pointers must
// be), and row strides are padded so that rows do not all start in the same bank. Q is staged in
// fp16 where S later goes (the warps load their Q fragments before the first S is stored).
template <int HD> struct MmaLayout
{
    static constexpr int qStride = HD + 8;       // halves
    static constexpr int kvStride = HD + 8;      // halves, K and V
    static constexpr int sStride = kMmaKeys + 4; // floats
    static constexpr int pStride = kMmaKeys + 8; // halves
    static constexpr int tileStride = 16 + 4;    // floats: a warp's 16x16 scratch tile
    static constexpr std::size_t qs = 0;         // Q, then S
    static constexpr std::size_t k =
        qs + align32(std::max(sizeof(__half) * kMmaRows * qStride, sizeof(float) * kMmaRows * sStride));
    static constexpr std::size_t v = k + align32(sizeof(__half) * kMmaKeys * kvStride);
    static constexpr std::size_t p = v + align32(sizeof(__half) * kMmaKeys * kvStride);
    static constexpr std::size_t tile = p + align32(sizeof(__half) * kMmaRows * pStride); // per warp 16x16
    static constexpr std::size_t stats = tile + align32(sizeof(float) * (kMmaRows / 16) * 16 * tileStride);
    static constexpr std::size_t bytes = stats + sizeof(float) * 3 * kMmaRows; // max, sum, correction
};

using AccumulatorTile = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

template <int HD> __global__ void __launch_bounds__(kMmaThreads) attentionMmaKernel(const AttnParams params)
{
    waitForPrecedingGrid();
    allowOverlappedSuccessor();
    const AttnParams p = atDevicePosition(params);
    using L = MmaLayout<HD>;
    constexpr int kDimTiles = HD / 16;
    // WMMA pointers must be 32-byte aligned; every MmaLayout offset is, and so must the base be
    // (float4 alone promises 16).
    extern __shared__ __align__(128) float4 smemVec[];
    char *smem = reinterpret_cast<char *>(smemVec);
    __half *sQ = reinterpret_cast<__half *>(smem + L::qs);
    float *sS = reinterpret_cast<float *>(smem + L::qs);
    __half *sK = reinterpret_cast<__half *>(smem + L::k);
    __half *sV = reinterpret_cast<__half *>(smem + L::v);
    __half *sP = reinterpret_cast<__half *>(smem + L::p);
    float *sMax = reinterpret_cast<float *>(smem + L::stats);
    float *sSum = sMax + kMmaRows;
    float *sCorrection = sSum + kMmaRows;

    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid & 31;
    const int warp = tid >> 5;
    float *sTile = reinterpret_cast<float *>(smem + L::tile) + warp * 16 * L::tileStride; // the warp's own
    const BlockWork w = blockWork(p, kMmaRows);
    const int kvHead = w.kvHead, chunk = w.chunk, rowBase = w.rowBase, nRows = w.nRows;

    for (int idx = tid; idx < kMmaRows * HD; idx += kMmaThreads) {
        const int r = idx / HD;
        const int d = idx - r * HD;
        // Scaled before rounding: S comes out scaled, and |q| may be up to 1/scale (8 to 16)
        // times fp16's 65,504 before it overflows.
        sQ[r * L::qStride + d] = __float2half_rn(queryElement(p, kvHead, rowBase, nRows, r, d) * p.scale);
    }
    for (int r = tid; r < kMmaRows; r += kMmaThreads) {
        sMax[r] = -INFINITY;
        sSum[r] = 0.0f;
    }
    // Which row of the 16x16 tile each element of this lane's accumulator fragments is.
    for (int idx = lane; idx < 256; idx += 32)
        sTile[(idx / 16) * L::tileStride + idx % 16] = static_cast<float>(idx / 16);
    __syncthreads(); // Q staged (by all threads), the row tile (by the warp)

    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> q[kDimTiles];
#pragma unroll
    for (int t = 0; t < kDimTiles; ++t)
        wmma::load_matrix_sync(q[t], sQ + warp * 16 * L::qStride + t * 16, L::qStride);
    AccumulatorTile rowOf;
    wmma::load_matrix_sync(rowOf, sTile, L::tileStride, wmma::mem_row_major);
    AccumulatorTile o[kDimTiles];
#pragma unroll
    for (int t = 0; t < kDimTiles; ++t)
        wmma::fill_fragment(o[t], 0.0f);

    const int chunkStart = w.chunkStart, end = w.end;
    const std::size_t vOffset = w.vOffset;
    const __half *arenaHead = w.arenaHead;
    constexpr int hd4 = HD / 4;
    float *sRows = sS + warp * 16 * L::sStride; // the warp's rows of S
    __half *pRows = sP + warp * 16 * L::pStride;

    for (int tileStart = chunkStart; tileStart < end; tileStart += kMmaKeys) {
        const int nKeys = min(kMmaKeys, end - tileStart);
        // The previous tile's K and V are no longer read (and before the first tile: every warp
        // has its Q fragments, so S may overwrite the staged Q).
        __syncthreads();
        for (int idx = tid; idx < kMmaKeys * hd4; idx += kMmaThreads) {
            const int j = idx / hd4;
            const int c = idx - j * hd4;
            // Four halves (8 bytes) at a time, copied as they are: the arena is fp16 already.
            uint2 kBits = make_uint2(0u, 0u);
            uint2 vBits = kBits; // positions past the tile end stay zero (0 * garbage could be NaN)
            if (j < nKeys) {
                const __half *kRow = keyRow(p, arenaHead, tileStart + j);
                kBits = *reinterpret_cast<const uint2 *>(kRow + 4 * c);
                vBits = *reinterpret_cast<const uint2 *>(kRow + vOffset + 4 * c);
            }
            *reinterpret_cast<uint2 *>(sK + j * L::kvStride + 4 * c) = kBits;
            *reinterpret_cast<uint2 *>(sV + j * L::kvStride + 4 * c) = vBits;
        }
        __syncthreads();

        // S = Q K^T for the warp's 16 rows: K's rows are the columns of K^T (a col-major operand).
        {
            AccumulatorTile scores[kMmaKeys / 16];
#pragma unroll
            for (int n = 0; n < kMmaKeys / 16; ++n)
                wmma::fill_fragment(scores[n], 0.0f);
#pragma unroll
            for (int t = 0; t < kDimTiles; ++t)
#pragma unroll
                for (int n = 0; n < kMmaKeys / 16; ++n) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
                    wmma::load_matrix_sync(b, sK + n * 16 * L::kvStride + t * 16, L::kvStride);
                    wmma::mma_sync(scores[n], q[t], b, scores[n]);
                }
#pragma unroll
            for (int n = 0; n < kMmaKeys / 16; ++n)
                wmma::store_matrix_sync(sRows + n * 16, scores[n], L::sStride, wmma::mem_row_major);
        }
        __syncwarp(); // the warp's S in place for every lane (a lane reads what others stored)

        // Online softmax: a pair of lanes owns each of the warp's 16 rows, each lane half of the
        // tile's positions, so a row costs one shuffle for its max and one for its sum (a warp
        // reduction per row would chain 16 x 10 shuffles per tile).
        {
            constexpr int kHalf = kMmaKeys / 2;
            const int rw = lane >> 1; // the row within the warp's 16
            const int r = warp * 16 + rw;
            const int parity = lane & 1; // this lane's positions: 2j + parity (interleaved: the
                                         // pair's reads fall in different banks)
            const int lastPos = r < nRows ? p.startPos + (rowBase + r) / p.group : -1;
            float x[kHalf];
            float laneMax = -INFINITY;
#pragma unroll
            for (int j = 0; j < kHalf; ++j) {
                const int pos = 2 * j + parity;
                const bool visible = pos < nKeys && tileStart + pos <= lastPos;
                x[j] = visible ? sRows[rw * L::sStride + pos] : -INFINITY; // Q was scaled
                laneMax = fmaxf(laneMax, x[j]);
            }
            const float oldMax = sMax[r];
            const float newMax = fmaxf(oldMax, fmaxf(laneMax, __shfl_xor_sync(kFullMask, laneMax, 1)));
            const bool seen = newMax != -INFINITY; // the same in both lanes of the pair
            float laneSum = 0.0f;
#pragma unroll
            for (int j = 0; j < kHalf; ++j) {
                const float prob = seen ? expf(x[j] - newMax) : 0.0f; // exp(-inf) = 0 when hidden
                laneSum += prob;
                pRows[rw * L::pStride + 2 * j + parity] = __float2half_rn(prob);
            }
            const float tileSum = laneSum + __shfl_xor_sync(kFullMask, laneSum, 1);
            if (parity == 0) {
                const float correction = seen ? expf(oldMax - newMax) : 1.0f; // exp(-inf) = 0 before the first
                sMax[r] = newMax;
                sSum[r] = sSum[r] * correction + tileSum;
                sCorrection[r] = correction;
            }
        }
        __syncwarp(); // P and the corrections of the warp's rows in place

        // O = O * correction + P V for the warp's rows, O in registers.
        const float *correction = sCorrection + warp * 16;
#pragma unroll
        for (int t = 0; t < kDimTiles; ++t)
#pragma unroll
            for (int i = 0; i < o[t].num_elements; ++i)
                o[t].x[i] *= correction[static_cast<int>(rowOf.x[i])];
#pragma unroll
        for (int k0 = 0; k0 < kMmaKeys; k0 += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
            wmma::load_matrix_sync(a, pRows + k0, L::pStride);
#pragma unroll
            for (int t = 0; t < kDimTiles; ++t) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
                wmma::load_matrix_sync(b, sV + k0 * L::kvStride + t * 16, L::kvStride);
                wmma::mma_sync(o[t], a, b, o[t]);
            }
        }
    }

    // The warp's rows out, a 16x16 tile of O at a time through its scratch tile. Its own sums and
    // maxima: written by its lanes, seen after the warp barrier.
    __syncwarp();
    for (int t = 0; t < kDimTiles; ++t) {
        wmma::store_matrix_sync(sTile, o[t], L::tileStride, wmma::mem_row_major);
        __syncwarp();
        for (int idx = lane; idx < 256; idx += 32) {
            const int rw = idx / 16;
            const int r = warp * 16 + rw;
            const int d = t * 16 + idx % 16;
            if (r >= nRows)
                continue;
            const float value = sTile[rw * L::tileStride + idx % 16];
            const std::int64_t outRow = outputRow(p, kvHead, rowBase + r);
            if (p.direct) {
                // sum > 0: the only chunk starts at position 0, which every row sees.
                p.out[outRow * HD + d] = __float2half_rn(value / sSum[r]);
            } else {
                const std::int64_t slot = static_cast<std::int64_t>(chunk) * p.nTokens * p.nHeads + outRow;
                p.partialO[slot * HD + d] = value;
                if (d == 0) {
                    p.partialML[2 * slot] = sMax[r];
                    p.partialML[2 * slot + 1] = sSum[r];
                }
            }
        }
        __syncwarp(); // the tile is read before the next one is stored
    }
}

// One block per (token, head) row: out = sum_c w_c * O_c / sum_c w_c * l_c, w_c = exp(m_c - max m).
// Chunks with sum 0 (no visible position) are skipped; chunk 0 is never such a chunk.
__global__ void __launch_bounds__(kMergeThreads)
    attentionMergeKernel(const float *__restrict__ partialO, const float *__restrict__ partialML, int nChunks,
                         std::int64_t rowsAll, int headDim, __half *__restrict__ out)
{
    waitForPrecedingGrid();
    allowOverlappedSuccessor();
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

// The chunk count of a call with nTokens new tokens over ctx positions in all (see the top comment).
std::int64_t attentionChunks(std::int64_t nTokens, std::int64_t ctx)
{
    if (nTokens == 1) {
        // Rounded up to a power of two: a conversation's decode steps then come in 7 chunk counts
        // (1 to 64), each captured once as a graph, instead of a new one every 64 positions. A
        // chunk past the context is empty (max -inf, sum 0), which the merge skips.
        const std::int64_t byLength = ceilDiv(ctx, kDecodeChunkMinPositions);
        std::int64_t chunks = 1;
        while (chunks < byLength && chunks < kMaxChunks)
            chunks *= 2;
        return chunks;
    }
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
void launchAttention(const AttnParams &p, std::int64_t rowsTotal, std::int64_t nChunks, int nKvHeads, bool overlap,
                     cudaStream_t stream)
{
    const dim3 grid(static_cast<unsigned>(ceilDiv(rowsTotal, kAttnWarps * R)), static_cast<unsigned>(nChunks),
                    static_cast<unsigned>(nKvHeads));
    const std::size_t smemBytes = attentionSmemBytes(p.headDim, R);
    if (smemBytes > 48 * 1024)
        cudaFuncSetAttribute(attentionKernel<DPL, R>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smemBytes));
    launchKernel<attentionKernel<DPL, R>>(overlap, grid, kAttnThreads, smemBytes, stream, p);
}

// Rows per warp: as few as cover all rows of a small batch (a decode step of one token has `group`
// rows), so that no warp computes empty rows and one block still reads each K/V tile once.
template <int DPL>
void launchAttentionRows(const AttnParams &p, std::int64_t rowsTotal, std::int64_t nChunks, int nKvHeads,
                         bool overlap, cudaStream_t stream)
{
    if (rowsTotal <= kAttnWarps)
        launchAttention<DPL, 1>(p, rowsTotal, nChunks, nKvHeads, overlap, stream);
    else if (rowsTotal <= 2 * kAttnWarps)
        launchAttention<DPL, 2>(p, rowsTotal, nChunks, nKvHeads, overlap, stream);
    else
        launchAttention<DPL, kMaxRowsPerWarp>(p, rowsTotal, nChunks, nKvHeads, overlap, stream);
}

} // namespace

bool attentionUsesTensorCores(const AttentionShape &shape, std::int64_t nTokens)
{
    if (!attentionShapeSupported(shape) || (shape.headDim != 64 && shape.headDim != 128) ||
        nTokens * (shape.nHeads / shape.nKvHeads) < kMmaRows)
        return false;
    // Every GPU the backend takes (sm_80 and later) lets a block opt in to at least 99 KiB
    // (sm_86/89; A100 163 KiB, H100 227 KiB); checked all the same.
    const std::size_t needed = shape.headDim == 64 ? MmaLayout<64>::bytes : MmaLayout<128>::bytes;
    return needed <= maxOptInSharedBytes();
}
std::int64_t attentionContextChunks(std::int64_t nTokens, std::int32_t startPos)
{
    return nTokens <= 0 ? 1 : attentionChunks(nTokens, startPos + nTokens);
}

// Floats of workspace: partial outputs [nChunks][nTokens][nHeads][headDim] then (max, sum) pairs
// [nChunks][nTokens][nHeads][2], i.e. nChunks * nTokens * nHeads * (headDim + 2) for the call.
// Generous in two ways, so that one allocation sized for the largest batch and context covers every
// call: the context is taken as contextTokens + nTokens (right whether the caller counts the new
// tokens in contextTokens or not), and the value is the maximum over every batch size up to nTokens
// (the chunk count falls as the batch grows), which makes it non-decreasing in both arguments.
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
               std::int32_t startPos, float *workspace, Half *out, void *stream, const std::int32_t *deviceStartPos)
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
    p.qStride = shape.qStride > 0 ? shape.qStride : static_cast<std::int64_t>(shape.nHeads) * hd;
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
    p.deviceStartPos = deviceStartPos;
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
        launchAttentionRows<2>(p, rowsTotal, nChunks, shape.nKvHeads, shape.overlapPrevious, s);
    else if (hd <= 128)
        launchAttentionRows<4>(p, rowsTotal, nChunks, shape.nKvHeads, shape.overlapPrevious, s);
    else
        launchAttentionRows<8>(p, rowsTotal, nChunks, shape.nKvHeads, shape.overlapPrevious, s);
    if (nChunks > 1)
        launchKernel<attentionMergeKernel>(shape.overlapPrevious, static_cast<unsigned>(rowsAll), kMergeThreads, 0, s,
                                           static_cast<const float *>(p.partialO), static_cast<const float *>(p.partialML),
                                           static_cast<int>(nChunks), rowsAll, hd, p.out);
}

} // namespace kvchat::engine::cuda
