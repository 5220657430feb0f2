// SPDX-License-Identifier: MIT
// Where a KV pool's block payloads live, and how bytes move in and out of there. The CPU backend's
// pools live in ordinary RAM (hostKvMemory()); the CUDA backend's device pool is an arena in GPU
// memory and its host tier is pinned RAM, so spills and restores run at full bus speed.
//
// Thread-safety: as the pool that uses it (the engine thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace kvchat::engine {

class KvMemory
{
public:
    virtual ~KvMemory() = default;
    virtual const char *name() const = 0;
    // True when pool payload pointers may be read and written by host code (plain RAM).
    virtual bool hostAccessible() const = 0;

    // One zero-filled region of bytes for a pool's blocks, or nullptr when it cannot be had.
    // Host RAM is reserved, not committed: pages are taken as blocks are first written.
    virtual void *allocateArena(std::size_t bytes) = 0;
    virtual void freeArena(void *arena, std::size_t bytes) = 0;
    // Backs [p, p + bytes) of an arena with memory now instead of at first write (a no-op where
    // arenas are backed from the start).
    virtual void commit(void *p, std::size_t bytes) = 0;
    // A host-tier buffer (what a block spilled from the pool is kept in), or nullptr.
    virtual void *allocateHost(std::size_t bytes) = 0;
    virtual void freeHost(void *p, std::size_t bytes) = 0;

    // Copies into the pool and within it may still run when they return (GPU memory: DMA on a
    // copy stream, so that a restore's blocks stream back to back): their sources must stay as
    // they are, and nothing may read their destinations, until finishCopies(). Copies out of the
    // pool are complete when they return (after every earlier copy).
    virtual void copyToPool(void *poolDst, const void *hostSrc, std::size_t bytes) = 0;
    virtual void copyWithinPool(void *poolDst, const void *poolSrc, std::size_t bytes) = 0;
    virtual void copyFromPool(void *hostDst, const void *poolSrc, std::size_t bytes) = 0;
    virtual void finishCopies() {}

    // A restore the next forward pass overlaps with (GPU memory): between beginLayeredUploads and
    // endLayeredUploads, copies into and within the pool are queued and then issued layer by
    // layer (every block's rows of layer 0, then of layer 1, ...), so that the forward pass can
    // start computing once layer 0 has landed and wait for each later layer just before it reads
    // it. A block's layer l is the layerBytes at offset l * layerBytes. endLayeredUploads returns
    // false where copies are not layered (then finishCopies() completes them as usual).
    virtual void beginLayeredUploads(std::int32_t nLayers, std::size_t layerBytes)
    {
        (void)nLayers;
        (void)layerBytes;
    }
    virtual bool endLayeredUploads() { return false; }
};

// Plain RAM (mmap for arenas, so untouched blocks cost nothing; operator new for host buffers).
std::shared_ptr<KvMemory> hostKvMemory();

// A host-tier block buffer that returns itself to the memory it came from.
class HostKvBuffer
{
public:
    HostKvBuffer() = default;
    // nullptr data when memory could not provide bytes.
    HostKvBuffer(std::shared_ptr<KvMemory> memory, std::size_t bytes);
    ~HostKvBuffer() { reset(); }
    HostKvBuffer(HostKvBuffer &&other) noexcept { *this = std::move(other); }
    HostKvBuffer &operator=(HostKvBuffer &&other) noexcept;
    HostKvBuffer(const HostKvBuffer &) = delete;
    HostKvBuffer &operator=(const HostKvBuffer &) = delete;

    std::byte *data() const { return m_data; }
    std::size_t size() const { return m_bytes; }
    explicit operator bool() const { return m_data != nullptr; }
    void reset();

private:
    std::shared_ptr<KvMemory> m_memory;
    std::byte *m_data = nullptr;
    std::size_t m_bytes = 0;
};

} // namespace kvchat::engine
