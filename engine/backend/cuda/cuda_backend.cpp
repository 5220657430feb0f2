// SPDX-License-Identifier: MIT
// Host side of the CUDA backend's forward pass: each micro-batch's inputs, the order of kernels
// and GEMMs, the decode step's graphs. Loading (weights, scratch) is in cuda_backend_load.cpp, the
// kernels in the .cu files.
#include "engine/backend/cuda/cuda_backend_state.h"
#include "engine/backend/rope_table.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

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
    std::int32_t *device = inputs.as<std::int32_t>();
    in.ropeFromTable = startPos + n <= ropeTablePositions;
    if (in.ropeFromTable) {
        in.deviceCosSin = ropeTable.as<float>();
    } else {
        float *rows = reinterpret_cast<float *>(words + in.cosSin);
        fillRopeTable(config, model->ropeFreqFactors(), startPos, n, rows);
        KVCHAT_CUDA_CHECK(cudaMemcpyAsync(device + in.cosSin, rows, sz(n) * sz(config.nRot) * sizeof(float),
                                          cudaMemcpyHostToDevice, stream));
        in.deviceCosSin = reinterpret_cast<const float *>(device + in.cosSin);
    }
    KVCHAT_CUDA_CHECK(cudaEventRecord(inputsUploaded, stream));
    in.deviceArgs = device;
    in.deviceTokens = device + in.tokens;
    in.deviceBlockTable = device + in.blockTable;
    in.devicePenalised = device + in.penalised;
    return in;
}

std::size_t deviceMatrixBytes(const DeviceMatrix &m)
{
    std::size_t bytes = 0;
    for (const DeviceMatrix &part : formatParts(m))
        bytes += sz(part.nOut) * weightRowBytes(part.weights.format, part.nIn);
    return bytes;
}

void CudaBackend::State::dequantizeRows(const DeviceMatrix &w, std::int64_t rowBegin, std::int64_t rows, Half *out)
{
    const auto nIn = static_cast<std::int32_t>(w.nIn);
    std::int64_t partBegin = 0; // the part's first row in the whole
    for (const DeviceMatrix &part : formatParts(w)) {
        const std::int64_t begin = std::max(rowBegin, partBegin);
        const std::int64_t end = std::min(rowBegin + rows, partBegin + part.nOut);
        if (begin < end && part.weights.format == WeightFormat::F16) {
            KVCHAT_CUDA_CHECK(
                cudaMemcpyAsync(out + (begin - rowBegin) * w.nIn,
                                static_cast<const Half *>(part.weights.data) + (begin - partBegin) * w.nIn,
                                sz((end - begin) * w.nIn) * sizeof(Half), cudaMemcpyDeviceToDevice, stream));
        } else if (begin < end) {
            dequantizeWeights(part.weights, begin - partBegin, end - begin, nIn, out + (begin - rowBegin) * w.nIn,
                              stream);
            KVCHAT_CUDA_CHECK_LAUNCH("dequantizeWeights");
        }
        partBegin += part.nOut;
    }
}

