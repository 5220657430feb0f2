// SPDX-License-Identifier: MIT
// Paged KV storage. KV lives in fixed-size blocks of blockTokens positions covering all layers, and
// a sequence is an ordered list of block ids (its block table); attention reads K/V through that
// table, never through a contiguous copy. Payload and metadata are apart: KvBlockPool owns the
// memory, KvSequence holds only ids and a token count.
//
// Block payload layout (fp32): [layer][K, V][position in block][kvDim], so one block is one
// contiguous span of bytes for all layers (what the tiered cache spills and restores as a unit).
// A pool's blocks live in one arena of its KvMemory (host RAM, or GPU memory for the CUDA backend).
//
// Thread-safety: none; the engine thread owns the pool and its sequences. Backends may read and
// write block payloads from their worker threads during a forward pass they own.
#pragma once

#include "engine/kv/kv_memory.h"

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace kvchat::engine {

struct KvLayout
{
    std::int32_t nLayers = 0;
    std::int32_t kvDim = 0;        // nKvHeads * headDim
    std::int32_t blockTokens = 16; // a power of two
    // Bytes of one K or V element: 4 (fp32: the CPU backend, whose KV is exact to its compute)
    // or 2 (fp16: the CUDA backend, as llama.cpp's default KV cache).
    std::int32_t elementBytes = 4;

    std::size_t blockElements() const
    {
        return static_cast<std::size_t>(nLayers) * 2 * static_cast<std::size_t>(blockTokens) *
               static_cast<std::size_t>(kvDim);
    }
    std::size_t blockBytes() const { return blockElements() * static_cast<std::size_t>(elementBytes); }
};

struct KvBlockId
{
    std::uint32_t value = 0;
    bool operator==(const KvBlockId &) const = default;
};

class KvBlockPool
{
public:
    // maxBlocks bounds the memory the pool may take (maxBlocks * layout.blockBytes()), reserved at
    // once in memory (one arena: block b's payload is at arena + b * blockBytes). When memory
    // cannot provide it, valid() is false and the pool has no blocks.
    KvBlockPool(KvLayout layout, std::uint32_t maxBlocks, std::shared_ptr<KvMemory> memory = hostKvMemory());
    ~KvBlockPool();
    KvBlockPool(const KvBlockPool &) = delete;
    KvBlockPool &operator=(const KvBlockPool &) = delete;

    const KvLayout &layout() const { return m_layout; }
    bool valid() const { return m_valid; }
    std::uint32_t maxBlocks() const { return m_maxBlocks; }
    std::uint32_t usedBlocks() const { return m_used; }
    KvMemory &memory() const { return *m_memory; }
    const std::shared_ptr<KvMemory> &sharedMemory() const { return m_memory; }

    // A free block, or nullopt when maxBlocks are in use and the reclaimer (if any) could not free
    // one. The reclaimer is asked to release() a block (e.g. by spilling an idle one to a lower
    // tier) and returns whether it did.
    std::optional<KvBlockId> allocate();
    void setReclaimer(std::function<bool()> reclaimer) { m_reclaimer = std::move(reclaimer); }
    // Precondition: id was returned by allocate() and not released since.
    void release(KvBlockId id);

    // Payload pointers, in the pool's memory: host code may dereference them only when
    // memory().hostAccessible(). K or V rows of one layer: blockTokens rows of kvDim floats
    // (keys() and values() are for fp32 layouts; payload() and arena() for any).
    float *keys(KvBlockId id, std::int32_t layer) { return base(id) + offset(layer, 0); }
    float *values(KvBlockId id, std::int32_t layer) { return base(id) + offset(layer, 1); }
    const float *keys(KvBlockId id, std::int32_t layer) const { return base(id) + offset(layer, 0); }
    const float *values(KvBlockId id, std::int32_t layer) const { return base(id) + offset(layer, 1); }
    float *payload(KvBlockId id) { return base(id); }
    const float *payload(KvBlockId id) const { return base(id); }
    float *arena() const { return m_arena; }

    // Backs the first n blocks (the ones allocate() hands out first) with memory now, so that
    // filling them later (a restore, a prefill) does not also pay a page fault per 4 KiB.
    void commitBlocks(std::uint32_t n);

    // Whole-block copies between the pool and host memory (blockBytes each), through its memory.
    // upload and copyBlock may complete only at finishCopies() (see KvMemory).
    void upload(KvBlockId id, const void *hostSrc);
    void download(KvBlockId id, void *hostDst) const;
    void copyBlock(KvBlockId dst, KvBlockId src);
    void finishCopies() { m_memory->finishCopies(); }

private:
    float *base(KvBlockId id) const
    {
        return reinterpret_cast<float *>(reinterpret_cast<std::byte *>(m_arena) +
                                         static_cast<std::size_t>(id.value) * m_layout.blockBytes());
    }
    std::size_t offset(std::int32_t layer, int kv) const
    {
        assert(m_layout.elementBytes == static_cast<std::int32_t>(sizeof(float)));
        return (static_cast<std::size_t>(layer) * 2 + static_cast<std::size_t>(kv)) *
               static_cast<std::size_t>(m_layout.blockTokens) * static_cast<std::size_t>(m_layout.kvDim);
    }

    KvLayout m_layout;
    std::uint32_t m_maxBlocks;
    std::shared_ptr<KvMemory> m_memory;
    float *m_arena = nullptr;
    bool m_valid = true;
    std::uint32_t m_created = 0; // ids [0, m_created) have been handed out at least once
    std::uint32_t m_used = 0;
    std::vector<KvBlockId> m_free;
    std::function<bool()> m_reclaimer;
};

// One sequence's view of the pool: its block table and how many positions hold valid KV. A block
// in the table is either owned (private to this sequence, released with it) or borrowed (a shared
// block of the session cache, which only reads it: positions before nTokens() are never rewritten).
class KvSequence
{
public:
    explicit KvSequence(KvBlockPool &pool) : m_pool(&pool) {}
    ~KvSequence(); // releases the blocks it owns
    KvSequence(const KvSequence &) = delete;
    KvSequence &operator=(const KvSequence &) = delete;

    KvBlockPool &pool() const { return *m_pool; }
    std::int32_t nTokens() const { return m_nTokens; }
    std::int32_t capacity() const { return static_cast<std::int32_t>(m_blocks.size()) * m_pool->layout().blockTokens; }
    const std::vector<KvBlockId> &blocks() const { return m_blocks; }
    bool ownsBlock(std::size_t index) const { return m_owned[index]; }

    // Appends a block to the table while the sequence is being assembled from cached blocks;
    // setTokenCount() then says how many positions are valid.
    void appendBlock(KvBlockId id, bool owned);
    // Hands ownership of block `index` to the caller (the cache now keeps it alive).
    void disownBlock(std::size_t index) { m_owned[index] = false; }

    // Makes room for nTokens positions; false when the pool is out of blocks.
    bool reserve(std::int32_t nTokens);
    // Marks positions [0, nTokens) valid. Precondition: nTokens <= capacity().
    void setTokenCount(std::int32_t nTokens);
    // Drops positions from nTokens on, and blocks no longer needed (also blocks reserved but
    // never filled, when nTokens is the current count).
    void truncate(std::int32_t nTokens);

    // K/V row of a position in a layer. Precondition: pos < capacity().
    float *keyRow(std::int32_t layer, std::int32_t pos) { return row(layer, pos, true); }
    float *valueRow(std::int32_t layer, std::int32_t pos) { return row(layer, pos, false); }
    const float *keyRow(std::int32_t layer, std::int32_t pos) const { return row(layer, pos, true); }
    const float *valueRow(std::int32_t layer, std::int32_t pos) const { return row(layer, pos, false); }

private:
    float *row(std::int32_t layer, std::int32_t pos, bool key) const;

    KvBlockPool *m_pool;
    std::vector<KvBlockId> m_blocks;
    std::vector<bool> m_owned; // parallel to m_blocks
    std::int32_t m_nTokens = 0;
};

} // namespace kvchat::engine
