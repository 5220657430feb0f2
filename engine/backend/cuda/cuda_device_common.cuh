// SPDX-License-Identifier: MIT
// Kernel file owned by the CUDA-backend owner (STYLE.md §5 exception).
//
// What the CUDA backend's kernel files (cuda_kernels.cu, cuda_attention.cu, cuda_gemv.cu,
// cuda_candidates.cu) share: warp reductions, the row-kernel block size, overlapped launches, the
// empty kernel that reports an unsupported call, and small host helpers (the device's
// shared-memory opt-in limit among them). Included
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

// RMSNorm's scale of a row, 1 / sqrt(mean(row^2) + eps), by a block of kRowThreads threads (each
// gets it): fp32 squares summed per thread over a stride, then across warps. One function for
// rmsNormKernel and the decode projections' fused norm, so that both give the same values.
// Once per kernel (its shared variables are not guarded for reuse).
__device__ __forceinline__ float blockRmsScale(const float *row, int dim, float eps)
{
    constexpr int kWarps = kRowThreads / 32;
    __shared__ float warpSums[kWarps];
    __shared__ float rowScale;
    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid & 31;
    const int warp = tid >> 5;
    float sumSquares = 0.0f;
    for (int i = tid; i < dim; i += kRowThreads)
        sumSquares = fmaf(row[i], row[i], sumSquares);
    sumSquares = warpSum(sumSquares);
    if (lane == 0)
        warpSums[warp] = sumSquares;
    __syncthreads();
    if (warp == 0) {
        float total = lane < kWarps ? warpSums[lane] : 0.0f;
        total = warpSum(total);
        if (lane == 0)
            rowScale = 1.0f / sqrtf(total / static_cast<float>(dim) + eps);
    }
    __syncthreads();
    return rowScale;
}

// Overlapped launches (programmatic dependent launch, sm_90 and later): a decode step is ~110
// small kernels in a row, and between two of them the GPU would sit idle while the first one's
// last blocks drain and the next one ramps up. A kernel launched with overlap (launchKernel) may
// start while the kernel before it in the stream is still running; every thread of it must call
// waitForPrecedingGrid() before it reads or writes anything that kernel (or one before it)
// touches, and before it exits (a grid counts as complete when its blocks have exited, and the
// next kernel's wait relies on that). Before the wait a kernel may only read what no kernel writes
// (weights, through prefetchToL2). allowOverlappedSuccessor() lets the next kernel start once every
// block of this one has called it, instead of when this one's last block exits; the kernels call
// it right after their wait, so the stream runs at most one kernel ahead (further, the prefetched
// weights of several kernels would compete for L2: 50 MB on an H100, one TinyLlama layer in fp16).
// Compiled in for sm_90 and later only: launches ask for overlap only where overlappedLaunchesSupported().
__device__ __forceinline__ void waitForPrecedingGrid()
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
    cudaGridDependencySynchronize();
#endif
}

__device__ __forceinline__ void allowOverlappedSuccessor()
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
    cudaTriggerProgrammaticLaunchCompletion();
#endif
}

// A hint that the 128-byte line at p will be read soon: it is fetched into L2, nothing is loaded
// into a register and nothing faults.
__device__ __forceinline__ void prefetchToL2(const void *p)
{
#if defined(__CUDA_ARCH__)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
    // The CUDA emulator: a read, so that AddressSanitizer checks the address as the GPU would
    // not (nvcc's host pass compiles this too, and never runs it).
    static_cast<void>(*static_cast<const volatile char *>(p));
#endif
}

// Launches Kernel<<<grid, block, smem, stream>>>(args...), with overlap (see above) when asked.
// Errors surface through cudaGetLastError, as for <<<...>>> launches.
template <auto Kernel, class... Args>
void launchKernel(bool overlap, dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream, Args... args)
{
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    // Positional: grid, block, dynamic shared memory, stream, attributes (the CUDA emulator's
    // gridDim and blockDim are macros).
    const cudaLaunchConfig_t config{grid, block, smem, stream, &attribute, overlap ? 1u : 0u};
    static_cast<void>(cudaLaunchKernelEx(&config, Kernel, args...)); // the error stays for cudaGetLastError
}

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
