// SPDX-License-Identifier: MIT
// kvchat-bench-gpu: the CUDA backend's speed against the GPU's own limits (issue 6). For one model:
//   prefill tokens/s at 512 and 2,048 tokens, and the share of the GPU's peak dense fp16 tensor
//     FLOP rate that is (2 x matrix parameters x tokens + causal attention FLOPs); 2,048 also in
//     passes of 256 tokens, to show what the backend's larger micro-batch is worth;
//   decode tokens/s at context 0 and 1,024, and the share of the bandwidth roofline: bytes one
//     token reads (the weights as the device keeps them: fp16, or packed 4-/8-bit codes for a
//     quantized file; + fp16 KV of the context) / the device-to-device copy bandwidth
//     measured here; a step runs as generation runs it (a CUDA graph, fused matrix-vector
//     projections, the top 40 candidates picked on the device), and again without the graph,
//     copying all logits, and with unfused projections (cuBLAS GEMMs; for packed weights the packed
//     matrix-vector kernel one matrix at a time, with the norms and SiLU as separate kernels), and
//     with its kernels launched one after another instead of overlapped (programmatic dependent
//     launch, on sm_90 and later), for comparison;
//   TTFT for a 2,000-token history + 30 new tokens: cold (all 2,030 computed), history on the
//     device, restored from pinned host memory (layer by layer, overlapping the prefill, as the
//     session cache does; also with the layers copied by cudaMemcpyAsync instead of copy kernels),
//     restored from the disk store; and the 30 tokens
//     alone on an empty sequence;
//   host-to-device restore GB/s of the history's blocks against one plain cudaMemcpyAsync of the
//     same bytes from pinned memory;
//   for a quantized file (weights packed on the device, with fp16 copies for prompts where the
//     GPU has room), prefill, decode and the 30-token TTFT again with every matrix in fp16
//     (KVCHAT_CUDA_WEIGHTS=f16) and with the packed codes only (=packed), to show what each is worth.
// Medians over --repeats runs after a warm-up. Prints a markdown table; --json writes the numbers.
//
//   kvchat-bench-gpu -m MODEL.gguf [--label NAME] [--repeats 5] [--json OUT.json]
#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_kv_memory.h"
#include "engine/kv/kv_block_key.h"
#include "engine/model/llama_model.h"
#include "engine/model/model_fingerprint.h"
#include "engine/store/session_store.h"
#include "tests/bench/gpu_bench_common.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

using namespace kvchat::engine;
using namespace kvchat::bench;
using json = nlohmann::json;

namespace {

constexpr int kHistory = 2000;
constexpr int kNewTokens = 30;
constexpr int kDecodeSteps = 64;

class GpuBench
{
public:
    GpuBench(const LlamaModel &model, int repeats) : m_model(model), m_repeats(repeats), m_rng(1)
    {
        auto backend = cuda::CudaBackend::create(model, 0, 16);
        check(backend.ok(), backend ? "" : backend.error().message);
        m_backend = std::move(backend).value();
        const KvLayout layout = m_backend->kvLayout();
        // Room for two 2,048-position sequences at once (the history and its restored copy).
        m_pool = std::make_unique<KvBlockPool>(layout, static_cast<std::uint32_t>(2 * (4096 / layout.blockTokens + 2)),
                                               m_backend->kvMemory());
        check(m_pool->valid(), "no GPU memory for the KV pool");
    }

    const cuda::CudaBackend &backend() const { return *m_backend; }

    std::vector<TokenId> tokens(int n)
    {
        std::uniform_int_distribution<TokenId> dist(0, m_model.config().nVocab - 1);
        std::vector<TokenId> out(static_cast<std::size_t>(n));
        for (TokenId &t : out)
            t = dist(m_rng);
        return out;
    }

    void forward(std::span<const TokenId> t, KvSequence &seq)
    {
        auto r = m_backend->forward(t, seq, LogitsMode::Last, m_logits);
        check(r.ok(), r ? "" : "forward: " + r.error().message);
    }

    // Median seconds of f() over the repeats, after one warm-up call.
    template <typename F> double timed(F &&f)
    {
        f();
        std::vector<double> s;
        for (int i = 0; i < m_repeats; ++i)
            s.push_back(f());
        return median(s);
    }

