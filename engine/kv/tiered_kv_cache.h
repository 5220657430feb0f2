// SPDX-License-Identifier: MIT
// The session KV cache: content-addressed blocks (kv_block_key.h) in three tiers, each with a byte
// budget: device (the backend's pool; RAM for the CPU backend) → host RAM → disk (SQLite, through
// SessionStore). A block may have copies in several tiers; its tier is the fastest that has one.
//
// - A turn restores the longest cached prefix of its token sequence into a KvSequence (full blocks
//   shared read-only, the partial tail block copied so the sequence can append to it), pins those
//   blocks, and afterwards commits the sequence's new blocks to the cache and unpins.
// - When the device pool is full, the least recently used unpinned block moves down: to host RAM
//   (making room there by moving host blocks to disk), or is simply dropped from the device when a
//   lower tier already has it. A block leaves the last tier only when the disk budget forces it.
// - persist() writes blocks that have no disk copy yet (write-back), so a conversation resumes
//   from disk after a restart. A failed disk write (full, read-only, locked) disables the disk
//   tier; the cache keeps working in RAM and stats() says why. Below KvBudgets::diskReserveBytes
//   of free space, no new blocks are written, while those on disk are still read.
// - Whether to restore a disk block or recompute it is decided from measured disk read bandwidth
//   and measured prefill speed (see shouldRestoreFromDisk).
//
// Thread-safety: none; the engine thread owns the cache, its pools and the store.
#pragma once

#include "engine/core/result.h"
#include "engine/kv/kv_block_key.h"
#include "engine/kv/kv_cache.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace kvchat::engine {

class SessionStore;

// Do not reorder: values appear in exported metrics.
enum class Tier : std::uint8_t { Device = 0, Host = 1, Disk = 2 };

struct KvBudgets
{
    std::size_t deviceBytes = 0;
    std::size_t hostBytes = 0;
    std::size_t diskBytes = 0;
    // Free space the disk tier leaves on the database's file system: messages need room to be
    // saved, and SQLite's log room to grow up to its size limit (journal_size_limit) between
    // checkpoints. Below it no new blocks are written.
    std::size_t diskReserveBytes = std::size_t(64) << 20;

    // Defaults from this machine: a quarter of available RAM for each memory tier (capped at 2 and
    // 4 GiB) and a quarter of the free space beside the database (capped at 10 GiB).
    static KvBudgets machineDefaults(const std::string &databasePath);
};

struct KvTierStats
{
    std::size_t usedBytes = 0;
    std::size_t budgetBytes = 0;
    std::uint32_t blocks = 0;
};

struct KvCacheStats
{
    KvTierStats device, host, disk;
    std::uint32_t sharedBlocks = 0;      // cached blocks that more than one conversation uses
    std::uint64_t lookupTokens = 0;      // tokens looked up in restorePrefix, over the cache's life
    std::uint64_t hitTokensDevice = 0, hitTokensHost = 0, hitTokensDisk = 0;
    bool diskEnabled = false;
    std::string diskDisabledReason;      // why the disk tier is off, "" when on
    std::string diskWritesStoppedReason; // why no new blocks are written to it (it is still read), or ""
};

// Where a token sequence's cached KV is now: tokens of its longest cached prefix per tier.
struct KvResidency
{
    std::int32_t device = 0, host = 0, disk = 0;
    std::int32_t total = 0; // tokens in the sequence
    // The slowest tier a restore would read from; nullopt when nothing is cached.
    std::optional<Tier> slowestTier() const
    {
        if (disk > 0)
            return Tier::Disk;
        if (host > 0)
            return Tier::Host;
        if (device > 0)
            return Tier::Device;
        return std::nullopt;
    }
};

// What restorePrefix brought back, and how long each tier took.
struct RestoreReport
{
    std::int32_t nDevice = 0, nHost = 0, nDisk = 0; // tokens reused from each tier
    std::chrono::duration<double, std::milli> device{0}, host{0}, disk{0};
    std::int32_t nDroppedCorrupt = 0; // disk blocks found corrupt or mismatched (dropped, recomputed)
    std::int32_t reused() const { return nDevice + nHost + nDisk; }
};

class TieredKvCache
{
public:
    // store may be null (no disk tier). The device pool holds budgets.deviceBytes / blockBytes
    // blocks in memory (the backend's: RAM for the CPU, GPU memory for CUDA); the host tier's
    // buffers come from the same memory object (pinned RAM for CUDA).
    TieredKvCache(KvLayout layout, ModelFingerprint fingerprint, KvBudgets budgets, SessionStore *store,
                  std::shared_ptr<KvMemory> memory = hostKvMemory());
    ~TieredKvCache();
    TieredKvCache(const TieredKvCache &) = delete;
    TieredKvCache &operator=(const TieredKvCache &) = delete;

