// SPDX-License-Identifier: MIT
// Over 800 lines on purpose: one test file per class under test (STYLE.md §8); this one covers
// every store operation and each failure mode, with their fixtures.
// SessionStore: round trips of conversations, messages, turns and KV blocks, and the error paths on
// purpose: corrupted, mismatched and stale KV rows, files that are not kvchat databases, a full
// database, a read-only one, and a message that must survive the store being dropped.
#include "engine/store/session_store.h"

#include <QFile>
#include <QTemporaryDir>
#include <QTest>
#include <QThread>

#include <algorithm>
#include <cstring>
#include <random>
#include <sqlite3.h>

using namespace kvchat::engine;

namespace {

template <typename R> QByteArray errorOf(const R &result)
{
    return result.ok() ? QByteArray() : QByteArray::fromStdString(result.error().message);
}

// A Result must be ok; its error message is the failure text otherwise. Each evaluates its
// argument once (it is often the call under test).
#define CHECK_OK(expr)                                                                                                 \
    do {                                                                                                               \
        const auto &checked_ = (expr);                                                                                 \
        QVERIFY2(checked_.ok(), errorOf(checked_).constData());                                                        \
    } while (false)
// A Result must be an error whose message contains text.
#define CHECK_ERROR(expr, text)                                                                                        \
    do {                                                                                                               \
        const auto &checked_ = (expr);                                                                                 \
        QVERIFY2(!checked_.ok(), "expected an error containing: " text);                                               \
        QVERIFY2(errorOf(checked_).contains(text), errorOf(checked_).constData());                                     \
    } while (false)

// A second, raw connection to the same file: how the tests reach behind the store's back.
class RawDb
{
public:
    explicit RawDb(const std::string &path)
    {
        sqlite3_open(path.c_str(), &m_db);
        sqlite3_busy_timeout(m_db, 2000);
    }
    ~RawDb() { sqlite3_close(m_db); }
    RawDb(const RawDb &) = delete;
    RawDb &operator=(const RawDb &) = delete;

    bool exec(const char *sql) { return sqlite3_exec(m_db, sql, nullptr, nullptr, nullptr) == SQLITE_OK; }
    std::int64_t scalar(const char *sql)
    {
        sqlite3_stmt *stmt = nullptr;
        std::int64_t value = -1;
        if (sqlite3_prepare_v2(m_db, sql, -1, &stmt, nullptr) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW)
            value = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
        return value;
    }
    // Flips one byte of a KV block's payload in place, leaving size and checksum columns as they were.
    bool flipPayloadByte(int offset)
    {
        const std::int64_t rowid = scalar("SELECT rowid FROM kv_blocks");
        sqlite3_blob *blob = nullptr;
        if (sqlite3_blob_open(m_db, "main", "kv_blocks", "payload", rowid, 1, &blob) != SQLITE_OK)
            return false;
        unsigned char byte = 0;
        bool ok = sqlite3_blob_read(blob, &byte, 1, offset) == SQLITE_OK;
        byte ^= 0x5a;
        ok = ok && sqlite3_blob_write(blob, &byte, 1, offset) == SQLITE_OK;
        return sqlite3_blob_close(blob) == SQLITE_OK && ok;
    }

private:
    sqlite3 *m_db = nullptr;
};

KvBlockKey keyOf(std::uint8_t seed)
{
    KvBlockKey key;
    for (std::size_t i = 0; i < key.bytes.size(); ++i)
        key.bytes[i] = static_cast<std::uint8_t>(seed * 31 + i);
    return key;
}

ModelFingerprint fingerprintOf(std::uint8_t seed)
{
    ModelFingerprint fp;
    fp.bytes.fill(seed);
    return fp;
}

std::vector<std::byte> randomPayload(std::size_t size, unsigned seed)
{
    std::mt19937 rng(seed);
    std::vector<std::byte> out(size);
    for (auto &b : out)
        b = static_cast<std::byte>(rng());
    return out;
}

constexpr std::size_t kBlockBytes = 700 * 1024; // about one SmolLM2 block of 16 tokens

} // namespace

class SessionStoreTest : public QObject
{
    Q_OBJECT

private slots:
    void init();
    void cleanup();

    void hexIsLowercase();
    void conversationRoundTrip();
    void listOrderRenameAndDuplicateName();
    void messagesRoundTrip();
    void updateAndTruncateMessages();
    void corruptTokenBlobIsAnError();
    void finishTurnRoundTripAndAtomicity();
    void deleteCascades();

    void kvBlockRoundTrip();
    void kvBlockReadIntoCallerMemory();
    void kvBytesAndLruOrder();
    void kvCorruptPayloadIsDropped();
    void kvAlteredColumnsAreCorrupt_data();
    void kvAlteredColumnsAreCorrupt();
    void kvOtherFingerprintIsMismatched();

    void refusesOtherSqliteFiles();
    void refusesNewerSchema();
    void refusesGarbageAndMissingDirectory();
    void fullDatabaseKeepsText();
    void readOnlyDatabase();
    void lockedDatabase();
    void committedMessageSurvivesDroppingTheStore();
    void integrityCheckOnHealthyDatabase();

private:
    std::unique_ptr<SessionStore> openStore(const SessionStoreOptions &options = {});

