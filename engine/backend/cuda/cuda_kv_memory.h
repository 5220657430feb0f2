// SPDX-License-Identifier: MIT
// KV memory of the CUDA backend: pools are one cudaMalloc arena on the GPU (the device tier), host
// tier buffers are pinned (cudaHostAlloc) so that spills and restores are DMA at full bus speed,
// and copies run on a stream of their own (not the compute stream). Uploads are queued back to
// back on that stream and waited for once, in finishCopies().
//
// Pinned host buffers come from slabs of kSlabBuffers buffers, never given back before this
// object dies: cudaHostAlloc costs far more than a block copy, cudaFreeHost synchronizes the whole
// device, and a buffer freed while a queued upload still reads it stays valid (its next use is a
// copy on the same stream, ordered after that upload).
#pragma once

#include "engine/kv/kv_memory.h"

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

private:
    static constexpr std::size_t kSlabBuffers = 32;

    int m_device;
    void *m_stream = nullptr; // cudaStream_t
    std::vector<void *> m_slabs;
    std::map<std::size_t, std::vector<void *>> m_freeHost; // by buffer size
};

} // namespace kvchat::engine::cuda
