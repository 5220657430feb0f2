// SPDX-License-Identifier: MIT
// Host side of the CUDA backend: device buffers, weight upload, and the order of kernels and GEMMs
// of one forward pass. Kernels are in cuda_kernels.cu.
#include "engine/backend/cuda/cuda_backend.h"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/cuda_kernels.h"
#include "engine/backend/cuda/cuda_kv_memory.h"
#include "engine/backend/rope_table.h"
#include "engine/core/thread_pool.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <cublas_v2.h>
#include <functional>
#include <string_view>

namespace kvchat::engine {

Result<std::unique_ptr<Backend>> makeCudaBackend(const LlamaModel &model, int nThreads, std::int32_t kvBlockTokens)
{
    auto backend = cuda::CudaBackend::create(model, nThreads, kvBlockTokens);
    if (!backend)
        return backend.error();
    return std::unique_ptr<Backend>(std::move(backend).value());
}

std::string cudaUnavailableReason()
{
    auto device = cuda::firstCudaDevice();
    return device ? std::string() : device.error().message;
}

namespace cuda {

namespace {

constexpr std::size_t kMiB = std::size_t(1) << 20;

std::size_t sz(std::int64_t n)
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

// An fp16 matrix of nOut rows of nIn elements (ggml orientation: row r is output r).
struct DeviceMatrix
{
    const Half *data = nullptr;
    std::int64_t nOut = 0;
    std::int64_t nIn = 0;
};

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

} // namespace

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
    bool ropeFromTable = false;
    const void *kvArena = nullptr;
    std::uint64_t scratchGeneration = 0;
    bool operator==(const DecodeStepShape &) const = default;
};

// Shapes kept at once: a conversation's steps use up to 7 chunk counts (1 to 64, powers of two),
// with candidates out (generation) or logits; more come only from several pools or settings.
constexpr std::size_t kMaxDecodeGraphs = 8;

struct CudaBackend::State
{
    const LlamaModel *model = nullptr;
    LlamaConfig config;
    CudaDeviceInfo device;
    KvLayout kvLayout;
    std::shared_ptr<CudaKvMemory> kvMemory;
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;