    std::unique_ptr<QTemporaryDir> m_dir;
    std::string m_path;
};

void SessionStoreTest::init()
{
    m_dir = std::make_unique<QTemporaryDir>();
    QVERIFY(m_dir->isValid());
    m_path = m_dir->filePath("kvchat.db").toStdString();
}

void SessionStoreTest::cleanup()
{
    m_dir.reset();
}

std::unique_ptr<SessionStore> SessionStoreTest::openStore(const SessionStoreOptions &options)
{
    auto opened = SessionStore::open(m_path, options);
    if (!opened.ok()) {
        qWarning("%s", opened.error().message.c_str());
        return nullptr;
    }
    return std::move(opened).value();
}

void SessionStoreTest::hexIsLowercase()
{
    KvBlockKey key;
    key.bytes = {0x00, 0x01, 0xab, 0xcd, 0xef, 0xff, 0x10, 0x9a, 0, 0, 0, 0, 0, 0, 0, 0x7f};
    QCOMPARE(key.hex(), std::string("0001abcdefff109a000000000000007f"));
    std::string expected;
    for (int i = 0; i < 16; ++i)
        expected += "ab";
    QCOMPARE(fingerprintOf(0xAB).hex(), expected);
}

void SessionStoreTest::conversationRoundTrip()
{
    auto store = openStore();
    QVERIFY(store);
    QCOMPARE(store->path(), m_path);
    QVERIFY(store->kvWritable());

    auto created = store->createConversation("work", "You are terse.");
    CHECK_OK(created);
    QVERIFY(created->id > 0);
    QCOMPARE(created->name, std::string("work"));
    QCOMPARE(created->title, std::string("work"));
    QVERIFY(created->createdAtMs > 1'600'000'000'000);

    const std::vector<std::int32_t> systemTokens = {1, 2, -3, 0x7fffffff, -0x7fffffff - 1, 151643};
    CHECK_OK(store->setConversationTokens(created->id, systemTokens, fingerprintOf(7).hex(), 4));

    for (auto found : {store->findConversation("work"), store->conversation(created->id)}) {
        CHECK_OK(found);
        QVERIFY(found->has_value());
        const ConversationRecord &c = **found;
        QCOMPARE(c.id, created->id);
        QCOMPARE(c.systemPrompt, std::string("You are terse."));
        QCOMPARE(c.systemTokens, systemTokens);
        QCOMPARE(c.tokensFingerprint, fingerprintOf(7).hex());
        QCOMPARE(c.windowStart, 4);
        QCOMPARE(c.createdAtMs, created->createdAtMs);
    }
    auto missing = store->findConversation("nope");
    CHECK_OK(missing);
    QVERIFY(!missing->has_value());
    auto missingId = store->conversation(9999);
    CHECK_OK(missingId);
    QVERIFY(!missingId->has_value());

    CHECK_ERROR(store->setConversationTokens(9999, systemTokens, "", 0), "no such conversation");
}

void SessionStoreTest::listOrderRenameAndDuplicateName()
{
    auto store = openStore();
    QVERIFY(store);
    auto a = store->createConversation("a", "");
    QThread::msleep(3);
    auto b = store->createConversation("b", "");
    QThread::msleep(3);
    auto c = store->createConversation("c", "");
    CHECK_OK(a);
    CHECK_OK(b);
    CHECK_OK(c);

    auto names = [&] {
        std::vector<std::string> out;
        auto list = store->listConversations();
        if (list.ok())
            for (const auto &conv : *list)
                out.push_back(conv.name);
        return out;
    };
    QCOMPARE(names(), (std::vector<std::string>{"c", "b", "a"}));

    QThread::msleep(3);
    CHECK_OK(store->appendMessage(a->id, "user", "hi", true, {}));
    QCOMPARE(names(), (std::vector<std::string>{"a", "c", "b"}));

    QThread::msleep(3);
    CHECK_OK(store->renameConversation(b->id, "Budget 2025"));
    QCOMPARE(names(), (std::vector<std::string>{"b", "a", "c"}));
    auto renamed = store->conversation(b->id);
    CHECK_OK(renamed);
    QCOMPARE((*renamed)->title, std::string("Budget 2025"));
    QCOMPARE((*renamed)->name, std::string("b"));

    auto duplicate = store->createConversation("a", "");
    CHECK_ERROR(duplicate, "already exists");
    QVERIFY(errorOf(duplicate).startsWith(QByteArray::fromStdString(m_path) + ": creating conversation 'a'"));
    CHECK_ERROR(store->renameConversation(9999, "x"), "renaming conversation 9999: no such conversation");
}

