// SPDX-License-Identifier: MIT
// Kernel file owned by the CUDA-backend owner (STYLE.md §5 exception).
//
// The decode step's projections (cuda_kernels.h): one token, so each is a matrix-vector product
// that reads every weight once and is bound by memory bandwidth. cuBLAS runs each one as its own
// GEMM with n = 1; these kernels also do the work around the products, so that a layer is 4
// launches of them (5 with attention) instead of 7 GEMMs and 5 small kernels (at 1B parameters and
// below, the gaps between launches cost about as much as reading the weights):
//   - up to three matrices that read the same input in one launch (Q, K and V);
//   - the RMSNorm of the residual stream computed by each block from the fp32 stream (the same
//     arithmetic as rmsNormKernel, so the fp16 input values are identical to the unfused path's);
//   - the output added into the residual stream (Wo, down), or, for the FFN, SiLU(gate) * up
//     formed from the two rows a warp computes and written as the down projection's fp16 input;
//   - for Q, K and V, RoPE and the KV write of ropeAndStoreKv: a warp computes a pair of rows,
//     rotates them, and writes q, or the K/V elements of the position's KV rows in fp16.
//
// - gemvKernel   grid ceil(rows / 8), 256 threads (8 warps, one output row each; for SwiGLU one
//                gate row and the matching up row). The block first stages the input vector as
//                fp16 in shared memory (dim * 2 bytes), then each warp streams its weight row(s) in
//                16-byte read-only loads (8 halves per lane and step, coalesced over the warp), multiplies by
//                the staged input (conflict-free 16-byte shared loads) in fp32, reduces with
//                shuffles, and lane 0 writes the row. Unrolled by 4 so each lane has 64 bytes of
//                weights in flight: with ~20 resident warps per SM that covers HBM's latency.
//                dim must be a multiple of 8 (gemvSupports); above 48 KiB of input (dim > 24,576)
//                the opt-in shared memory attribute must have been set (gemvReserveSharedMemory).
//                One matrix of >= 16,384 rows (the classifier) takes 4 rows a warp; Q/K/V with
//                RoPE take a pair of rows a warp. Matrices of different formats in one call (a
//                Q4_K_M layer's 4-bit Q and K and 8-bit V) take a launch per run of one format.
//                Packed weights (cuda_packed_weights.cuh): a 16-byte load is one group of 32
//                four-bit or 16 eight-bit codes with its (scale, min); the block also stages each
//                group's sum of inputs (fp32, dim / 32 or dim / 16 floats after the input), so a
//                group's product is scale * sum(code * x) + min * sum(x). Per weight that is
//                about 4.5 instructions (an AND/OR pair, an exact fp16 subtract, conversions to
//                fp32 and an FMA for every two codes): at H100's bandwidth a 4-bit matrix arrives
//                at about 6e12 weights/s, and 132 SMs issue about 3.3e13 thread-instructions/s, so
//                this path is at the edge of being instruction-bound.
//                With int8 dots (GemvInput::int8Dots; the backend's opt-in, CudaBackend::int8Dots)
//                the block instead quantizes its input to int8 per group (stageInputInt8) and a
//                group's sum(code * q) is exact integer arithmetic, four products a dp4a (8-bit
//                codes offset by -128 to fit its signed bytes): about 1 instruction a weight, as
//                llama.cpp's MMVQ. The price is the input's rounding to 8 bits per group (what the
//                CPU backend's integer path also does). kvchat-bench-gpu-kernels times both.
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

constexpr int kGemvWarps = 8;
constexpr int kGemvThreads = 32 * kGemvWarps;
constexpr int kGemvUnroll = 4;
constexpr int kManyRows = 16384;    // a single matrix at least this tall ...
constexpr int kManyRowsPerWarp = 4; // ... takes this many rows a warp

enum class GemvOut
{
    Store,      // y = W x
    Accumulate, // y += W x
    SwiGlu,     // act = fp16(silu(Wgate x) * (Wup x))
    QkvRope,    // q = RoPE(Wq x); K = RoPE(Wk x), V = Wv x into the KV rows of the position
};

