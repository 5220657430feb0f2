// SPDX-License-Identifier: MIT
#include "engine/kv/tiered_kv_cache.h"

#include "engine/store/session_store.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unordered_set>

namespace kvchat::engine {

using Ms = std::chrono::duration<double, std::milli>;
using SteadyClock = std::chrono::steady_clock;

struct TieredKvCache::Entry
{
    KvBlockKey key;
    std::int32_t nTokens = 0; // blockTokens for a full block, fewer for a sequence's partial tail
    std::optional<KvBlockId> device;
    HostKvBuffer host;
    bool onDisk = false;      // a row exists in the store (as far as this process knows)
    std::uint32_t pinCount = 0;
    std::uint64_t lastUsed = 0;
    std::list<KvBlockKey>::iterator deviceLruPos;
    std::list<KvBlockKey>::iterator hostLruPos;
};

namespace {

std::size_t availableRamBytes()
{
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    std::size_t kb = 0;
    std::string unit;
    while (meminfo >> key >> kb >> unit)
        if (key == "MemAvailable:")
            return kb * 1024;
    return std::size_t(4) << 30;
}

// Free bytes on the file system of the folder a database lives in (or the current one); nullopt
// when that cannot be read. Never throws on odd paths.
std::optional<std::size_t> freeBytesBeside(const std::string &databasePath)
{
    std::error_code error;
    std::filesystem::path dir =
        std::filesystem::absolute(databasePath.empty() ? "." : databasePath, error).parent_path();
    if (error || dir.empty())
        dir = ".";
    struct statvfs fs
    {
    };
    if (statvfs(dir.c_str(), &fs) != 0)
        return std::nullopt;
    return static_cast<std::size_t>(fs.f_bavail) * fs.f_frsize;
}

} // namespace

KvBudgets KvBudgets::machineDefaults(const std::string &databasePath)
{
    KvBudgets b;
    const std::size_t ram = availableRamBytes();
    b.deviceBytes = std::min(ram / 4, std::size_t(2) << 30);
    b.hostBytes = std::min(ram / 4, std::size_t(4) << 30);
    b.diskBytes = std::min(freeBytesBeside(databasePath).value_or(std::size_t(10) << 30) / 4, std::size_t(10) << 30);
    return b;
}

TieredKvCache::TieredKvCache(KvLayout layout, ModelFingerprint fingerprint, KvBudgets budgets, SessionStore *store,
                             std::shared_ptr<KvMemory> memory)
    : m_layout(layout), m_fingerprint(fingerprint), m_budgets(budgets), m_store(store),
      m_diskEnabled(store != nullptr && budgets.diskBytes > 0),
      m_devicePool(layout, static_cast<std::uint32_t>(budgets.deviceBytes / layout.blockBytes()), std::move(memory)),
      m_maxHostBlocks(static_cast<std::uint32_t>(budgets.hostBytes / layout.blockBytes()))
{
    if (!m_devicePool.memory().hostAccessible())
        m_staging = HostKvBuffer(m_devicePool.sharedMemory(), layout.blockBytes());
    if (!store)
        m_diskDisabledReason = "no database";
    else if (budgets.diskBytes == 0)
        m_diskDisabledReason = "disk budget is 0";
    else if (!store->kvWritable())
        disableDisk("the database is read-only");
    m_devicePool.setReclaimer([this] { return reclaimDeviceBlock(); });
}

TieredKvCache::~TieredKvCache()
{
    // Cached device blocks go back to the pool before the pool itself is destroyed (it is a
    // member declared earlier, so it outlives this body).
    for (auto &[key, e] : m_entries)
        if (e->device)
            m_devicePool.release(*e->device);
}

void TieredKvCache::disableDisk(const std::string &reason)
{
    if (!m_diskEnabled)
        return;
    m_diskEnabled = false;
    m_diskDisabledReason = reason;
}

void TieredKvCache::touch(Entry &e)
{
    e.lastUsed = ++m_tick;
    if (e.device)
        m_deviceLru.splice(m_deviceLru.begin(), m_deviceLru, e.deviceLruPos);
    if (e.host)
        m_hostLru.splice(m_hostLru.begin(), m_hostLru, e.hostLruPos);
}

TieredKvCache::Entry &TieredKvCache::entry(const KvBlockKey &key, std::int32_t nTokens)
{
    auto &slot = m_entries[key];
    if (!slot) {
        slot = std::make_unique<Entry>();
        slot->key = key;
        slot->nTokens = nTokens;
    }
    return *slot;
}

std::optional<Tier> TieredKvCache::locate(const KvBlockKey &key)
{
    if (auto it = m_entries.find(key); it != m_entries.end()) {
        if (it->second->device)
            return Tier::Device;
        if (it->second->host)
            return Tier::Host;
        if (it->second->onDisk && m_diskEnabled)
            return Tier::Disk;
    }
    if (m_store && m_diskEnabled) {
        auto found = m_store->hasKvBlock(key, m_fingerprint);
        if (found.ok() && *found)
            return Tier::Disk;
    }
    return std::nullopt;
}

std::vector<TieredKvCache::PlannedBlock> TieredKvCache::planPrefix(std::span<const std::int32_t> tokens,
                                                                   bool decideRecompute)
{
    std::vector<PlannedBlock> plan;
    const std::int32_t bt = m_layout.blockTokens;
    // The last token is always computed: its logits start the reply.
    const std::int32_t reusable = static_cast<std::int32_t>(tokens.size()) - 1;
    KvBlockKey parent{};
    std::int32_t pos = 0;
    while (pos + bt <= reusable) {
        const KvBlockKey key = kvBlockKey(parent, tokens.subspan(static_cast<std::size_t>(pos), static_cast<std::size_t>(bt)), m_fingerprint);
        const auto tier = locate(key);
        if (!tier)
            break;
        plan.push_back({key, bt, *tier});
        parent = key;
        pos += bt;
    }
    // A partial tail block cached by an earlier turn of this conversation: longest first.
    for (std::int32_t k = std::min(bt - 1, reusable - pos); k >= 1; --k) {
        const KvBlockKey key = kvBlockKey(parent, tokens.subspan(static_cast<std::size_t>(pos), static_cast<std::size_t>(k)), m_fingerprint);
        if (const auto tier = locate(key)) {
            plan.push_back({key, k, *tier});
            break;
        }
    }
    // Restore or recompute: from the first disk block on, keep restoring only while reading is
    // cheaper than computing (a fast accelerator with a slow disk would rather recompute).
    for (std::size_t i = 0; decideRecompute && i < plan.size(); ++i) {
        if (plan[i].tier != Tier::Disk)
            continue;
        if (!shouldRestoreFromDisk(plan[i].nTokens)) {
            plan.resize(i);
            break;
        }
    }
    return plan;
}

bool TieredKvCache::shouldRestoreFromDisk(std::int32_t nTokens) const
{
    // Until both rates are measured, restore: on every backend we have, reading a block is far
    // cheaper than recomputing it, and the first restore supplies the measurement.
    if (m_prefillTokensPerSecond <= 0.0 || m_diskBytesPerSecond <= 0.0)
        return true;
    const double restoreSeconds = static_cast<double>(blockBytes()) / m_diskBytesPerSecond;
    const double recomputeSeconds = nTokens / m_prefillTokensPerSecond;
    return restoreSeconds <= recomputeSeconds;
}

void TieredKvCache::recordPrefill(std::int32_t nTokens, std::chrono::duration<double> elapsed)
{
    if (nTokens < 8 || elapsed.count() <= 0.0)
        return; // tiny batches say little about batched prefill speed
    const double rate = nTokens / elapsed.count();
    m_prefillTokensPerSecond = m_prefillTokensPerSecond <= 0.0 ? rate : 0.7 * m_prefillTokensPerSecond + 0.3 * rate;
}

bool TieredKvCache::makeHostRoom()
{
    while (m_hostBlocks >= m_maxHostBlocks) {
        // The least recently used unpinned copy goes. A pinned block keeps its host copy: a restore
        // may be uploading from it (the upload completes only at finishCopies), or about to.
        const auto unpinned = std::find_if(m_hostLru.rbegin(), m_hostLru.rend(),
                                           [&](const KvBlockKey &key) { return m_entries.at(key)->pinCount == 0; });
        if (unpinned == m_hostLru.rend())
            return false;
        const KvBlockKey victim = *unpinned;
        Entry &e = *m_entries.at(victim);
        if (!e.onDisk && m_diskEnabled)
            writeToDisk(e, {e.host.data(), blockBytes()});
        m_hostLru.erase(e.hostLruPos);
        e.host.reset();
        --m_hostBlocks;
        dropEntryIfEmpty(victim);
    }
    return true;
}

bool TieredKvCache::reclaimDeviceBlock()
{
    // The least recently used unpinned device block moves down a tier.
    for (auto it = m_deviceLru.rbegin(); it != m_deviceLru.rend(); ++it) {
        Entry &e = *m_entries.at(*it);
        if (e.pinCount > 0)
            continue;
        // Host RAM restores far faster than disk: keep a host copy whenever the host tier has
        // room, and make room there (spilling its oldest to disk) when this block has no other copy.
        const bool safeElsewhere = e.onDisk && m_diskEnabled;
        const bool hostHasRoom = m_hostBlocks < m_maxHostBlocks;
        bool spilledToHost = false;
        if (!e.host && m_maxHostBlocks > 0 && (hostHasRoom || (!safeElsewhere && makeHostRoom()))) {
            e.host = HostKvBuffer(m_devicePool.sharedMemory(), blockBytes()); // empty if none can be had
            spilledToHost = static_cast<bool>(e.host);
        }
        if (spilledToHost) {
            m_devicePool.download(*e.device, e.host.data());
            m_hostLru.push_front(e.key);
            e.hostLruPos = m_hostLru.begin();
            ++m_hostBlocks;
        } else if (!e.host && !safeElsewhere && m_diskEnabled) {
            writeToDisk(e, deviceBytesOnHost(e));
        }
        const KvBlockKey key = e.key;
        m_devicePool.release(*e.device);
        e.device.reset();
        m_deviceLru.erase(std::next(it).base());
        dropEntryIfEmpty(key);
        return true;
    }
    return false;
}

bool TieredKvCache::writeToDisk(Entry &e, std::span<const std::byte> payload)
{
    // Conversations come first: a block is written only while the disk keeps the reserve free.
    // Below it, writes stop; what is on disk stays readable (reading takes no space).
    if (!m_diskWritesStoppedReason.empty())
        return false;
    if (const std::optional<std::size_t> free = freeBytesBeside(m_store->path());
        free && *free < m_budgets.diskReserveBytes + blockBytes()) {
        m_diskWritesStoppedReason = "less than " + std::to_string(m_budgets.diskReserveBytes >> 20) +
                                    " MiB are free beside the database, and those are kept for conversations";
        return false;
    }
    auto written = m_store->putKvBlock(e.key, m_fingerprint, e.nTokens, payload);
    if (!written.ok()) {
        disableDisk(written.error().message);
        return false;
    }
    e.onDisk = true;
    return true;
}

std::span<const std::byte> TieredKvCache::deviceBytesOnHost(const Entry &e)
{
    if (m_devicePool.memory().hostAccessible())
        return {reinterpret_cast<const std::byte *>(m_devicePool.payload(*e.device)), blockBytes()};
    m_devicePool.download(*e.device, m_staging.data());
    return {m_staging.data(), blockBytes()};
}

void TieredKvCache::dropEntryIfEmpty(const KvBlockKey &key)
{
    auto it = m_entries.find(key);
    if (it == m_entries.end())
        return;
    const Entry &e = *it->second;
    if (!e.device && !e.host && !e.onDisk && e.pinCount == 0)
        m_entries.erase(it);
}

Result<bool> TieredKvCache::bringToDevice(Entry &e, Tier from, RestoreReport &report)
{
    const auto start = SteadyClock::now();
    if (from == Tier::Disk) {
        // Planned from another tier, the block may have lost that copy since, to make room for
        // an earlier block of the same restore; without a disk tier it is gone.
        if (!m_store || !m_diskEnabled)
            return false;
        auto id = m_devicePool.allocate();
        if (!id)
            return false;
        // Read straight into the pool block where the host can write it: one copy, no buffer to
        // fault in (a restore after a restart touches every byte of its blocks once).
        const bool direct = m_devicePool.memory().hostAccessible();
        std::byte *destination = direct ? reinterpret_cast<std::byte *>(m_devicePool.payload(*id)) : m_staging.data();
        auto lookup = m_store->getKvBlockInto(e.key, m_fingerprint, {destination, blockBytes()});
        if (!lookup.ok() || *lookup != KvBlockLookup::Found) {
            m_devicePool.release(*id);
            if (!lookup.ok()) {
                disableDisk(lookup.error().message);
                return false;
            }
            if (*lookup == KvBlockLookup::Corrupt || *lookup == KvBlockLookup::Mismatched)
                ++report.nDroppedCorrupt;
            e.onDisk = false;
            return false;
        }
        e.onDisk = true;
        if (!direct) {
            m_devicePool.upload(*id, destination);
            m_devicePool.finishCopies(); // m_staging is the next block's destination
        }
        e.device = *id;
        const std::chrono::duration<double> elapsed = SteadyClock::now() - start;
        if (elapsed.count() > 0) {
            const double rate = static_cast<double>(blockBytes()) / elapsed.count();
            m_diskBytesPerSecond = m_diskBytesPerSecond <= 0.0 ? rate : 0.8 * m_diskBytesPerSecond + 0.2 * rate;
        }
    } else {
        assert(from == Tier::Host && e.host);
        auto id = m_devicePool.allocate();
        if (!id)
            return false;
        m_devicePool.upload(*id, e.host.data());
        e.device = *id;
    }
    m_deviceLru.push_front(e.key);
    e.deviceLruPos = m_deviceLru.begin();
    const Ms elapsed = SteadyClock::now() - start;
    (from == Tier::Disk ? report.disk : report.host) += elapsed;
    return true;
}

Result<RestoreReport> TieredKvCache::restorePrefix(std::span<const std::int32_t> tokens, KvSequence &seq)
{
    assert(seq.nTokens() == 0 && seq.blocks().empty() && &seq.pool() == &m_devicePool);
    RestoreReport report;
    m_lookupTokens += tokens.size();
    const std::vector<PlannedBlock> plan = planPrefix(tokens);
    // Uploads from the host tier and tail copies may still be landing, layer by layer, when the
    // forward pass of the new tokens starts (GPU memory; see KvMemory::beginLayeredUploads).
    m_devicePool.memory().beginLayeredUploads(m_layout.nLayers, blockBytes() / static_cast<std::size_t>(m_layout.nLayers));
    std::vector<KvBlockKey> &pinned = m_pinnedBy[&seq];
    std::int32_t matched = 0;
    for (const PlannedBlock &block : plan) {
        Entry &e = entry(block.key, block.nTokens);
        ++e.pinCount; // before any allocation below can reclaim it
        pinned.push_back(block.key);
        Tier tier = e.device ? Tier::Device : e.host ? Tier::Host : Tier::Disk;
        if (tier == Tier::Disk)
            m_diskTouched.push_back(block.key); // its disk LRU position is updated after the turn
        if (tier != Tier::Device) {
            auto brought = bringToDevice(e, tier, report);
            if (!brought.ok() || !*brought) {
                --e.pinCount;
                pinned.pop_back();
                dropEntryIfEmpty(block.key);
                break; // the rest is recomputed
            }
        }
        const auto start = SteadyClock::now();
        if (block.nTokens == m_layout.blockTokens) {
            seq.appendBlock(*e.device, false);
        } else {
            // The partial tail is copied: the sequence appends to it, the cached block stays as it is.
            auto copy = m_devicePool.allocate();
            if (!copy) {
                --e.pinCount;
                pinned.pop_back();
                break;
            }
            m_devicePool.copyBlock(*copy, *e.device);
            seq.appendBlock(*copy, true);
        }
        touch(e);
        if (tier == Tier::Device)
            report.device += Ms(SteadyClock::now() - start);
        (tier == Tier::Device ? report.nDevice : tier == Tier::Host ? report.nHost : report.nDisk) += block.nTokens;
        matched += block.nTokens;
    }
    // The blocks' copies (host-tier uploads, tail copies) are done before a forward pass reads
    // them: the backend waits for each layer's (layered), or they are complete now.
    if (!m_devicePool.memory().endLayeredUploads())
        m_devicePool.finishCopies();
    seq.setTokenCount(matched);
    m_hitDevice += static_cast<std::uint64_t>(report.nDevice);
    m_hitHost += static_cast<std::uint64_t>(report.nHost);
    m_hitDisk += static_cast<std::uint64_t>(report.nDisk);
    return report;
}

Result<RestoreReport> TieredKvCache::prefetch(std::int64_t conversationId, std::span<const std::int32_t> tokens)
{
    KvSequence seq(m_devicePool);
    auto report = restorePrefix(tokens, seq);
    // After a restart this is how the cache learns which blocks a conversation uses, before its
    // next turn commits them.
    if (const std::vector<KvBlockKey> &restored = m_pinnedBy[&seq]; report && !restored.empty())
        m_conversationBlocks[conversationId] = restored;
    releaseSequence(seq);
    return report;
}

KvResidency TieredKvCache::residency(std::span<const std::int32_t> tokens)
{
    KvResidency r;
    r.total = static_cast<std::int32_t>(tokens.size());
    if (tokens.size() < 2)
        return r;
    for (const PlannedBlock &block : planPrefix(tokens, false))
        (block.tier == Tier::Device ? r.device : block.tier == Tier::Host ? r.host : r.disk) += block.nTokens;
    return r;
}

void TieredKvCache::commitSequence(std::int64_t conversationId, std::span<const std::int32_t> tokens, KvSequence &seq)
{
    const std::int32_t bt = m_layout.blockTokens;
    const std::int32_t n = seq.nTokens();
    assert(static_cast<std::int32_t>(tokens.size()) >= n);
    std::vector<KvBlockKey> used;
    KvBlockKey parent{};
    for (std::size_t i = 0; static_cast<std::int32_t>(i) * bt < n; ++i) {
        const std::int32_t begin = static_cast<std::int32_t>(i) * bt;
        const std::int32_t count = std::min(bt, n - begin);
        const KvBlockKey key = kvBlockKey(parent, tokens.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(count)), m_fingerprint);
        Entry &e = entry(key, count);
        if (!e.device && seq.ownsBlock(i)) {
            // The sequence's own block becomes the cached device copy.
            seq.disownBlock(i);
            e.device = seq.blocks()[i];
            m_deviceLru.push_front(key);
            e.deviceLruPos = m_deviceLru.begin();
        }
        touch(e);
        used.push_back(key);
        parent = key;
    }
    m_conversationBlocks[conversationId] = std::move(used);
    releaseSequence(seq);
}

