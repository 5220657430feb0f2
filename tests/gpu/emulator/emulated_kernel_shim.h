// SPDX-License-Identifier: MIT
// What a CUDA kernel source needs to compile as plain C++ and run on the emulated device.
// transform_cuda_kernels.py puts `#include "emulated_kernel_shim.h"` in place of <cuda_runtime.h>
// in a copy of engine/backend/cuda/cuda_kernels.cu and turns each `kernel<<<g, b, smem, s>>>(args)`
// into an emu::launch() call; the kernels themselves compile unchanged.
//
// The model: each CUDA thread of a block is a fiber (emulated_threads.cpp); __syncthreads is a
// block-wide barrier and the warp shuffles are warp-wide barriers that exchange values, so a
// divergent barrier deadlocks and is reported. threadIdx, blockIdx, blockDim and gridDim are
// globals the scheduler sets before it resumes a fiber. Static __shared__ variables become C++
// statics (one copy; blocks run one after another, so it is never shared between live blocks, but
// it keeps the previous block's values, where dynamic shared memory is refilled with 0xff bytes).
// Device math (expf, sqrtf, fmaf, the <cuda_fp16.h> conversions) is the host's: correctly rounded
// or within an ulp or two of the GPU's, never bit-identical by design.
//
// Not covered (a compile error, or EMU FATAL at run time): 2-D/3-D blocks, blocks that are not
// a multiple of 32 threads, partial warp masks, atomics, cooperative groups, textures,
// WMMA shapes other than 16x16x16 with fp16 inputs (emulated_wmma.h).
#pragma once
#include "emulated_device.h"
#include "emulated_wmma.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cuda_fp16.h>
#include <functional>
#include <type_traits>

#undef threadIdx
#undef blockIdx
#undef blockDim
#undef gridDim
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...) // no registers, no occupancy: nothing to bound

// The emulated thread's coordinates and the block's dynamic shared memory (emulated_threads.cpp).
namespace emu {
extern uint3 g_threadIdx, g_blockIdx;
extern dim3 g_blockDim, g_gridDim;
extern void *g_dynSmem;
extern std::size_t g_dynSmemBytes;
void syncthreads();
// __syncwarp(): a barrier of the calling thread's warp.
void syncwarp();
// One warp-wide exchange: every lane of the calling thread's warp passes bits, gets lane src's.
std::uint64_t shuffleBits(std::uint64_t bits, unsigned src);
// Validates the launch configuration now (errors go to cudaGetLastError) and queues the grid on
// the stream. fn is the kernel call with its arguments captured by value. overlapped: launched
// with programmatic stream serialization (see runGrid).
void launch(dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream, const void *func, const char *name,
            std::function<void()> fn, bool overlapped = false);
// cudaGridDependencySynchronize() of the running thread (emulated_threads.cpp).
void gridDependencyWait();
// cudaLaunchKernelEx, which the kernel files reach through the macro below: the CUDA header's own
// passes the arguments as a void * array that no host code could call a kernel with. The one
// launch attribute emulated is programmatic stream serialization (an overlapped launch): grids
// still run one after another, which is one of the orders such a launch allows, and every thread
// of an overlapped grid must wait for the grid before it (checked, see runGrid).
template <class... Params, class... Args>
cudaError_t launchKernelEx(const cudaLaunchConfig_t *config, void (*kernel)(Params...), Args &&...args)
{
    bool overlapped = false;
    for (unsigned i = 0; i < config->numAttrs; ++i) {
        if (config->attrs[i].id != cudaLaunchAttributeProgrammaticStreamSerialization)
            fatal("cudaLaunchKernelEx: launch attribute %d is not emulated", static_cast<int>(config->attrs[i].id));
        overlapped = config->attrs[i].val.programmaticStreamSerializationAllowed != 0;
    }
    if (overlapped && refuseOverlappedLaunches())
        return recordError(cudaErrorNotSupported);
    launch(
        config->gridDim, config->blockDim, config->dynamicSmemBytes, config->stream,
        reinterpret_cast<const void *>(kernel), "cudaLaunchKernelEx", [=] { kernel(args...); }, overlapped);
    return cudaPeekAtLastError();
}
template <class T> T *dynamicSmem()
{
    return static_cast<T *>(g_dynSmem);
}
inline unsigned laneId()
{
    return (g_threadIdx.x + g_threadIdx.y * g_blockDim.x) % 32;
}
template <class T> T shuffleFrom(T v, unsigned src)
{
    static_assert(sizeof(T) <= 8);
    std::uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof v);
    bits = shuffleBits(bits, src % 32);
    T out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
}
} // namespace emu

#define cudaLaunchKernelEx emu::launchKernelEx
// The device side of an overlapped launch: the wait is recorded for runGrid's check; the trigger
// changes nothing when grids run one after another.
inline void cudaGridDependencySynchronize()
{
    emu::gridDependencyWait();
}
inline void cudaTriggerProgrammaticLaunchCompletion() {}

#define threadIdx (emu::g_threadIdx)
#define blockIdx (emu::g_blockIdx)
#define blockDim (emu::g_blockDim)
#define gridDim (emu::g_gridDim)
inline void __syncthreads()
{
    emu::syncthreads();
}
inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    if (mask != 0xffffffffu)
        emu::fatal("__syncwarp: partial warp mask %#x is not emulated", mask);
    emu::syncwarp();
}
template <class T> T __shfl_xor_sync(unsigned mask, T v, int laneMask)
{
    if (mask != 0xffffffffu)
        emu::fatal("__shfl_xor_sync: partial warp mask %#x is not emulated", mask);
    return emu::shuffleFrom(v, emu::laneId() ^ static_cast<unsigned>(laneMask));
}
template <class T> T __shfl_sync(unsigned mask, T v, int src)
{
    if (mask != 0xffffffffu)
        emu::fatal("__shfl_sync: partial warp mask %#x is not emulated", mask);
    return emu::shuffleFrom(v, static_cast<unsigned>(src));
}
// The read-only load (float4, uint4, ...): a vector load must be aligned to its size on a GPU.
template <class T> T __ldg(const T *p)
{
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) != 0) // a misaligned address fault on a GPU
        emu::fatal("__ldg(%p): address not %zu-byte aligned", static_cast<const void *>(p), alignof(T));
    return *p;
}
// dp4a (signed): the four byte products of a and b, as signed 8-bit integers, added to c.
inline int __dp4a(int a, int b, int c)
{
    for (int byte = 0; byte < 4; ++byte)
        c += static_cast<int>(static_cast<std::int8_t>(static_cast<unsigned>(a) >> (8 * byte))) *
             static_cast<int>(static_cast<std::int8_t>(static_cast<unsigned>(b) >> (8 * byte)));
    return c;
}
// Device-side overloads that CUDA provides and the host's <cmath> does not (for int).
using std::isnan;
inline unsigned int __float_as_uint(float f)
{
    unsigned int u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

inline int min(int a, int b)
{
    return a < b ? a : b;
}