struct GemvParams
{
    const __half *vector;     // fp16 input, or null: normalize residual
    const float *residual;    // fp32 [dim]
    const float *normWeight;  // [dim]
    float eps;
    int dim;
    int nMatrices;
    DeviceWeights w[kMaxGemvMatrices]; // one format (QkvRope: the launch's pairs of rows read one)
    int rowEnd[kMaxGemvMatrices]; // cumulative output rows
    float *y[kMaxGemvMatrices];
    __half *act; // SwiGlu: [rowEnd[0]]; w[0] gate, w[1] up
    // QkvRope: w[0..2] = Wq, Wk, Wv, y[0] = q; the pairs of stacked Q|K|V rows this launch
    // computes, [firstPair, endPair) (a launch per run of matrices of one format); the position's
    // cos/sin row of the table, and its K and V rows, as ropeAndStoreKv finds them.
    int firstPair;
    int endPair;
    const float *cosSin;
    const std::int32_t *devicePos;
    int nRot;
    int headDim;
    KvTarget kv;
};

// Eight fp16 weights times eight fp16 inputs, summed into acc in fp32.
__device__ __forceinline__ float dot8(const uint4 &w, const uint4 &x, float acc)
{
    const unsigned wBits[4] = {w.x, w.y, w.z, w.w};
    const unsigned xBits[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        __half2 wh, xh;
        std::memcpy(&wh, &wBits[i], sizeof wh);
        std::memcpy(&xh, &xBits[i], sizeof xh);
        const float2 wf = __half22float2(wh), xf = __half22float2(xh);
        acc = fmaf(wf.x, xf.x, acc);
        acc = fmaf(wf.y, xf.y, acc);
    }
    return acc;
}

// Where input element i is staged: in order for fp16 weights; for packed ones interleaved by
// chunk (uint4 q of chunk c at uint4 q * chunks + c), so that the lanes of a warp, each reading
// its own chunk's q-th 16 bytes, read consecutive addresses (in order, 32 or 64 bytes apart, they
// would conflict 2 or 4 ways in the shared memory banks).
template <WeightFormat F> __device__ __forceinline__ int stagedIndex(int i, int chunks)
{
    if constexpr (F == WeightFormat::F16) {
        return i;
    } else {
        constexpr int kElements = kChunkElements<F>;
        const int inChunk = i % kElements;
        return ((inChunk / 8) * chunks + i / kElements) * 8 + inChunk % 8;
    }
}

// Stages the block's input vector in shared memory as fp16: copied, or RMSNorm(residual) * weight
// computed exactly as rmsNormKernel does (the same 256-thread reduction, so the same values).
// Packed weights: interleaved (stagedIndex), then each group's sum of staged inputs, in fp32,
// into sSum.
template <WeightFormat F> __device__ __forceinline__ void stageInput(const GemvParams &p, __half *sIn, float *sSum)
{
    static_assert(kGemvThreads == kRowThreads, "the fused RMSNorm must reduce as rmsNormKernel does");
    constexpr int kInputChunks = kChunkElements<F> / 8; // uint4s of input per weight chunk
    const int tid = static_cast<int>(threadIdx.x);
    const int chunks = p.dim / kChunkElements<F>;
    uint4 *dst = reinterpret_cast<uint4 *>(sIn);
    if (p.vector != nullptr) {
        const uint4 *src = reinterpret_cast<const uint4 *>(p.vector);
        for (int u = tid; u < p.dim / 8; u += kGemvThreads)
            dst[(u % kInputChunks) * chunks + u / kInputChunks] = src[u];
    } else {
        const float *row = p.residual;
        const float scale = blockRmsScale(row, p.dim, p.eps);
        for (int i = tid; i < p.dim; i += kGemvThreads)
            sIn[stagedIndex<F>(i, chunks)] = __float2half_rn(row[i] * scale * p.normWeight[i]);
    }
    if constexpr (F != WeightFormat::F16) {
        __syncthreads();
        // A thread per group, reading its uint4s as the products will (consecutive across lanes).
        for (int c = tid; c < chunks; c += kGemvThreads) {
            float sum = 0.0f;
            for (int q = 0; q < kInputChunks; ++q) {
                const uint4 x = dst[q * chunks + c];
                const unsigned bits[4] = {x.x, x.y, x.z, x.w};
                for (int j = 0; j < 4; ++j) {
                    __half2 h;
                    std::memcpy(&h, &bits[j], sizeof h);
                    const float2 f = __half22float2(h);
                    sum += f.x + f.y;
                }
            }
            sSum[c] = sum;
        }
    }
}

