// SPDX-License-Identifier: MIT
// The CUDA backend at load: the device, the weights (quantized ones repacked, float ones rounded to
// fp16, and uploaded, Q/K/V and gate/up stacked), and the scratch a turn needs, reserved up front.
// The forward pass is in cuda_backend.cpp.
#include "engine/backend/cuda/cuda_backend_state.h"
#include "engine/backend/rope_table.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <string_view>

namespace kvchat::engine::cuda {

static_assert(static_cast<int>(WeightFormat::Q4G32) == static_cast<int>(PackedFormat::Q4G32) &&
              static_cast<int>(WeightFormat::Q8G16) == static_cast<int>(PackedFormat::Q8G16));

namespace {

PackedFormat asPacked(WeightFormat format)
{
    return static_cast<PackedFormat>(static_cast<int>(format));
}

// How matrices stacked into one are kept on the device, part by part: packed when every part is
// of a quantized type (each in its own format with mixedFormats, else all in the widest), fp16
// when any is a float type or packing is off.
std::vector<WeightFormat> deviceFormats(std::initializer_list<const WeightMatrix *> parts, bool pack, bool mixedFormats)
{
    std::vector<WeightFormat> formats;
    std::optional<PackedFormat> widest;
    for (const WeightMatrix *w : parts) {
        const std::optional<PackedFormat> own = packedFormatFor(w->type);
        if (!pack || !own)
            return std::vector<WeightFormat>(parts.size(), WeightFormat::F16);
        widest = widest ? widerPackedFormat(*widest, *own) : *own;
        formats.push_back(static_cast<WeightFormat>(static_cast<int>(*own)));
    }
    if (!mixedFormats)
        std::fill(formats.begin(), formats.end(), static_cast<WeightFormat>(static_cast<int>(*widest)));
    return formats;
}

std::size_t deviceBytes(std::initializer_list<const WeightMatrix *> parts, bool pack, bool mixedFormats = false)
{
    const std::vector<WeightFormat> formats = deviceFormats(parts, pack, mixedFormats);
    std::size_t bytes = 0;
    auto format = formats.begin();
    for (const WeightMatrix *w : parts)
        bytes += sz(w->nOut) * weightRowBytes(*format++, w->nIn);
    return bytes;
}

// fp16 bytes of the largest slice (promptSliceRows) a prompt's GEMMs dequantize at once: of the
// packed matrices without fp16 copies, the layer matrices and the classifier.
std::size_t dequantizedScratchBytes(const CudaBackend::State &s)
{
    std::size_t bytes = 0;
    const auto add = [&](const DeviceMatrix &m) {
        if (holdsPackedWeights(m) && m.promptF16 == nullptr)
            bytes = std::max(bytes, sz(CudaBackend::State::promptSliceRows(m) * m.nIn) * sizeof(Half));
    };
    for (const DeviceLayer &l : s.layers)
        for (const DeviceMatrix *m : {&l.wqkv, &l.wo, &l.wGateUp, &l.wDown})
            add(*m);
    add(s.output);
    return bytes;
}

} // namespace

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

DeviceMatrix CudaBackend::State::uploadMatrix(ThreadPool &pool, const WeightMatrix &w,
                                              std::vector<std::uint8_t> &staging)
{
    return uploadStacked(pool, {&w}, staging).front();
}

std::vector<DeviceMatrix> CudaBackend::State::uploadStacked(ThreadPool &pool,
                                                            std::initializer_list<const WeightMatrix *> parts,
                                                            std::vector<std::uint8_t> &staging, bool mixedFormats)
{
    const std::vector<WeightFormat> formats = deviceFormats(parts, packWeights, mixedFormats);
    if (std::adjacent_find(formats.begin(), formats.end(), std::not_equal_to<>()) != formats.end()) {
        // Each part in its own allocation and format; a part packRow refuses goes up in fp16.
        const std::size_t buffersBefore = weightBuffers.size(), bytesBefore = weightBytes;
        DeviceMatrix whole;
        auto format = formats.begin();
        for (const WeightMatrix *part : parts) {
            std::vector<DeviceMatrix> own = uploadStackedAs(pool, {part}, *format++, staging);
            if (own.empty())
                own = uploadStackedAs(pool, {part}, WeightFormat::F16, staging);
            whole.mixedParts.push_back(own.front());
            whole.nOut += part->nOut;
            whole.nIn = part->nIn;
        }
        if (std::ranges::all_of(whole.mixedParts,
                                [](const DeviceMatrix &m) { return m.weights.format == WeightFormat::F16; })) {
            // Every part refused: the parts' buffers go, and the whole goes up as one stacked fp16
            // matrix, as for float types (a prompt's GEMM reads it as it is, with no fp16 copy).
            weightBuffers.resize(buffersBefore);
            weightBytes = bytesBefore;
            return uploadStackedAs(pool, parts, WeightFormat::F16, staging);
        }
        whole.weights = whole.mixedParts.front().weights;
        std::vector<DeviceMatrix> views{whole};
        views.insert(views.end(), whole.mixedParts.begin(), whole.mixedParts.end());
        return views;
    }
    const WeightFormat format = formats.front();
    if (format != WeightFormat::F16)
        if (auto packed = uploadStackedAs(pool, parts, format, staging); !packed.empty())
            return packed;
    // A float type, packing off, or a block whose scale is beyond fp16 (packRow refused it).
    return uploadStackedAs(pool, parts, WeightFormat::F16, staging);
}

std::vector<DeviceMatrix> CudaBackend::State::uploadLayerMatrix(ThreadPool &pool,
                                                                std::initializer_list<const WeightMatrix *> parts,
                                                                std::vector<std::uint8_t> &staging, bool mixedFormats)
{
    std::vector<DeviceMatrix> views = uploadStacked(pool, parts, staging, mixedFormats);
    DeviceMatrix &whole = views.front();
    if (!promptCopies || !holdsPackedWeights(whole))
        return views;
    // Dequantized on the device from the codes, by the kernel a prompt without copies runs, and
    // multiplied in the same slices of rows (promptSliceRows): the same GEMMs either way, so KV
    // computed with or without copies is the same KV (one KV format), whatever memory the GPU had
    // free at load. The codes went up with cudaMemcpy from pageable memory, which may return
    // before its last DMA lands, on the legacy stream, which the compute stream does not wait for.
    KVCHAT_CUDA_CHECK(cudaDeviceSynchronize());
    auto buffer = std::make_unique<DeviceBuffer>();
    buffer->reserve(sz(whole.nOut * whole.nIn) * sizeof(Half));
    dequantizeRows(whole, 0, whole.nOut, buffer->as<Half>());
    const Half *row = buffer->as<Half>();
    views[0].promptF16 = row;
    for (std::size_t i = 1; i < views.size(); ++i) {
        views[i].promptF16 = row;
        row += views[i].nOut * views[i].nIn;
    }
    weightBytes += buffer->bytes();
    weightBuffers.push_back(std::move(buffer));
    return views;
}

bool CudaBackend::State::kvFromPackedWeights() const
{
    bool packed = embedding.weights.format != WeightFormat::F16;
    for (const DeviceLayer &l : layers)
        for (const DeviceMatrix *m : {&l.wqkv, &l.wo, &l.wGateUp, &l.wDown})
            packed = packed || holdsPackedWeights(*m);
    return packed;
}

std::int64_t CudaBackend::State::promptSliceRows(const DeviceMatrix &w)
{
    constexpr std::size_t kSliceBytes = 128 * kMiB; // an 8B model's gate/up (235 MB): 2 GEMMs
    return std::clamp<std::int64_t>(static_cast<std::int64_t>(kSliceBytes / (sz(w.nIn) * sizeof(Half))), 1, w.nOut);
}

std::vector<DeviceMatrix> CudaBackend::State::uploadStackedAs(ThreadPool &pool,
                                                              std::initializer_list<const WeightMatrix *> parts,
                                                              WeightFormat format, std::vector<std::uint8_t> &staging)
{
    const std::int64_t nIn = (*parts.begin())->nIn;
    std::int64_t nOut = 0;
    for (const WeightMatrix *w : parts)
        nOut += w->nOut;
    const bool packed = format != WeightFormat::F16;
    // Packed: the codes of every row, then every row's (scale, min) halves; fp16: the rows.
    const std::size_t codeBytes = packed ? packedCodeBytes(asPacked(format), nIn) : sz(nIn) * sizeof(Half);
    const std::size_t scaleMinHalves = packed ? sz(packedGroups(asPacked(format), nIn)) * 2 : 0;
    auto buffer = std::make_unique<DeviceBuffer>();
    buffer->reserve(sz(nOut) * weightRowBytes(format, nIn));
    auto *codesPart = buffer->as<std::uint8_t>();
    Half *scaleMinPart = packed ? reinterpret_cast<Half *>(codesPart + sz(nOut) * codeBytes) : nullptr;
    std::vector<DeviceMatrix> views{
        DeviceMatrix{DeviceWeights{format, codesPart, scaleMinPart}, nOut, nIn, nullptr, {}}};
    // Converted on the host (packRow, or dequantizeRow rounded to fp16: every GGUF type the engine
    // reads), copied up in slices of rows so the staging buffer stays ~64 MiB whatever the matrix.
    const std::size_t rowBytes = weightRowBytes(format, nIn);
    const std::int64_t rowsPerSlice = std::max<std::int64_t>(1, static_cast<std::int64_t>(64 * kMiB / rowBytes));
    std::atomic<bool> refused{false};
    for (const WeightMatrix *part : parts) {
        const WeightMatrix &w = *part;
        staging.resize(sz(std::min(rowsPerSlice, w.nOut)) * rowBytes);
        for (std::int64_t r0 = 0; r0 < w.nOut; r0 += rowsPerSlice) {
            const std::int64_t rows = std::min(rowsPerSlice, w.nOut - r0);
            std::uint8_t *codes = staging.data();
            auto *scaleMin = reinterpret_cast<std::uint16_t *>(codes + sz(rows) * codeBytes);
            pool.parallelFor(rows, [&](std::int64_t begin, std::int64_t end, int) {
                std::vector<float> row(packed ? 0 : sz(w.nIn));
                for (std::int64_t r = begin; r < end; ++r) {
                    std::uint8_t *rowCodes = codes + sz(r) * codeBytes;
                    if (packed) {
                        if (!packRow(w.type, w.row(r0 + r), w.nIn, asPacked(format), rowCodes,
                                     scaleMin + sz(r) * scaleMinHalves))
                            refused = true;
                        continue;
                    }
                    dequantizeRow(w.type, w.row(r0 + r), row.data(), w.nIn);
                    auto *out = reinterpret_cast<Half *>(rowCodes);
                    for (std::int64_t i = 0; i < w.nIn; ++i)
                        out[i] = floatToHalf(row[sz(i)]);
                }
            });
            if (refused)
                return {};
            KVCHAT_CUDA_CHECK(
                cudaMemcpy(codesPart + sz(r0) * codeBytes, codes, sz(rows) * codeBytes, cudaMemcpyHostToDevice));
            if (packed)
                KVCHAT_CUDA_CHECK(cudaMemcpy(scaleMinPart + sz(r0) * scaleMinHalves, scaleMin,
                                             sz(rows) * scaleMinHalves * sizeof(Half), cudaMemcpyHostToDevice));
        }
        views.push_back(DeviceMatrix{DeviceWeights{format, codesPart, scaleMinPart}, w.nOut, nIn, nullptr, {}});
        codesPart += sz(w.nOut) * codeBytes;
        if (packed)
            scaleMinPart += sz(w.nOut) * scaleMinHalves;
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
                                  &gemmWorkspace, &candidateWorkspace, &candidateKeys, &dequantized})
        total += b->bytes();
    return total;
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
    const char *weightsEnv = std::getenv("KVCHAT_CUDA_WEIGHTS");
    const std::string_view weightsSetting = weightsEnv != nullptr ? weightsEnv : "auto";
    if (weightsSetting != "auto" && weightsSetting != "packed" && weightsSetting != "f16")
        return makeError("KVCHAT_CUDA_WEIGHTS must be auto, packed or f16 (it is \"" + std::string(weightsSetting) +
                         "\")");
    const bool pack = weightsSetting != "f16";
    // Every layer matrix, the embedding, and the classifier unless it is the embedding, as they
    // will be on the device (the prompt GEMMs' dequantization buffer comes on top: checked when
    // it is allocated); and what the fp16 copies for prompts (State::promptCopies) would add.
    std::size_t neededBytes = deviceBytes({&model.tokenEmbedding()}, pack);
    if (!model.tiedEmbeddings())
        neededBytes += deviceBytes({&model.output()}, pack);
    std::size_t copyBytes = 0;
    const auto addLayerMatrix = [&](std::initializer_list<const WeightMatrix *> parts, bool mixedFormats) {
        neededBytes += deviceBytes(parts, pack, mixedFormats);
        if (deviceFormats(parts, pack, mixedFormats).front() != WeightFormat::F16)
            copyBytes += deviceBytes(parts, false);
    };
    for (const LlamaLayerWeights &l : model.layers()) {
        addLayerMatrix({&l.wq, &l.wk, &l.wv}, true); // each part in its own format, as uploaded
        addLayerMatrix({&l.wo}, false);
        addLayerMatrix({&l.wGate, &l.wUp}, false);
        addLayerMatrix({&l.wDown}, false);
    }
    if (neededBytes > device->freeBytes)
        return makeError("not enough GPU memory for this model on " + device->name + ": its weights need " +
                         std::to_string(neededBytes / kMiB) + " MiB on the device, " +
                         std::to_string(device->freeBytes / kMiB) + " MiB are free");
    const bool promptCopies =
        weightsSetting == "auto" && copyBytes > 0 &&
        static_cast<double>(neededBytes + copyBytes) <= 0.4 * static_cast<double>(device->freeBytes);
    if (c.headDim > 256 || c.headDim % 8 != 0)
        return makeError("the CUDA backend supports head sizes up to 256 in multiples of 8 (this model: " +
                         std::to_string(c.headDim) + ")");
    auto state = std::make_unique<State>();
    state->model = &model;
    state->config = c;
    state->packWeights = pack;
    state->promptCopies = promptCopies;
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
        const char *int8Setting = std::getenv("KVCHAT_CUDA_INT8_DOTS");
        state->int8Dots = int8Setting != nullptr && std::string_view(int8Setting) == "1";
        const char *overlapSetting = std::getenv("KVCHAT_CUDA_OVERLAP");
        state->overlappedLaunches =
            overlappedLaunchesSupported() && (overlapSetting == nullptr || std::string_view(overlapSetting) != "0");

