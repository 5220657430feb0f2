// SPDX-License-Identifier: MIT
// KV memory of the CUDA backend: pools are one cudaMalloc arena on the GPU (the device tier), host
// tier buffers are pinned (cudaHostAlloc) so that spills and restores are DMA at full bus speed,
// and copies run on a stream of their own (not the compute stream). Uploads are queued back to
// back on that stream and waited for once, in finishCopies(), or, for a restore, issued layer by
// layer for the forward pass to wait on one layer at a time (beginLayeredUploads).
//
// Pinned host buffers come from slabs of kSlabBuffers buffers, never given back before this
// object dies: cudaHostAlloc costs far more than a block copy, cudaFreeHost synchronizes the whole
// device, and a buffer freed while a queued upload still reads it stays valid (its next use is a
// copy on the same stream, ordered after that upload).
#pragma once

#include "engine/kv/kv_memory.h"

#include <cstdint>
#include <map>
#include <vector>

namespace kvchat::engine::cuda {

class CudaKvMemory final : public KvMemory
{
public:
    // device: the CUDA device the backend runs on. Creates the copy stream.
    explicit CudaKvMemory(int device);
    ~CudaKvMemory() override;

    const char *name() const override { return "cuda"; }
    bool hostAccessible() const override { return false; }
    void *allocateArena(std::size_t bytes) override;
    void freeArena(void *arena, std::size_t bytes) override;
    void commit(void *, std::size_t) override {} // cudaMalloc memory is backed from the start
    void *allocateHost(std::size_t bytes) override;
    void freeHost(void *p, std::size_t bytes) override;
    // A failure throws CudaFailure.
    void copyToPool(void *poolDst, const void *hostSrc, std::size_t bytes) override;
    void copyWithinPool(void *poolDst, const void *poolSrc, std::size_t bytes) override;
    void copyFromPool(void *hostDst, const void *poolSrc, std::size_t bytes) override;
    void finishCopies() override;

    void beginLayeredUploads(std::int32_t nLayers, std::size_t layerBytes) override;
    bool endLayeredUploads() override;
    // Layered copies are issued and not yet known to have landed, and no other copy into the
    // pool is: waiting for every layer (waitForLayer) is then waiting for every copy.
    bool layeredUploadsPending() const { return (m_layersPending || !m_queued.empty()) && !m_otherCopiesPending; }
    // Makes stream (a cudaStream_t) wait until layer's rows of every layered copy have landed.
    void waitForLayer(std::int32_t layer, void *stream);
    // The caller's stream waited for every layer and has been synchronized: nothing is pending.
    void layeredUploadsConsumed() { m_layersPending = false; }

private:
    static constexpr std::size_t kSlabBuffers = 32;

    struct QueuedCopy
    {
        void *dst;
        const void *src;
        bool fromHost; // else within the pool
    };
    // Issues the queued copies layer-major, recording m_layerReady[l] after layer l's.
    void issueQueued();
    // copyToPool (fromHost) and copyWithinPool: queued while layering, else issued now.
    void copyIntoPool(void *dst, const void *src, std::size_t bytes, bool fromHost);

    int m_device;
    void *m_stream = nullptr; // cudaStream_t
    bool m_layering = false;
    std::int32_t m_nLayers = 0;
    std::size_t m_layerBytes = 0;
    std::vector<QueuedCopy> m_queued;
    std::vector<void *> m_layerReady; // cudaEvent_t, one per layer
    bool m_layersPending = false;
    bool m_otherCopiesPending = false; // copies into the pool outside the layered batch, since finishCopies
    std::vector<void *> m_slabs;
    std::map<std::size_t, std::vector<void *>> m_freeHost; // by buffer size
};

} // namespace kvchat::engine::cuda