// Int8 staging (packed weights, GemvInput::int8Dots): the fp16 input values of stageInput (the
// same fp16 RMSNorm output), quantized per weight group as the CPU backend quantizes activations
// (cpu_int8_matmul.h): d = amax / 127, q = rint(x * (1 / d)). A warp takes 32 elements at a time
// (one 4-bit group, or two 8-bit groups as half-warps), loaded coalesced and reduced with
// shuffles; sQ gets the codes in their codes' byte order (int8StagedByte), sScale each group's d,
// sSum each group's d * sum(q) (the min term's sum of inputs).
template <WeightFormat F>
__device__ __forceinline__ void stageInputInt8(const GemvParams &p, std::int8_t *sQ, float *sScale, float *sSum)
{
    constexpr int kGroup = kChunkElements<F>;
    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid & 31;
    const int chunks = p.dim / kGroup;
    const float normScale = p.vector != nullptr ? 0.0f : blockRmsScale(p.residual, p.dim, p.eps);
    // Whole warps loop (the shuffles need every lane); a lane past dim (dim 16 mod 32, 8-bit
    // groups) is a half-warp's worth of zeros that writes nothing.
    for (int base = (tid >> 5) * 32; base < p.dim; base += kGemvThreads) {
        const int i = base + lane;
        const bool inside = i < p.dim;
        float x = 0.0f;
        if (inside)
            x = __half2float(p.vector != nullptr ? p.vector[i]
                                                 : __float2half_rn(p.residual[i] * normScale * p.normWeight[i]));
        float amax = fabsf(x);
#pragma unroll
        for (int offset = kGroup / 2; offset > 0; offset >>= 1)
            amax = fmaxf(amax, __shfl_xor_sync(kFullMask, amax, offset));
        const float d = amax / 127.0f;
        const float q = rintf(x * (d > 0.0f ? 1.0f / d : 0.0f));
        float sum = q; // |sum| <= 32 * 127: exact in fp32
#pragma unroll
        for (int offset = kGroup / 2; offset > 0; offset >>= 1)
            sum += __shfl_xor_sync(kFullMask, sum, offset);
        if (!inside)
            continue; // after the shuffles
        const int chunk = i / kGroup, element = i % kGroup;
        sQ[int8StagedByte<F>(chunk, element, chunks)] = static_cast<std::int8_t>(q);
        if (element == 0) {
            sScale[chunk] = d;
            sSum[chunk] = d * sum;
        }
    }
}

// Row r of a matrix, as the warp loops read it.
struct RowRef
{
    const uint4 *chunks;
    const __half2 *scaleMin; // packed only
};

template <WeightFormat F> __device__ __forceinline__ RowRef rowRef(const DeviceWeights &w, std::int64_t r, int dim)
{
    if constexpr (F == WeightFormat::F16)
        return RowRef{rowChunks<F>(w, r, dim), nullptr};
    else
        return RowRef{rowChunks<F>(w, r, dim), rowScaleMin<F>(w, r, dim)};
}

// The block's staged input, in shared memory, as the products read it.
struct StagedInput
{
    const uint4 *values; // fp16 (stagedIndex), or int8 (int8StagedByte) with int8 dots
    const float *sums;   // packed: each group's sum of inputs (int8 dots: d * sum(q))
    const float *scales; // int8 dots: each group's d
};

// One 16-byte chunk c (of `chunks` a row) times the staged input, added to acc.
template <WeightFormat F, bool Int8>
__device__ __forceinline__ float chunkDot(const uint4 &w, __half2 scaleMin, const StagedInput &in, int c, int chunks,
                                          float acc)
{
    if constexpr (F == WeightFormat::F16) {
        return dot8(w, in.values[c], acc);
    } else if constexpr (!Int8) {
        const float2 sm = __half22float2(scaleMin);
        const float codeDot = chunkCodeDot<kCodeBits<F>>(w, in.values + c, chunks);
        return fmaf(sm.x, codeDot, fmaf(sm.y, in.sums[c], acc));
    } else {
        // scale * d * sum(code * q) + min * d * sum(q); 8-bit codes come back offset by -128,
        // whose 128 * sum(q) joins the min term.
        const float2 sm = __half22float2(scaleMin);
        const int codeDot = chunkCodeDotInt8<F>(w, in.values + c, chunks);
        const float minTerm = F == WeightFormat::Q8G16 ? fmaf(128.0f, sm.x, sm.y) : sm.y;
        return fmaf(sm.x * in.scales[c], static_cast<float>(codeDot), fmaf(minTerm, in.sums[c], acc));
    }
}

