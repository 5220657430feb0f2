// SPDX-License-Identifier: MIT
// The CUDA backend's internals, shared by its two source files: cuda_backend_load.cpp (device
// query, weight upload, scratch reserved at load) and cuda_backend.cpp (the forward pass: inputs,
// kernels and GEMMs, decode graphs). Not part of the engine's interface (cuda_backend.h is).
#pragma once

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/cuda_kernels.h"
#include "engine/backend/cuda/cuda_kv_memory.h"
#include "engine/backend/packed_weights.h"
#include "engine/core/thread_pool.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <cublas_v2.h>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace kvchat::engine::cuda {

inline constexpr std::size_t kMiB = std::size_t(1) << 20;

inline std::size_t sz(std::int64_t n)
{
    return static_cast<std::size_t>(n);
}

// One device allocation; freed with its owner.
class DeviceBuffer
{
public:
    DeviceBuffer() = default;
    ~DeviceBuffer()
    {
        if (m_data != nullptr)
            cudaFree(m_data);
    }
    DeviceBuffer(const DeviceBuffer &) = delete;
    DeviceBuffer &operator=(const DeviceBuffer &) = delete;

    // Grows to at least bytes (contents are not kept). Throws CudaFailure when memory runs out.
    void reserve(std::size_t bytes)
    {
        if (bytes <= m_bytes)
            return;
        if (m_data != nullptr)
            KVCHAT_CUDA_CHECK(cudaFree(m_data));
        m_data = nullptr;
        m_bytes = 0;
        if (const cudaError_t error = cudaMalloc(&m_data, bytes); error != cudaSuccess) {
            // Not sticky, but cudaMalloc also sets the last error: without this, the next launch
            // check (of a later, successful forward pass) would report it.
            cudaGetLastError();
            m_data = nullptr;
            throwFailure("cudaMalloc", describe(error), __FILE__, __LINE__);
        }
        m_bytes = bytes;
    }
    template <typename T> T *as() const { return static_cast<T *>(m_data); }
    std::size_t bytes() const { return m_bytes; }

private:
    void *m_data = nullptr;
    std::size_t m_bytes = 0;
};

// Page-locked host memory (cudaHostAlloc), so device-to-host copies into it are true DMA and may
// be part of a graph.
class PinnedBuffer
{
public:
    explicit PinnedBuffer(std::size_t bytes) { KVCHAT_CUDA_CHECK(cudaHostAlloc(&m_data, bytes, cudaHostAllocDefault)); }
    ~PinnedBuffer() { cudaFreeHost(m_data); }
    PinnedBuffer(const PinnedBuffer &) = delete;
    PinnedBuffer &operator=(const PinnedBuffer &) = delete;
    template <typename T> T *as() const { return static_cast<T *>(m_data); }

private:
    void *m_data = nullptr;
};

// A matrix of nOut rows of nIn elements (ggml orientation: row r is output r), fp16 or packed
// (engine/backend/packed_weights.h).
struct DeviceMatrix
{
    DeviceWeights weights;
    std::int64_t nOut = 0;
    std::int64_t nIn = 0;
    // A packed layer matrix may also have an fp16 copy (dequantized from the codes on the device,
    // so the same values), which a prompt's GEMMs read instead of dequantizing the codes each time
    // (see CudaBackend::State::promptCopies).
    const Half *promptF16 = nullptr;
    // Stacked parts of different formats (a Q4_K_M layer's 4-bit Q and K with its 8-bit V), each
    // in its own allocation: their views, in order; `weights` is then the first part's. Empty
    // when the whole has one format (one allocation, rows stacked).
    std::vector<DeviceMatrix> mixedParts;
};

// The matrix as parts of one format each, in row order: its mixed parts, or itself.
inline std::span<const DeviceMatrix> formatParts(const DeviceMatrix &m)
{
    return m.mixedParts.empty() ? std::span(&m, 1) : std::span(m.mixedParts);
}
// Bytes of a matrix on the device (its codes and (scale, min) pairs; fp16: its elements).
std::size_t deviceMatrixBytes(const DeviceMatrix &m);
// Whether any of its rows are packed (a prompt then dequantizes them, or reads an fp16 copy).
inline bool holdsPackedWeights(const DeviceMatrix &m)
{
    return m.weights.format != WeightFormat::F16 || !m.mixedParts.empty();
}