void CudaBackend::State::gemm(const DeviceMatrix &w, const Half *xIn, std::int64_t nTokens, float *y, float beta)
{
    if (!holdsPackedWeights(w)) {
        gemmF16(static_cast<const Half *>(w.weights.data), w.nOut, w.nIn, w.nOut, xIn, nTokens, y, beta);
        return;
    }
    if (nTokens == 1 && decodeGemvSupported) {
        // One token: read the packed weights as they are (the decode step with cuBLAS chosen, or a
        // prompt's last-row classifier); mixed parts each into its rows of y.
        GemvMatrix m[kMaxGemvMatrices]; // mixed parts: Q, K and V at most
        int nMatrices = 0;
        float *partY = y;
        for (const DeviceMatrix &part : formatParts(w)) {
            m[nMatrices++] = GemvMatrix{part.weights, static_cast<std::int32_t>(part.nOut), partY};
            partY += part.nOut;
        }
        gemv(GemvInput{xIn, nullptr, nullptr, 0.0f, static_cast<std::int32_t>(w.nIn)}, m, nMatrices, beta != 0.0f,
             stream);
        KVCHAT_CUDA_CHECK_LAUNCH("gemv (packed)");
        return;
    }
    // cuBLAS over slices of rows (promptSliceRows), each slice's GEMM writing its rows of y: from
    // the fp16 copy where there is one, else from the slice dequantized into `dequantized`, which
    // costs a write and a read of the fp16 slice on top of the GEMM (small next to the GEMM at
    // hundreds of tokens, about 2x the weight traffic of fp16 weights for a prompt of a few).
    // The same slices either way, so the same results.
    const std::int64_t rowsPerSlice = promptSliceRows(w);
    for (std::int64_t r0 = 0; r0 < w.nOut; r0 += rowsPerSlice) {
        const std::int64_t rows = std::min(rowsPerSlice, w.nOut - r0);
        const Half *slice = w.promptF16 != nullptr ? w.promptF16 + r0 * w.nIn : nullptr;
        if (slice == nullptr) {
            if (dequantized.bytes() < sz(rows * w.nIn) * sizeof(Half))
                throwFailure("gemm", "no dequantization buffer for a packed matrix", __FILE__, __LINE__);
            dequantizeRows(w, r0, rows, dequantized.as<Half>());
            slice = dequantized.as<Half>();
        }
        gemmF16(slice, rows, w.nIn, w.nOut, xIn, nTokens, y + r0, beta);
    }
}

