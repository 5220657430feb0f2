// SPDX-License-Identifier: MIT
#include "engine/kv/kv_cache.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace kvchat::engine {

KvBlockPool::KvBlockPool(KvLayout layout, std::uint32_t maxBlocks, std::shared_ptr<KvMemory> memory)
    : m_layout(layout), m_maxBlocks(maxBlocks), m_memory(std::move(memory))
{
    assert(layout.blockTokens > 0 && (layout.blockTokens & (layout.blockTokens - 1)) == 0);
    if (maxBlocks > 0) {
        m_arena = static_cast<float *>(m_memory->allocateArena(static_cast<std::size_t>(maxBlocks) * layout.blockBytes()));
        if (m_arena == nullptr) {
            m_maxBlocks = 0;
            m_valid = false;
        }
    }
}

KvBlockPool::~KvBlockPool()
{
    m_memory->freeArena(m_arena, static_cast<std::size_t>(m_maxBlocks) * m_layout.blockBytes());
}

std::optional<KvBlockId> KvBlockPool::allocate()
{
    if (m_free.empty()) {
        // Never-used ids first (their memory reads as zero, so unused rows of a partial block are
        // deterministic), then whatever the reclaimer frees.
        if (m_created < m_maxBlocks)
            m_free.push_back(KvBlockId{m_created++});
        else if (!m_reclaimer || !m_reclaimer() || m_free.empty())
            return std::nullopt;
    }
    const KvBlockId id = m_free.back();
    m_free.pop_back();
    ++m_used;
    return id;
}

void KvBlockPool::release(KvBlockId id)
{
    assert(id.value < m_created && m_used > 0);
    m_free.push_back(id);
    --m_used;
}

void KvBlockPool::commitBlocks(std::uint32_t n)
{
    m_memory->commit(m_arena, static_cast<std::size_t>(std::min(n, m_maxBlocks)) * m_layout.blockBytes());
}

void KvBlockPool::upload(KvBlockId id, const void *hostSrc)
{
    m_memory->copyToPool(base(id), hostSrc, m_layout.blockBytes());
}

void KvBlockPool::download(KvBlockId id, void *hostDst) const
{
    m_memory->copyFromPool(hostDst, base(id), m_layout.blockBytes());
}

void KvBlockPool::copyBlock(KvBlockId dst, KvBlockId src)
{
    m_memory->copyWithinPool(base(dst), base(src), m_layout.blockBytes());
}

KvSequence::~KvSequence()
{
    for (std::size_t i = 0; i < m_blocks.size(); ++i)
        if (m_owned[i])
            m_pool->release(m_blocks[i]);
}

void KvSequence::appendBlock(KvBlockId id, bool owned)
{
    m_blocks.push_back(id);
    m_owned.push_back(owned);
}

bool KvSequence::reserve(std::int32_t nTokens)
{
    while (capacity() < nTokens) {
        auto id = m_pool->allocate();
        if (!id)
            return false;
        m_blocks.push_back(*id);
        m_owned.push_back(true);
    }
    return true;
}

void KvSequence::setTokenCount(std::int32_t nTokens)
{
    assert(nTokens >= 0 && nTokens <= capacity());
    m_nTokens = nTokens;
}

void KvSequence::truncate(std::int32_t nTokens)
{
    // Also with nTokens == nTokens(): blocks reserved beyond it (by a failed forward pass) go.
    if (nTokens > m_nTokens)
        return;
    m_nTokens = nTokens < 0 ? 0 : nTokens;
    const std::int32_t bt = m_pool->layout().blockTokens;
    const std::size_t keep = static_cast<std::size_t>((m_nTokens + bt - 1) / bt);
    while (m_blocks.size() > keep) {
        if (m_owned.back())
            m_pool->release(m_blocks.back());
        m_blocks.pop_back();
        m_owned.pop_back();
    }
}

float *KvSequence::row(std::int32_t layer, std::int32_t pos, bool key) const
{
    const KvLayout &layout = m_pool->layout();
    assert(pos >= 0 && pos < capacity());
    // blockTokens is a power of two, but division keeps this readable; the compiler sees neither.
    const KvBlockId block = m_blocks[static_cast<std::size_t>(pos / layout.blockTokens)];
    const std::int32_t slot = pos % layout.blockTokens;
    float *base = key ? m_pool->keys(block, layer) : m_pool->values(block, layer);
    return base + static_cast<std::size_t>(slot) * static_cast<std::size_t>(layout.kvDim);
}

} // namespace kvchat::engine
