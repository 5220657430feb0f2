// SPDX-License-Identifier: MIT
#include "engine/backend/cuda/cuda_kv_memory.h"

#include "engine/backend/cuda/cuda_check.h"

namespace kvchat::engine::cuda {

namespace {
cudaStream_t asStream(void *s)
{
    return static_cast<cudaStream_t>(s);
}
} // namespace

CudaKvMemory::CudaKvMemory(int device) : m_device(device)
{
    KVCHAT_CUDA_CHECK(cudaSetDevice(device));
    cudaStream_t stream = nullptr;
    KVCHAT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    m_stream = stream;
}

CudaKvMemory::~CudaKvMemory()
{
    if (m_stream != nullptr)
        cudaStreamDestroy(asStream(m_stream));
}

void *CudaKvMemory::allocateArena(std::size_t bytes)
{
    void *p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky-free error so later calls do not report it
        return nullptr;
    }
    // Zero like host arenas, so that unused rows of a partial block are deterministic.
    if (cudaMemset(p, 0, bytes) != cudaSuccess) {
        cudaFree(p);
        return nullptr;
    }
    return p;
}

void CudaKvMemory::freeArena(void *arena, std::size_t)
{
    if (arena != nullptr)
        cudaFree(arena);
}

void *CudaKvMemory::allocateHost(std::size_t bytes)
{
    void *p = nullptr;
    if (cudaHostAlloc(&p, bytes, cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
    }
    return p;
}

void CudaKvMemory::freeHost(void *p, std::size_t)
{
    if (p != nullptr)
        cudaFreeHost(p);
}

void CudaKvMemory::copyToPool(void *poolDst, const void *hostSrc, std::size_t bytes)
{
    KVCHAT_CUDA_CHECK(cudaMemcpyAsync(poolDst, hostSrc, bytes, cudaMemcpyHostToDevice, asStream(m_stream)));
    KVCHAT_CUDA_CHECK(cudaStreamSynchronize(asStream(m_stream)));
}

void CudaKvMemory::copyFromPool(void *hostDst, const void *poolSrc, std::size_t bytes)
{
    KVCHAT_CUDA_CHECK(cudaMemcpyAsync(hostDst, poolSrc, bytes, cudaMemcpyDeviceToHost, asStream(m_stream)));
    KVCHAT_CUDA_CHECK(cudaStreamSynchronize(asStream(m_stream)));
}

void CudaKvMemory::copyWithinPool(void *poolDst, const void *poolSrc, std::size_t bytes)
{
    KVCHAT_CUDA_CHECK(cudaMemcpyAsync(poolDst, poolSrc, bytes, cudaMemcpyDeviceToDevice, asStream(m_stream)));
    KVCHAT_CUDA_CHECK(cudaStreamSynchronize(asStream(m_stream)));
}

} // namespace kvchat::engine::cuda