    // microBatch: tokens per pass through the layers (0: the backend's own choice).
    double prefillSeconds(int n, std::int64_t microBatch = 0)
    {
        const std::int64_t chosen = m_backend->microBatchTokens();
        if (microBatch > 0)
            m_backend->setMicroBatchTokens(microBatch);
        const double s = timed([&] {
            const auto t = tokens(n);
            KvSequence seq(*m_pool);
            const auto start = Clock::now();
            forward(t, seq);
            return secondsSince(start);
        });
        m_backend->setMicroBatchTokens(chosen);
        return s;
    }

    // How a decode step runs: as generation does (the step as a CUDA graph, its projections in
    // the fused matrix-vector kernels, the top 40 candidates selected on the device, the kernels
    // launched overlapped), or with one thing changed, to show what each is worth: no CUDA graph,
    // all logits copied back, cuBLAS projections, kernels launched one after another, packed
    // weights multiplied by int8 inputs (int8 dots, opt-in).
    enum class DecodePath { Generation, NoGraph, FullLogits, Cublas, Serial, Int8Dots };

    // Seconds per token of kDecodeSteps single-token steps after depth positions.
    double decodeSecondsPerToken(int depth, DecodePath path)
    {
        m_backend->setDecodeGraphs(path != DecodePath::NoGraph);
        const bool fused = m_backend->decodeGemv();
        m_backend->setDecodeGemv(fused && path != DecodePath::Cublas);
        const bool overlapped = m_backend->overlappedLaunches();
        m_backend->setOverlappedLaunches(overlapped && path != DecodePath::Serial);
        const bool int8Dots = m_backend->int8Dots();
        m_backend->setInt8Dots(path == DecodePath::Int8Dots);
        CandidateRequest request;
        request.k = 40; // the app's default top-k
        std::vector<TokenCandidate> candidates;
        const double s = timed([&] {
            KvSequence seq(*m_pool);
            if (depth > 0)
                forward(tokens(depth), seq);
            const auto steps = tokens(kDecodeSteps);
            const auto start = Clock::now();
            for (int i = 0; i < kDecodeSteps; ++i) {
                const auto step = std::span(steps).subspan(static_cast<std::size_t>(i), 1);
                if (path == DecodePath::FullLogits) {
                    forward(step, seq);
                } else {
                    auto r = m_backend->forwardCandidates(step, seq, request, candidates);
                    check(r.ok(), r ? "" : "forwardCandidates: " + r.error().message);
                }
            }
            return secondsSince(start) / kDecodeSteps;
        });
        m_backend->setDecodeGraphs(true);
        m_backend->setDecodeGemv(fused);
        m_backend->setOverlappedLaunches(overlapped);
        m_backend->setInt8Dots(int8Dots);
        return s;
    }

    // Milliseconds to the logits of kNewTokens tokens on an empty sequence (a fresh set when
    // none is given).
    double ttftAlone(std::vector<TokenId> fresh = {})
    {
        if (fresh.empty())
            fresh = tokens(kNewTokens);
        return 1e3 * timed([&] {
                   KvSequence empty(*m_pool);
                   const auto start = Clock::now();
                   forward(fresh, empty);
                   return secondsSince(start);
               });
    }