// The warp's dot products of `rows` weight rows with the staged input; every lane returns the
// full sums.
template <WeightFormat F, bool Int8, int Rows>
__device__ __forceinline__ void warpDots(const RowRef (&rows)[Rows], const StagedInput &in, int dim,
                                         float (&out)[Rows])
{
    constexpr bool kPacked = F != WeightFormat::F16;
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const int chunks = dim / kChunkElements<F>;
    float acc[Rows];
#pragma unroll
    for (int r = 0; r < Rows; ++r)
        acc[r] = 0.0f;
    int c = lane;
    // Unrolled: the loads of kGemvUnroll steps are issued before their products.
    for (; c + 32 * (kGemvUnroll - 1) < chunks; c += 32 * kGemvUnroll) {
        uint4 w[Rows][kGemvUnroll];
        __half2 sm[Rows][kGemvUnroll] = {}; // packed only
#pragma unroll
        for (int r = 0; r < Rows; ++r)
#pragma unroll
            for (int u = 0; u < kGemvUnroll; ++u) {
                w[r][u] = __ldg(rows[r].chunks + c + 32 * u);
                if constexpr (kPacked)
                    sm[r][u] = __ldg(rows[r].scaleMin + c + 32 * u);
            }
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u)
#pragma unroll
            for (int r = 0; r < Rows; ++r)
                acc[r] = chunkDot<F, Int8>(w[r][u], sm[r][u], in, c + 32 * u, chunks, acc[r]);
    }
    for (; c < chunks; c += 32) {
#pragma unroll
        for (int r = 0; r < Rows; ++r) {
            const __half2 sm = kPacked ? __ldg(rows[r].scaleMin + c) : __half2();
            acc[r] = chunkDot<F, Int8>(__ldg(rows[r].chunks + c), sm, in, c, chunks, acc[r]);
        }
    }
#pragma unroll
    for (int r = 0; r < Rows; ++r)
        out[r] = warpSum(acc[r]);
}

// The rows a warp computes and where its results go, from the parameters alone: known (and the
// weights prefetched) before the kernel waits for the one before it.
template <int N> struct WarpRows
{
    RowRef rows[N];
    bool valid = false; // false: the warp is past the last row (warp-uniform)
    int m = 0;          // QkvRope, plain: the rows' matrix
    int r = 0;          // the first row, within its matrix
    float *y = nullptr; // plain: the matrix's output
};

// Pairs of rows (SwiGLU: the gate and up rows; QkvRope: the two rows RoPE rotates together), or
// Rows rows of one large matrix, or one row.
template <GemvOut Out, int Rows> constexpr int kWarpRows = Out == GemvOut::SwiGlu || Out == GemvOut::QkvRope ? 2 : Rows;

// A warp past the last row gets the last row (or pair) with valid false: every pointer stays in
// its matrix, and no row is chosen under a condition (which cost the larger kernels spills).
template <GemvOut Out, int Rows, WeightFormat F>
__device__ __forceinline__ WarpRows<kWarpRows<Out, Rows>> warpRows(const GemvParams &p)
{
    WarpRows<kWarpRows<Out, Rows>> out;
    const int row = static_cast<int>(blockIdx.x) * kGemvWarps + (static_cast<int>(threadIdx.x) >> 5);
    if constexpr (Rows > 1) {
        static_assert(Out != GemvOut::SwiGlu && Out != GemvOut::QkvRope);
        // One matrix, Rows consecutive rows per warp; past the end, a row is read again (row
        // nOut - 1) and not written.
        const int nOut = p.rowEnd[0];
        out.r = row * Rows;
        out.valid = out.r < nOut;
#pragma unroll
        for (int i = 0; i < Rows; ++i)
            out.rows[i] = rowRef<F>(p.w[0], min(out.r + i, nOut - 1), p.dim);
    } else if constexpr (Out == GemvOut::QkvRope) {
        // A pair of rows (2i, 2i + 1): Q, K and V have even widths, so a pair never straddles two
        // matrices.
        const int pair = p.firstPair + row;
        out.valid = pair < p.endPair;
        const int first = 2 * min(pair, p.endPair - 1);
        out.m = first < p.rowEnd[0] ? 0 : first < p.rowEnd[1] ? 1 : 2;
        // By value, chosen by comparisons: indexing the parameter arrays with a run-time index
        // (or a pointer into them) would copy them to local memory.
        const DeviceWeights w = out.m == 0 ? p.w[0] : out.m == 1 ? p.w[1] : p.w[2];
        out.r = first - (out.m == 0 ? 0 : out.m == 1 ? p.rowEnd[0] : p.rowEnd[1]);
        out.rows[0] = rowRef<F>(w, out.r, p.dim);
        out.rows[1] = rowRef<F>(w, out.r + 1, p.dim);
    } else if constexpr (Out == GemvOut::SwiGlu) {
        out.valid = row < p.rowEnd[0];
        out.r = min(row, p.rowEnd[0] - 1);
        out.rows[0] = rowRef<F>(p.w[0], out.r, p.dim);
        out.rows[1] = rowRef<F>(p.w[1], out.r, p.dim);
    } else {
        const int rows = p.nMatrices == 1 ? p.rowEnd[0] : p.nMatrices == 2 ? p.rowEnd[1] : p.rowEnd[2];
        out.valid = row < rows;
        const int last = min(row, rows - 1);
        DeviceWeights w = p.w[0]; // by value, as above
        out.y = p.y[0];
        out.r = last;
        if (last >= p.rowEnd[0]) {
            const bool third = last >= p.rowEnd[1];
            w = third ? p.w[2] : p.w[1];
            out.y = third ? p.y[2] : p.y[1];
            out.r = last - (third ? p.rowEnd[1] : p.rowEnd[0]);
        }
        out.rows[0] = rowRef<F>(w, out.r, p.dim);
    }
    return out;
}