void SessionStoreTest::messagesRoundTrip()
{
    auto store = openStore();
    QVERIFY(store);
    auto conv = store->createConversation("chat", "");
    CHECK_OK(conv);

    const std::vector<std::int32_t> userTokens = {1, 128006, 882, 128007, 271, -1};
    auto user = store->appendMessage(conv->id, "user", "Grüße, 世界 🌍", true, userTokens);
    CHECK_OK(user);
    auto reply = store->appendMessage(conv->id, "assistant", "", false, {});
    CHECK_OK(reply);
    QCOMPARE(user->index, 0);
    QCOMPARE(reply->index, 1);
    QVERIFY(reply->id != user->id);

    auto other = store->createConversation("other", "");
    CHECK_OK(other);
    auto first = store->appendMessage(other->id, "user", "x", true, {});
    CHECK_OK(first);
    QCOMPARE(first->index, 0); // indices count per conversation

    auto messages = store->messages(conv->id);
    CHECK_OK(messages);
    QCOMPARE(messages->size(), std::size_t(2));
    const MessageRecord &m0 = (*messages)[0];
    QCOMPARE(m0.id, user->id);
    QCOMPARE(m0.conversationId, conv->id);
    QCOMPARE(m0.role, std::string("user"));
    QCOMPARE(m0.content, std::string("Grüße, 世界 🌍"));
    QVERIFY(m0.complete);
    QCOMPARE(m0.tokens, userTokens);
    QCOMPARE(m0.createdAtMs, user->createdAtMs);
    QCOMPARE((*messages)[1].content, std::string());
    QVERIFY(!(*messages)[1].complete);
    QVERIFY((*messages)[1].tokens.empty());

    CHECK_ERROR(store->appendMessage(conv->id, "system", "x", true, {}), "role must be");
    CHECK_ERROR(store->appendMessage(9999, "user", "x", true, {}),
                "appending a message to conversation 9999: no such conversation");
    auto none = store->messages(9999);
    CHECK_OK(none);
    QVERIFY(none->empty());
}

void SessionStoreTest::updateAndTruncateMessages()
{
    auto store = openStore();
    QVERIFY(store);
    auto conv = store->createConversation("chat", "");
    CHECK_OK(conv);
    std::vector<std::int64_t> ids;
    for (int i = 0; i < 4; ++i) {
        std::string content = "m";
        content += std::to_string(i); // not "m" + ...: GCC 12 warns falsely (-Wrestrict, PR 105651)
        auto m = store->appendMessage(conv->id, i % 2 ? "assistant" : "user", content, true, {});
        CHECK_OK(m);
        ids.push_back(m->id);
    }

    CHECK_OK(store->updateMessage(ids[3], "streamed so far", false, std::vector<std::int32_t>{5, 6, 7}));
    CHECK_ERROR(store->updateMessage(9999, "x", true, {}), "updating message 9999: no such message");

    const std::vector<std::pair<std::int64_t, std::vector<std::int32_t>>> retokenized = {{ids[0], {10, 11}},
                                                                                         {ids[1], {}}};
    CHECK_OK(store->setMessageTokens(retokenized));
    // All or nothing: an unknown id fails the whole batch.
    const std::vector<std::pair<std::int64_t, std::vector<std::int32_t>>> badBatch = {{ids[0], {99}}, {9999, {1}}};
    CHECK_ERROR(store->setMessageTokens(badBatch), "no message 9999");

    auto messages = store->messages(conv->id);
    CHECK_OK(messages);
    QCOMPARE((*messages)[0].tokens, (std::vector<std::int32_t>{10, 11}));
    QCOMPARE((*messages)[3].content, std::string("streamed so far"));
    QVERIFY(!(*messages)[3].complete);
    QCOMPARE((*messages)[3].tokens, (std::vector<std::int32_t>{5, 6, 7}));

    CHECK_OK(store->truncateMessages(conv->id, 2));
    messages = store->messages(conv->id);
    CHECK_OK(messages);
    QCOMPARE(messages->size(), std::size_t(2));
    QCOMPARE(messages->back().content, std::string("m1"));
    auto next = store->appendMessage(conv->id, "user", "edited", true, {});
    CHECK_OK(next);
    QCOMPARE(next->index, 2);
}

void SessionStoreTest::corruptTokenBlobIsAnError()
{
    auto store = openStore();
    QVERIFY(store);
    auto conv = store->createConversation("chat", "");
    CHECK_OK(conv);
    auto m = store->appendMessage(conv->id, "user", "hello", true, std::vector<std::int32_t>{1, 2});
    CHECK_OK(m);
    RawDb raw(m_path);
    QVERIFY(raw.exec("UPDATE messages SET tokens = x'0102030405'"));
    auto messages = store->messages(conv->id);
    CHECK_ERROR(messages, "not a multiple of 4");
    QVERIFY(errorOf(messages).contains("message " + QByteArray::number(qint64(m->id))));
}