// Q, K and V are one matrix (wqkv: their rows stacked), as are gate and up (wGateUp): a prompt's
// projections are then one GEMM each instead of three and two (fewer launches, and K and V's
// narrow GEMMs no longer leave most SMs idle); wq, wk, wv, wGate, wUp are views into them, for the
// decode kernels.
struct DeviceLayer
{
    const float *attnNorm = nullptr;
    const float *ffnNorm = nullptr;
    DeviceMatrix wqkv, wGateUp;
    DeviceMatrix wq, wk, wv, wo, wGate, wUp, wDown;
};

// Where a micro-batch's inputs sit in the pinned and device input buffers, in 4-byte words:
// [startPos, nPenalised, pad, pad | tokens | block table (capacity) | penalised ids (capacity) |
// cos/sin rows]. Every region's place depends only on the token count, so a decode step's
// pointers are the same at every position. The cos/sin rows are uploaded only for positions past
// the device's RoPE table (ropeTable). The device pointers are filled in by uploadInputs.
struct MicroBatchInputs
{
    std::size_t tokens = 0, blockTable = 0, penalised = 0, cosSin = 0, end = 0;
    bool ropeFromTable = false;               // cosSin is the table of positions, not rows uploaded here
    const std::int32_t *deviceArgs = nullptr; // [0]: the first position, [1]: the penalised count
    const std::int32_t *deviceTokens = nullptr;
    const float *deviceCosSin = nullptr;
    const std::int32_t *deviceBlockTable = nullptr;
    const std::int32_t *devicePenalised = nullptr;
};

struct DecodeStepShape
{
    std::int64_t attentionChunks = 0;
    bool logitsOut = false;
    bool candidates = false;
    std::int32_t k = 0;
    std::int64_t penaltyBlocks = 0; // applyRepeatPenalty's grid (0: no penalty)
    std::uint32_t penaltyBits = 0;  // the penalty, passed by value
    bool decodeGemv = false;
    bool overlappedLaunches = false;
    bool int8Dots = false;
    bool ropeFromTable = false;
    const void *kvArena = nullptr;
    std::uint64_t scratchGeneration = 0;
    bool operator==(const DecodeStepShape &) const = default;
};

// Shapes kept at once: a conversation's steps use up to 7 chunk counts (1 to 64, powers of two),
// with candidates out (generation) or logits; more come only from several pools or settings.
inline constexpr std::size_t kMaxDecodeGraphs = 8;

struct CudaBackend::State
{
    const LlamaModel *model = nullptr;
    LlamaConfig config;
    CudaDeviceInfo device;
    KvLayout kvLayout;
    std::shared_ptr<CudaKvMemory> kvMemory;
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;

    // Weights: one allocation per tensor, owned here. Quantized GGUF matrices stay packed
    // (4- or 8-bit codes, see packed_weights.h) unless KVCHAT_CUDA_WEIGHTS=f16: decode reads
    // them as they are. A prompt's GEMMs read a layer matrix's fp16 copy where there is one
    // (promptCopies), else the codes dequantized into `dequantized`, a slice of rows at a time:
    // a write and a read of fp16 on top of the GEMM, which for a prompt of a few dozen tokens
    // more than doubles its weight traffic.
    std::vector<std::unique_ptr<DeviceBuffer>> weightBuffers;
    std::size_t weightBytes = 0;
    bool packWeights = true;
    // fp16 copies of the packed layer matrices, for prompts: kept when the packed weights and the
    // copies together take at most 40% of the free GPU memory (KVCHAT_CUDA_WEIGHTS=auto, the
    // default), so that a big GPU runs prompts at fp16 speed and decode at the packed codes'
    // speed, while a GPU the copies would crowd (whose KV tier they would shrink) keeps only the
    // codes; never with KVCHAT_CUDA_WEIGHTS=packed.
    bool promptCopies = false;
    DeviceBuffer dequantized;
    DeviceMatrix embedding, output;
    const float *outputNorm = nullptr;
    std::vector<DeviceLayer> layers;

    // Activations for up to microBatch tokens ([tokens][width], row-major).
    std::int64_t microBatch = 0;      // what the scratch was reserved for (chooseMicroBatch)
    std::int64_t microBatchInUse = 0; // <= microBatch (setMicroBatchTokens)
    // qkv: a token's q, k and v side by side; gateUp: its gate and up side by side.
    DeviceBuffer x, xNorm, qkv, attnOut, gateUp, act, logits, workspace;
    // cuBLAS's workspace, owned here: with its default one, every graph capture may make cuBLAS
    // allocate another (PyTorch #83461).
    DeviceBuffer gemmWorkspace;
    // Next-token candidates: the selection's levels, its k keys on the device and their pinned
    // host copy.
    DeviceBuffer candidateWorkspace, candidateKeys;
    std::unique_ptr<PinnedBuffer> hostCandidateKeys;

