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
#include <map>
#include <numeric>

using namespace kvchat::engine;

namespace {

// RAM posing as device memory. Arenas are recorded so copies can be checked to go the right way;
// host buffers are plain RAM.
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
        std::memcpy(dst, src, bytes);
        ++uploads;
    }
    void copyFromPool(void *dst, const void *src, std::size_t bytes) override
    {
        QVERIFY(inArena(src, bytes) && !inArena(dst, bytes));
        std::memcpy(dst, src, bytes);
        ++downloads;
    }
    void copyWithinPool(void *dst, const void *src, std::size_t bytes) override
    {
        QVERIFY(inArena(dst, bytes) && inArena(src, bytes));
        std::memcpy(dst, src, bytes);
    }

    int uploads = 0, downloads = 0;

private:
    bool inArena(const void *p, std::size_t bytes) const
    {
        const auto *b = static_cast<const std::byte *>(p);
        return b >= m_arena.data() && b + bytes <= m_arena.data() + m_arena.size();
    }
    std::vector<std::byte> m_arena;
};

constexpr KvLayout kLayout{2, 8, 4}; // 2 layers, kvDim 8, 4 positions per block

// The payload a block holding positions [first, first + 4) of a sequence gets in this test: a
// value per float that depends on the position and the sequence's seed.
std::vector<float> blockPayload(std::int32_t first, float seed)
{
    std::vector<float> p(kLayout.blockFloats());
    for (std::size_t i = 0; i < p.size(); ++i)
        p[i] = seed + static_cast<float>(first) * 1000.0f + static_cast<float>(i);
    return p;
}

// A sequence of n tokens whose blocks are filled through the memory (as a backend's kernels would).
void fill(KvSequence &seq, std::int32_t n, float seed)
{
    QVERIFY(seq.reserve(n));
    for (std::size_t b = 0; b < seq.blocks().size(); ++b)
        seq.pool().upload(seq.blocks()[b], blockPayload(static_cast<std::int32_t>(b) * kLayout.blockTokens, seed).data());
    seq.setTokenCount(n);
}

} // namespace

class KvTiersTest : public QObject
{
    Q_OBJECT

private slots:
    void blocksRoundTripThroughEveryTier();
};

void KvTiersTest::blocksRoundTripThroughEveryTier()
{
    QTemporaryDir dir;
    auto store = SessionStore::open(dir.filePath("kv.db").toStdString());
    QVERIFY(store);
    auto memory = std::make_shared<FakeDeviceMemory>();
    KvBudgets budgets;
    budgets.deviceBytes = 4 * kLayout.blockBytes(); // one sequence of 3 blocks (+1 for a tail copy)
    budgets.hostBytes = 2 * kLayout.blockBytes();
    budgets.diskBytes = 64 * kLayout.blockBytes();
    ModelFingerprint fingerprint{};
    fingerprint.bytes[0] = 7;
    TieredKvCache cache(kLayout, fingerprint, budgets, store->get(), memory);

    std::vector<std::int32_t> first(12), second(12);
    std::iota(first.begin(), first.end(), 100);
    std::iota(second.begin(), second.end(), 500);
    {
        KvSequence seq(cache.devicePool());
        fill(seq, 12, 0.25f);
        cache.commitSequence(1, first, seq);
    }
    {
        // The second conversation needs the pool: the first one's blocks move to host and disk.
        KvSequence seq(cache.devicePool());
        fill(seq, 12, 0.5f);
        cache.commitSequence(2, second, seq);
    }
    QVERIFY(cache.persist().ok());
    QCOMPARE(cache.checkInvariants(), std::string());
    QVERIFY(memory->downloads > 0); // spilled and persisted through the memory's copies
    const KvCacheStats spilled = cache.stats();
    QVERIFY(spilled.host.blocks > 0);
    QVERIFY(spilled.disk.blocks >= 6);

    // The first conversation comes back (one more token to compute): every block it reuses holds
    // exactly what was written, whichever tier it came from.
    std::vector<std::int32_t> resumed = first;
    resumed.push_back(999);
    KvSequence seq(cache.devicePool());
    const int uploadsBefore = memory->uploads;
    auto report = cache.restorePrefix(resumed, seq);
    QVERIFY(report.ok());
    QCOMPARE(report->reused(), 12);
    QVERIFY(report->nHost + report->nDisk > 0);
    QVERIFY(memory->uploads > uploadsBefore);
    std::vector<float> got(kLayout.blockFloats());
    for (std::size_t b = 0; b < seq.blocks().size(); ++b) {
        cache.devicePool().download(seq.blocks()[b], got.data());
        QVERIFY2(got == blockPayload(static_cast<std::int32_t>(b) * kLayout.blockTokens, 0.25f),
                 qPrintable(QString("block %1").arg(b)));
    }
    cache.releaseSequence(seq);
    QCOMPARE(cache.checkInvariants(), std::string());
}

QTEST_GUILESS_MAIN(KvTiersTest)
#include "kv_tiers_test.moc"