void SessionStoreTest::finishTurnRoundTripAndAtomicity()
{
    auto store = openStore();
    QVERIFY(store);
    auto conv = store->createConversation("chat", "");
    auto other = store->createConversation("other", "");
    CHECK_OK(conv);
    CHECK_OK(other);
    CHECK_OK(store->appendMessage(conv->id, "user", "q", true, std::vector<std::int32_t>{1}));
    auto reply = store->appendMessage(conv->id, "assistant", "par", false, std::vector<std::int32_t>{2});
    CHECK_OK(reply);

    TurnRecord turn;
    turn.conversationId = conv->id;
    turn.messageId = reply->id;
    turn.createdAtMs = 1'700'000'000'123;
    turn.ttftMs = 12.5;
    turn.queueMs = 0.25;
    turn.prepareMs = 0.5;
    turn.restoreDeviceMs = 1.125;
    turn.restoreHostMs = 2.25;
    turn.restoreDiskMs = 3.5;
    turn.prefillMs = 4.75;
    turn.firstDecodeMs = 0.125;
    turn.decodeMs = 250.0625;
    turn.promptTokens = 512;
    turn.reusedDevice = 128;
    turn.reusedHost = 64;
    turn.reusedDisk = 256;
    turn.recomputed = 64;
    turn.decodeTokens = 99;
    turn.stopReason = "end_of_generation";

    // The message update runs first and the turn insert then fails: nothing of it may remain.
    TurnRecord wrong = turn;
    wrong.conversationId = other->id;
    CHECK_ERROR(store->finishTurn(reply->id, "final", true, std::vector<std::int32_t>{2, 3}, wrong),
                "belongs to conversation");
    auto messages = store->messages(conv->id);
    CHECK_OK(messages);
    QCOMPARE(messages->back().content, std::string("par"));
    QVERIFY(!messages->back().complete);
    auto none = store->turns(std::nullopt);
    CHECK_OK(none);
    QVERIFY(none->empty());
    CHECK_ERROR(store->finishTurn(9999, "x", true, {}, TurnRecord{}), "no such message");

    auto turnId = store->finishTurn(reply->id, "final", true, std::vector<std::int32_t>{2, 3, 4}, turn);
    CHECK_OK(turnId);
    messages = store->messages(conv->id);
    CHECK_OK(messages);
    QCOMPARE(messages->back().content, std::string("final"));
    QVERIFY(messages->back().complete);
    QCOMPARE(messages->back().tokens, (std::vector<std::int32_t>{2, 3, 4}));

    // A second conversation's turn (conversationId and messageId left 0: derived from the message).
    auto q2 = store->appendMessage(other->id, "assistant", "", false, {});
    CHECK_OK(q2);
    TurnRecord second;
    second.stopReason = "max_tokens";
    auto secondId = store->finishTurn(q2->id, "done", true, {}, second);
    CHECK_OK(secondId);

    auto turns = store->turns(conv->id);
    CHECK_OK(turns);
    QCOMPARE(turns->size(), std::size_t(1));
    const TurnRecord &t = turns->front();
    QCOMPARE(t.id, *turnId);
    QCOMPARE(t.conversationId, conv->id);
    QCOMPARE(t.messageId, reply->id);
    QCOMPARE(t.createdAtMs, turn.createdAtMs);
    QCOMPARE(t.ttftMs, turn.ttftMs);
    QCOMPARE(t.queueMs, turn.queueMs);
    QCOMPARE(t.prepareMs, turn.prepareMs);
    QCOMPARE(t.restoreDeviceMs, turn.restoreDeviceMs);
    QCOMPARE(t.restoreHostMs, turn.restoreHostMs);
    QCOMPARE(t.restoreDiskMs, turn.restoreDiskMs);
    QCOMPARE(t.prefillMs, turn.prefillMs);
    QCOMPARE(t.firstDecodeMs, turn.firstDecodeMs);
    QCOMPARE(t.decodeMs, turn.decodeMs);
    QCOMPARE(t.promptTokens, turn.promptTokens);
    QCOMPARE(t.reusedDevice, turn.reusedDevice);
    QCOMPARE(t.reusedHost, turn.reusedHost);
    QCOMPARE(t.reusedDisk, turn.reusedDisk);
    QCOMPARE(t.recomputed, turn.recomputed);
    QCOMPARE(t.decodeTokens, turn.decodeTokens);
    QCOMPARE(t.stopReason, turn.stopReason);

    auto all = store->turns(std::nullopt);
    CHECK_OK(all);
    QCOMPARE(all->size(), std::size_t(2));
    QCOMPARE((*all)[0].id, *turnId);
    QCOMPARE((*all)[1].id, *secondId);
    QCOMPARE((*all)[1].conversationId, other->id);
    QCOMPARE((*all)[1].messageId, q2->id);
    QVERIFY((*all)[1].createdAtMs > 0);

    // Regenerating deletes the message; its turn stays in the TTFT history without a message.
    CHECK_OK(store->truncateMessages(conv->id, 1));
    turns = store->turns(conv->id);
    CHECK_OK(turns);
    QCOMPARE(turns->size(), std::size_t(1));
    QCOMPARE(turns->front().messageId, std::int64_t(0));
}

void SessionStoreTest::deleteCascades()
{
    auto store = openStore();
    QVERIFY(store);
    auto conv = store->createConversation("doomed", "");
    auto kept = store->createConversation("kept", "");
    CHECK_OK(conv);
    CHECK_OK(kept);
    for (auto id : {conv->id, kept->id}) {
        CHECK_OK(store->appendMessage(id, "user", "q", true, {}));
        auto reply = store->appendMessage(id, "assistant", "a", true, {});
        CHECK_OK(reply);
        CHECK_OK(store->finishTurn(reply->id, "a", true, {}, TurnRecord{}));
    }
    CHECK_OK(store->deleteConversation(conv->id));
    CHECK_ERROR(store->deleteConversation(conv->id), "no such conversation");

    auto gone = store->conversation(conv->id);
    CHECK_OK(gone);
    QVERIFY(!gone->has_value());
    RawDb raw(m_path);
    QCOMPARE(raw.scalar("SELECT count(*) FROM messages"), 2);
    QCOMPARE(raw.scalar("SELECT count(*) FROM turns"), 1);
    auto turns = store->turns(std::nullopt);
    CHECK_OK(turns);
    QCOMPARE(turns->size(), std::size_t(1));
    QCOMPARE(turns->front().conversationId, kept->id);
}