    // A micro-batch's inputs (MicroBatchInputs), written into pinned memory and uploaded with
    // one asynchronous copy into a device buffer of the same layout. The upload event says when
    // the pinned copy may be rewritten. Capacities grow when a call needs more (a context past
    // the model's training length, a longer penalty list); that reallocates, as does any scratch
    // buffer growing, and bumps scratchGeneration, which retires the captured decode graphs.
    std::int64_t blockTableCapacity = 0; // entries
    std::int64_t penalisedCapacity = 0;  // ids
    // RoPE's cos/sin for positions [0, ropeTablePositions), computed once at load (the host's
    // double-precision fillRopeTable, as the CPU backend uses): a prompt of 2,048 tokens would
    // otherwise spend ~1-2 ms of host time on them before the GPU starts.
    DeviceBuffer ropeTable;
    std::int64_t ropeTablePositions = 0;
    std::unique_ptr<PinnedBuffer> hostInputs;
    DeviceBuffer inputs;
    cudaEvent_t inputsUploaded = nullptr;
    std::uint64_t scratchGeneration = 0;
    std::vector<std::int32_t> hostBlockTable;

    // Decode steps run their projections through the fused matrix-vector kernels (cuda_gemv.cu)
    // rather than cuBLAS: on unless KVCHAT_CUDA_DECODE_GEMV=0, setDecodeGemv(false), or a width
    // the kernels do not take.
    bool decodeGemv = false;
    bool decodeGemvSupported = false;
    // The fused kernels of a decode step are launched overlapped (CudaBackend::overlappedLaunches).
    bool overlappedLaunches = false;
    // Their products with packed weights take int8 inputs (CudaBackend::int8Dots).
    bool int8Dots = false;
    std::string overlapRefused; // why they were turned off after a failed step, if they were
    // The decode step's graphs (see CudaBackend::DecodeGraphStats), one per shape of step
    // (DecodeStepShape), each captured once and replayed from then on.
    struct DecodeGraph
    {
        DecodeStepShape shape;
        cudaGraphExec_t exec = nullptr;
    };
    std::vector<DecodeGraph> decodeGraphs; // oldest first, at most kMaxDecodeGraphs
    DecodeGraphStats graphStats;

    ~State()
    {
        for (const DecodeGraph &g : decodeGraphs)
            cudaGraphExecDestroy(g.exec);
        if (inputsUploaded != nullptr)
            cudaEventDestroy(inputsUploaded);
        if (cublas != nullptr)
            cublasDestroy(cublas);
        if (stream != nullptr)
            cudaStreamDestroy(stream);
    }