// Every 128-byte line of the warp's rows (codes, and packed (scale, min) pairs) into L2, a lane a
// line: the first offset 128 * lane, then every 32 lines, and the row's last byte.
__device__ __forceinline__ void prefetchBytes(const void *start, int bytes, int lane)
{
    constexpr int kLine = 128;
    const char *base = static_cast<const char *>(start);
    for (int b = lane * kLine; b < bytes + kLine - 1; b += 32 * kLine)
        prefetchToL2(base + min(b, bytes - 1));
}

template <WeightFormat F, int N> __device__ __forceinline__ void prefetchRows(const RowRef (&rows)[N], int dim)
{
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const int chunks = dim / kChunkElements<F>;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        prefetchBytes(rows[i].chunks, chunks * 16, lane);
        if constexpr (F != WeightFormat::F16)
            prefetchBytes(rows[i].scaleMin, chunks * 4, lane);
    }
}

// Rows: output rows per warp (1, or for one large matrix kManyRowsPerWarp; see gemv()). Int8:
// packed weights' products in integers (stageInputInt8, chunkCodeDotInt8).
// Before it waits for the kernel before it (an overlapped launch, see cuda_device_common.cuh), a
// block only finds its rows and prefetches their weights into L2; so even without overlap the
// weights are on their way while the block stages (and normalizes) its input.
template <GemvOut Out, int Rows, WeightFormat F, bool Int8>
__global__ void __launch_bounds__(kGemvThreads) gemvKernel(const GemvParams p)
{
    {
        // Found again after the staging: held across it, the rows cost the larger kernels spills.
        const WarpRows<kWarpRows<Out, Rows>> early = warpRows<Out, Rows, F>(p);
        if (early.valid)
            prefetchRows<F>(early.rows, p.dim);
    }
    waitForPrecedingGrid();
    allowOverlappedSuccessor();

    extern __shared__ __align__(16) float4 smemVec[]; // 16-byte loads of the staged input
    StagedInput in{};
    if constexpr (Int8) {
        static_assert(F != WeightFormat::F16);
        auto *sQ = reinterpret_cast<std::int8_t *>(smemVec);
        float *sScale = reinterpret_cast<float *>(sQ + p.dim); // dim: whole 16-byte chunks
        float *sSum = sScale + p.dim / kChunkElements<F>;
        stageInputInt8<F>(p, sQ, sScale, sSum);
        in = StagedInput{reinterpret_cast<const uint4 *>(sQ), sSum, sScale};
    } else {
        __half *sIn = reinterpret_cast<__half *>(smemVec);
        float *sSum = reinterpret_cast<float *>(sIn + p.dim); // packed: the groups' input sums
        stageInput<F>(p, sIn, sSum);
        in = StagedInput{reinterpret_cast<const uint4 *>(sIn), sSum, nullptr};
    }
    __syncthreads();
    const WarpRows<kWarpRows<Out, Rows>> mine = warpRows<Out, Rows, F>(p);
    if (!mine.valid)
        return; // warp-uniform, after the block's last barrier

    const int lane = static_cast<int>(threadIdx.x) & 31;
    float dots[kWarpRows<Out, Rows>];
    warpDots<F, Int8, kWarpRows<Out, Rows>>(mine.rows, in, p.dim, dots);
    if (lane != 0)
        return;
    if constexpr (Rows > 1) {
#pragma unroll
        for (int i = 0; i < Rows; ++i)
            if (mine.r + i < p.rowEnd[0]) {
                float *y = p.y[0] + mine.r + i;
                *y = Out == GemvOut::Accumulate ? *y + dots[i] : dots[i];
            }
    } else if constexpr (Out == GemvOut::QkvRope) {
        const int pos = *p.devicePos;
        const int r = mine.r;
        float a = dots[0], b = dots[1];
        const int i = (r / 2) % (p.headDim / 2); // the pair's index within its head
        if (mine.m < 2 && i < p.nRot / 2) {      // as ropeStoreKernel rotates
            const float *cs = p.cosSin + static_cast<std::int64_t>(pos) * p.nRot;
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float ra = a * c - b * s;
            const float rb = a * s + b * c;
            a = ra;
            b = rb;
        }
        if (mine.m == 0) {
            p.y[0][r] = a;
            p.y[0][r + 1] = b;
        } else {
            const KvTarget &kv = p.kv;
            const std::int64_t blockId = kv.blockTable[pos / kv.blockTokens];
            const std::size_t rowInBlock = static_cast<std::size_t>(pos % kv.blockTokens);
            const std::size_t kvRow =
                (static_cast<std::size_t>(kv.layer) * 2 + (mine.m == 1 ? 0 : 1)) * kv.blockTokens + rowInBlock;
            __half *dst = reinterpret_cast<__half *>(kv.arena) +
                          static_cast<std::size_t>(blockId) * kv.blockElements + kvRow * kv.kvDim;
            dst[r] = __float2half_rn(a);
            dst[r + 1] = __float2half_rn(b);
        }
    } else if constexpr (Out == GemvOut::SwiGlu) {
        const float g = dots[0];
        p.act[mine.r] = __float2half_rn(g / (1.0f + expf(-g)) * dots[1]); // as siluMulKernel
    } else {
        mine.y[mine.r] = Out == GemvOut::Accumulate ? mine.y[mine.r] + dots[0] : dots[0];
    }
}