// getKvBlockInto reads into the caller's block (how the cache restores into its pool): a payload
// of the expected size arrives whole; one of another size is a corrupt row and is dropped.
void SessionStoreTest::kvBlockReadIntoCallerMemory()
{
    auto store = openStore();
    QVERIFY(store);
    const ModelFingerprint fp = fingerprintOf(1);
    const auto payload = randomPayload(kBlockBytes, 3);
    CHECK_OK(store->putKvBlock(keyOf(1), fp, 16, payload));
    CHECK_OK(store->putKvBlock(keyOf(2), fp, 16, randomPayload(kBlockBytes - 4, 4)));

    std::vector<std::byte> block(kBlockBytes);
    auto found = store->getKvBlockInto(keyOf(1), fp, block);
    CHECK_OK(found);
    QCOMPARE(*found, KvBlockLookup::Found);
    QVERIFY(block == payload);

    auto wrongSize = store->getKvBlockInto(keyOf(2), fp, block);
    CHECK_OK(wrongSize);
    QCOMPARE(*wrongSize, KvBlockLookup::Corrupt);
    auto has = store->hasKvBlock(keyOf(2), fp);
    CHECK_OK(has);
    QVERIFY(!*has);
    auto missing = store->getKvBlockInto(keyOf(3), fp, block);
    CHECK_OK(missing);
    QCOMPARE(*missing, KvBlockLookup::Missing);
}

void SessionStoreTest::kvBlockRoundTrip()
{
    auto store = openStore();
    QVERIFY(store);
    const auto payload = randomPayload(kBlockBytes, 1);
    const KvBlockKey key = keyOf(1);
    const ModelFingerprint fp = fingerprintOf(1);

    auto has = store->hasKvBlock(key, fp);
    CHECK_OK(has);
    QVERIFY(!*has);
    std::vector<std::byte> out;
    auto missing = store->getKvBlock(key, fp, out);
    CHECK_OK(missing);
    QCOMPARE(*missing, KvBlockLookup::Missing);

    CHECK_OK(store->putKvBlock(key, fp, 16, payload));
    has = store->hasKvBlock(key, fp);
    CHECK_OK(has);
    QVERIFY(*has);
    auto other = store->hasKvBlock(key, fingerprintOf(2));
    CHECK_OK(other);
    QVERIFY(!*other);

    auto found = store->getKvBlock(key, fp, out);
    CHECK_OK(found);
    QCOMPARE(*found, KvBlockLookup::Found);
    QVERIFY(out == payload);

    // Replacing under the same key, and an empty payload.
    const auto smaller = randomPayload(1000, 2);
    CHECK_OK(store->putKvBlock(key, fp, 16, smaller));
    found = store->getKvBlock(key, fp, out);
    CHECK_OK(found);
    QCOMPARE(*found, KvBlockLookup::Found);
    QVERIFY(out == smaller);
    CHECK_OK(store->putKvBlock(keyOf(2), fp, 0, {}));
    found = store->getKvBlock(keyOf(2), fp, out);
    CHECK_OK(found);
    QCOMPARE(*found, KvBlockLookup::Found);
    QVERIFY(out.empty());

    CHECK_OK(store->deleteKvBlock(key));
    has = store->hasKvBlock(key, fp);
    CHECK_OK(has);
    QVERIFY(!*has);
    QVERIFY(store->kvWritable());
}

void SessionStoreTest::kvBytesAndLruOrder()
{
    auto store = openStore();
    QVERIFY(store);
    const ModelFingerprint fp = fingerprintOf(1);
    auto bytes = store->kvBytes();
    CHECK_OK(bytes);
    QCOMPARE(*bytes, std::uint64_t(0));

    const KvBlockKey k1 = keyOf(1), k2 = keyOf(2), k3 = keyOf(3);
    CHECK_OK(store->putKvBlock(k1, fp, 16, randomPayload(kBlockBytes, 1)));
    CHECK_OK(store->putKvBlock(k2, fp, 16, randomPayload(1000, 2)));
    CHECK_OK(store->putKvBlock(k3, fp, 8, randomPayload(500, 3)));
    bytes = store->kvBytes();
    CHECK_OK(bytes);
    QCOMPARE(*bytes, std::uint64_t(kBlockBytes + 1500));
    CHECK_OK(store->putKvBlock(k2, fp, 16, randomPayload(2000, 4))); // replaced, not added
    bytes = store->kvBytes();
    CHECK_OK(bytes);
    QCOMPARE(*bytes, std::uint64_t(kBlockBytes + 2500));

    auto lru = [&](std::size_t limit) {
        auto keys = store->leastRecentlyUsedKvBlocks(limit);
        return keys.ok() ? *keys : std::vector<KvBlockKey>{};
    };
    // The replaced k2 counts as just written.
    QVERIFY(lru(10) == (std::vector<KvBlockKey>{k1, k3, k2}));
    CHECK_OK(store->touchKvBlocks(std::vector<KvBlockKey>{k1}));
    QVERIFY(lru(10) == (std::vector<KvBlockKey>{k3, k2, k1}));
    // Within one call the first key is the most recently used: a sequence's tail goes first.
    CHECK_OK(store->touchKvBlocks(std::vector<KvBlockKey>{k2, k3}));
    QVERIFY(lru(10) == (std::vector<KvBlockKey>{k1, k3, k2}));
    QVERIFY(lru(2) == (std::vector<KvBlockKey>{k1, k3}));
    QVERIFY(lru(0).empty());
    // Unknown keys are ignored.
    CHECK_OK(store->touchKvBlocks(std::vector<KvBlockKey>{keyOf(9)}));

    CHECK_OK(store->deleteKvBlock(k1));
    bytes = store->kvBytes();
    CHECK_OK(bytes);
    QCOMPARE(*bytes, std::uint64_t(2500));
}

