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
    if (m_stream != nullptr) {
        cudaStreamSynchronize(asStream(m_stream));
        cudaStreamDestroy(asStream(m_stream));
    }
    for (void *slab : m_slabs)
        cudaFreeHost(slab);
}

void *CudaKvMemory::allocateArena(std::size_t bytes)
{
    void *p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky-free error so later calls do not report it
        return nullptr;
    }
    // Zero like host arenas, so that unused rows of a partial block are deterministic. Not with
    // cudaMemset: that runs on the legacy default stream, asynchronously, and the backend's
    // non-blocking streams do not wait for it, so it could zero KV rows a forward pass has written.
    if (cudaMemsetAsync(p, 0, bytes, asStream(m_stream)) != cudaSuccess ||
        cudaStreamSynchronize(asStream(m_stream)) != cudaSuccess) {
        cudaGetLastError();
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
    std::vector<void *> &free = m_freeHost[bytes];
    if (free.empty()) {
        // Host buffers are block-sized, so pieces of a slab fit any later request of that size.
        const std::size_t stride = (bytes + 255) / 256 * 256;
        void *slab = nullptr;
        if (cudaHostAlloc(&slab, stride * kSlabBuffers, cudaHostAllocDefault) != cudaSuccess) {
            cudaGetLastError();
            return nullptr;
        }
        m_slabs.push_back(slab);
        for (std::size_t i = kSlabBuffers; i-- > 0;)
            free.push_back(static_cast<char *>(slab) + i * stride);
    }
    void *p = free.back();
    free.pop_back();
    return p;
}

void CudaKvMemory::freeHost(void *p, std::size_t bytes)
{
    if (p != nullptr)
        m_freeHost[bytes].push_back(p);
}

void CudaKvMemory::copyToPool(void *poolDst, const void *hostSrc, std::size_t bytes)
{
    KVCHAT_CUDA_CHECK(cudaMemcpyAsync(poolDst, hostSrc, bytes, cudaMemcpyHostToDevice, asStream(m_stream)));
}

void CudaKvMemory::copyWithinPool(void *poolDst, const void *poolSrc, std::size_t bytes)
{
    KVCHAT_CUDA_CHECK(cudaMemcpyAsync(poolDst, poolSrc, bytes, cudaMemcpyDeviceToDevice, asStream(m_stream)));
}

void CudaKvMemory::copyFromPool(void *hostDst, const void *poolSrc, std::size_t bytes)
{
    KVCHAT_CUDA_CHECK(cudaMemcpyAsync(hostDst, poolSrc, bytes, cudaMemcpyDeviceToHost, asStream(m_stream)));
    KVCHAT_CUDA_CHECK(cudaStreamSynchronize(asStream(m_stream)));
}

void CudaKvMemory::finishCopies()
{
    KVCHAT_CUDA_CHECK(cudaStreamSynchronize(asStream(m_stream)));
}

} // namespace kvchat::engine::cuda