void TieredKvCache::releaseSequence(KvSequence &seq)
{
    auto it = m_pinnedBy.find(&seq);
    if (it == m_pinnedBy.end())
        return;
    for (const KvBlockKey &key : it->second) {
        auto e = m_entries.find(key);
        if (e != m_entries.end() && e->second->pinCount > 0) {
            --e->second->pinCount;
            dropEntryIfEmpty(key);
        }
    }
    m_pinnedBy.erase(it);
}

Result<void> TieredKvCache::dropConversationBlocks(std::int64_t conversationId, std::span<const KvBlockKey> keys)
{
    m_conversationBlocks.erase(conversationId);
    for (const KvBlockKey &key : keys) {
        auto it = m_entries.find(key);
        if (it == m_entries.end())
            continue;
        Entry &e = *it->second;
        if (e.pinCount > 0) {
            e.onDisk = false; // a running turn keeps it in memory; its row goes below
            continue;
        }
        if (e.device) {
            m_devicePool.release(*e.device);
            m_deviceLru.erase(e.deviceLruPos);
        }
        if (e.host) {
            m_hostLru.erase(e.hostLruPos);
            --m_hostBlocks;
        }
        m_entries.erase(it);
    }
    const KvBlockKeySet dropped(keys.begin(), keys.end());
    std::erase_if(m_diskTouched, [&](const KvBlockKey &key) { return dropped.contains(key); });
    // Also where KV writes stopped (a full disk): deleting frees room.
    if (!m_store)
        return {};
    return m_store->deleteKvBlocks(keys);
}

