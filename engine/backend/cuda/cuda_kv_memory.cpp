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
    for (void *event : m_layerReady)
        cudaEventDestroy(static_cast<cudaEvent_t>(event));
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
    // A queued copy may still read p: issue it, so that p's next use (a copy on the same stream)
    // is ordered after it.
    issueQueued();
    if (p != nullptr)
        m_freeHost[bytes].push_back(p);
}

void CudaKvMemory::copyToPool(void *poolDst, const void *hostSrc, std::size_t bytes)
{
    copyIntoPool(poolDst, hostSrc, bytes, true);
}

void CudaKvMemory::copyWithinPool(void *poolDst, const void *poolSrc, std::size_t bytes)
{
    copyIntoPool(poolDst, poolSrc, bytes, false);
}

void CudaKvMemory::copyIntoPool(void *dst, const void *src, std::size_t bytes, bool fromHost)
{
    // A whole block during a layered restore is queued: layer l of a copy within the pool is then
    // issued after layer l of every upload before it, which is all it can read.
    if (m_layering && bytes == m_layerBytes * static_cast<std::size_t>(m_nLayers)) {
        m_queued.push_back({dst, src, fromHost});
        return;
    }
    issueQueued();
    m_otherCopiesPending = true;
    KVCHAT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, fromHost ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice,
                                      asStream(m_stream)));
}

void CudaKvMemory::copyFromPool(void *hostDst, const void *poolSrc, std::size_t bytes)
{
    issueQueued();
    KVCHAT_CUDA_CHECK(cudaMemcpyAsync(hostDst, poolSrc, bytes, cudaMemcpyDeviceToHost, asStream(m_stream)));
    KVCHAT_CUDA_CHECK(cudaStreamSynchronize(asStream(m_stream)));
}

void CudaKvMemory::finishCopies()
{
    issueQueued();
    KVCHAT_CUDA_CHECK(cudaStreamSynchronize(asStream(m_stream)));
    m_layersPending = false;
    m_otherCopiesPending = false;
}

void CudaKvMemory::beginLayeredUploads(std::int32_t nLayers, std::size_t layerBytes)
{
    issueQueued();
    while (m_layerReady.size() < static_cast<std::size_t>(nLayers)) {
        cudaEvent_t event = nullptr;
        KVCHAT_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
        m_layerReady.push_back(event);
    }
    m_layering = true;
    m_nLayers = nLayers;
    m_layerBytes = layerBytes;
}

bool CudaKvMemory::endLayeredUploads()
{
    issueQueued();
    m_layering = false;
    return true;
}

void CudaKvMemory::issueQueued()
{
    if (m_queued.empty())
        return;
    // Clear first: a failure below throws, and the queue must not be issued twice.
    const std::vector<QueuedCopy> queued = std::move(m_queued);
    m_queued.clear();
    m_layersPending = true;
    for (std::int32_t l = 0; l < m_nLayers; ++l) {
        const std::size_t offset = static_cast<std::size_t>(l) * m_layerBytes;
        for (const QueuedCopy &c : queued)
            KVCHAT_CUDA_CHECK(cudaMemcpyAsync(
                static_cast<char *>(c.dst) + offset, static_cast<const char *>(c.src) + offset, m_layerBytes,
                c.fromHost ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice, asStream(m_stream)));
        KVCHAT_CUDA_CHECK(
            cudaEventRecord(static_cast<cudaEvent_t>(m_layerReady[static_cast<std::size_t>(l)]), asStream(m_stream)));
    }
}

void CudaKvMemory::waitForLayer(std::int32_t layer, void *stream)
{
    issueQueued();
    if (!m_layersPending || layer < 0 || layer >= m_nLayers)
        return;
    KVCHAT_CUDA_CHECK(cudaStreamWaitEvent(asStream(stream),
                                          static_cast<cudaEvent_t>(m_layerReady[static_cast<std::size_t>(layer)]), 0));
}

} // namespace kvchat::engine::cuda
