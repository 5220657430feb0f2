// SPDX-License-Identifier: MIT
#include "engine/backend/cuda/cuda_kv_memory.h"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/cuda_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

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
    const char *kernels = std::getenv("KVCHAT_CUDA_RESTORE_KERNELS");
    m_layeredKernels = kernels == nullptr || std::string_view(kernels) != "0";
    // The highest priority: a restore's copy kernels (issueQueuedAsKernels) then take SMs ahead of
    // the queued blocks of a prefill's GEMMs, which would otherwise hold back the very layer the
    // prefill is waiting for.
    int leastPriority = 0, greatestPriority = 0;
    KVCHAT_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&leastPriority, &greatestPriority));
    cudaStream_t stream = nullptr;
    KVCHAT_CUDA_CHECK(cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking, greatestPriority));
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
    if (m_tableUploaded != nullptr)
        cudaEventDestroy(static_cast<cudaEvent_t>(m_tableUploaded));
    cudaFree(m_deviceTable);
    cudaFreeHost(m_hostTable);
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
    m_readable[static_cast<const char *>(p)] = bytes;
    return p;
}

void CudaKvMemory::freeArena(void *arena, std::size_t)
{
    if (arena != nullptr) {
        m_readable.erase(static_cast<const char *>(arena));
        cudaFree(arena);
    }
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
        // A kernel reads pinned memory at its host address under unified addressing (64-bit
        // Linux); not where the runtime says otherwise (e.g. confidential-computing mode).
        cudaPointerAttributes attributes{};
        if (cudaPointerGetAttributes(&attributes, slab) == cudaSuccess && attributes.devicePointer == slab)
            m_readable[static_cast<const char *>(slab)] = stride * kSlabBuffers;
        cudaGetLastError();
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
    if (m_layeredKernels && issueQueuedAsKernels(queued)) {
        ++m_layeredStats.kernelBatches;
        return;
    }
    ++m_layeredStats.copyBatches;
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

bool CudaKvMemory::kernelReadable(const void *p, std::size_t bytes) const
{
    const char *c = static_cast<const char *>(p);
    auto it = m_readable.upper_bound(c);
    if (it == m_readable.begin())
        return false;
    --it;
    return c >= it->first && c + bytes <= it->first + it->second;
}

bool CudaKvMemory::issueQueuedAsKernels(const std::vector<QueuedCopy> &queued)
{
    const std::size_t blockBytes = m_layerBytes * static_cast<std::size_t>(m_nLayers);
    const auto aligned = [](const void *p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
    if (m_layerBytes % 16 != 0 || queued.size() > static_cast<std::size_t>(INT32_MAX))
        return false;
    // The copies of one launch run in no set order (one thread block each), so none may read or
    // overwrite what another writes. A copy out of a block an earlier copy fills (the restore's
    // tail block, copied from the block just uploaded) reads that copy's source instead; any other
    // overlap is left to the one-copy-at-a-time path. Queued copies are whole blocks, so blocks
    // overlap only where their addresses are equal.
    std::vector<SliceCopy> copies;
    copies.reserve(queued.size());
    std::unordered_map<const void *, const void *> sourceOf; // a queued destination -> its source
    for (const QueuedCopy &c : queued) {
        if (!aligned(c.dst) || !aligned(c.src) || !kernelReadable(c.src, blockBytes) || sourceOf.count(c.dst) != 0)
            return false;
        const auto earlier = sourceOf.find(c.src);
        const void *src = earlier != sourceOf.end() ? earlier->second : c.src;
        sourceOf.emplace(c.dst, src);
        copies.push_back(SliceCopy{c.dst, src});
    }
    std::unordered_set<const void *> sources;
    for (const SliceCopy &c : copies)
        sources.insert(c.src);
    for (const SliceCopy &c : copies)
        if (sources.count(c.dst) != 0)
            return false; // a block read by one copy is written by another
    if (m_tableUploaded == nullptr) {
        cudaEvent_t event = nullptr;
        KVCHAT_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
        m_tableUploaded = event;
    }
    // The pinned table of the previous restore may still be the source of its queued upload.
    KVCHAT_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(m_tableUploaded)));
    if (queued.size() > m_tableCapacity) {
        const std::size_t capacity = std::max<std::size_t>(queued.size(), 256);
        void *host = nullptr, *device = nullptr;
        if (cudaHostAlloc(&host, capacity * sizeof(SliceCopy), cudaHostAllocDefault) != cudaSuccess ||
            cudaMalloc(&device, capacity * sizeof(SliceCopy)) != cudaSuccess) {
            cudaGetLastError();
            cudaFreeHost(host);
            return false; // the copies go one by one instead
        }
        cudaFreeHost(m_hostTable);
        cudaFree(m_deviceTable); // synchronizes: the old table's kernels are done
        m_hostTable = host;
        m_deviceTable = device;
        m_tableCapacity = capacity;
    }
    auto *table = static_cast<SliceCopy *>(m_hostTable);
    std::copy(copies.begin(), copies.end(), table);
    const cudaStream_t stream = asStream(m_stream);
    KVCHAT_CUDA_CHECK(
        cudaMemcpyAsync(m_deviceTable, table, queued.size() * sizeof(SliceCopy), cudaMemcpyHostToDevice, stream));
    KVCHAT_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(m_tableUploaded), stream));
    for (std::int32_t l = 0; l < m_nLayers; ++l) {
        copySlices(static_cast<const SliceCopy *>(m_deviceTable), static_cast<std::int32_t>(queued.size()),
                   static_cast<std::size_t>(l) * m_layerBytes, m_layerBytes, stream);
        KVCHAT_CUDA_CHECK(cudaGetLastError());
        KVCHAT_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(m_layerReady[static_cast<std::size_t>(l)]), stream));
    }
    return true;
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
