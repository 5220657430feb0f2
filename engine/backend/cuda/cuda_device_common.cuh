// SPDX-License-Identifier: MIT
// Kernel file owned by the CUDA-backend owner (STYLE.md §5 exception).
//
// What the CUDA backend's kernel files (cuda_kernels.cu, cuda_attention.cu, cuda_candidates.cu)
// share: warp reductions, the row-kernel block size, the empty kernel that reports an unsupported
// call, and small host helpers (the device's shared-memory opt-in limit among them). Included
// after <cuda_runtime.h> and <cuda_fp16.h>, inside each file's anonymous namespace, and includes
// nothing itself, so that the CUDA emulator's transformed copies (tests/gpu/emulator/) can include
// it as it is.
#pragma once

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

// Threads of the per-row and element-wise kernels (and of the repetition penalty).
constexpr int kRowThreads = 256;

// An empty grid fails with cudaErrorInvalidConfiguration: a host function launches it for a call
// it cannot serve, so that the caller's cudaGetLastError reports it instead of a silent no-op.
__global__ void unsupportedShapeKernel() {}

// The dynamic shared memory a block of this device may opt in to (asked once; 48 KiB, what every
// GPU allows without opting in, when the query fails).
inline std::size_t maxOptInSharedBytes()
{
    static const std::size_t bytes = [] {
        int device = 0, value = 0;
        if (cudaGetDevice(&device) != cudaSuccess ||
            cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) {
            cudaGetLastError();
            return std::size_t(48 * 1024);
        }
        return static_cast<std::size_t>(value);
    }();
    return bytes;
}

inline std::int64_t ceilDiv(std::int64_t a, std::int64_t b)
{
    return (a + b - 1) / b;
}
