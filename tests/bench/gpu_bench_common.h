// SPDX-License-Identifier: MIT
// What the GPU benchmark programs share (kvchat-bench-gpu, kvchat-bench-gpu-kernels): failing with
// a message, medians, the GPU's peak fp16 rate by name and its measured copy bandwidth.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace kvchat::bench {

using Clock = std::chrono::steady_clock;

inline void check(bool ok, const std::string &what)
{
    if (!ok)
        throw std::runtime_error(what);
}

inline void checkCuda(cudaError_t e, const char *what)
{
    if (e != cudaSuccess)
        throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

inline double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

inline double secondsSince(Clock::time_point start)
{
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// Dense fp16 tensor-core peak (no sparsity) by product name, from NVIDIA's data sheets; 0 when
// this GPU is not in the table (the fraction is then not reported).
inline double peakFp16Flops(const std::string &name)
{
    if (name.find("H200") != std::string::npos || name.find("H100 80GB HBM3") != std::string::npos ||
        name.find("H100 SXM") != std::string::npos)
        return 989.4e12;
    if (name.find("H100 NVL") != std::string::npos)
        return 835.0e12;
    if (name.find("H100") != std::string::npos) // PCIe
        return 756.0e12;
    if (name.find("A100") != std::string::npos)
        return 312.0e12;
    return 0.0;
}

// Device-to-device copy of 1 GiB: bytes read + written per second (what streaming kernels get).
inline double deviceCopyBandwidth()
{
    const std::size_t bytes = std::size_t(1) << 30;
    void *a = nullptr, *b = nullptr;
    checkCuda(cudaMalloc(&a, bytes), "cudaMalloc");
    checkCuda(cudaMalloc(&b, bytes), "cudaMalloc");
    checkCuda(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice), "warm-up copy");
    std::vector<double> s;
    for (int i = 0; i < 5; ++i) {
        const auto start = Clock::now();
        checkCuda(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy");
        checkCuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
        s.push_back(secondsSince(start));
    }
    cudaFree(a);
    cudaFree(b);
    return 2.0 * static_cast<double>(bytes) / median(s);
}

} // namespace kvchat::bench