// Dynamic shared memory of a launch: the fp16 input, and for packed weights each group's sum; with
// int8 dots, the int8 input and each group's scale and sum.
std::size_t smemBytes(WeightFormat format, bool int8, std::int32_t dim)
{
    const auto elements = static_cast<std::size_t>(dim);
    if (format == WeightFormat::F16)
        return elements * sizeof(__half);
    const auto groups = static_cast<std::size_t>(dim / weightChunkElements(format));
    return int8 ? elements + 2 * groups * sizeof(float) : elements * sizeof(__half) + groups * sizeof(float);
}

// The largest a launch of width dim may take (16-byte packed groups are the smallest: 8-bit; int8
// staging takes less than fp16).
std::size_t largestSmemBytes(std::int32_t dim)
{
    return std::max(smemBytes(WeightFormat::F16, false, dim), smemBytes(WeightFormat::Q8G16, false, dim));
}

// The fused RMSNorm's static shared memory (warpSums, rowScale: 36 bytes), rounded up.
constexpr std::size_t kStaticSmem = 64;

// The staged input plus the static shared memory fit.
bool widthFits(std::int32_t dim)
{
    return dim > 0 && dim % 8 == 0 && largestSmemBytes(dim) + kStaticSmem <= maxOptInSharedBytes();
}

bool inputSupported(const GemvInput &in)
{
    return widthFits(in.dim) && (in.vector != nullptr || (in.residual != nullptr && in.normWeight != nullptr));
}

// Each matrix's chunks divide the input width (matrices of different formats go in separate
// launches, see forEachFormatRun; SwiGLU's two, read by one warp, must share one).
bool weightsSupported(const DeviceWeights *w, int n, std::int32_t dim)
{
    for (int m = 0; m < n; ++m)
        if (dim % weightChunkElements(w[m].format) != 0 || (w[m].format != WeightFormat::F16 && w[m].scaleMin == nullptr))
            return false;
    return true;
}

// Calls launch(begin, end) for each run [begin, end) of consecutive matrices of one format: a
// launch reads one format (its kernel is compiled for it). A Q4_K_M layer's Q and K are 4-bit and
// its V 8-bit: two launches rather than Q and K held in 8 bits (twice their bytes) for V's sake.
template <class Launch> void forEachFormatRun(const DeviceWeights *w, int n, Launch &&launch)
{
    for (int begin = 0, end = 1; begin < n; begin = end++) {
        while (end < n && w[end].format == w[begin].format)
            ++end;
        launch(begin, end);
    }
}

// Dynamic shared memory the kernels may take: what 48 KiB leaves next to the static shared memory
// (the limit without opting in counts both), or what gemvReserveSharedMemory set (at load, so that
// no attribute is set while a decode step is being captured as a graph).
std::size_t g_reservedSmem = 48 * 1024 - kStaticSmem;

