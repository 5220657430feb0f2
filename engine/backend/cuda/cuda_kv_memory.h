// SPDX-License-Identifier: MIT
// KV memory of the CUDA backend: pools are one cudaMalloc arena on the GPU (the device tier), host
// tier buffers are pinned (cudaHostAlloc) so that spills and restores are DMA at full bus speed,
// and copies run on a stream of their own (not the compute stream). Uploads are queued back to
// back on that stream and waited for once, in finishCopies(), or, for a restore, issued layer by
// layer for the forward pass to wait on one layer at a time (beginLayeredUploads): one kernel per
// layer copies that layer's slice of every block (copySlices, reading the pinned host buffers
// directly), instead of a cudaMemcpyAsync per block and layer (2,750 of them, of 16 KiB each, for a
// 2,000-token TinyLlama history: milliseconds of host time and of per-transfer DMA overhead).
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
    // Layered batches issued as copySlices kernels, and as one cudaMemcpyAsync per block and
    // layer (the fallback for sources a kernel cannot read).
    struct LayeredStats
    {
        std::int64_t kernelBatches = 0;
        std::int64_t copyBatches = 0;
    };
    LayeredStats layeredStats() const { return m_layeredStats; }
    // Layered batches as copySlices kernels (the default), or as the cudaMemcpyAsync per block and
    // layer: KVCHAT_CUDA_RESTORE_KERNELS=0, or this, to compare the two (kvchat-bench-gpu does).
    void setLayeredKernels(bool enabled) { m_layeredKernels = enabled; }

private:
    static constexpr std::size_t kSlabBuffers = 32;

    struct QueuedCopy
    {
        void *dst;
        const void *src;
        bool fromHost; // else within the pool
    };
    // Pinned slabs and pool arenas: memory a kernel of this device can read.
    bool kernelReadable(const void *p, std::size_t bytes) const;
    // Issues the queued copies with one copySlices launch per layer; false (nothing issued) where
    // some source is not kernel-readable or not 16-byte aligned.
    bool issueQueuedAsKernels(const std::vector<QueuedCopy> &queued);
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
    std::map<const char *, std::size_t> m_readable; // kernel-readable ranges: start -> bytes
    // The (dst, src) table of a layered restore: pinned, and its device copy; the event guards
    // the pinned table's reuse while its upload may be queued.
    void *m_hostTable = nullptr;
    void *m_deviceTable = nullptr;
    std::size_t m_tableCapacity = 0; // entries
    void *m_tableUploaded = nullptr; // cudaEvent_t
    LayeredStats m_layeredStats;
    bool m_layeredKernels = true;
    std::map<std::size_t, std::vector<void *>> m_freeHost; // by buffer size
};

} // namespace kvchat::engine::cuda