    // Weights: one allocation per tensor, owned here.
    std::vector<std::unique_ptr<DeviceBuffer>> weightBuffers;
    std::size_t weightBytes = 0;
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
    DeviceMatrix uploadMatrix(ThreadPool &pool, const WeightMatrix &w, std::vector<Half> &staging);
    // The matrices (of one width) with their rows stacked in one allocation: the whole, then a
    // view of each part.
    std::vector<DeviceMatrix> uploadStacked(ThreadPool &pool, std::initializer_list<const WeightMatrix *> parts,
                                            std::vector<Half> &staging);
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
    void gemm(const DeviceMatrix &w, const Half *x, std::int64_t nTokens, float *y, float beta);
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
constexpr std::int64_t kMaxMicroBatch = 2048;
constexpr std::int64_t kMinMicroBatch = 256;

Result<CudaDeviceInfo> firstCudaDevice()
{
    int count = 0;
    const cudaError_t error = cudaGetDeviceCount(&count);
    if (error != cudaSuccess) {
        cudaGetLastError();
        return makeError("no usable CUDA GPU: " + describe(error));
    }
    if (count == 0)
        return makeError("no CUDA GPU found");
    cudaDeviceProp prop{};
    if (const cudaError_t e = cudaGetDeviceProperties(&prop, 0); e != cudaSuccess)
        return makeError("cannot query CUDA device 0: " + describe(e));
    CudaDeviceInfo info;
    info.index = 0;
    info.name = prop.name;
    info.computeCapability = prop.major * 10 + prop.minor;
    info.multiprocessors = prop.multiProcessorCount;
    info.totalBytes = prop.totalGlobalMem;
    if (cudaSetDevice(0) == cudaSuccess)
        cudaMemGetInfo(&info.freeBytes, &info.totalBytes);
    return info;
}

const float *CudaBackend::State::uploadFloats(const std::vector<float> &values)
{
    auto buffer = std::make_unique<DeviceBuffer>();
    buffer->reserve(values.size() * sizeof(float));
    KVCHAT_CUDA_CHECK(
        cudaMemcpy(buffer->as<void>(), values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice));
    weightBytes += buffer->bytes();
    const float *p = buffer->as<float>();
    weightBuffers.push_back(std::move(buffer));
    return p;
}

DeviceMatrix CudaBackend::State::uploadMatrix(ThreadPool &pool, const WeightMatrix &w, std::vector<Half> &staging)
{
    return uploadStacked(pool, {&w}, staging).front();
}

std::vector<DeviceMatrix> CudaBackend::State::uploadStacked(ThreadPool &pool,
                                                            std::initializer_list<const WeightMatrix *> parts,
                                                            std::vector<Half> &staging)
{
    const std::int64_t nIn = (*parts.begin())->nIn;
    std::int64_t nOut = 0;
    for (const WeightMatrix *w : parts)
        nOut += w->nOut;
    auto buffer = std::make_unique<DeviceBuffer>();
    buffer->reserve(sz(nOut * nIn) * sizeof(Half));
    std::vector<DeviceMatrix> views{DeviceMatrix{buffer->as<Half>(), nOut, nIn}};
    // Dequantized on the host (every GGUF type the engine reads), rounded to fp16, copied up in
    // slices of rows so the staging buffer stays ~64 MiB whatever the matrix.
    const std::int64_t rowsPerSlice = std::max<std::int64_t>(1, sz(64 * kMiB) / sizeof(Half) / sz(nIn));
    Half *partBase = buffer->as<Half>();
    for (const WeightMatrix *part : parts) {
        const WeightMatrix &w = *part;
        staging.resize(sz(std::min(rowsPerSlice, w.nOut) * w.nIn));
        for (std::int64_t r0 = 0; r0 < w.nOut; r0 += rowsPerSlice) {
            const std::int64_t rows = std::min(rowsPerSlice, w.nOut - r0);
            pool.parallelFor(rows, [&](std::int64_t begin, std::int64_t end, int) {
                std::vector<float> row(sz(w.nIn));
                for (std::int64_t r = begin; r < end; ++r) {
                    dequantizeRow(w.type, w.row(r0 + r), row.data(), w.nIn);
                    Half *out = staging.data() + r * w.nIn;
                    for (std::int64_t i = 0; i < w.nIn; ++i)
                        out[i] = floatToHalf(row[sz(i)]);
                }
            });
            KVCHAT_CUDA_CHECK(cudaMemcpy(partBase + r0 * w.nIn, staging.data(), sz(rows * w.nIn) * sizeof(Half),
                                         cudaMemcpyHostToDevice));
        }
        views.push_back(DeviceMatrix{partBase, w.nOut, w.nIn});
        partBase += w.nOut * w.nIn;
    }
    weightBytes += buffer->bytes();
    weightBuffers.push_back(std::move(buffer));
    return views;
}

std::int64_t CudaBackend::State::chooseMicroBatch(std::size_t freeBytes) const
{
    const LlamaConfig &c = config;
    const std::size_t qDim = sz(c.nHeads) * sz(c.headDim);
    // The per-token buffers of allocateScratch, and the attention workspace's share.
    const std::size_t perToken = sz(c.nEmbd) * sizeof(float) + std::max(sz(c.nEmbd), qDim) * sizeof(Half) +
                                 qDim * (sizeof(float) + sizeof(Half)) + 2 * sz(c.kvDim()) * sizeof(float) +
                                 sz(c.nFf) * (2 * sizeof(float) + sizeof(Half)) + sizeof(std::int32_t) +
                                 sz(c.nRot) * sizeof(float) + sz(c.nHeads) * sz(c.headDim + 2) * sizeof(float);
    std::int64_t n = kMaxMicroBatch;
    while (n > kMinMicroBatch && sz(n) * perToken > freeBytes / 8)
        n /= 2;
    return n;
}

void CudaBackend::State::allocateScratch()
{
    const LlamaConfig &c = config;
    const std::size_t n = sz(microBatch);
    const std::size_t qDim = sz(c.nHeads) * sz(c.headDim);
    x.reserve(n * sz(c.nEmbd) * sizeof(float));
    xNorm.reserve(n * std::max(sz(c.nEmbd), qDim) * sizeof(Half));
    qkv.reserve(n * (qDim + 2 * sz(c.kvDim())) * sizeof(float));
    attnOut.reserve(n * qDim * sizeof(Half));
    gateUp.reserve(n * 2 * sz(c.nFf) * sizeof(float));
    act.reserve(n * sz(c.nFf) * sizeof(Half));
    logits.reserve(sz(c.nVocab) * sizeof(float)); // grows for LogitsMode::All
    // What a turn would otherwise grow into, up to the model's context length: a chat turn then
    // never allocates GPU memory, so running out of it can only happen here, at load, where the
    // engine falls back to the CPU with the reason (vLLM likewise reserves its peak activation
    // memory up front). The attention workspace is bounded (nTokens x chunks <= 1024, see
    // attentionWorkspaceFloats); the penalised ids are at most one per position.
    const AttentionShape shape{c.nHeads, c.nKvHeads, c.headDim, 1.0f};
    workspace.reserve(attentionWorkspaceFloats(shape, microBatch, c.nCtxTrain) * sizeof(float));
    reserveInputs(c.nCtxTrain / kvLayout.blockTokens + 2, sz(std::max(c.nCtxTrain, 1)));
    // Up to 32k positions (16 MiB at nRot 128); later positions upload their rows per micro-batch.
    ropeTablePositions = std::clamp<std::int64_t>(c.nCtxTrain, 1, 32768);
    std::vector<float> table(sz(ropeTablePositions) * sz(c.nRot));
    fillRopeTable(c, model->ropeFreqFactors(), 0, ropeTablePositions, table.data());
    ropeTable.reserve(table.size() * sizeof(float));
    KVCHAT_CUDA_CHECK(
        cudaMemcpy(ropeTable.as<void>(), table.data(), table.size() * sizeof(float), cudaMemcpyHostToDevice));
    candidateWorkspace.reserve(candidatesWorkspaceKeys(c.nVocab, std::min(kMaxDeviceCandidates, c.nVocab)) *
                               sizeof(std::uint64_t));
    candidateKeys.reserve(sz(kMaxDeviceCandidates) * sizeof(std::uint64_t));
}

std::size_t CudaBackend::State::scratchBytes() const
{
    std::size_t total = 0;
    for (const DeviceBuffer *b : {&x, &xNorm, &qkv, &attnOut, &gateUp, &act, &logits, &inputs, &ropeTable, &workspace,
                                  &gemmWorkspace, &candidateWorkspace, &candidateKeys})
        total += b->bytes();
    return total;
}

void CudaBackend::State::reserveScratch(DeviceBuffer &buffer, std::size_t bytes)
{
    if (bytes <= buffer.bytes())
        return;
    buffer.reserve(bytes);
    ++scratchGeneration;
}

MicroBatchInputs CudaBackend::State::inputLayout(std::int64_t nTokens, std::size_t nPenalised) const
{
    // Every region starts 16-byte aligned.
    const auto align4 = [](std::size_t words) { return (words + 3) / 4 * 4; };
    MicroBatchInputs in;
    in.tokens = 4;
    in.blockTable = align4(in.tokens + sz(nTokens));
    in.penalised = align4(in.blockTable + sz(blockTableCapacity));
    in.cosSin = align4(in.penalised + sz(penalisedCapacity));
    in.end = in.penalised + nPenalised; // the cos/sin rows, when needed, are a second copy
    return in;
}

void CudaBackend::State::reserveInputs(std::int64_t blocks, std::size_t nPenalised)
{
    if (hostInputs != nullptr && blocks <= blockTableCapacity && nPenalised <= sz(penalisedCapacity))
        return;
    blockTableCapacity = std::max(blockTableCapacity, blocks);
    penalisedCapacity = std::max<std::int64_t>(penalisedCapacity, static_cast<std::int64_t>(nPenalised));
    const MicroBatchInputs largest = inputLayout(microBatch, sz(penalisedCapacity));
    const std::size_t bytes = (largest.cosSin + sz(microBatch) * sz(config.nRot)) * sizeof(std::int32_t);
    // The old pinned buffer may still be the source of a queued upload.
    if (inputsUploaded != nullptr)
        KVCHAT_CUDA_CHECK(cudaEventSynchronize(inputsUploaded));
    hostInputs = std::make_unique<PinnedBuffer>(bytes);
    reserveScratch(inputs, bytes);
    ++scratchGeneration; // the regions past the block table moved even if the buffer did not
}

MicroBatchInputs CudaBackend::State::uploadInputs(std::span<const TokenId> ids, std::int32_t startPos,
                                                  std::span<const std::int32_t> penalised)
{
    static_assert(sizeof(TokenId) == sizeof(std::int32_t));
    const std::int64_t n = static_cast<std::int64_t>(ids.size());
    MicroBatchInputs in = inputLayout(n, penalised.size());
    // The previous micro-batch's upload has read the pinned buffer (in stream order it ran after
    // the micro-batch before that: a one-deep pipeline).
    KVCHAT_CUDA_CHECK(cudaEventSynchronize(inputsUploaded));
    auto *words = hostInputs->as<std::int32_t>();
    words[0] = startPos;
    words[1] = static_cast<std::int32_t>(penalised.size());
    std::memcpy(words + in.tokens, ids.data(), ids.size_bytes());
    // Empty spans' data() may be null, which memcpy must not get.
    if (!hostBlockTable.empty())
        std::memcpy(words + in.blockTable, hostBlockTable.data(), hostBlockTable.size() * sizeof(std::int32_t));
    if (!penalised.empty())
        std::memcpy(words + in.penalised, penalised.data(), penalised.size_bytes());
    KVCHAT_CUDA_CHECK(
        cudaMemcpyAsync(inputs.as<void>(), words, in.end * sizeof(std::int32_t), cudaMemcpyHostToDevice, stream));
    const auto *device = inputs.as<std::int32_t>();
    in.ropeFromTable = startPos + n <= ropeTablePositions;
    if (in.ropeFromTable) {
        in.deviceCosSin = ropeTable.as<float>();
    } else {
        float *rows = reinterpret_cast<float *>(words + in.cosSin);
        fillRopeTable(config, model->ropeFreqFactors(), startPos, n, rows);
        KVCHAT_CUDA_CHECK(cudaMemcpyAsync(inputs.as<std::int32_t>() + in.cosSin, rows,
                                          sz(n) * sz(config.nRot) * sizeof(float), cudaMemcpyHostToDevice, stream));
        in.deviceCosSin = reinterpret_cast<const float *>(device + in.cosSin);
    }
    KVCHAT_CUDA_CHECK(cudaEventRecord(inputsUploaded, stream));
    in.deviceArgs = device;
    in.deviceTokens = device + in.tokens;
    in.deviceBlockTable = device + in.blockTable;
    in.devicePenalised = device + in.penalised;
    return in;
}

void CudaBackend::State::gemm(const DeviceMatrix &w, const Half *xIn, std::int64_t nTokens, float *y, float beta)
{
    // Row-major y[t][o] = sum_i x[t][i] * W[o][i] is, in cuBLAS's column-major terms,
    // Y (nOut x nTokens, ld nOut) = Wᵀ-as-stored (W is nIn x nOut column-major, ld nIn) op T · X
    // (nIn x nTokens, ld nIn). beta = 1 adds into y (the residual stream).
    const float alpha = 1.0f;
    KVCHAT_CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(w.nOut),
                                     static_cast<int>(nTokens), static_cast<int>(w.nIn), &alpha, w.data, CUDA_R_16F,
                                     static_cast<int>(w.nIn), xIn, CUDA_R_16F, static_cast<int>(w.nIn), &beta, y,
                                     CUDA_R_32F, static_cast<int>(w.nOut), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

Result<std::unique_ptr<CudaBackend>> CudaBackend::create(const LlamaModel &model, int nThreads,
                                                         std::int32_t kvBlockTokens)
{
    auto device = firstCudaDevice();
    if (!device)
        return device.error();
    // The kernels are built for compute capability 8.0 and up (CMAKE_CUDA_ARCHITECTURES 80;90,
    // with PTX for newer GPUs); an older GPU would accept the weights and fail every launch.
    if (device->computeCapability < 80)
        return makeError(device->name + " (compute capability " + std::to_string(device->computeCapability / 10) + "." +
                         std::to_string(device->computeCapability % 10) +
                         ") is older than the CUDA backend supports (8.0: A100, RTX 30xx and newer)");
    const LlamaConfig &c = model.config();
    // fp16 weights: every layer matrix, the embedding, and the classifier unless it is the embedding.
    std::size_t neededBytes = 0;
    const auto add = [&](const WeightMatrix &w) { neededBytes += sz(w.nOut * w.nIn) * sizeof(Half); };
    add(model.tokenEmbedding());
    if (!model.tiedEmbeddings())
        add(model.output());
    for (const LlamaLayerWeights &l : model.layers())
        for (const WeightMatrix *w : l.matrices())
            add(*w);
    if (neededBytes > device->freeBytes)
        return makeError("not enough GPU memory for this model on " + device->name + ": its fp16 weights need " +
                         std::to_string(neededBytes / kMiB) + " MiB, " + std::to_string(device->freeBytes / kMiB) +
                         " MiB are free");
    if (c.headDim > 256 || c.headDim % 8 != 0)
        return makeError("the CUDA backend supports head sizes up to 256 in multiples of 8 (this model: " +
                         std::to_string(c.headDim) + ")");
    auto state = std::make_unique<State>();
    state->model = &model;
    state->config = c;
    state->device = *device;
    state->kvLayout = KvLayout{c.nLayers, c.kvDim(), kvBlockTokens, static_cast<std::int32_t>(sizeof(Half))};
    try {
        KVCHAT_CUDA_CHECK(cudaSetDevice(device->index));
        state->kvMemory = std::make_shared<CudaKvMemory>(device->index);
        KVCHAT_CUDA_CHECK(cudaStreamCreateWithFlags(&state->stream, cudaStreamNonBlocking));
        KVCHAT_CUBLAS_CHECK(cublasCreate(&state->cublas));
        KVCHAT_CUBLAS_CHECK(cublasSetStream(state->cublas, state->stream));
        // After cublasSetStream, which resets the workspace to cuBLAS's default pool.
        // 32 MiB: what NVIDIA recommends for Hopper, more than enough for earlier GPUs.
        state->gemmWorkspace.reserve(32 * kMiB);
        KVCHAT_CUBLAS_CHECK(
            cublasSetWorkspace(state->cublas, state->gemmWorkspace.as<void>(), state->gemmWorkspace.bytes()));
        state->hostCandidateKeys = std::make_unique<PinnedBuffer>(sz(kMaxDeviceCandidates) * sizeof(std::uint64_t));
        KVCHAT_CUDA_CHECK(cudaEventCreateWithFlags(&state->inputsUploaded, cudaEventDisableTiming));
        const char *graphs = std::getenv("KVCHAT_CUDA_GRAPHS");
        state->graphStats.enabled = graphs == nullptr || std::string_view(graphs) != "0";
        state->decodeGemvSupported = gemvSupports(c.nEmbd) && gemvSupports(c.nHeads * c.headDim) &&
                                     gemvSupports(c.nFf) &&
                                     gemvReserveSharedMemory(std::max({c.nEmbd, c.nHeads * c.headDim, c.nFf}));
        const char *gemvSetting = std::getenv("KVCHAT_CUDA_DECODE_GEMV");
        state->decodeGemv =
            state->decodeGemvSupported && (gemvSetting == nullptr || std::string_view(gemvSetting) != "0");

        ThreadPool pool(nThreads);
        std::vector<Half> staging;
        state->embedding = state->uploadMatrix(pool, model.tokenEmbedding(), staging);
        state->output = model.tiedEmbeddings() ? state->embedding : state->uploadMatrix(pool, model.output(), staging);
        state->outputNorm = state->uploadFloats(model.outputNorm());
        for (const LlamaLayerWeights &l : model.layers()) {
            DeviceLayer d;
            d.attnNorm = state->uploadFloats(l.attnNorm);
            d.ffnNorm = state->uploadFloats(l.ffnNorm);
            const auto qkv = state->uploadStacked(pool, {&l.wq, &l.wk, &l.wv}, staging);
            d.wqkv = qkv[0], d.wq = qkv[1], d.wk = qkv[2], d.wv = qkv[3];
            d.wo = state->uploadMatrix(pool, l.wo, staging);
            const auto gateUp = state->uploadStacked(pool, {&l.wGate, &l.wUp}, staging);
            d.wGateUp = gateUp[0], d.wGate = gateUp[1], d.wUp = gateUp[2];
            d.wDown = state->uploadMatrix(pool, l.wDown, staging);
            state->layers.push_back(d);
        }
        std::size_t freeAfterWeights = 0, total = 0;
        KVCHAT_CUDA_CHECK(cudaMemGetInfo(&freeAfterWeights, &total));
        state->microBatch = state->chooseMicroBatch(freeAfterWeights);
        state->microBatchInUse = state->microBatch;
        state->allocateScratch();
        // cudaMemcpy from pageable memory may return before its last DMA has landed, and the
        // non-blocking compute stream does not wait for the legacy default stream it ran on.
        KVCHAT_CUDA_CHECK(cudaDeviceSynchronize());
        KVCHAT_CUDA_CHECK(cudaMemGetInfo(&state->device.freeBytes, &state->device.totalBytes));
    } catch (const CudaFailure &failure) {
        const std::string what = failure.what();
        const bool oom = what.find("cudaErrorMemoryAllocation") != std::string::npos;
        return makeError(oom ? "not enough GPU memory for this model on " + device->name + " (" +
                                   std::to_string(device->freeBytes / kMiB) + " MiB free; its fp16 weights need " +
                                   std::to_string(neededBytes / kMiB) + " MiB, plus scratch): " + what
                             : "setting up the CUDA backend on " + device->name + ": " + what);
    }
    return std::unique_ptr<CudaBackend>(new CudaBackend(std::move(state)));
}

CudaBackend::CudaBackend(std::unique_ptr<State> state) : m_state(std::move(state)) {}

CudaBackend::~CudaBackend() = default;

KvLayout CudaBackend::kvLayout() const
{
    return m_state->kvLayout;
}

std::shared_ptr<KvMemory> CudaBackend::kvMemory() const
{
    return m_state->kvMemory;
}

std::size_t CudaBackend::defaultDeviceKvBytes() const
{
    // Half of what is free once the weights and scratch are in: the rest stays for cuBLAS
    // workspaces, the attention workspace of long contexts and other processes.
    return m_state->device.freeBytes / 2;
}

const CudaDeviceInfo &CudaBackend::device() const
{
    return m_state->device;
}

std::size_t CudaBackend::weightBytes() const
{
    return m_state->weightBytes;
}

std::size_t CudaBackend::scratchBytes() const
{
    return m_state->scratchBytes();
}

CudaBackend::DecodeGraphStats CudaBackend::decodeGraphStats() const
{
    return m_state->graphStats;
}

void CudaBackend::setDecodeGraphs(bool enabled)
{
    m_state->graphStats.enabled = enabled;
}

bool CudaBackend::decodeGemv() const
{
    return m_state->decodeGemv;
}

void CudaBackend::setDecodeGemv(bool enabled)
{
    m_state->decodeGemv = enabled && m_state->decodeGemvSupported;
}

std::int64_t CudaBackend::microBatchTokens() const
{
    return m_state->microBatchInUse;
}

void CudaBackend::setMicroBatchTokens(std::int64_t tokens)
{
    m_state->microBatchInUse = std::clamp<std::int64_t>(tokens, 1, m_state->microBatch);
}

Result<void> CudaBackend::forward(std::span<const TokenId> tokens, KvSequence &seq, LogitsMode mode,
                                  std::vector<float> &logits)
{
    return run(tokens, seq, mode, &logits, nullptr, nullptr);
}

Result<void> CudaBackend::forwardCandidates(std::span<const TokenId> tokens, KvSequence &seq,
                                            const CandidateRequest &request, std::vector<TokenCandidate> &out)
{
    if (request.k < 1 || request.k > kMaxDeviceCandidates || request.k > m_state->config.nVocab)
        return Backend::forwardCandidates(tokens, seq, request, out); // top-k off or large: on the host
    for (TokenId id : request.penalised)
        if (id < 0 || id >= m_state->config.nVocab)
            return makeError("forwardCandidates: penalised token id " + std::to_string(id) +
                             " is outside the vocabulary");
    return run(tokens, seq, LogitsMode::Last, nullptr, &request, &out);
}

Result<void> CudaBackend::run(std::span<const TokenId> tokens, KvSequence &seq, LogitsMode mode,
                              std::vector<float> *logits, const CandidateRequest *request,
                              std::vector<TokenCandidate> *candidates)
{
    State &s = *m_state;
    const LlamaConfig &c = s.config;
    const std::int64_t n = static_cast<std::int64_t>(tokens.size());
    if (&seq.pool().memory() != s.kvMemory.get())
        return makeError("forward: the KV sequence is not in this CUDA backend's GPU memory");
    auto begun = beginForward(tokens, c.nVocab, seq);
    if (!begun)
        return begun.error();
    const std::int32_t startPos = *begun;
    try {
        // KV blocks restored just before (uploads on the KV copy stream) must have landed before
        // they are read: a layered restore is waited for layer by layer inside the first
        // micro-batch (its layer l lands while layer l - 1 computes), anything else now.
        const bool waitLayers = s.kvMemory->layeredUploadsPending();
        if (!waitLayers)
            s.kvMemory->finishCopies();
        // The block table covers every position this call writes or reads; it goes up with each
        // micro-batch's inputs.
        s.hostBlockTable.clear();
        for (KvBlockId id : seq.blocks())
            s.hostBlockTable.push_back(static_cast<std::int32_t>(id.value));
        s.reserveInputs(static_cast<std::int64_t>(s.hostBlockTable.size()),
                        request != nullptr ? request->penalised.size() : 0);
        KvTarget kv;
        kv.arena = reinterpret_cast<Half *>(seq.pool().arena());
        kv.blockTokens = s.kvLayout.blockTokens;
        kv.blockElements = s.kvLayout.blockElements();
        kv.kvDim = c.kvDim();

        // With a candidate request the logits stay on the device: the last micro-batch selects.
        // Every position's logits: passes of at most 256 tokens, so that the logits buffer stays at
        // 256 rows of the vocabulary (1.25 GB at 2,048 tokens of a 152k vocabulary otherwise).
        const std::int64_t microBatch =
            mode == LogitsMode::All ? std::min<std::int64_t>(s.microBatchInUse, kMinMicroBatch) : s.microBatchInUse;
        forEachMicroBatch(n, microBatch, mode, c.nVocab, logits, [&](std::int64_t begin, std::int64_t end, float *out) {
            s.forwardMicroBatch(tokens.subspan(sz(begin), sz(end - begin)), startPos + static_cast<std::int32_t>(begin),
                                kv, mode, out, end == n ? request : nullptr, candidates, waitLayers && begin == 0);
        });
        KVCHAT_CUDA_CHECK(cudaStreamSynchronize(s.stream));
        if (waitLayers)
            s.kvMemory->layeredUploadsConsumed(); // the stream waited for every layer
    } catch (const CudaFailure &failure) {
        cudaStreamSynchronize(s.stream);
        try {
            s.kvMemory->finishCopies();
        } catch (const CudaFailure &) {
            // Already failing: the first error is the one to report.
        }
        seq.truncate(startPos);
        return makeError(std::string("CUDA forward pass: ") + failure.what());
    }
    seq.setTokenCount(startPos + static_cast<std::int32_t>(n));
    return {};
}

void CudaBackend::State::forwardMicroBatch(std::span<const TokenId> ids, std::int32_t startPos, const KvTarget &kvBase,
                                           LogitsMode mode, float *hostLogits, const CandidateRequest *request,
                                           std::vector<TokenCandidate> *candidates, bool waitLayers)
{
    const LlamaConfig &c = config;
    const std::int64_t n = static_cast<std::int64_t>(ids.size());

    // Inputs and every buffer this step needs are in place before any kernel is queued: a
    // captured step holds the buffers' addresses, and neither cudaMalloc nor a pageable copy may
    // happen inside a capture.
    const bool penalty = request != nullptr && !request->penalised.empty() && request->repeatPenalty != 1.0f;
    const MicroBatchInputs in = uploadInputs(
        ids, startPos, penalty ? std::span<const std::int32_t>(request->penalised) : std::span<const std::int32_t>());
    KvTarget kv = kvBase;
    kv.blockTable = in.deviceBlockTable;
    const AttentionShape shape{c.nHeads, c.nKvHeads, c.headDim, 1.0f / std::sqrt(static_cast<float>(c.headDim))};
    reserveScratch(workspace,
                   attentionWorkspaceFloats(shape, n, startPos + static_cast<std::int32_t>(n)) * sizeof(float));
    const std::int64_t firstLogit = request != nullptr        ? n - 1
                                    : hostLogits == nullptr   ? n
                                    : mode == LogitsMode::All ? 0
                                                              : n - 1;
    const std::int64_t nOut = n - firstLogit;
    reserveScratch(logits, sz(std::max<std::int64_t>(nOut, 1) * c.nVocab) * sizeof(float));
    if (request != nullptr)
        reserveScratch(candidateWorkspace, candidatesWorkspaceKeys(c.nVocab, request->k) * sizeof(std::uint64_t));

    const auto enqueue = [&] { enqueueLayers(n, startPos, kv, in, firstLogit, request, waitLayers); };
    // Not captured while a restore is landing: the capture would depend on the copy stream's
    // events from outside it.
    if (n == 1 && graphStats.enabled && !waitLayers)
        launchAsGraph(decodeStepShape(startPos, kv, in, nOut > 0, request), enqueue);
    else
        enqueue();

    if (nOut == 0)
        return; // a micro-batch before the last, with only the last token's logits wanted
    if (request != nullptr) {
        const std::size_t k = sz(request->k);
        KVCHAT_CUDA_CHECK(cudaMemcpyAsync(hostCandidateKeys->as<void>(), candidateKeys.as<void>(),
                                          k * sizeof(std::uint64_t), cudaMemcpyDeviceToHost, stream));
        KVCHAT_CUDA_CHECK(cudaStreamSynchronize(stream));
        candidates->resize(k);
        for (std::size_t i = 0; i < k; ++i) {
            const TokenCandidateBits bits = decodeCandidateKey(hostCandidateKeys->as<std::uint64_t>()[i]);
            (*candidates)[i] = TokenCandidate{bits.id, bits.logit};
        }
        return;
    }
    KVCHAT_CUDA_CHECK(cudaMemcpyAsync(hostLogits, logits.as<void>(), sz(nOut * c.nVocab) * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream));
    // The destination is pageable memory the caller reads after forward() returns, and the next
    // micro-batch may reuse the device logits buffer: wait here.
    KVCHAT_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void CudaBackend::State::enqueueLayers(std::int64_t n, std::int32_t startPos, const KvTarget &kvBase,
                                       const MicroBatchInputs &in, std::int64_t firstLogit,
                                       const CandidateRequest *request, bool waitLayers)
{
    const LlamaConfig &c = config;
    void *const st = stream;
    // A token's q, k and v rows side by side in qkv (qkvWidth floats), as the stacked GEMM writes them.
    const std::int32_t qDim = c.nHeads * c.headDim;
    const std::int32_t qkvWidth = qDim + 2 * c.kvDim();
    float *const q = qkv.as<float>();
    float *const k = q + qDim;
    float *const v = k + c.kvDim();
    AttentionShape shape{c.nHeads, c.nKvHeads, c.headDim, 1.0f / std::sqrt(static_cast<float>(c.headDim))};
    shape.qStride = qkvWidth;

    const std::int32_t *deviceStartPos = in.deviceArgs;
    embedTokens(embedding.data, in.deviceTokens, n, c.nEmbd, x.as<float>(), st);
    KVCHAT_CUDA_CHECK_LAUNCH("embedTokens");
    // One token: the projections are matrix-vector products with their norms, RoPE and the KV
    // write, SiLU and the residual adds fused in (cuda_gemv.cu): with attention, 5 launches a
    // layer instead of 7 GEMMs and 5 small kernels.
    const bool fused = n == 1 && decodeGemv;
    const auto normed = [&](const float *residual, const float *weight) {
        return GemvInput{nullptr, residual, weight, c.rmsEps, c.nEmbd};
    };
    for (std::int32_t l = 0; l < c.nLayers; ++l) {
        const DeviceLayer &w = layers[sz(l)];
        KvTarget kv = kvBase;
        kv.layer = l;
        // The first use of layer l's KV rows is the KV write (it may go into a restored tail
        // block): a layered restore's layer l must have landed before it.
        if (fused && in.ropeFromTable) {
            // Q, K, V, RoPE and the KV write in one launch.
            if (waitLayers)
                kvMemory->waitForLayer(l, stream);
            const GemvMatrix parts[3] = {{w.wq.data, static_cast<std::int32_t>(w.wq.nOut), q},
                                         {w.wk.data, static_cast<std::int32_t>(w.wk.nOut), nullptr},
                                         {w.wv.data, static_cast<std::int32_t>(w.wv.nOut), nullptr}};
            gemvQkvRope(normed(x.as<float>(), w.attnNorm), parts, in.deviceCosSin, c.nRot, c.headDim, kv,
                        deviceStartPos, st);
            KVCHAT_CUDA_CHECK_LAUNCH("gemvQkvRope");
        } else {
            if (fused) {
                const GemvMatrix parts[3] = {{w.wq.data, static_cast<std::int32_t>(w.wq.nOut), q},
                                             {w.wk.data, static_cast<std::int32_t>(w.wk.nOut), k},
                                             {w.wv.data, static_cast<std::int32_t>(w.wv.nOut), v}};
                gemv(normed(x.as<float>(), w.attnNorm), parts, 3, false, st);
                KVCHAT_CUDA_CHECK_LAUNCH("gemv (QKV)");
            } else {
                rmsNorm(x.as<float>(), w.attnNorm, n, c.nEmbd, c.rmsEps, xNorm.as<Half>(), st);
                KVCHAT_CUDA_CHECK_LAUNCH("rmsNorm");
                gemm(w.wqkv, xNorm.as<Half>(), n, q, 0.0f); // [t][q | k | v]
            }
            if (waitLayers)
                kvMemory->waitForLayer(l, stream);
            ropeAndStoreKv(q, k, v, qkvWidth, qkvWidth, in.deviceCosSin, in.ropeFromTable, n, c.nHeads, c.nKvHeads,
                           c.headDim, c.nRot, kv, startPos, st, deviceStartPos);
            KVCHAT_CUDA_CHECK_LAUNCH("ropeAndStoreKv");
        }
        attention(shape, q, kv, n, startPos, workspace.as<float>(), attnOut.as<Half>(), st, deviceStartPos);
        KVCHAT_CUDA_CHECK_LAUNCH("attention");
        if (fused) {
            const GemvMatrix wo{w.wo.data, static_cast<std::int32_t>(w.wo.nOut), x.as<float>()};
            gemv(GemvInput{attnOut.as<Half>(), nullptr, nullptr, 0.0f, static_cast<std::int32_t>(w.wo.nIn)}, &wo, 1,
                 true, st);
            KVCHAT_CUDA_CHECK_LAUNCH("gemv (Wo)");
            gemvSwiGlu(normed(x.as<float>(), w.ffnNorm), w.wGate.data, w.wUp.data, c.nFf, act.as<Half>(), st);
            KVCHAT_CUDA_CHECK_LAUNCH("gemvSwiGlu");
            const GemvMatrix down{w.wDown.data, static_cast<std::int32_t>(w.wDown.nOut), x.as<float>()};
            gemv(GemvInput{act.as<Half>(), nullptr, nullptr, 0.0f, c.nFf}, &down, 1, true, st);
            KVCHAT_CUDA_CHECK_LAUNCH("gemv (down)");
            continue;
        }
        gemm(w.wo, attnOut.as<Half>(), n, x.as<float>(), 1.0f); // x += attention · Woᵀ

        rmsNorm(x.as<float>(), w.ffnNorm, n, c.nEmbd, c.rmsEps, xNorm.as<Half>(), st);
        KVCHAT_CUDA_CHECK_LAUNCH("rmsNorm");
        gemm(w.wGateUp, xNorm.as<Half>(), n, gateUp.as<float>(), 0.0f); // [t][gate | up]
        siluMul(gateUp.as<float>(), gateUp.as<float>() + c.nFf, n, c.nFf, 2 * static_cast<std::int64_t>(c.nFf),
                act.as<Half>(), st);
        KVCHAT_CUDA_CHECK_LAUNCH("siluMul");
        gemm(w.wDown, act.as<Half>(), n, x.as<float>(), 1.0f); // x += SwiGLU · Wdownᵀ
    }

    const std::int64_t nOut = n - firstLogit;
    if (nOut == 0)
        return;
    if (fused) {
        const GemvMatrix classifier{output.data, c.nVocab, logits.as<float>()};
        gemv(normed(x.as<float>(), outputNorm), &classifier, 1, false, st);
        KVCHAT_CUDA_CHECK_LAUNCH("gemv (output)");
    } else {
        rmsNorm(x.as<float>() + firstLogit * c.nEmbd, outputNorm, nOut, c.nEmbd, c.rmsEps, xNorm.as<Half>(), st);
        KVCHAT_CUDA_CHECK_LAUNCH("rmsNorm (output)");
        gemm(output, xNorm.as<Half>(), nOut, logits.as<float>(), 0.0f);
    }
    if (request == nullptr)
        return;
    if (!request->penalised.empty() && request->repeatPenalty != 1.0f) {
        applyRepeatPenalty(logits.as<float>(), in.devicePenalised, static_cast<std::int32_t>(request->penalised.size()),
                           request->repeatPenalty, st, in.deviceArgs + 1);
        KVCHAT_CUDA_CHECK_LAUNCH("applyRepeatPenalty");
    }
    selectCandidates(logits.as<float>(), c.nVocab, request->k, candidateWorkspace.as<std::uint64_t>(),
                     candidateKeys.as<std::uint64_t>(), st);
    KVCHAT_CUDA_CHECK_LAUNCH("selectCandidates");
}

DecodeStepShape CudaBackend::State::decodeStepShape(std::int32_t startPos, const KvTarget &kv,
                                                    const MicroBatchInputs &in, bool logitsOut,
                                                    const CandidateRequest *request) const
{
    DecodeStepShape shape;
    shape.attentionChunks = attentionContextChunks(1, startPos);
    shape.logitsOut = logitsOut;
    shape.candidates = request != nullptr;
    if (request != nullptr) {
        shape.k = request->k;
        if (!request->penalised.empty() && request->repeatPenalty != 1.0f) {
            shape.penaltyBlocks = (static_cast<std::int64_t>(request->penalised.size()) + 255) / 256; // its grid
            std::memcpy(&shape.penaltyBits, &request->repeatPenalty, sizeof shape.penaltyBits);
        }
    }
    shape.decodeGemv = decodeGemv;
    shape.ropeFromTable = in.ropeFromTable;
    shape.kvArena = kv.arena;
    shape.scratchGeneration = scratchGeneration;
    return shape;
}

void CudaBackend::State::launchAsGraph(const DecodeStepShape &shape, const std::function<void()> &enqueue)
{
    // A step of a shape seen before replays its graph as it is: the kernels read the position,
    // the block table, the tokens and the penalty list from the input buffer just uploaded, so
    // nothing is captured or updated per token (capturing ~150 launches would cost the host a
    // few hundred microseconds, while the GPU waits).
    auto it =
        std::find_if(decodeGraphs.begin(), decodeGraphs.end(), [&](const DecodeGraph &g) { return g.shape == shape; });
    if (it == decodeGraphs.end()) {
        // Thread-local capture: a cudaMalloc on another thread (a host-tier buffer, say) does not
        // invalidate this capture, while one on this thread still fails loudly.
        KVCHAT_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        cudaGraph_t graph = nullptr;
        try {
            enqueue();
        } catch (...) {
            // End the capture whatever failed, or the stream stays unusable for the next turn.
            if (cudaStreamEndCapture(stream, &graph) == cudaSuccess && graph != nullptr)
                cudaGraphDestroy(graph);
            cudaGetLastError();
            throw;
        }
        KVCHAT_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
        struct GraphOwner
        {
            cudaGraph_t graph;
            ~GraphOwner() { cudaGraphDestroy(graph); }
        } owner{graph};
        // Graphs of an older scratch generation hold freed addresses: never launched again.
        std::erase_if(decodeGraphs, [&](const DecodeGraph &g) {
            const bool stale = g.shape.scratchGeneration != scratchGeneration;
            if (stale)
                cudaGraphExecDestroy(g.exec);
            return stale;
        });
        if (decodeGraphs.size() == kMaxDecodeGraphs) {
            cudaGraphExecDestroy(decodeGraphs.front().exec);
            decodeGraphs.erase(decodeGraphs.begin());
        }
        DecodeGraph made{shape, nullptr};
        KVCHAT_CUDA_CHECK(cudaGraphInstantiate(&made.exec, graph, 0));
        ++graphStats.instantiations;
        it = decodeGraphs.insert(decodeGraphs.end(), made);
    }
    KVCHAT_CUDA_CHECK(cudaGraphLaunch(it->exec, stream));
    ++graphStats.launches;
}

} // namespace cuda
} // namespace kvchat::engine
