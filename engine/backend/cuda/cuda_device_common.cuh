// SPDX-License-Identifier: MIT
// Kernel file owned by the CUDA-backend owner (STYLE.md §5 exception).
//
// What the CUDA backend's kernel files (cuda_kernels.cu, cuda_attention.cu, cuda_candidates.cu)
// share: warp reductions, the row-kernel block size, the empty kernel that reports an unsupported
// call, and small host helpers. Included after <cuda_runtime.h> and <cuda_fp16.h>, inside each
// file's anonymous namespace, and includes nothing itself, so that the CUDA emulator's transformed
// copies (tests/gpu/emulator/) can include it as it is.
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

inline std::int64_t ceilDiv(std::int64_t a, std::int64_t b)
{
    return (a + b - 1) / b;
}
