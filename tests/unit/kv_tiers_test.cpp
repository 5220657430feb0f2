// SPDX-License-Identifier: MIT
// The tiered KV cache through a KvMemory the host cannot read, as the CUDA backend's GPU pool is:
// blocks spill from the pool to host buffers and to disk, and come back, only through the memory's
// copy functions (never by dereferencing pool pointers), with every byte intact. Runs without a
// GPU: the memory here is RAM that pretends otherwise and checks how it is used.
#include "engine/kv/tiered_kv_cache.h"
#include "engine/model/model_fingerprint.h"
#include "engine/store/session_store.h"

#include <QTemporaryDir>
#include <QTest>

#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <tuple>

using namespace kvchat::engine;

namespace {

// RAM posing as device memory. Arenas are recorded so copies can be checked to go the right way;
// host buffers are plain RAM. Copies into the pool wait, like DMA on a stream, until
// finishCopies() (or a copy out of the pool, which is ordered after them).
class FakeDeviceMemory final : public KvMemory
{
public:
    const char *name() const override { return "fake-device"; }
    bool hostAccessible() const override { return false; }
    void *allocateArena(std::size_t bytes) override
    {
        m_arena.assign(bytes, std::byte{0});
        return m_arena.data();
    }
    void freeArena(void *, std::size_t) override { m_arena.clear(); }
    void commit(void *, std::size_t) override {}
    void *allocateHost(std::size_t bytes) override { return ::operator new(bytes); }
    void freeHost(void *p, std::size_t) override { ::operator delete(p); }
    void copyToPool(void *dst, const void *src, std::size_t bytes) override
    {
        QVERIFY(inArena(dst, bytes) && !inArena(src, bytes));
        m_pending.push_back([=] { std::memcpy(dst, src, bytes); });
        ++uploads;
    }
    void copyWithinPool(void *dst, const void *src, std::size_t bytes) override
    {
        QVERIFY(inArena(dst, bytes) && inArena(src, bytes));
        m_pending.push_back([=] { std::memcpy(dst, src, bytes); });
    }
    void copyFromPool(void *dst, const void *src, std::size_t bytes) override
    {
        QVERIFY(inArena(src, bytes) && !inArena(dst, bytes));
        finishCopies();
        std::memcpy(dst, src, bytes);
        ++downloads;
    }
    void finishCopies() override
    {
        for (const auto &copy : m_pending)
            copy();
        m_pending.clear();
    }
    std::size_t pendingCopies() const { return m_pending.size(); }

    int uploads = 0, downloads = 0;

private:
    bool inArena(const void *p, std::size_t bytes) const
    {
        const auto *b = static_cast<const std::byte *>(p);
        return b >= m_arena.data() && b + bytes <= m_arena.data() + m_arena.size();
    }
    std::vector<std::byte> m_arena;
    std::vector<std::function<void()>> m_pending;
};

constexpr KvLayout kLayout{2, 8, 4}; // 2 layers, kvDim 8, 4 positions per block

// The payload a block holding positions [first, first + 4) of a sequence gets in this test: a
// value per float that depends on the position and the sequence's seed.
std::vector<float> blockPayload(std::int32_t first, float seed)
{
    std::vector<float> p(kLayout.blockElements());
    for (std::size_t i = 0; i < p.size(); ++i)
        p[i] = seed + static_cast<float>(first) * 1000.0f + static_cast<float>(i);
    return p;
}

// A sequence of n tokens whose blocks are filled through the memory (as a backend's kernels would).
void fill(KvSequence &seq, std::int32_t n, float seed)
{
    QVERIFY(seq.reserve(n));
    for (std::size_t b = 0; b < seq.blocks().size(); ++b) {
        const std::vector<float> payload = blockPayload(static_cast<std::int32_t>(b) * kLayout.blockTokens, seed);
        seq.pool().upload(seq.blocks()[b], payload.data());
        seq.pool().finishCopies(); // payload is gone after this iteration
    }
    seq.setTokenCount(n);
}

// Budgets of whole blocks of kLayout per tier.
KvBudgets blockBudgets(std::size_t device, std::size_t host, std::size_t disk)
{
    KvBudgets budgets;
    budgets.deviceBytes = device * kLayout.blockBytes();
    budgets.hostBytes = host * kLayout.blockBytes();
    budgets.diskBytes = disk * kLayout.blockBytes();
    return budgets;
}

} // namespace

// Restores the first conversation (one more token to compute) into a fresh sequence and checks
// that every block it reuses holds exactly what was written, and that no copy is still pending
// when restorePrefix returns (a forward pass reads the blocks next). Returns the report.
RestoreReport restoreAndCheck(TieredKvCache &cache, FakeDeviceMemory &memory, const std::vector<std::int32_t> &tokens)
{
    std::vector<std::int32_t> resumed = tokens;
    resumed.push_back(999);
    KvSequence seq(cache.devicePool());
    auto report = cache.restorePrefix(resumed, seq);
    if (!report)
        qFatal("%s", report.error().message.c_str());
    [&] { QCOMPARE(memory.pendingCopies(), std::size_t(0)); }();
    std::vector<float> got(kLayout.blockElements());
    for (std::size_t b = 0; b < seq.blocks().size(); ++b) {
        cache.devicePool().download(seq.blocks()[b], got.data());
        [&] {
            QVERIFY2(got == blockPayload(static_cast<std::int32_t>(b) * kLayout.blockTokens, 0.25f),
                     qPrintable(QString("block %1").arg(b)));
        }();
    }
    cache.releaseSequence(seq);
    return *report;
}