KvBlockKeySet TieredKvCache::memoryKeys() const
{
    KvBlockKeySet keys;
    for (const auto &[key, e] : m_entries)
        if (e->device || e->host)
            keys.insert(key);
    return keys;
}

Result<void> TieredKvCache::persist()
{
    if (!m_diskEnabled || !m_diskWritesStoppedReason.empty())
        return {};
    // Blocks read from disk this turn become the most recently used there. Done here, after the
    // reply, because each update rewrites a row that also holds a large payload.
    if (!m_diskTouched.empty()) {
        (void)m_store->touchKvBlocks(m_diskTouched);
        m_diskTouched.clear();
    }
    for (auto &[key, e] : m_entries) {
        if (e->onDisk || (!e->device && !e->host))
            continue;
        const std::span<const std::byte> payload =
            e->device ? deviceBytesOnHost(*e) : std::span<const std::byte>(e->host.data(), blockBytes());
        if (!writeToDisk(*e, payload))
            return makeError(m_diskEnabled ? "no new KV blocks go to disk: " + m_diskWritesStoppedReason
                                           : "the disk KV tier is off: " + m_diskDisabledReason);
    }
    // The disk budget: the least recently used rows go, one at a time until the rest fits (a
    // row's size is taken as this model's block size, and the total read again after each batch).
    for (auto bytes = m_store->kvBytes(); bytes.ok() && *bytes > m_budgets.diskBytes; bytes = m_store->kvBytes()) {
        auto victims = m_store->leastRecentlyUsedKvBlocks(16);
        if (!victims.ok() || victims->empty())
            break;
        std::uint64_t used = *bytes;
        for (const KvBlockKey &key : *victims) {
            if (used <= m_budgets.diskBytes)
                break;
            if (auto deleted = m_store->deleteKvBlock(key); !deleted.ok()) {
                // Even a delete needs room in the log: a full disk ends the disk tier here.
                disableDisk(deleted.error().message);
                return makeError("the disk KV tier is off: " + m_diskDisabledReason);
            }
            used -= std::min<std::uint64_t>(used, blockBytes());
            if (auto it = m_entries.find(key); it != m_entries.end()) {
                it->second->onDisk = false;
                dropEntryIfEmpty(key);
            }
        }
    }
    return {};
}