void SessionStoreTest::kvCorruptPayloadIsDropped()
{
    auto store = openStore();
    QVERIFY(store);
    const auto payload = randomPayload(kBlockBytes, 5);
    CHECK_OK(store->putKvBlock(keyOf(1), fingerprintOf(1), 16, payload));
    {
        RawDb raw(m_path);
        QVERIFY(raw.flipPayloadByte(kBlockBytes / 2));
        QCOMPARE(raw.scalar("SELECT size_bytes FROM kv_blocks"), std::int64_t(kBlockBytes));
    }
    std::vector<std::byte> out(3);
    auto lookup = store->getKvBlock(keyOf(1), fingerprintOf(1), out);
    CHECK_OK(lookup);
    QCOMPARE(*lookup, KvBlockLookup::Corrupt);
    QVERIFY(out.empty());
    RawDb raw(m_path);
    QCOMPARE(raw.scalar("SELECT count(*) FROM kv_blocks"), 0);
    lookup = store->getKvBlock(keyOf(1), fingerprintOf(1), out);
    CHECK_OK(lookup);
    QCOMPARE(*lookup, KvBlockLookup::Missing);
}

void SessionStoreTest::kvAlteredColumnsAreCorrupt_data()
{
    QTest::addColumn<QString>("sql");
    QTest::newRow("checksum") << "UPDATE kv_blocks SET checksum = checksum + 1";
    QTest::newRow("format_version") << "UPDATE kv_blocks SET format_version = format_version + 1";
    QTest::newRow("size_bytes") << "UPDATE kv_blocks SET size_bytes = size_bytes - 1";
    QTest::newRow("truncated payload") << "UPDATE kv_blocks SET payload = substr(payload, 1, 1000)";
    QTest::newRow("short fingerprint") << "UPDATE kv_blocks SET fingerprint = x'0101'";
}

void SessionStoreTest::kvAlteredColumnsAreCorrupt()
{
    QFETCH(QString, sql);
    auto store = openStore();
    QVERIFY(store);
    CHECK_OK(store->putKvBlock(keyOf(1), fingerprintOf(1), 16, randomPayload(kBlockBytes, 6)));
    CHECK_OK(store->putKvBlock(keyOf(2), fingerprintOf(1), 16, randomPayload(1000, 7)));
    RawDb raw(m_path);
    QVERIFY(
        raw.exec((sql + " WHERE key = (SELECT key FROM kv_blocks ORDER BY last_used LIMIT 1)").toUtf8().constData()));
    std::vector<std::byte> out;
    auto lookup = store->getKvBlock(keyOf(1), fingerprintOf(1), out);
    CHECK_OK(lookup);
    QCOMPARE(*lookup, KvBlockLookup::Corrupt);
    QVERIFY(out.empty());
    QCOMPARE(raw.scalar("SELECT count(*) FROM kv_blocks"), 1); // only the bad row went
    lookup = store->getKvBlock(keyOf(2), fingerprintOf(1), out);
    CHECK_OK(lookup);
    QCOMPARE(*lookup, KvBlockLookup::Found);
}

void SessionStoreTest::kvOtherFingerprintIsMismatched()
{
    auto store = openStore();
    QVERIFY(store);
    CHECK_OK(store->putKvBlock(keyOf(1), fingerprintOf(1), 16, randomPayload(kBlockBytes, 8)));
    std::vector<std::byte> out;
    auto lookup = store->getKvBlock(keyOf(1), fingerprintOf(2), out);
    CHECK_OK(lookup);
    QCOMPARE(*lookup, KvBlockLookup::Mismatched);
    QVERIFY(out.empty());
    lookup = store->getKvBlock(keyOf(1), fingerprintOf(1), out);
    CHECK_OK(lookup);
    QCOMPARE(*lookup, KvBlockLookup::Missing);
}