    KvBlockPool &devicePool() { return m_devicePool; }
    const ModelFingerprint &fingerprint() const { return m_fingerprint; }

    // Fills the empty sequence seq with the longest cached prefix of tokens (always leaving at
    // least the last token to compute) and pins its blocks until commitSequence or releaseSequence.
    Result<RestoreReport> restorePrefix(std::span<const std::int32_t> tokens, KvSequence &seq);
    // Brings the cached prefix of a conversation's tokens to the device without building a
    // sequence (prefetch), and counts those blocks as the conversation's (stats().sharedBlocks).
    Result<RestoreReport> prefetch(std::int64_t conversationId, std::span<const std::int32_t> tokens);
    // Adds the blocks of seq (whose first seq.nTokens() positions hold the KV of tokens) to the
    // cache under conversationId, then unpins what restorePrefix pinned.
    void commitSequence(std::int64_t conversationId, std::span<const std::int32_t> tokens, KvSequence &seq);
    // Unpins without caching anything (a failed turn).
    void releaseSequence(KvSequence &seq);
    // Deletes blocks from every tier (a deleted conversation's: see conversation_blocks.h), and
    // forgets which blocks the conversation used. A block pinned by a running turn stays in memory.
    Result<void> dropConversationBlocks(std::int64_t conversationId, std::span<const KvBlockKey> keys);
    // The keys of the blocks held in memory (device or host RAM).
    KvBlockKeySet memoryKeys() const;

    // Where the cached prefix of tokens lives (no data moves).
    KvResidency residency(std::span<const std::int32_t> tokens);

    // Writes blocks without a disk copy to the store; enforces the disk budget.
    Result<void> persist();

    // Measurements that drive restore-or-recompute.
    void recordPrefill(std::int32_t nTokens, std::chrono::duration<double> elapsed);
    bool shouldRestoreFromDisk(std::int32_t nTokens) const;

    KvCacheStats stats() const;
    // Checks the accounting invariants (tests): pool counts, LRU lists, budgets. "" when all hold.
    std::string checkInvariants() const;

private:
    struct Entry;
    struct PlannedBlock
    {
        KvBlockKey key;
        std::int32_t nTokens;
        Tier tier;
    };

    std::vector<PlannedBlock> planPrefix(std::span<const std::int32_t> tokens, bool decideRecompute = true);
    std::optional<Tier> locate(const KvBlockKey &key);
    Entry &entry(const KvBlockKey &key, std::int32_t nTokens);
    void touch(Entry &e);
    // Makes e's payload available on the device (host or disk copy → new device block).
    Result<bool> bringToDevice(Entry &e, Tier from, RestoreReport &report);
    bool reclaimDeviceBlock();
    bool makeHostRoom();
    void dropEntryIfEmpty(const KvBlockKey &key);
    // Writes e's payload to the store and marks it on disk; false (and the disk tier off) when
    // the write fails or the disk has less free space than the reserve.
    bool writeToDisk(Entry &e, std::span<const std::byte> payload);
    void disableDisk(const std::string &reason);
    std::size_t blockBytes() const { return m_layout.blockBytes(); }
    // The bytes of e's device block as host memory: the block itself when the pool is host
    // memory, else a copy in m_staging.
    std::span<const std::byte> deviceBytesOnHost(const Entry &e);

    KvLayout m_layout;
    ModelFingerprint m_fingerprint;
    KvBudgets m_budgets;
    SessionStore *m_store;
    bool m_diskEnabled;
    std::string m_diskDisabledReason;
    std::string m_diskWritesStoppedReason; // set once the disk has less free space than the reserve
    KvBlockPool m_devicePool;
    std::uint32_t m_maxHostBlocks;
    HostKvBuffer m_staging; // one block, for disk reads and writes of a pool the host cannot read
    std::uint32_t m_hostBlocks = 0;

    std::unordered_map<KvBlockKey, std::unique_ptr<Entry>, KvBlockKeyHash> m_entries;
    std::list<KvBlockKey> m_deviceLru; // front = most recently used; unpinned and pinned alike
    std::list<KvBlockKey> m_hostLru;
    std::unordered_map<const KvSequence *, std::vector<KvBlockKey>> m_pinnedBy;
    std::unordered_map<std::int64_t, std::vector<KvBlockKey>> m_conversationBlocks;
    std::uint64_t m_tick = 0;
    std::vector<KvBlockKey> m_diskTouched; // read from disk since the last persist()

    // Restore-or-recompute inputs (exponentially weighted).
    double m_prefillTokensPerSecond = 0.0;
    double m_diskBytesPerSecond = 0.0;
    std::uint64_t m_lookupTokens = 0, m_hitDevice = 0, m_hitHost = 0, m_hitDisk = 0;
};

} // namespace kvchat::engine