        ThreadPool pool(nThreads);
        std::vector<std::uint8_t> staging;
        state->embedding = state->uploadMatrix(pool, model.tokenEmbedding(), staging);
        state->output = model.tiedEmbeddings() ? state->embedding : state->uploadMatrix(pool, model.output(), staging);
        state->outputNorm = state->uploadFloats(model.outputNorm());
        for (const LlamaLayerWeights &l : model.layers()) {
            DeviceLayer d;
            d.attnNorm = state->uploadFloats(l.attnNorm);
            d.ffnNorm = state->uploadFloats(l.ffnNorm);
            // Q, K and V each in its own format (Q4_K_M: 4-bit Q and K, 8-bit V): the decode
            // kernels take them in a launch per format. Gate and up, which one warp reads
            // together, share the widest.
            const auto qkv = state->uploadLayerMatrix(pool, {&l.wq, &l.wk, &l.wv}, staging, true);
            d.wqkv = qkv[0], d.wq = qkv[1], d.wk = qkv[2], d.wv = qkv[3];
            d.wo = state->uploadLayerMatrix(pool, {&l.wo}, staging).front();
            const auto gateUp = state->uploadLayerMatrix(pool, {&l.wGate, &l.wUp}, staging);
            d.wGateUp = gateUp[0], d.wGate = gateUp[1], d.wUp = gateUp[2];
            d.wDown = state->uploadLayerMatrix(pool, {&l.wDown}, staging).front();
            state->layers.push_back(d);
        }
        state->dequantized.reserve(dequantizedScratchBytes(*state));
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
        // A matrix packRow refused goes up in fp16, 3.2x the bytes counted: hence "at least".
        return makeError(oom ? "not enough GPU memory for this model on " + device->name + " (" +
                                   std::to_string(device->freeBytes / kMiB) + " MiB free; its weights need at least " +
                                   std::to_string(neededBytes / kMiB) + " MiB, plus scratch): " + what
                             : "setting up the CUDA backend on " + device->name + ": " + what);
    }
    return std::unique_ptr<CudaBackend>(new CudaBackend(std::move(state)));
}

} // namespace kvchat::engine::cuda