void SessionStoreTest::refusesOtherSqliteFiles()
{
    {
        RawDb raw(m_path);
        QVERIFY(raw.exec("CREATE TABLE photos(id INTEGER PRIMARY KEY, data BLOB)"));
    }
    auto opened = SessionStore::open(m_path);
    CHECK_ERROR(opened, "not a kvchat database");
    QVERIFY(errorOf(opened).startsWith(QByteArray::fromStdString(m_path)));

    // Another application's id on an otherwise empty file.
    const std::string other = m_dir->filePath("other.db").toStdString();
    {
        RawDb raw(other);
        QVERIFY(raw.exec("PRAGMA application_id = 1234"));
    }
    CHECK_ERROR(SessionStore::open(other), "application_id 0x000004d2");
    // Neither file was touched: the photos table is still the only one.
    RawDb raw(m_path);
    QCOMPARE(raw.scalar("SELECT count(*) FROM sqlite_schema"), 1);
}

void SessionStoreTest::refusesNewerSchema()
{
    QVERIFY(openStore());
    {
        RawDb raw(m_path);
        QVERIFY(raw.exec("PRAGMA user_version = 99"));
    }
    CHECK_ERROR(SessionStore::open(m_path), "newer kvchat (schema version 99");
    // Reopening an ordinary one works, twice.
    {
        RawDb raw(m_path);
        QVERIFY(raw.exec("PRAGMA user_version = 1"));
    }
    QVERIFY(openStore());
    QVERIFY(openStore());
}

void SessionStoreTest::refusesGarbageAndMissingDirectory()
{
    {
        QFile file(QString::fromStdString(m_path));
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.write(QByteArray(8192, 'x'));
    }
    auto opened = SessionStore::open(m_path);
    CHECK_ERROR(opened, "file is not a database");
    QVERIFY(errorOf(opened).startsWith(QByteArray::fromStdString(m_path) + ": opening the database"));

    const std::string nowhere = m_dir->filePath("no/such/dir/kvchat.db").toStdString();
    auto missing = SessionStore::open(nowhere);
    CHECK_ERROR(missing, "unable to open database file");
    QVERIFY(errorOf(missing).startsWith(QByteArray::fromStdString(nowhere)));
}

void SessionStoreTest::fullDatabaseKeepsText()
{
    std::int64_t convId = 0;
    {
        // 48 pages of 64 KiB: the schema and a few 700 KB blocks, then SQLITE_FULL.
        auto store = openStore(SessionStoreOptions{.readOnly = false, .maxPageCount = 48});
        QVERIFY(store);
        auto conv = store->createConversation("chat", "");
        CHECK_OK(conv);
        convId = conv->id;
        CHECK_OK(store->appendMessage(convId, "user", "before the disk filled up", true, std::vector<std::int32_t>{7}));

        Result<void> put;
        int stored = 0;
        for (; stored < 100; ++stored) {
            put = store->putKvBlock(keyOf(static_cast<std::uint8_t>(stored)), fingerprintOf(1), 16,
                                    randomPayload(kBlockBytes, stored));
            if (!put.ok())
                break;
        }
        QVERIFY2(stored > 0 && stored < 100, "the page limit was never reached");
        CHECK_ERROR(put, "database or disk is full");
        QVERIFY(errorOf(put).startsWith(QByteArray::fromStdString(m_path) + ": writing KV block "));
        QVERIFY(!store->kvWritable());

        // A user's text outranks cached KV: blocks are evicted to make room for it.
        const std::string big(256 * 1024, 'q');
        auto message = store->appendMessage(convId, "user", big, true, {});
        CHECK_OK(message);
        RawDb raw(m_path);
        QVERIFY(raw.scalar("SELECT count(*) FROM kv_blocks") < stored);

        // More than the whole limit cannot fit: a clear error, and nothing earlier is lost.
        const std::string huge(4 << 20, 'z');
        CHECK_ERROR(store->appendMessage(convId, "user", huge, true, {}), "database or disk is full");
        auto messages = store->messages(convId);
        CHECK_OK(messages);
        QCOMPARE(messages->size(), std::size_t(2));
        QCOMPARE(messages->front().content, std::string("before the disk filled up"));
        QCOMPARE(messages->back().content, big);
        QVERIFY(!store->kvWritable());
    }
    auto store = openStore();
    QVERIFY(store);
    auto messages = store->messages(convId);
    CHECK_OK(messages);
    QCOMPARE(messages->size(), std::size_t(2));
    QCOMPARE(messages->front().tokens, std::vector<std::int32_t>{7});
    auto ok = store->integrityCheck();
    CHECK_OK(ok);
    QVERIFY(*ok);
    QVERIFY(store->kvWritable()); // a fresh open tries the disk tier again
}

