// SPDX-License-Identifier: MIT
// kvchat-bench-gpu-kernels: two of the CUDA backend's kernels alone, against the GPU's own limits,
// to show where a model's prefill and decode time goes (kvchat-bench-gpu measures whole steps):
//   - the decode matrix-vector kernel (cuda_gemv.cu) on fp16, packed 4-bit and packed 8-bit
//     weights (these with fp16 inputs, the backend's default, and with int8 dots): weight GB/s
//     against the device-to-device copy bandwidth, one launch after another as a CUDA graph, with
//     the launches overlapped (programmatic dependent launch, sm_90 and later) and serial. A
//     Q/K/V-like launch of 3 x 8,192 rows of 2,048, the input normalized in the kernel, as in a
//     decode step. Packed weights with fp16 inputs below the copy bandwidth by more than fp16
//     weights means that path is bound by instructions, not memory; int8 dots (opt-in, less
//     accurate) are the alternative.
//   - prefill attention over 2,048 tokens (cuda_attention.cu, tensor cores) at the head shapes of
//     TinyLlama and SmolLM2 (head size 64) and Llama 3 8B (128): TFLOP/s of the causal QK^T and
//     PV against the fp16 tensor peak.
// Medians over repeats; prints a markdown table, --json writes the numbers.
//
//   kvchat-bench-gpu-kernels [--json OUT.json]
#include "engine/backend/cuda/cuda_kernels.h"
#include "tests/bench/gpu_bench_common.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

using namespace kvchat::engine::cuda;
using namespace kvchat::bench;
using json = nlohmann::json;