    const float *uploadFloats(const std::vector<float> &values);
    DeviceMatrix uploadMatrix(ThreadPool &pool, const WeightMatrix &w, std::vector<std::uint8_t> &staging);
    // The matrices (of one width) stacked: the whole, then a view of each part. Packed when every
    // part's type packs, else fp16; with mixedFormats each part in its own packed format
    // (DeviceMatrix::mixedParts), else all in the widest, rows stacked in one allocation.
    std::vector<DeviceMatrix> uploadStacked(ThreadPool &pool, std::initializer_list<const WeightMatrix *> parts,
                                            std::vector<std::uint8_t> &staging, bool mixedFormats = false);
    std::vector<DeviceMatrix> uploadStackedAs(ThreadPool &pool, std::initializer_list<const WeightMatrix *> parts,
                                              WeightFormat format, std::vector<std::uint8_t> &staging);
    // A layer's stacked matrix: uploadStacked, plus the fp16 copies of promptCopies.
    std::vector<DeviceMatrix> uploadLayerMatrix(ThreadPool &pool, std::initializer_list<const WeightMatrix *> parts,
                                                std::vector<std::uint8_t> &staging, bool mixedFormats = false);
    // Rows [rowBegin, rowBegin + rows) of a packed (or mixed) matrix as fp16 into out, on the
    // compute stream: dequantizeWeights part by part.
    void dequantizeRows(const DeviceMatrix &w, std::int64_t rowBegin, std::int64_t rows, Half *out);
    // Whether the KV a forward pass writes comes from packed weights: the embedding or a layer
    // matrix packed (the classifier alone does not touch the KV).
    bool kvFromPackedWeights() const;
    // Rows of a packed matrix that one GEMM of a prompt takes (both with and without fp16
    // copies, so that the two give the same results): as many as 128 MiB of fp16 hold.
    static std::int64_t promptSliceRows(const DeviceMatrix &w);
    std::int64_t chooseMicroBatch(std::size_t freeBytes) const;
    void allocateScratch();
    std::size_t scratchBytes() const;
    // Grows buffer to bytes; a reallocation retires the decode graphs (their kernels hold the old
    // address).
    void reserveScratch(DeviceBuffer &buffer, std::size_t bytes);
    MicroBatchInputs inputLayout(std::int64_t nTokens, std::size_t nPenalised) const;
    void reserveInputs(std::int64_t blocks, std::size_t nPenalised);
    // Writes the micro-batch's inputs into the pinned buffer and queues their upload.
    MicroBatchInputs uploadInputs(std::span<const TokenId> ids, std::int32_t startPos,
                                  std::span<const std::int32_t> penalised);
    // y (+)= x · Wᵀ for nTokens rows of x: cuBLAS on fp16 weights; packed weights go through
    // the matrix-vector kernel for one token, else are dequantized a slice of rows at a time.
    void gemm(const DeviceMatrix &w, const Half *x, std::int64_t nTokens, float *y, float beta);
    void gemmF16(const Half *w, std::int64_t nOut, std::int64_t nIn, std::int64_t ldy, const Half *x,
                 std::int64_t nTokens, float *y, float beta);
    // One micro-batch. hostLogits: where its logits go (nullptr: it has none to give). request
    // (only for the last micro-batch of a forwardCandidates call): its last position's candidates
    // go to *candidates instead.
    // waitLayers: a layered restore is in flight; each layer waits for its rows before using them.
    void forwardMicroBatch(std::span<const TokenId> tokens, std::int32_t startPos, const KvTarget &kvBase,
                           LogitsMode mode, float *hostLogits, const CandidateRequest *request,
                           std::vector<TokenCandidate> *candidates, bool waitLayers);
    // The kernels and GEMMs of one micro-batch, from the embedding to the logits of rows
    // [firstLogit, n) (none when firstLogit == n), then, with a request, the candidates of the
    // last row; its inputs are on the device already (in), and the kernels read the position and
    // the penalty count from there, so that a captured step replays at any position.
    void enqueueLayers(std::int64_t n, std::int32_t startPos, const KvTarget &kv, const MicroBatchInputs &in,
                       std::int64_t firstLogit, const CandidateRequest *request, bool waitLayers);
    // Whether a micro-batch of n tokens launches its kernels overlapped.
    bool usesOverlappedLaunches(std::int64_t n, bool waitLayers) const;
    // The errors a driver that does not take overlapped launches (or not in a graph) gives.
    static bool refusalError(cudaError_t error);
    // Everything a captured one-token step holds fixed: its kernels and their launch shapes,
    // the scalar arguments passed by value, and the buffers' addresses.
    DecodeStepShape decodeStepShape(std::int32_t startPos, const KvTarget &kv, const MicroBatchInputs &in,
                                    bool logitsOut, const CandidateRequest *request) const;
    // Launches the decode graph of this shape, capturing and instantiating it with enqueue()
    // the first time the shape is seen.
    void launchAsGraph(const DecodeStepShape &shape, const std::function<void()> &enqueue);
};

// The most tokens one pass through the layers takes (longer inputs are split): as many as the GPU
// can hold activations for, because the projections' GEMMs fill a big GPU only with many tokens.
// At 256 tokens a 2,048 x 2,048 projection is 32 output tiles of 128 x 128 for an H100's 132 SMs;
// at 2,048 tokens it is 256. Activations take ~80 KiB per token at TinyLlama's shape (~170 MiB
// for 2,048) and ~200 KiB at Llama-3-8B's; a GPU where 2,048 tokens' worth would take more than
// an eighth of the memory left after the weights gets fewer, never under kMinMicroBatch.
inline constexpr std::int64_t kMaxMicroBatch = 2048;
inline constexpr std::int64_t kMinMicroBatch = 256;

} // namespace kvchat::engine::cuda