    json ttftAndRestore(const std::string &workDir)
    {
        const KvLayout layout = m_backend->kvLayout();
        const std::size_t blockBytes = layout.blockBytes();
        const auto history = tokens(kHistory);
        const auto fresh = tokens(kNewTokens);
        KvSequence seq(*m_pool);
        forward(history, seq);
        const std::size_t nBlocks = seq.blocks().size();

        // Pinned host copies of the history's blocks (the host tier) and rows in a store (disk).
        std::vector<HostKvBuffer> host;
        for (KvBlockId id : seq.blocks()) {
            host.emplace_back(m_pool->sharedMemory(), blockBytes);
            check(static_cast<bool>(host.back()), "pinned host memory");
            m_pool->download(id, host.back().data());
        }
        std::filesystem::create_directories(workDir);
        const std::string dbPath = workDir + "/gpu-bench.db";
        std::filesystem::remove(dbPath);
        auto store = SessionStore::open(dbPath);
        check(store.ok(), store ? "" : store.error().message);
        ModelFingerprint fingerprint{};
        std::vector<KvBlockKey> keys;
        for (std::size_t b = 0; b < nBlocks; ++b) {
            KvBlockKey key{};
            key.bytes[0] = static_cast<std::uint8_t>(b);
            key.bytes[1] = static_cast<std::uint8_t>(b >> 8);
            keys.push_back(key);
            check((*store)->putKvBlock(key, fingerprint, layout.blockTokens, {host[b].data(), blockBytes}).ok(),
                  "writing a KV block to the store");
        }

        // A restored sequence: fresh device blocks filled from source(b), then the 30 new tokens.
        // layered: as the session cache restores the host tier, the uploads are issued layer by
        // layer and the forward pass waits for each layer just before it uses it.
        const auto restoreAndAnswer = [&](const std::function<void(std::size_t, KvBlockId)> &fill, bool layered) {
            KvSequence restored(*m_pool);
            const auto start = Clock::now();
            if (layered)
                m_pool->memory().beginLayeredUploads(layout.nLayers,
                                                     blockBytes / static_cast<std::size_t>(layout.nLayers));
            for (std::size_t b = 0; b < nBlocks; ++b) {
                auto id = m_pool->allocate();
                check(id.has_value(), "KV pool full");
                fill(b, *id);
                restored.appendBlock(*id, true);
            }
            if (!layered || !m_pool->memory().endLayeredUploads())
                m_pool->finishCopies();
            restored.setTokenCount(kHistory);
            forward(fresh, restored);
            return secondsSince(start);
        };

        json out;
        out["blocks"] = nBlocks;
        out["block_bytes"] = blockBytes;
        out["ttft_alone_ms"] = ttftAlone(fresh);
        out["ttft_cold_ms"] = 1e3 * timed([&] {
                                  std::vector<TokenId> all = history;
                                  all.insert(all.end(), fresh.begin(), fresh.end());
                                  KvSequence cold(*m_pool);
                                  const auto start = Clock::now();
                                  forward(all, cold);
                                  return secondsSince(start);
                              });
        out["ttft_device_ms"] = 1e3 * timed([&] {
                                    const auto start = Clock::now();
                                    forward(fresh, seq);
                                    const double s = secondsSince(start);
                                    seq.truncate(kHistory);
                                    return s;
                                });
        const auto fromHost = [&] {
            return restoreAndAnswer([&](std::size_t b, KvBlockId id) { m_pool->upload(id, host[b].data()); }, true);
        };
        out["ttft_host_ms"] = 1e3 * timed(fromHost);
        // The same with the layers issued as a cudaMemcpyAsync per block and layer (DMA engines)
        // instead of one copySlices kernel per layer (SMs reading the pinned buffers).
        auto &memory = dynamic_cast<cuda::CudaKvMemory &>(m_pool->memory());
        memory.setLayeredKernels(false);
        out["ttft_host_memcpy_layers_ms"] = 1e3 * timed(fromHost);
        memory.setLayeredKernels(true);
        HostKvBuffer staging(m_pool->sharedMemory(), blockBytes);
        out["ttft_disk_ms"] =
            1e3 * timed([&] {
                return restoreAndAnswer(
                    [&](std::size_t b, KvBlockId id) {
                        auto found = (*store)->getKvBlockInto(keys[b], fingerprint, {staging.data(), blockBytes});
                        check(found.ok() && *found == KvBlockLookup::Found, "reading a KV block from the store");
                        m_pool->upload(id, staging.data());
                        m_pool->finishCopies(); // the staging buffer takes the next block
                    },
                    false);
            });

        // Restore bandwidth: the blocks one by one through the pool, against one plain copy.
        const double restoreSeconds = timed([&] {
            std::vector<KvBlockId> ids;
            const auto start = Clock::now();
            for (std::size_t b = 0; b < nBlocks; ++b) {
                ids.push_back(*m_pool->allocate());
                m_pool->upload(ids.back(), host[b].data());
            }
            m_pool->finishCopies();
            const double s = secondsSince(start);
            for (KvBlockId id : ids)
                m_pool->release(id);
            return s;
        });
        const std::size_t total = nBlocks * blockBytes;
        void *pinned = nullptr, *device = nullptr;
        cudaStream_t stream = nullptr;
        checkCuda(cudaHostAlloc(&pinned, total, cudaHostAllocDefault), "cudaHostAlloc");
        checkCuda(cudaMalloc(&device, total), "cudaMalloc");
        checkCuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
        const double plainSeconds = timed([&] {
            const auto start = Clock::now();
            checkCuda(cudaMemcpyAsync(device, pinned, total, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
            checkCuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
            return secondsSince(start);
        });
        cudaStreamDestroy(stream);
        cudaFree(device);
        cudaFreeHost(pinned);
        out["restore_gb_per_s"] = static_cast<double>(total) / restoreSeconds / 1e9;
        out["plain_pinned_copy_gb_per_s"] = static_cast<double>(total) / plainSeconds / 1e9;
        return out;
    }

private:
    const LlamaModel &m_model;
    int m_repeats;
    std::mt19937_64 m_rng;
    std::unique_ptr<cuda::CudaBackend> m_backend;
    std::unique_ptr<KvBlockPool> m_pool;
    std::vector<float> m_logits;
};

} // namespace

int main(int argc, char **argv)
{
    std::string modelPath, label, jsonPath, workDir = "gpu-bench-work";
    int repeats = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string arg = argv[i], value = argv[i + 1];
        if (arg == "-m")
            modelPath = value;
        else if (arg == "--label")
            label = value;
        else if (arg == "--repeats")
            repeats = std::max(1, std::atoi(value.c_str()));
        else if (arg == "--json")
            jsonPath = value;
        else if (arg == "--workdir")
            workDir = value;
    }
    if (modelPath.empty()) {
        std::cerr << "usage: kvchat-bench-gpu -m MODEL.gguf [--label NAME] [--repeats 5] [--json OUT.json]\n";
        return 2;
    }
    try {
        auto model = LlamaModel::load(modelPath);
        check(model.ok(), model ? "" : model.error().message);
        const LlamaConfig &c = (*model)->config();
        GpuBench bench(**model, repeats);
        const cuda::CudaDeviceInfo &gpu = bench.backend().device();
        const double peak = peakFp16Flops(gpu.name);
        const double bandwidth = deviceCopyBandwidth();

        // FLOPs: every layer matrix once per token, the classifier for the last token only, and
        // QKᵀ plus PV over the causal triangle.
        const double layerParams = static_cast<double>(c.nLayers) *
                                   (static_cast<double>(c.nEmbd) * (c.nHeads * c.headDim + 2 * c.kvDim()) +
                                    static_cast<double>(c.nHeads * c.headDim) * c.nEmbd + 3.0 * c.nEmbd * c.nFf);
        const double classifierParams = static_cast<double>(c.nVocab) * c.nEmbd;
        const auto prefillFlops = [&](double n) {
            return 2.0 * layerParams * n + 2.0 * classifierParams +
                   4.0 * c.nLayers * c.nHeads * c.headDim * n * (n + 1) / 2.0;
        };
        // Bytes one decode step reads: layer matrices and the classifier as the device holds them
        // (fp16 or packed), norms, and the context's K and V (fp16) for every layer.
        const auto decodeBytes = [&](double ctx) {
            return static_cast<double>(bench.backend().decodeWeightBytes()) +
                   static_cast<double>(bench.backend().kvLayout().elementBytes) * ctx * c.nLayers * 2.0 * c.kvDim();
        };

        json result;
        result["model"] = label.empty() ? std::filesystem::path(modelPath).filename().string() : label;
        result["gpu"] = {{"name", gpu.name},
                         {"compute_capability", gpu.computeCapability},
                         {"multiprocessors", gpu.multiprocessors},
                         {"memory_mib", gpu.totalBytes >> 20},
                         {"peak_fp16_tflops", peak / 1e12},
                         {"device_copy_gb_per_s", bandwidth / 1e9}};
        result["weights_mib"] = bench.backend().weightBytes() >> 20;
        result["weights"] = bench.backend().weightsDescription();
        result["repeats"] = repeats;
        result["micro_batch_tokens"] = bench.backend().microBatchTokens();
        for (int n : {512, 2048}) {
            const double s = bench.prefillSeconds(n);
            result["prefill"][std::to_string(n)] = {{"tokens_per_s", n / s},
                                                    {"ms", 1e3 * s},
                                                    {"tflops", prefillFlops(n) / s / 1e12},
                                                    {"peak_fraction", peak > 0 ? prefillFlops(n) / s / peak : 0.0}};
        }
        // What the large micro-batch is worth: the same 2,048 tokens in passes of 256.
        const double split = bench.prefillSeconds(2048, 256);
        result["prefill"]["2048"]["tokens_per_s_in_passes_of_256"] = 2048 / split;
        for (int depth : {0, 1024}) {
            const double s = bench.decodeSecondsPerToken(depth, GpuBench::DecodePath::Generation);
            const double noGraph = bench.decodeSecondsPerToken(depth, GpuBench::DecodePath::NoGraph);
            const double fullLogits = bench.decodeSecondsPerToken(depth, GpuBench::DecodePath::FullLogits);
            const double viaCublas = bench.decodeSecondsPerToken(depth, GpuBench::DecodePath::Cublas);
            const double serial = bench.decodeSecondsPerToken(depth, GpuBench::DecodePath::Serial);
            const double ctx = depth + kDecodeSteps / 2.0;
            result["decode"][std::to_string(depth)] = {{"tokens_per_s", 1.0 / s},
                                                       {"bytes_per_token", decodeBytes(ctx)},
                                                       {"roofline_fraction", decodeBytes(ctx) / s / bandwidth},
                                                       {"tokens_per_s_without_graph", 1.0 / noGraph},
                                                       {"tokens_per_s_copying_all_logits", 1.0 / fullLogits},
                                                       {"tokens_per_s_with_cublas_projections", 1.0 / viaCublas},
                                                       {"tokens_per_s_serial_launches", 1.0 / serial}};
            // Only packed weights take int8 inputs (the fp16 models' steps would be the same).
            if (bench.backend().weightsDescription().find("packed") != std::string::npos)
                result["decode"][std::to_string(depth)]["tokens_per_s_int8_dots"] =
                    1.0 / bench.decodeSecondsPerToken(depth, GpuBench::DecodePath::Int8Dots);
        }
        result["decode_overlapped_launches"] = bench.backend().overlappedLaunches();
        result["decode_graph"] = {{"launches", bench.backend().decodeGraphStats().launches},
                                  {"instantiations", bench.backend().decodeGraphStats().instantiations}};
        result["ttft"] = bench.ttftAndRestore(workDir);
        const json &t = result["ttft"];
        // A quantized file: the same model with every matrix in fp16 on the device, and with only
        // the packed codes (prompts dequantize them: what a GPU without room for the fp16 copies
        // runs), to measure what each way of holding the weights is worth.
        // The main measurements are kept even if a variant below fails or the run is cut short.
        const auto writeJson = [&] {
            if (!jsonPath.empty())
                std::ofstream(jsonPath) << result.dump(2) << "\n";
        };
        writeJson();
        const bool packed = result["weights"].get<std::string>().find("packed") != std::string::npos;
        const std::pair<const char *, const char *> variants[] = {{"f16", "fp16_weights"},
                                                                  {"packed", "packed_weights_only"}};
        for (const auto &[setting, key] : variants) {
            if (!packed)
                break;
            // Loaded next to the main backend (its device reference prints the table): an H100
            // holds both; where one does not fit, the row says why.
            try {
                setenv("KVCHAT_CUDA_WEIGHTS", setting, 1);
                GpuBench other(**model, repeats);
                unsetenv("KVCHAT_CUDA_WEIGHTS");
                result[key] = {
                    {"weights_mib", other.backend().weightBytes() >> 20},
                    {"micro_batch_tokens", other.backend().microBatchTokens()},
                    {"prefill_512_tokens_per_s", 512 / other.prefillSeconds(512)},
                    {"prefill_2048_tokens_per_s", 2048 / other.prefillSeconds(2048)},
                    {"decode_0_tokens_per_s", 1.0 / other.decodeSecondsPerToken(0, GpuBench::DecodePath::Generation)},
                    {"decode_1024_tokens_per_s",
                     1.0 / other.decodeSecondsPerToken(1024, GpuBench::DecodePath::Generation)},
                    {"ttft_alone_ms", other.ttftAlone()}};
            } catch (const std::exception &e) {
                unsetenv("KVCHAT_CUDA_WEIGHTS");
                result[key] = {{"error", e.what()}};
            }
            writeJson();
        }
        result["targets"] = {
            {"decode_roofline_ge_0.7", result["decode"]["0"]["roofline_fraction"].get<double>() >= 0.7},
            {"prefill2048_peak_ge_0.5", result["prefill"]["2048"]["peak_fraction"].get<double>() >= 0.5},
            {"restore_ge_0.8_of_plain_copy",
             t["restore_gb_per_s"].get<double>() >= 0.8 * t["plain_pinned_copy_gb_per_s"].get<double>()},
            {"ttft_device_le_1.2_alone", t["ttft_device_ms"].get<double>() <= 1.2 * t["ttft_alone_ms"].get<double>()}};

        std::printf("| %s on %s | value |\n|---|---:|\n", result["model"].get<std::string>().c_str(), gpu.name.c_str());
        std::printf("| weights on the device: MiB (%s) | %lld |\n", result["weights"].get<std::string>().c_str(),
                    static_cast<long long>(result["weights_mib"].get<std::size_t>()));
        for (const char *n : {"512", "2048"})
            std::printf("| prefill %s: tokens/s (share of %.0f TFLOP/s fp16 peak) | %.0f (%.2f) |\n", n, peak / 1e12,
                        result["prefill"][n]["tokens_per_s"].get<double>(),
                        result["prefill"][n]["peak_fraction"].get<double>());
        std::printf("| prefill 2048 in passes of 256 (the backend's own: %lld): tokens/s | %.0f |\n",
                    static_cast<long long>(result["micro_batch_tokens"].get<std::int64_t>()),
                    result["prefill"]["2048"]["tokens_per_s_in_passes_of_256"].get<double>());
        for (const char *d : {"0", "1024"}) {
            std::printf("| decode at context %s: tokens/s (share of %.0f GB/s roofline) | %.1f (%.2f) |\n", d,
                        bandwidth / 1e9, result["decode"][d]["tokens_per_s"].get<double>(),
                        result["decode"][d]["roofline_fraction"].get<double>());
            std::printf("| decode at context %s without the CUDA graph / copying all logits / unfused projections / "
                        "kernels not overlapped%s: tokens/s | %.1f / %.1f / %.1f / %.1f |\n",
                        d, result["decode_overlapped_launches"].get<bool>() ? "" : " (no overlap on this GPU)",
                        result["decode"][d]["tokens_per_s_without_graph"].get<double>(),
                        result["decode"][d]["tokens_per_s_copying_all_logits"].get<double>(),
                        result["decode"][d]["tokens_per_s_with_cublas_projections"].get<double>(),
                        result["decode"][d]["tokens_per_s_serial_launches"].get<double>());
            if (result["decode"][d].contains("tokens_per_s_int8_dots"))
                std::printf("| decode at context %s, packed weights times int8 inputs (int8 dots): tokens/s | %.1f |\n",
                            d, result["decode"][d]["tokens_per_s_int8_dots"].get<double>());
        }
        const std::pair<const char *, const char *> ttftRows[] = {
            {"ttft_alone_ms", "TTFT ms: the 30 new tokens alone"},
            {"ttft_cold_ms", "TTFT ms: 2,000 + 30 tokens, all computed"},
            {"ttft_device_ms", "TTFT ms: 2,000 on the device + 30"},
            {"ttft_host_ms", "TTFT ms: 2,000 from pinned host memory + 30"},
            {"ttft_host_memcpy_layers_ms", "TTFT ms: the same, layers as one cudaMemcpyAsync per block"},
            {"ttft_disk_ms", "TTFT ms: 2,000 from the disk store + 30"}};
        for (const auto &[key, label] : ttftRows)
            std::printf("| %s | %.2f |\n", label, t[key].get<double>());
        std::printf("| restore GB/s vs plain pinned copy | %.1f vs %.1f |\n", t["restore_gb_per_s"].get<double>(),
                    t["plain_pinned_copy_gb_per_s"].get<double>());
        const std::pair<const char *, const char *> variantRows[] = {
            {"fp16_weights", "every matrix in fp16"}, {"packed_weights_only", "packed codes only, no fp16 copies"}};
        for (const auto &[key, what] : variantRows) {
            if (!result.contains(key))
                continue;
            const json &f = result[key];
            if (f.contains("error")) {
                std::printf("| %s | failed: %s |\n", what, f["error"].get<std::string>().c_str());
                continue;
            }
            std::printf("| %s (%lld MiB): prefill 512 / 2048, decode at 0 / 1024: tokens/s; "
                        "TTFT ms of the 30 tokens alone | %.0f / %.0f, %.1f / %.1f; %.2f |\n",
                        what, static_cast<long long>(f["weights_mib"].get<std::size_t>()),
                        f["prefill_512_tokens_per_s"].get<double>(), f["prefill_2048_tokens_per_s"].get<double>(),
                        f["decode_0_tokens_per_s"].get<double>(), f["decode_1024_tokens_per_s"].get<double>(),
                        f["ttft_alone_ms"].get<double>());
        }
        std::cout << "targets: " << result["targets"].dump() << "\n";
        writeJson();
    } catch (const std::exception &e) {
        std::cerr << "kvchat-bench-gpu: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