template <GemvOut Out, int Rows, WeightFormat F, bool Int8>
void launchGemvAs(const GemvParams &p, int rows, const GemvInput &in, cudaStream_t stream)
{
    const std::size_t bytes = smemBytes(F, Int8, p.dim);
    if (bytes > g_reservedSmem) {
        unsupportedShapeKernel<<<0, 1, 0, stream>>>(); // gemvReserveSharedMemory was not called for it
        return;
    }
    const auto blocks = static_cast<unsigned>(ceilDiv(rows, kGemvWarps * Rows));
    launchKernel<gemvKernel<Out, Rows, F, Int8>>(in.overlapPrevious, blocks, kGemvThreads, bytes, stream, p);
}

template <GemvOut Out, int Rows>
void launchGemv(const GemvParams &p, WeightFormat format, int rows, const GemvInput &in, cudaStream_t stream)
{
    switch (format) {
    case WeightFormat::F16:
        launchGemvAs<Out, Rows, WeightFormat::F16, false>(p, rows, in, stream);
        return;
    case WeightFormat::Q4G32:
        if (in.int8Dots)
            launchGemvAs<Out, Rows, WeightFormat::Q4G32, true>(p, rows, in, stream);
        else
            launchGemvAs<Out, Rows, WeightFormat::Q4G32, false>(p, rows, in, stream);
        return;
    case WeightFormat::Q8G16:
        if (in.int8Dots)
            launchGemvAs<Out, Rows, WeightFormat::Q8G16, true>(p, rows, in, stream);
        else
            launchGemvAs<Out, Rows, WeightFormat::Q8G16, false>(p, rows, in, stream);
        return;
    }
}

template <GemvOut Out, int Rows, WeightFormat F, bool Int8> bool reserveFor(int bytes)
{
    return cudaFuncSetAttribute(gemvKernel<Out, Rows, F, Int8>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) ==
           cudaSuccess;
}

template <WeightFormat F, bool Int8> bool reserveAll(int bytes)
{
    return reserveFor<GemvOut::Store, 1, F, Int8>(bytes) && reserveFor<GemvOut::Accumulate, 1, F, Int8>(bytes) &&
           reserveFor<GemvOut::Store, kManyRowsPerWarp, F, Int8>(bytes) &&
           reserveFor<GemvOut::Accumulate, kManyRowsPerWarp, F, Int8>(bytes) &&
           reserveFor<GemvOut::SwiGlu, 1, F, Int8>(bytes) && reserveFor<GemvOut::QkvRope, 1, F, Int8>(bytes);
}

GemvParams paramsFor(const GemvInput &in)
{
    GemvParams p{};
    p.vector = reinterpret_cast<const __half *>(in.vector);
    p.residual = in.residual;
    p.normWeight = in.normWeight;
    p.eps = in.eps;
    p.dim = in.dim;
    return p;
}

} // namespace