namespace {

constexpr int kRepeats = 5;

// Device memory freed at scope exit.
struct DeviceBytes
{
    void *p = nullptr;
    explicit DeviceBytes(std::size_t bytes, int fill)
    {
        checkCuda(cudaMalloc(&p, bytes), "cudaMalloc");
        checkCuda(cudaMemset(p, fill, bytes), "cudaMemset");
    }
    ~DeviceBytes() { cudaFree(p); }
    DeviceBytes(const DeviceBytes &) = delete;
    DeviceBytes &operator=(const DeviceBytes &) = delete;
    template <class T> T *as() const { return static_cast<T *>(p); }
};

// Median milliseconds of enqueue() on stream, timed with events (after one warm-up run).
template <class F> double medianMs(cudaStream_t stream, F &&enqueue)
{
    cudaEvent_t start = nullptr, stop = nullptr;
    checkCuda(cudaEventCreate(&start), "cudaEventCreate");
    checkCuda(cudaEventCreate(&stop), "cudaEventCreate");
    enqueue();
    checkCuda(cudaStreamSynchronize(stream), "warm-up");
    std::vector<double> ms;
    for (int i = 0; i < kRepeats; ++i) {
        checkCuda(cudaEventRecord(start, stream), "cudaEventRecord");
        enqueue();
        checkCuda(cudaEventRecord(stop, stream), "cudaEventRecord");
        checkCuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
        float elapsed = 0.0f;
        checkCuda(cudaEventElapsedTime(&elapsed, start, stop), "cudaEventElapsedTime");
        ms.push_back(elapsed);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return median(ms);
}

// Seconds per launch of a Q/K/V-like gemv, the launches captured as one graph.
double gemvSecondsPerLaunch(WeightFormat format, bool int8Dots, bool overlap, cudaStream_t stream)
{
    constexpr int kDim = 2048, kRowsPerMatrix = 8192, kLaunches = 50;
    const std::size_t rows = 3 * static_cast<std::size_t>(kRowsPerMatrix);
    // The codes of every row, then every row's (scale, min) halves (cuda_kernels.h).
    const std::size_t rowCodes = weightCodeBytes(format, kDim), rowScaleMin = weightRowBytes(format, kDim) - rowCodes;
    // 0x2c bytes: fp16 0x2c2c (0.065) as weights, scales and minima; any codes.
    DeviceBytes weights(rows * weightRowBytes(format, kDim), 0x2c);
    // 0x3c bytes: 0.0115 as fp32, a residual and norm weights the input quantization has work on.
    DeviceBytes residual(kDim * sizeof(float), 0x3c), norm(kDim * sizeof(float), 0x3c), y(rows * sizeof(float), 0);
    GemvInput in{nullptr, residual.as<float>(), norm.as<float>(), 1e-5f, kDim, overlap, int8Dots};
    GemvMatrix matrices[3];
    for (int m = 0; m < 3; ++m) {
        const std::size_t firstRow = static_cast<std::size_t>(m) * kRowsPerMatrix;
        const auto *base = weights.as<std::uint8_t>();
        DeviceWeights w{format, base + firstRow * rowCodes, nullptr};
        if (format != WeightFormat::F16)
            w.scaleMin = reinterpret_cast<const Half *>(base + rows * rowCodes + firstRow * rowScaleMin);
        matrices[m] = GemvMatrix{w, kRowsPerMatrix, y.as<float>() + firstRow};
    }
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    checkCuda(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    for (int i = 0; i < kLaunches; ++i)
        gemv(in, matrices, 3, false, stream);
    checkCuda(cudaGetLastError(), "gemv launch");
    checkCuda(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
    checkCuda(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    const double ms = medianMs(stream, [&] { checkCuda(cudaGraphLaunch(exec, stream), "cudaGraphLaunch"); });
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    return ms / 1e3 / kLaunches;
}

// Seconds of one causal prefill attention over n tokens (one layer, positions 0..n-1).
double attentionSeconds(int nHeads, int nKvHeads, int headDim, int n, cudaStream_t stream)
{
    constexpr int kBlockTokens = 16;
    const int kvDim = nKvHeads * headDim;
    const int nBlocks = n / kBlockTokens;
    KvTarget kv;
    kv.blockTokens = kBlockTokens;
    kv.kvDim = kvDim;
    kv.layer = 0;
    kv.blockElements = static_cast<std::size_t>(2) * kBlockTokens * kvDim;
    DeviceBytes arena(static_cast<std::size_t>(nBlocks) * kv.blockElements * sizeof(Half), 0x2c);
    std::vector<std::int32_t> table(static_cast<std::size_t>(nBlocks));
    for (int b = 0; b < nBlocks; ++b)
        table[static_cast<std::size_t>(b)] = b;
    DeviceBytes blockTable(table.size() * sizeof(std::int32_t), 0);
    checkCuda(cudaMemcpy(blockTable.p, table.data(), table.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice),
              "block table");
    kv.arena = arena.as<Half>();
    kv.blockTable = blockTable.as<std::int32_t>();
    const AttentionShape shape{nHeads, nKvHeads, headDim, 1.0f / static_cast<float>(headDim)};
    const std::size_t qElements = static_cast<std::size_t>(n) * nHeads * headDim;
    DeviceBytes q(qElements * sizeof(float), 0), out(qElements * sizeof(Half), 0);
    DeviceBytes workspace(attentionWorkspaceFloats(shape, n, 0) * sizeof(float) + 16, 0);
    const double ms = medianMs(stream, [&] {
        attention(shape, q.as<float>(), kv, n, 0, workspace.as<float>(), out.as<Half>(), stream);
        checkCuda(cudaGetLastError(), "attention launch");
    });
    return ms / 1e3;
}

} // namespace

int main(int argc, char **argv)
{
    std::string jsonPath;
    for (int i = 1; i + 1 < argc; i += 2)
        if (std::string(argv[i]) == "--json")
            jsonPath = argv[i + 1];
    try {
        cudaDeviceProp prop{};
        checkCuda(cudaGetDeviceProperties(&prop, 0), "no usable CUDA GPU");
        const double bandwidth = deviceCopyBandwidth();
        const double peak = peakFp16Flops(prop.name);
        cudaStream_t stream = nullptr;
        checkCuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
        check(gemvReserveSharedMemory(2048), "the matrix-vector kernels cannot take width 2,048 here");

        json result;
        result["gpu"] = {{"name", prop.name},
                         {"compute_capability", prop.major * 10 + prop.minor},
                         {"device_copy_gb_per_s", bandwidth / 1e9},
                         {"peak_fp16_tflops", peak / 1e12},
                         {"overlapped_launches", overlappedLaunchesSupported()}};
        std::printf("| kernel on %s | value |\n|---|---:|\n", prop.name);
        struct Variant
        {
            WeightFormat format;
            bool int8Dots;
            const char *name;
        };
        for (const auto &[format, int8Dots, name] : {Variant{WeightFormat::F16, false, "fp16"},
                                                     Variant{WeightFormat::Q4G32, false, "packed 4-bit, fp16 inputs"},
                                                     Variant{WeightFormat::Q4G32, true, "packed 4-bit, int8 dots"},
                                                     Variant{WeightFormat::Q8G16, false, "packed 8-bit, fp16 inputs"},
                                                     Variant{WeightFormat::Q8G16, true, "packed 8-bit, int8 dots"}}) {
            const double bytes = 3.0 * 8192 * static_cast<double>(weightRowBytes(format, 2048));
            json row;
            for (const bool overlap : {true, false}) {
                if (overlap && !overlappedLaunchesSupported())
                    continue;
                const double s = gemvSecondsPerLaunch(format, int8Dots, overlap, stream);
                row[overlap ? "overlapped" : "serial"] = {{"us_per_launch", s * 1e6},
                                                          {"gb_per_s", bytes / s / 1e9},
                                                          {"copy_bandwidth_fraction", bytes / s / bandwidth}};
                std::printf("| gemv %s, 3 x 8,192 x 2,048, %s: weight GB/s (share of %.0f GB/s copy) | %.0f (%.2f) |\n",
                            name, overlap ? "overlapped" : "serial", bandwidth / 1e9, bytes / s / 1e9,
                            bytes / s / bandwidth);
            }
            result["gemv"][name] = row;
        }
        struct HeadShape
        {
            const char *name;
            int nHeads, nKvHeads, headDim;
        };
        for (const HeadShape &h :
             {HeadShape{"tinyllama", 32, 4, 64}, HeadShape{"smollm2", 9, 3, 64}, HeadShape{"llama-3-8b", 32, 8, 128}}) {
            constexpr int n = 2048;
            const double s = attentionSeconds(h.nHeads, h.nKvHeads, h.headDim, n, stream);
            const double flops = 4.0 * h.nHeads * h.headDim * (static_cast<double>(n) * (n + 1) / 2.0);
            result["prefill_attention_2048"][h.name] = {
                {"ms", s * 1e3}, {"tflops", flops / s / 1e12}, {"peak_fraction", peak > 0 ? flops / s / peak : 0.0}};
            std::printf("| prefill attention, 2,048 tokens, %d/%d heads of %d (%s): ms, TFLOP/s (share of peak) | "
                        "%.3f, %.0f (%.2f) |\n",
                        h.nHeads, h.nKvHeads, h.headDim, h.name, s * 1e3, flops / s / 1e12,
                        peak > 0 ? flops / s / peak : 0.0);
        }
        cudaStreamDestroy(stream);
        if (!jsonPath.empty())
            std::ofstream(jsonPath) << result.dump(2) << "\n";
    } catch (const std::exception &e) {
        std::cerr << "kvchat-bench-gpu-kernels: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