void CudaBackend::State::gemmF16(const Half *w, std::int64_t nOut, std::int64_t nIn, std::int64_t ldy, const Half *xIn,
                                 std::int64_t nTokens, float *y, float beta)
{
    // Row-major y[t][o] = sum_i x[t][i] * W[o][i] is, in cuBLAS's column-major terms,
    // Y (nOut x nTokens, ld ldy) = Wᵀ-as-stored (W is nIn x nOut column-major, ld nIn) op T · X
    // (nIn x nTokens, ld nIn). beta = 1 adds into y (the residual stream).
    const float alpha = 1.0f;
    KVCHAT_CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(nOut),
                                     static_cast<int>(nTokens), static_cast<int>(nIn), &alpha, w, CUDA_R_16F,
                                     static_cast<int>(nIn), xIn, CUDA_R_16F, static_cast<int>(nIn), &beta, y,
                                     CUDA_R_32F, static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
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

std::string_view CudaBackend::kvFormat() const
{
    if (!m_state->kvFromPackedWeights())
        return "cuda-f16w-f16kv";
    // A decode step with int8 dots writes its token's K/V from int8-rounded inputs, ~1e-2 away from
    // the rows fp16 inputs give: blocks it wrote are not the same KV.
    return m_state->int8Dots ? "cuda-packedw-int8dots-f16kv" : "cuda-packedw-f16kv";
}

std::size_t CudaBackend::decodeWeightBytes() const
{
    const State &s = *m_state;
    const auto bytes = deviceMatrixBytes;
    std::size_t total = bytes(s.output) + sz(s.config.nEmbd) * sizeof(float);
    for (const DeviceLayer &l : s.layers)
        total +=
            bytes(l.wqkv) + bytes(l.wo) + bytes(l.wGateUp) + bytes(l.wDown) + 2 * sz(s.config.nEmbd) * sizeof(float);
    return total;
}

std::string CudaBackend::describe() const
{
    const CudaDeviceInfo &d = m_state->device;
    return d.name + " (compute capability " + std::to_string(d.computeCapability / 10) + "." +
           std::to_string(d.computeCapability % 10) + "); weights on the GPU: " + std::to_string(weightBytes() >> 20) +
           " MiB, " + weightsDescription() +
           (m_state->int8Dots && m_state->decodeGemv && m_state->kvFromPackedWeights()
                ? "; decode multiplies packed weights by int8 inputs (dp4a)"
                : "") +
           (m_state->overlappedLaunches       ? "; a decode step's kernels launched overlapped"
            : m_state->overlapRefused.empty() ? ""
                                              : "; overlapped launches refused (" + m_state->overlapRefused + ")");
}

std::string CudaBackend::weightsDescription() const
{
    const State &s = *m_state;
    int counts[3] = {0, 0, 0}; // packed 4-bit, packed 8-bit, fp16
    int copies = 0;
    bool mixed = false;
    const auto count = [&](const DeviceMatrix &m) {
        copies += m.promptF16 != nullptr ? 1 : 0;
        mixed = mixed || !m.mixedParts.empty();
        for (const DeviceMatrix &part : formatParts(m))
            ++counts[part.weights.format == WeightFormat::Q4G32   ? 0
                     : part.weights.format == WeightFormat::Q8G16 ? 1
                                                                  : 2];
    };
    count(s.embedding);
    if (s.output.weights.data != s.embedding.weights.data)
        count(s.output);
    for (const DeviceLayer &l : s.layers)
        for (const DeviceMatrix *m : {&l.wqkv, &l.wo, &l.wGateUp, &l.wDown})
            count(*m);
    std::string out;
    const char *names[3] = {" packed 4-bit", " packed 8-bit", " fp16"};
    for (int i = 0; i < 3; ++i)
        if (counts[i] > 0)
            out += (out.empty() ? "" : ", ") + std::to_string(counts[i]) + names[i];
    out += mixed ? " (matrices; Q/K/V and gate/up stacked; Q/K/V of different types each in its own format)"
                 : " (matrices; Q/K/V and gate/up stacked)";
    if (copies > 0)
        out += "; fp16 copies of the packed layer matrices for prompts";
    return out;
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

bool CudaBackend::int8Dots() const
{
    return m_state->int8Dots;
}

void CudaBackend::setInt8Dots(bool enabled)
{
    m_state->int8Dots = enabled;
}

bool CudaBackend::overlappedLaunches() const
{
    return m_state->overlappedLaunches;
}

void CudaBackend::setOverlappedLaunches(bool enabled)
{
    m_state->overlappedLaunches = enabled && overlappedLaunchesSupported();
    if (enabled)
        m_state->overlapRefused.clear();
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
    const auto run = [&] {
        // Not captured while a restore is landing: the capture would depend on the copy stream's
        // events from outside it.
        if (n == 1 && graphStats.enabled && !waitLayers)
            launchAsGraph(decodeStepShape(startPos, kv, in, nOut > 0, request), enqueue);
        else
            enqueue();
    };
    try {
        run();
    } catch (const CudaFailure &failure) {
        // A driver that refuses overlapped launches (in a launch, a graph capture or its
        // instantiation) costs them, not the turn: the step runs again with its kernels one after
        // another, and so do all later ones (describe() says why). Running the step again is safe:
        // it rewrites x from the embedding, the position's KV rows and the logits.
        if (!usesOverlappedLaunches(n, waitLayers) || !refusalError(failure.error()))
            throw;
        cudaGetLastError();
        overlappedLaunches = false;
        try {
            run();
        } catch (const CudaFailure &) {
            overlappedLaunches = true; // it was not the overlap: report the failure as it is
            throw;
        }
        overlapRefused = failure.what();
        // Graphs captured with overlap are not launched again (the refusal may have come at a
        // graph launch).
        std::erase_if(decodeGraphs, [](const DecodeGraph &g) {
            if (g.shape.overlappedLaunches)
                cudaGraphExecDestroy(g.exec);
            return g.shape.overlappedLaunches;
        });
    }

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
    embedTokens(embedding.weights, in.deviceTokens, n, c.nEmbd, x.as<float>(), st);
    KVCHAT_CUDA_CHECK_LAUNCH("embedTokens");
    // One token: the projections are matrix-vector products with their norms, RoPE and the KV
    // write, SiLU and the residual adds fused in (cuda_gemv.cu): with attention, 5 launches a
    // layer instead of 7 GEMMs and 5 small kernels.
    const bool fused = n == 1 && decodeGemv;
    const bool overlap = usesOverlappedLaunches(n, waitLayers);
    shape.overlapPrevious = overlap;
    const auto normed = [&](const float *residual, const float *weight) {
        return GemvInput{nullptr, residual, weight, c.rmsEps, c.nEmbd, overlap, int8Dots};
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
            const GemvMatrix parts[3] = {{w.wq.weights, static_cast<std::int32_t>(w.wq.nOut), q},
                                         {w.wk.weights, static_cast<std::int32_t>(w.wk.nOut), nullptr},
                                         {w.wv.weights, static_cast<std::int32_t>(w.wv.nOut), nullptr}};
            gemvQkvRope(normed(x.as<float>(), w.attnNorm), parts, in.deviceCosSin, c.nRot, c.headDim, kv,
                        deviceStartPos, st);
            KVCHAT_CUDA_CHECK_LAUNCH("gemvQkvRope");
        } else {
            if (fused) {
                const GemvMatrix parts[3] = {{w.wq.weights, static_cast<std::int32_t>(w.wq.nOut), q},
                                             {w.wk.weights, static_cast<std::int32_t>(w.wk.nOut), k},
                                             {w.wv.weights, static_cast<std::int32_t>(w.wv.nOut), v}};
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
            const GemvMatrix wo{w.wo.weights, static_cast<std::int32_t>(w.wo.nOut), x.as<float>()};
            gemv(GemvInput{attnOut.as<Half>(), nullptr, nullptr, 0.0f, static_cast<std::int32_t>(w.wo.nIn), overlap,
                           int8Dots},
                 &wo, 1, true, st);
            KVCHAT_CUDA_CHECK_LAUNCH("gemv (Wo)");
            gemvSwiGlu(normed(x.as<float>(), w.ffnNorm), w.wGate.weights, w.wUp.weights, c.nFf, act.as<Half>(), st);
            KVCHAT_CUDA_CHECK_LAUNCH("gemvSwiGlu");
            const GemvMatrix down{w.wDown.weights, static_cast<std::int32_t>(w.wDown.nOut), x.as<float>()};
            gemv(GemvInput{act.as<Half>(), nullptr, nullptr, 0.0f, c.nFf, overlap, int8Dots}, &down, 1, true, st);
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
        const GemvMatrix classifier{output.weights, c.nVocab, logits.as<float>()};
        // The classifier keeps fp16 inputs even with int8 dots, as the CPU backend keeps its
        // output projection off the integer path: rounding the final hidden state to 8 bits moves
        // every logit directly (keeping fp16 here took SmolLM2's top-logit error with int8 dots
        // from 1.57e-2 to 1.30e-2, and halved it on the random packed models).
        GemvInput finalNorm = normed(x.as<float>(), outputNorm);
        finalNorm.int8Dots = false;
        gemv(finalNorm, &classifier, 1, false, st);
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

bool CudaBackend::State::usesOverlappedLaunches(std::int64_t n, bool waitLayers) const
{
    // The fused kernels, and attention between them, start while the kernel before them finishes;
    // not while a restore lands (its layers arrive through event waits between the kernels).
    return n == 1 && decodeGemv && overlappedLaunches && !waitLayers;
}

bool CudaBackend::State::refusalError(cudaError_t error)
{
    return error == cudaErrorNotSupported || error == cudaErrorInvalidValue ||
           error == cudaErrorStreamCaptureUnsupported || error == cudaErrorStreamCaptureInvalidated;
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
    shape.overlappedLaunches = overlappedLaunches;
    shape.int8Dots = int8Dots;
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