bool overlappedLaunchesSupported()
{
    static const bool supported = [] {
        // The kernels' wait is compiled in for sm_90 and later (cuda_device_common.cuh): ptxVersion
        // is the architecture the running code was compiled for (also when the driver JIT-compiled
        // it for a newer GPU). Every kernel file is built with the same architectures (one CMake
        // target), so one kernel answers for all; the backend runs on device 0 only.
        int device = 0, major = 0;
        cudaFuncAttributes attributes{};
        if (cudaGetDevice(&device) != cudaSuccess ||
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
            cudaFuncGetAttributes(&attributes,
                                  reinterpret_cast<const void *>(&gemvKernel<GemvOut::Store, 1, WeightFormat::F16, false>)) !=
                cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        return major >= 9 && attributes.ptxVersion >= 90;
    }();
    return supported;
}

bool gemvSupports(std::int32_t dim)
{
    return widthFits(dim);
}

bool gemvReserveSharedMemory(std::int32_t maxDim)
{
    if (!widthFits(maxDim))
        return false;
    const std::size_t bytes = largestSmemBytes(maxDim);
    if (bytes <= g_reservedSmem)
        return true;
    const int value = static_cast<int>(bytes);
    if (!reserveAll<WeightFormat::F16, false>(value) || !reserveAll<WeightFormat::Q4G32, false>(value) ||
        !reserveAll<WeightFormat::Q8G16, false>(value) || !reserveAll<WeightFormat::Q4G32, true>(value) ||
        !reserveAll<WeightFormat::Q8G16, true>(value)) {
        cudaGetLastError();
        return false;
    }
    g_reservedSmem = bytes;
    return true;
}

void gemv(const GemvInput &in, const GemvMatrix *matrices, int nMatrices, bool accumulate, void *stream)
{
    const cudaStream_t s = asStream(stream);
    std::int64_t rows = 0;
    DeviceWeights weights[kMaxGemvMatrices];
    for (int m = 0; m < nMatrices && m < kMaxGemvMatrices; ++m) {
        rows += matrices[m].nOut;
        weights[m] = matrices[m].w;
    }
    if (!inputSupported(in) || nMatrices < 1 || nMatrices > kMaxGemvMatrices || rows > INT_MAX ||
        !weightsSupported(weights, nMatrices, in.dim)) {
        unsupportedShapeKernel<<<0, 1, 0, s>>>();
        return;
    }
    if (rows == 0)
        return;
    forEachFormatRun(weights, nMatrices, [&](int begin, int endMatrix) {
        GemvParams p = paramsFor(in);
        p.nMatrices = endMatrix - begin;
        int end = 0;
        for (int m = begin; m < endMatrix; ++m) {
            end += matrices[m].nOut;
            p.w[m - begin] = matrices[m].w;
            p.rowEnd[m - begin] = end;
            p.y[m - begin] = matrices[m].y;
        }
        if (end == 0)
            return;
        const WeightFormat format = weights[begin].format;
        // One large matrix (the classifier: 32k to 152k rows) takes kManyRowsPerWarp rows a warp:
        // with one, its 4,000 to 19,000 blocks would each stage (and normalize) the input again,
        // reading about half as many bytes from L2 as the weights from memory; it still has >= 512
        // blocks.
        const bool manyRows = p.nMatrices == 1 && end >= kManyRows;
        if (accumulate && manyRows)
            launchGemv<GemvOut::Accumulate, kManyRowsPerWarp>(p, format, end, in, s);
        else if (accumulate)
            launchGemv<GemvOut::Accumulate, 1>(p, format, end, in, s);
        else if (manyRows)
            launchGemv<GemvOut::Store, kManyRowsPerWarp>(p, format, end, in, s);
        else
            launchGemv<GemvOut::Store, 1>(p, format, end, in, s);
    });
}

void gemvQkvRope(const GemvInput &in, const GemvMatrix *qkv, const float *cosSinByPosition, std::int32_t nRot,
                 std::int32_t headDim, const KvTarget &kv, const std::int32_t *devicePos, void *stream)
{
    const cudaStream_t s = asStream(stream);
    const DeviceWeights weights[3] = {qkv[0].w, qkv[1].w, qkv[2].w};
    if (!inputSupported(in) || !weightsSupported(weights, 3, in.dim) || headDim <= 0 || headDim % 2 != 0 ||
        qkv[0].nOut % 2 != 0 || qkv[1].nOut != kv.kvDim || qkv[2].nOut != kv.kvDim || kv.kvDim % 2 != 0) {
        unsupportedShapeKernel<<<0, 1, 0, s>>>();
        return;
    }
    GemvParams p = paramsFor(in);
    p.nMatrices = 3;
    int end = 0;
    for (int m = 0; m < 3; ++m) {
        end += qkv[m].nOut;
        p.w[m] = qkv[m].w;
        p.rowEnd[m] = end;
        p.y[m] = qkv[m].y;
    }
    p.cosSin = cosSinByPosition;
    p.devicePos = devicePos;
    p.nRot = nRot;
    p.headDim = headDim;
    p.kv = kv;
    // A warp per pair of rows; a launch per run of matrices of one format.
    forEachFormatRun(weights, 3, [&](int begin, int endMatrix) {
        p.firstPair = (begin == 0 ? 0 : p.rowEnd[begin - 1]) / 2;
        p.endPair = p.rowEnd[endMatrix - 1] / 2;
        if (p.endPair > p.firstPair)
            launchGemv<GemvOut::QkvRope, 1>(p, weights[begin].format, p.endPair - p.firstPair, in, s);
    });
}

void gemvSwiGlu(const GemvInput &in, const DeviceWeights &wGate, const DeviceWeights &wUp, std::int32_t nFf, Half *act,
                void *stream)
{
    const cudaStream_t s = asStream(stream);
    const DeviceWeights weights[2] = {wGate, wUp};
    if (!inputSupported(in) || !weightsSupported(weights, 2, in.dim) || wGate.format != wUp.format || nFf < 0) {
        unsupportedShapeKernel<<<0, 1, 0, s>>>();
        return;
    }
    if (nFf == 0)
        return;
    GemvParams p = paramsFor(in);
    p.nMatrices = 2;
    p.w[0] = wGate;
    p.w[1] = wUp;
    p.rowEnd[0] = nFf;
    p.act = reinterpret_cast<__half *>(act);
    launchGemv<GemvOut::SwiGlu, 1>(p, wGate.format, nFf, in, s);
}

} // namespace kvchat::engine::cuda