void SessionStoreTest::readOnlyDatabase()
{
    std::int64_t convId = 0, messageId = 0;
    const auto payload = randomPayload(kBlockBytes, 9);
    {
        auto store = openStore();
        QVERIFY(store);
        auto conv = store->createConversation("chat", "sys");
        CHECK_OK(conv);
        convId = conv->id;
        auto m = store->appendMessage(convId, "user", "hello", true, std::vector<std::int32_t>{1, 2});
        CHECK_OK(m);
        messageId = m->id;
        CHECK_OK(store->putKvBlock(keyOf(1), fingerprintOf(1), 16, payload));
        CHECK_OK(store->putKvBlock(keyOf(2), fingerprintOf(1), 16, payload));
    }
    {
        RawDb raw(m_path);
        QVERIFY(raw.exec("UPDATE kv_blocks SET checksum = checksum + 1 WHERE key = (SELECT max(key) FROM kv_blocks)"));
    }

    auto store = openStore(SessionStoreOptions{.readOnly = true});
    QVERIFY(store);
    QVERIFY(!store->kvWritable());
    auto conv = store->findConversation("chat");
    CHECK_OK(conv);
    QVERIFY(conv->has_value());
    auto messages = store->messages(convId);
    CHECK_OK(messages);
    QCOMPARE(messages->size(), std::size_t(1));
    QCOMPARE(messages->front().content, std::string("hello"));
    std::vector<std::byte> out;
    auto lookup = store->getKvBlock(keyOf(1), fingerprintOf(1), out);
    CHECK_OK(lookup);
    QCOMPARE(*lookup, KvBlockLookup::Found);
    QVERIFY(out == payload);
    // A corrupt row is still reported as Corrupt; it just cannot be deleted.
    const KvBlockKey bad =
        std::max(keyOf(1), keyOf(2), [](const KvBlockKey &a, const KvBlockKey &b) { return a.bytes < b.bytes; });
    lookup = store->getKvBlock(bad, fingerprintOf(1), out);
    CHECK_OK(lookup);
    QCOMPARE(*lookup, KvBlockLookup::Corrupt);

    CHECK_ERROR(store->appendMessage(convId, "user", "x", true, {}), "read-only");
    CHECK_ERROR(store->updateMessage(messageId, "x", true, {}), "read-only");
    CHECK_ERROR(store->createConversation("new", ""), "read-only");
    CHECK_ERROR(store->putKvBlock(keyOf(3), fingerprintOf(1), 16, payload), "read-only");
    CHECK_ERROR(store->touchKvBlocks(std::vector<KvBlockKey>{keyOf(1)}), "read-only");
    QVERIFY(!store->kvWritable());
    auto ok = store->integrityCheck();
    CHECK_OK(ok);
    QVERIFY(*ok);

    // Nothing changed on disk.
    RawDb raw(m_path);
    QCOMPARE(raw.scalar("SELECT count(*) FROM messages"), 1);
    QCOMPARE(raw.scalar("SELECT count(*) FROM kv_blocks"), 2);

    // A read-only open of a file that does not exist says so instead of creating it.
    const std::string absent = m_dir->filePath("absent.db").toStdString();
    CHECK_ERROR(SessionStore::open(absent, SessionStoreOptions{.readOnly = true}), "unable to open database file");
    QVERIFY(!QFile::exists(QString::fromStdString(absent)));
}

void SessionStoreTest::lockedDatabase()
{
    auto store = openStore();
    QVERIFY(store);
    auto conv = store->createConversation("chat", "");
    CHECK_OK(conv);
    RawDb raw(m_path);
    QVERIFY(raw.exec("BEGIN IMMEDIATE")); // another process writing, for longer than the busy timeout

    // A message write reports the lock and leaves the disk tier alone; a KV write turns it off.
    CHECK_ERROR(store->appendMessage(conv->id, "user", "later", true, {}), "database is locked");
    QVERIFY(store->kvWritable());
    CHECK_ERROR(store->putKvBlock(keyOf(1), fingerprintOf(1), 16, randomPayload(1000, 11)), "database is locked");
    QVERIFY(!store->kvWritable());
    // Reads still work (WAL: readers do not wait for the writer).
    auto found = store->conversation(conv->id);
    CHECK_OK(found);
    QVERIFY(found->has_value());

    QVERIFY(raw.exec("ROLLBACK"));
    CHECK_OK(store->appendMessage(conv->id, "user", "later", true, {}));
}

void SessionStoreTest::committedMessageSurvivesDroppingTheStore()
{
    std::int64_t convId = 0;
    auto store = openStore();
    QVERIFY(store);
    auto conv = store->createConversation("chat", "");
    CHECK_OK(conv);
    convId = conv->id;
    CHECK_OK(store->appendMessage(convId, "user", "do not lose me", true, {}));
    {
        // Committed, not buffered: another connection sees it while the store is still open.
        RawDb raw(m_path);
        QCOMPARE(raw.scalar("SELECT count(*) FROM messages WHERE content = 'do not lose me'"), 1);
    }
    store.reset();
    store = openStore();
    QVERIFY(store);
    auto messages = store->messages(convId);
    CHECK_OK(messages);
    QCOMPARE(messages->size(), std::size_t(1));
    QCOMPARE(messages->front().content, std::string("do not lose me"));
}

void SessionStoreTest::integrityCheckOnHealthyDatabase()
{
    auto store = openStore();
    QVERIFY(store);
    auto conv = store->createConversation("chat", "");
    CHECK_OK(conv);
    CHECK_OK(store->appendMessage(conv->id, "user", "x", true, {}));
    CHECK_OK(store->putKvBlock(keyOf(1), fingerprintOf(1), 16, randomPayload(kBlockBytes, 10)));
    auto ok = store->integrityCheck();
    CHECK_OK(ok);
    QVERIFY(*ok);
}

QTEST_GUILESS_MAIN(SessionStoreTest)
#include "session_store_test.moc"