KvCacheStats TieredKvCache::stats() const
{
    KvCacheStats s;
    s.device = {static_cast<std::size_t>(m_devicePool.usedBlocks()) * blockBytes(), m_budgets.deviceBytes,
                m_devicePool.usedBlocks()};
    s.host = {static_cast<std::size_t>(m_hostBlocks) * blockBytes(), m_budgets.hostBytes, m_hostBlocks};
    s.disk.budgetBytes = m_budgets.diskBytes;
    if (m_store) {
        if (auto bytes = m_store->kvBytes(); bytes.ok()) {
            s.disk.usedBytes = static_cast<std::size_t>(*bytes);
            s.disk.blocks = static_cast<std::uint32_t>(*bytes / std::max<std::size_t>(1, blockBytes()));
        }
    }
    std::unordered_map<KvBlockKey, int, KvBlockKeyHash> users;
    for (const auto &[conversation, keys] : m_conversationBlocks)
        for (const KvBlockKey &key : KvBlockKeySet(keys.begin(), keys.end()))
            ++users[key];
    for (const auto &[key, count] : users)
        s.sharedBlocks += count > 1 ? 1 : 0;
    s.lookupTokens = m_lookupTokens;
    s.hitTokensDevice = m_hitDevice;
    s.hitTokensHost = m_hitHost;
    s.hitTokensDisk = m_hitDisk;
    s.diskEnabled = m_diskEnabled;
    s.diskDisabledReason = m_diskDisabledReason;
    s.diskWritesStoppedReason = m_diskWritesStoppedReason;
    return s;
}

std::string TieredKvCache::checkInvariants() const
{
    std::size_t device = 0, host = 0;
    for (const auto &[key, e] : m_entries) {
        device += e->device ? 1 : 0;
        host += e->host ? 1 : 0;
    }
    if (device != m_deviceLru.size())
        return "device LRU has " + std::to_string(m_deviceLru.size()) + " entries for " + std::to_string(device) +
               " cached device blocks";
    if (host != m_hostLru.size() || host != m_hostBlocks)
        return "host accounting: " + std::to_string(host) + " copies, LRU " + std::to_string(m_hostLru.size()) +
               ", counter " + std::to_string(m_hostBlocks);
    if (m_devicePool.usedBlocks() > m_devicePool.maxBlocks())
        return "device pool over its block budget";
    if (static_cast<std::size_t>(m_devicePool.usedBlocks()) * blockBytes() > m_budgets.deviceBytes)
        return "device bytes over budget";
    if (static_cast<std::size_t>(m_hostBlocks) * blockBytes() > m_budgets.hostBytes)
        return "host bytes over budget";
    if (m_devicePool.usedBlocks() < device)
        return "pool reports fewer used blocks than the cache holds";
    return {};
}

} // namespace kvchat::engine