class KvTiersTest : public QObject
{
    Q_OBJECT

private slots:
    void blocksRoundTripThroughEveryTier();
    void aBlockBeingRestoredKeepsItsHostCopy();
    void theDiskBudgetEvictsOnlyWhatItMust();
};

void KvTiersTest::blocksRoundTripThroughEveryTier()
{
    QTemporaryDir dir;
    auto store = SessionStore::open(dir.filePath("kv.db").toStdString());
    QVERIFY(store);
    auto memory = std::make_shared<FakeDeviceMemory>();
    const KvBudgets budgets = blockBudgets(3, 3, 64); // the device holds one sequence of 3 blocks
    ModelFingerprint fingerprint{};
    fingerprint.bytes[0] = 7;
    std::vector<std::int32_t> first(12), second(12);
    std::iota(first.begin(), first.end(), 100);
    std::iota(second.begin(), second.end(), 500);
    {
        TieredKvCache cache(kLayout, fingerprint, budgets, store->get(), memory);
        {
            KvSequence seq(cache.devicePool());
            fill(seq, 12, 0.25f);
            cache.commitSequence(1, first, seq);
        }
        {
            // The second conversation needs the pool: the first one's blocks move to host RAM.
            KvSequence seq(cache.devicePool());
            fill(seq, 12, 0.5f);
            cache.commitSequence(2, second, seq);
        }
        QVERIFY(cache.persist().ok()); // and both conversations to disk
        QCOMPARE(cache.checkInvariants(), std::string());
        const KvCacheStats spilled = cache.stats();
        QCOMPARE(spilled.host.blocks, 3u);
        QCOMPARE(spilled.disk.blocks, 6u);
        QVERIFY(memory->downloads >= 6); // spilled and persisted through the memory's copies

        const RestoreReport fromHost = restoreAndCheck(cache, *memory, first);
        QCOMPARE(fromHost.nHost, 12);
        QCOMPARE(cache.checkInvariants(), std::string());
    }
    // A restart: a new cache on the same store brings the blocks back from disk.
    TieredKvCache restarted(kLayout, fingerprint, budgets, store->get(), memory);
    const RestoreReport fromDisk = restoreAndCheck(restarted, *memory, first);
    QCOMPARE(fromDisk.nDisk, 12);
    QCOMPARE(restarted.checkInvariants(), std::string());
}

void KvTiersTest::aBlockBeingRestoredKeepsItsHostCopy()
{
    // Restoring a block from host RAM takes a pool block; the pool is full, so its oldest block
    // spills to host RAM, which is full too and must drop its oldest block: the one being restored.
    // It is pinned, so another goes instead (with no disk tier, that one is simply lost).
    auto memory = std::make_shared<FakeDeviceMemory>();
    const KvBudgets budgets = blockBudgets(3, 3, 0);
    ModelFingerprint fingerprint{};
    fingerprint.bytes[0] = 9;
    TieredKvCache cache(kLayout, fingerprint, budgets, nullptr, memory);
    std::vector<std::int32_t> first(12), second(12);
    std::iota(first.begin(), first.end(), 100);
    std::iota(second.begin(), second.end(), 500);
    for (const auto &[id, tokens, seed] : {std::tuple{1, &first, 0.25f}, std::tuple{2, &second, 0.5f}}) {
        KvSequence seq(cache.devicePool());
        fill(seq, 12, seed);
        cache.commitSequence(id, *tokens, seq);
    }
    QCOMPARE(cache.stats().host.blocks, 3u); // the first conversation, oldest block last

    const RestoreReport report = restoreAndCheck(cache, *memory, first);
    QCOMPARE(report.nHost, 4); // its first block; the second was dropped to make room
    QCOMPARE(cache.checkInvariants(), std::string());
}

void KvTiersTest::theDiskBudgetEvictsOnlyWhatItMust()
{
    QTemporaryDir dir;
    auto store = SessionStore::open(dir.filePath("kv.db").toStdString());
    QVERIFY(store);
    auto memory = std::make_shared<FakeDeviceMemory>();
    KvBudgets budgets = blockBudgets(8, 8, 5);
    budgets.diskReserveBytes = 0;
    ModelFingerprint fingerprint{};
    fingerprint.bytes[0] = 11;
    TieredKvCache cache(kLayout, fingerprint, budgets, store->get(), memory);
    std::vector<std::int32_t> first(12), second(12);
    std::iota(first.begin(), first.end(), 100);
    std::iota(second.begin(), second.end(), 500);
    for (const auto &[id, tokens] : {std::pair{1, &first}, std::pair{2, &second}}) {
        KvSequence seq(cache.devicePool());
        fill(seq, 12, 0.25f);
        cache.commitSequence(id, *tokens, seq);
        QVERIFY(cache.persist().ok());
    }
    // Six blocks written, five fit: the least recently used one goes, not a batch of them.
    QCOMPARE(cache.stats().disk.blocks, 5u);
    QVERIFY(cache.stats().diskEnabled);
}

QTEST_GUILESS_MAIN(KvTiersTest)
#include "kv_tiers_test.moc"
