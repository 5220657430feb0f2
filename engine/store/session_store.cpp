// SPDX-License-Identifier: MIT
// SessionStore on the plain sqlite3 C API; the schema and its checks are in session_schema.cpp.
// Token arrays are BLOBs of little-endian int32. kv_blocks.checksum is XXH3_64bits of the payload
// stored as a signed 64-bit integer; last_used is a counter (MAX + 1), not a clock, so blocks
// touched within the same millisecond still have an order.
#include "engine/store/session_store.h"

#include "engine/model/model_fingerprint.h"
#include "engine/store/session_schema.h"
#include "engine/store/sqlite_statement.h"

// Inlined, XXH3 uses the vector width this file is compiled for (AVX2 by default on x86-64): about
// 15 us per 700 KB block instead of 40-80 us through the shared library's SSE2 build. The hash value
// is the same either way.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sqlite3.h>
#include <unordered_map>

namespace kvchat::engine {

using namespace sqlite;

namespace {

constexpr int kBusyTimeoutMs = 2000;
// When a message write finds the database full, at least this much KV payload is deleted first.
constexpr std::int64_t kKvBytesFreedForText = 4 << 20;

std::int64_t nowMs()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Failures after which the disk tier should stop writing: no space, no write access, or a lock
// another process holds longer than the busy timeout.
bool disablesKvWrites(int rc)
{
    return rc == SQLITE_FULL || rc == SQLITE_READONLY || rc == SQLITE_BUSY || rc == SQLITE_LOCKED ||
           rc == SQLITE_IOERR || rc == SQLITE_CANTOPEN;
}

// The KV block keys in the first column of q's rows, in order.
std::vector<KvBlockKey> readKeys(Statement &q)
{
    std::vector<KvBlockKey> out;
    while (q.step()) {
        const auto bytes = q.blob(0);
        KvBlockKey &key = out.emplace_back();
        if (bytes.size() == key.bytes.size()) // the schema's CHECK guarantees it
            std::memcpy(key.bytes.data(), bytes.data(), key.bytes.size());
    }
    return out;
}

ConversationRecord readConversation(const Statement &q)
{
    ConversationRecord c;
    c.id = q.integer(0);
    c.name = q.text(1);
    c.title = q.text(2);
    c.systemPrompt = q.text(3);
    c.systemTokens = q.tokens(4, "conversation " + std::to_string(c.id));
    c.tokensFingerprint = q.text(5);
    c.windowStart = q.int32(6);
    c.createdAtMs = q.integer(7);
    c.updatedAtMs = q.integer(8);
    return c;
}

} // namespace

struct SessionStore::Connection
{
    enum class Durability { Full, Normal };

    explicit Connection(SessionStore &store) : owner(store), db(store.m_db) {}
    ~Connection()
    {
        for (auto &[sql, stmt] : statements)
            sqlite3_finalize(stmt);
    }

    // sql must be a string literal (or otherwise outlive the connection): it is the cache key.
    Statement query(std::string_view sql)
    {
        sqlite3_stmt *&stmt = statements[sql];
        if (!stmt) {
            const int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                              &stmt, nullptr);
            if (rc != SQLITE_OK) {
                statements.erase(sql);
                failFrom(db, rc);
            }
        }
        return Statement(db, stmt);
    }

    void requireWritable()
    {
        if (sqlite3_db_readonly(db, "main") == 1)
            throw Failure{SQLITE_READONLY, "the database is open read-only"};
    }

    // synchronous is per connection and cannot change inside a transaction: set it before BEGIN.
    void setDurability(Durability d)
    {
        if (durability == d)
            return;
        exec(db, d == Durability::Full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
        durability = d;
    }

    // Runs body in one BEGIN IMMEDIATE transaction committed with synchronous=FULL: the user's
    // text is on disk when this returns. When the database is full, the least recently used KV
    // blocks (which can be recomputed) are deleted and the write is tried once more.
    template <typename F> auto durableWrite(F &&body)
    {
        requireWritable();
        for (int attempt = 0;; ++attempt) {
            try {
                setDurability(Durability::Full);
                Transaction tx(db, "BEGIN IMMEDIATE");
                if constexpr (std::is_void_v<std::invoke_result_t<F>>) {
                    body();
                    tx.commit();
                    return;
                } else {
                    auto result = body();
                    tx.commit();
                    return result;
                }
            } catch (const Failure &failure) {
                if (failure.rc != SQLITE_FULL || attempt > 0 || !freeKvSpace())
                    throw;
            }
        }
    }

    // durableWrite with secure_delete on, so what it deletes is overwritten in the pages it leaves
    // free: deleting a conversation, and the KV blocks that encode its text. (The old pages stay
    // in the log until a checkpoint; the callers checkpoint with TRUNCATE.)
    template <typename F> void erasingWrite(F &&body)
    {
        exec(db, "PRAGMA secure_delete=ON");
        try {
            durableWrite(std::forward<F>(body));
        } catch (...) {
            exec(db, "PRAGMA secure_delete=OFF");
            throw;
        }
        exec(db, "PRAGMA secure_delete=OFF");
    }

    // A KV write (synchronous=NORMAL: a lost block is recomputed). A failure that means the disk
    // tier cannot write now turns kvWritable() false.
    template <typename F> void kvWrite(F &&body)
    {
        try {
            requireWritable();
            setDurability(Durability::Normal);
            Transaction tx(db, "BEGIN IMMEDIATE");
            body();
            tx.commit();
        } catch (const Failure &failure) {
            if (disablesKvWrites(failure.rc))
                owner.m_kvWritable = false;
            throw;
        }
    }

    // Deletes least recently used KV blocks until kKvBytesFreedForText bytes are gone (their pages
    // go to the free list, where the next write finds them). False when nothing could be freed.
    bool freeKvSpace()
    {
        owner.m_kvWritable = false; // the cache must not take the room back
        try {
            Transaction tx(db, "BEGIN IMMEDIATE");
            query("DELETE FROM kv_blocks WHERE key IN (SELECT key FROM (SELECT key, SUM(size_bytes) OVER "
                  "(ORDER BY last_used, key ROWS UNBOUNDED PRECEDING) - size_bytes AS before FROM kv_blocks) "
                  "WHERE before < ?1)")
                .bindInt(1, kKvBytesFreedForText)
                .run();
            const bool freed = sqlite3_changes(db) > 0;
            tx.commit();
            return freed;
        } catch (const Failure &) {
            return false;
        }
    }

    SessionStore &owner;
    sqlite3 *db;
    std::unordered_map<std::string_view, sqlite3_stmt *> statements;
    std::optional<Durability> durability;
};

Result<std::unique_ptr<SessionStore>> SessionStore::open(const std::string &path, const SessionStoreOptions &options)
{
    std::unique_ptr<SessionStore> store(new SessionStore);
    store->m_path = path;
    const int flags = options.readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    // SQLite falls back to read-only by itself when the file is write-protected; the handle it
    // returns must be closed even when opening failed, which the destructor does.
    const int rc = sqlite3_open_v2(path.c_str(), &store->m_db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK)
        return storeError(path, "opening the database", store->m_db ? sqlite3_errmsg(store->m_db) : sqlite3_errstr(rc));
    sqlite3 *db = store->m_db;
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, kBusyTimeoutMs);
    store->m_connection = std::make_unique<Connection>(*store);
    const bool readOnly = sqlite3_db_readonly(db, "main") == 1;
    store->m_kvWritable = !readOnly;

    auto checked = guarded(path, "opening the database", [&] {
        prepareSessionSchema(db, readOnly);
        // KV blocks are read through a memory map: SQLite then copies overflow pages straight from
        // the page cache into the destination instead of pread()ing each into its own cache first.
        exec(db, "PRAGMA mmap_size=1073741824");
        if (readOnly)
            return;
        exec(db, "PRAGMA foreign_keys=ON");
        // After a checkpoint, shrink a WAL that a burst of KV writes grew.
        exec(db, "PRAGMA journal_size_limit=67108864");
        if (options.maxPageCount > 0)
            exec(db, ("PRAGMA max_page_count=" + std::to_string(options.maxPageCount)).c_str());
    });
    if (!checked)
        return checked.error();
    return store;
}

SessionStore::~SessionStore()
{
    // Statements first: sqlite3_close refuses to close a connection with unfinalized statements.
    // Closing the last connection checkpoints the WAL into the database file.
    m_connection.reset();
    sqlite3_close(m_db);
}

Result<std::optional<ConversationRecord>> SessionStore::findConversation(std::string_view name)
{
    return guarded(m_path, "looking up conversation '" + std::string(name) + "'", [&] {
        Statement q =
            m_connection->query("SELECT id, name, title, system_prompt, system_tokens, tokens_fingerprint, "
                                "window_start, created_at_ms, updated_at_ms FROM conversations WHERE name = ?1");
        q.bindText(1, name);
        return q.step() ? std::optional(readConversation(q)) : std::nullopt;
    });
}

Result<std::optional<ConversationRecord>> SessionStore::conversation(std::int64_t id)
{
    return guarded(m_path, "reading conversation " + std::to_string(id), [&] {
        Statement q =
            m_connection->query("SELECT id, name, title, system_prompt, system_tokens, tokens_fingerprint, "
                                "window_start, created_at_ms, updated_at_ms FROM conversations WHERE id = ?1");
        q.bindInt(1, id);
        return q.step() ? std::optional(readConversation(q)) : std::nullopt;
    });
}

Result<ConversationRecord> SessionStore::createConversation(std::string_view name, std::string_view systemPrompt)
{
    return guarded(m_path, "creating conversation '" + std::string(name) + "'", [&] {
        ConversationRecord c;
        c.name = name;
        c.title = name;
        c.systemPrompt = systemPrompt;
        c.createdAtMs = c.updatedAtMs = nowMs();
        m_connection->durableWrite([&] {
            Statement q = m_connection->query("INSERT INTO conversations(name, title, system_prompt, created_at_ms, "
                                              "updated_at_ms) VALUES(?1, ?1, ?2, ?3, ?3)");
            q.bindText(1, name).bindText(2, systemPrompt).bindInt(3, c.createdAtMs);
            try {
                q.run();
            } catch (const Failure &failure) {
                if (failure.rc == SQLITE_CONSTRAINT)
                    fail("a conversation with that name already exists");
                throw;
            }
            c.id = sqlite3_last_insert_rowid(m_db);
        });
        return c;
    });
}

Result<std::vector<ConversationRecord>> SessionStore::listConversations()
{
    return guarded(m_path, "listing conversations", [&] {
        Statement q = m_connection->query("SELECT id, name, title, system_prompt, system_tokens, tokens_fingerprint, "
                                          "window_start, created_at_ms, updated_at_ms FROM conversations "
                                          "ORDER BY updated_at_ms DESC, id DESC");
        std::vector<ConversationRecord> out;
        while (q.step())
            out.push_back(readConversation(q));
        return out;
    });
}

Result<std::vector<std::int64_t>> SessionStore::searchConversations(std::string_view text)
{
    return guarded(m_path, "searching conversations", [&] {
        // instr() on lower(): a plain substring match (LIKE would treat % and _ in the text as wildcards).
        Statement q = m_connection->query(
            "SELECT c.id FROM conversations c WHERE instr(lower(c.title), lower(?1)) > 0 "
            "OR instr(lower(c.name), lower(?1)) > 0 OR EXISTS (SELECT 1 FROM messages m WHERE "
            "m.conversation_id = c.id AND instr(lower(m.content), lower(?1)) > 0) "
            "ORDER BY c.updated_at_ms DESC, c.id DESC");
        q.bindText(1, text);
        std::vector<std::int64_t> out;
        while (q.step())
            out.push_back(q.integer(0));
        return out;
    });
}

Result<void> SessionStore::renameConversation(std::int64_t id, std::string_view title)
{
    return guarded(m_path, "renaming conversation " + std::to_string(id), [&] {
        m_connection->durableWrite([&] {
            Statement q = m_connection->query("UPDATE conversations SET title = ?2, updated_at_ms = ?3 WHERE id = ?1");
            q.bindInt(1, id).bindText(2, title).bindInt(3, nowMs()).run();
            if (q.changes() == 0)
                fail("no such conversation");
        });
    });
}

void SessionStore::checkpointAndTruncateLog()
{
    // Best effort: what was deleted is gone either way; a reader in another process can keep
    // the log from being truncated until a later checkpoint.
    (void)sqlite3_exec(m_db, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
}

Result<void> SessionStore::deleteConversation(std::int64_t id)
{
    return guarded(m_path, "deleting conversation " + std::to_string(id), [&] {
        m_connection->erasingWrite([&] {
            Statement q = m_connection->query("DELETE FROM conversations WHERE id = ?1");
            q.bindInt(1, id).run();
            if (q.changes() == 0)
                fail("no such conversation");
        });
        checkpointAndTruncateLog();
    });
}

Result<MessageRecord> SessionStore::appendMessage(std::int64_t conversationId, std::string_view role,
                                                  std::string_view content, bool complete,
                                                  std::span<const std::int32_t> tokens)
{
    return guarded(m_path, "appending a message to conversation " + std::to_string(conversationId), [&] {
        if (role != "user" && role != "assistant")
            fail("the role must be 'user' or 'assistant', not '" + std::string(role) + "'");
        MessageRecord m;
        m.conversationId = conversationId;
        m.role = role;
        m.content = content;
        m.complete = complete;
        m.createdAtMs = nowMs();
        m.tokens.assign(tokens.begin(), tokens.end());
        m_connection->durableWrite([&] {
            Statement touch = m_connection->query("UPDATE conversations SET updated_at_ms = ?2 WHERE id = ?1");
            touch.bindInt(1, conversationId).bindInt(2, m.createdAtMs).run();
            if (touch.changes() == 0)
                fail("no such conversation");
            Statement q = m_connection->query(
                "INSERT INTO messages(conversation_id, idx, role, content, complete, tokens, created_at_ms) "
                "VALUES(?1, (SELECT COALESCE(MAX(idx) + 1, 0) FROM messages WHERE conversation_id = ?1), "
                "?2, ?3, ?4, ?5, ?6) RETURNING id, idx");
            q.bindInt(1, conversationId).bindText(2, role).bindText(3, content).bindInt(4, complete);
            q.bindTokens(5, tokens).bindInt(6, m.createdAtMs);
            if (!q.step())
                fail("the new message row was not returned");
            m.id = q.integer(0);
            m.index = q.int32(1);
            q.run();
        });
        return m;
    });
}

Result<void> SessionStore::updateMessage(std::int64_t messageId, std::string_view content, bool complete,
                                         std::span<const std::int32_t> tokens)
{
    return guarded(m_path, "updating message " + std::to_string(messageId), [&] {
        m_connection->durableWrite([&] {
            Statement q =
                m_connection->query("UPDATE messages SET content = ?2, complete = ?3, tokens = ?4 WHERE id = ?1");
            q.bindInt(1, messageId).bindText(2, content).bindInt(3, complete).bindTokens(4, tokens).run();
            if (q.changes() == 0)
                fail("no such message");
            Statement touch = m_connection->query("UPDATE conversations SET updated_at_ms = ?2 WHERE id = (SELECT "
                                                  "conversation_id FROM messages WHERE id = ?1)");
            touch.bindInt(1, messageId).bindInt(2, nowMs()).run();
        });
    });
}

Result<std::vector<MessageRecord>> SessionStore::messages(std::int64_t conversationId)
{
    return guarded(m_path, "reading the messages of conversation " + std::to_string(conversationId), [&] {
        Statement q =
            m_connection->query("SELECT id, conversation_id, idx, role, content, complete, tokens, created_at_ms "
                                "FROM messages WHERE conversation_id = ?1 ORDER BY idx");
        q.bindInt(1, conversationId);
        std::vector<MessageRecord> out;
        while (q.step()) {
            MessageRecord &m = out.emplace_back();
            m.id = q.integer(0);
            m.conversationId = q.integer(1);
            m.index = q.int32(2);
            m.role = q.text(3);
            m.content = q.text(4);
            m.complete = q.integer(5) != 0;
            m.tokens = q.tokens(6, "message " + std::to_string(m.id));
            m.createdAtMs = q.integer(7);
        }
        return out;
    });
}

Result<void> SessionStore::truncateMessages(std::int64_t conversationId, std::int32_t fromIndex)
{
    return guarded(m_path,
                   "deleting the messages of conversation " + std::to_string(conversationId) + " from index " +
                       std::to_string(fromIndex),
                   [&] {
                       m_connection->durableWrite([&] {
                           m_connection->query("DELETE FROM messages WHERE conversation_id = ?1 AND idx >= ?2")
                               .bindInt(1, conversationId)
                               .bindInt(2, fromIndex)
                               .run();
                       });
                   });
}

Result<void> SessionStore::setConversationTokens(std::int64_t conversationId,
                                                 std::span<const std::int32_t> systemTokens,
                                                 std::string_view tokensFingerprint, std::int32_t windowStart)
{
    return guarded(m_path, "storing the tokens of conversation " + std::to_string(conversationId), [&] {
        m_connection->durableWrite([&] {
            Statement q = m_connection->query("UPDATE conversations SET system_tokens = ?2, tokens_fingerprint = ?3, "
                                              "window_start = ?4 WHERE id = ?1");
            q.bindInt(1, conversationId).bindTokens(2, systemTokens).bindText(3, tokensFingerprint);
            q.bindInt(4, windowStart).run();
            if (q.changes() == 0)
                fail("no such conversation");
        });
    });
}

Result<void>
SessionStore::setMessageTokens(std::span<const std::pair<std::int64_t, std::vector<std::int32_t>>> messageTokens)
{
    return guarded(m_path, "storing the tokens of " + std::to_string(messageTokens.size()) + " messages", [&] {
        m_connection->durableWrite([&] {
            for (const auto &[messageId, tokens] : messageTokens) {
                Statement q = m_connection->query("UPDATE messages SET tokens = ?2 WHERE id = ?1");
                q.bindInt(1, messageId).bindTokens(2, tokens).run();
                if (q.changes() == 0)
                    fail("no message " + std::to_string(messageId));
            }
        });
    });
}

Result<std::int64_t> SessionStore::finishTurn(std::int64_t assistantMessageId, std::string_view content, bool complete,
                                              std::span<const std::int32_t> tokens, const TurnRecord &turn)
{
    return guarded(m_path, "storing the turn that produced message " + std::to_string(assistantMessageId), [&] {
        return m_connection->durableWrite([&] {
            Statement update = m_connection->query(
                "UPDATE messages SET content = ?2, complete = ?3, tokens = ?4 WHERE id = ?1 RETURNING conversation_id");
            update.bindInt(1, assistantMessageId).bindText(2, content).bindInt(3, complete).bindTokens(4, tokens);
            if (!update.step())
                fail("no such message");
            const std::int64_t conversationId = update.integer(0);
            update.run();
            if (turn.conversationId != 0 && turn.conversationId != conversationId)
                fail("the turn names conversation " + std::to_string(turn.conversationId) +
                     " but the message belongs to conversation " + std::to_string(conversationId));
            if (turn.messageId != 0 && turn.messageId != assistantMessageId)
                fail("the turn names message " + std::to_string(turn.messageId));
            const std::int64_t now = nowMs();
            m_connection->query("UPDATE conversations SET updated_at_ms = ?2 WHERE id = ?1")
                .bindInt(1, conversationId)
                .bindInt(2, now)
                .run();
            Statement q = m_connection->query(
                "INSERT INTO turns(conversation_id, message_id, created_at_ms, ttft_ms, queue_ms, prepare_ms, "
                "restore_device_ms, restore_host_ms, restore_disk_ms, prefill_ms, first_decode_ms, decode_ms, "
                "prompt_tokens, reused_device, reused_host, reused_disk, recomputed, decode_tokens, stop_reason) "
                "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)");
            q.bindInt(1, conversationId).bindInt(2, assistantMessageId);
            q.bindInt(3, turn.createdAtMs != 0 ? turn.createdAtMs : now);
            q.bindReal(4, turn.ttftMs).bindReal(5, turn.queueMs).bindReal(6, turn.prepareMs);
            q.bindReal(7, turn.restoreDeviceMs).bindReal(8, turn.restoreHostMs).bindReal(9, turn.restoreDiskMs);
            q.bindReal(10, turn.prefillMs).bindReal(11, turn.firstDecodeMs).bindReal(12, turn.decodeMs);
            q.bindInt(13, turn.promptTokens).bindInt(14, turn.reusedDevice).bindInt(15, turn.reusedHost);
            q.bindInt(16, turn.reusedDisk).bindInt(17, turn.recomputed).bindInt(18, turn.decodeTokens);
            q.bindText(19, turn.stopReason).run();
            return std::int64_t{sqlite3_last_insert_rowid(m_db)};
        });
    });
}

Result<std::vector<TurnRecord>> SessionStore::turns(std::optional<std::int64_t> conversationId)
{
    const std::string operation =
        conversationId ? "reading the turns of conversation " + std::to_string(*conversationId) : "reading all turns";
    return guarded(m_path, operation, [&] {
        Statement q = m_connection->query(
            "SELECT id, conversation_id, COALESCE(message_id, 0), created_at_ms, ttft_ms, queue_ms, prepare_ms, "
            "restore_device_ms, restore_host_ms, restore_disk_ms, prefill_ms, first_decode_ms, decode_ms, "
            "prompt_tokens, reused_device, reused_host, reused_disk, recomputed, decode_tokens, stop_reason "
            "FROM turns WHERE ?1 IS NULL OR conversation_id = ?1 ORDER BY id");
        if (conversationId)
            q.bindInt(1, *conversationId);
        std::vector<TurnRecord> out;
        while (q.step()) {
            TurnRecord &t = out.emplace_back();
            t.id = q.integer(0);
            t.conversationId = q.integer(1);
            t.messageId = q.integer(2);
            t.createdAtMs = q.integer(3);
            t.ttftMs = q.real(4);
            t.queueMs = q.real(5);
            t.prepareMs = q.real(6);
            t.restoreDeviceMs = q.real(7);
            t.restoreHostMs = q.real(8);
            t.restoreDiskMs = q.real(9);
            t.prefillMs = q.real(10);
            t.firstDecodeMs = q.real(11);
            t.decodeMs = q.real(12);
            t.promptTokens = q.int32(13);
            t.reusedDevice = q.int32(14);
            t.reusedHost = q.int32(15);
            t.reusedDisk = q.int32(16);
            t.recomputed = q.int32(17);
            t.decodeTokens = q.int32(18);
            t.stopReason = q.text(19);
        }
        return out;
    });
}

Result<void> SessionStore::putKvBlock(const KvBlockKey &key, const ModelFingerprint &fingerprint, std::int32_t nTokens,
                                      std::span<const std::byte> payload)
{
    return guarded(m_path, "writing KV block " + key.hex(), [&] {
        // bind_blob measured as fast as zeroblob() + sqlite3_blob_write on ~700 KB blocks, in one statement.
        const auto checksum = static_cast<std::int64_t>(XXH3_64bits(payload.data(), payload.size()));
        m_connection->kvWrite([&] {
            Statement q = m_connection->query(
                "INSERT OR REPLACE INTO kv_blocks(key, fingerprint, format_version, n_tokens, checksum, size_bytes, "
                "last_used, payload) VALUES(?1, ?2, ?3, ?4, ?5, ?6, "
                "(SELECT COALESCE(MAX(last_used), 0) + 1 FROM kv_blocks), ?7)");
            q.bindBytes(1, key.bytes).bindBytes(2, fingerprint.bytes).bindInt(3, kKvFormatVersion);
            q.bindInt(4, nTokens).bindInt(5, checksum).bindInt(6, static_cast<std::int64_t>(payload.size()));
            q.bindBlob(7, payload.data(), payload.size()).run();
        });
    });
}

Result<KvBlockLookup> SessionStore::getKvBlock(const KvBlockKey &key, const ModelFingerprint &fingerprint,
                                               std::vector<std::byte> &out)
{
    auto verdict = readKvBlock(key, fingerprint, [&](std::size_t size) {
        out.resize(size);
        return out.data();
    });
    if (!verdict.ok() || *verdict != KvBlockLookup::Found)
        out.clear();
    return verdict;
}

Result<KvBlockLookup> SessionStore::getKvBlockInto(const KvBlockKey &key, const ModelFingerprint &fingerprint,
                                                   std::span<std::byte> out)
{
    return readKvBlock(key, fingerprint, [&](std::size_t size) { return size == out.size() ? out.data() : nullptr; });
}

Result<KvBlockLookup> SessionStore::readKvBlock(const KvBlockKey &key, const ModelFingerprint &fingerprint,
                                                const std::function<std::byte *(std::size_t)> &destination)
{
    return guarded(m_path, "reading KV block " + key.hex(), [&] {
        std::int64_t rowid = 0, checksum = 0;
        KvBlockLookup verdict = KvBlockLookup::Found;
        {
            // One read transaction: the row cannot be replaced between the checks and the blob read.
            Transaction tx(m_db, "BEGIN");
            Statement q = m_connection->query(
                "SELECT rowid, fingerprint, format_version, checksum, size_bytes FROM kv_blocks WHERE key = ?1");
            q.bindBytes(1, key.bytes);
            if (!q.step())
                return KvBlockLookup::Missing;
            rowid = q.integer(0);
            const auto storedFingerprint = q.blob(1);
            checksum = q.integer(3);
            const std::int64_t sizeBytes = q.integer(4);
            if (q.integer(2) != kKvFormatVersion || storedFingerprint.size() != fingerprint.bytes.size()) {
                verdict = KvBlockLookup::Corrupt;
            } else if (std::memcmp(storedFingerprint.data(), fingerprint.bytes.data(), fingerprint.bytes.size()) != 0) {
                verdict = KvBlockLookup::Mismatched;
            } else {
                // sqlite3_blob_read copies straight from the pages into out; measured 5-15% faster
                // than sqlite3_column_blob, which assembles the overflow chain in a buffer first.
                sqlite3_blob *blob = nullptr;
                if (const int rc = sqlite3_blob_open(m_db, "main", "kv_blocks", "payload", rowid, 0, &blob))
                    failFrom(m_db, rc);
                const int size = sqlite3_blob_bytes(blob);
                std::byte *out = size == sizeBytes ? destination(static_cast<std::size_t>(size)) : nullptr;
                if (out == nullptr) {
                    verdict = KvBlockLookup::Corrupt;
                } else {
                    const int rc = sqlite3_blob_read(blob, out, size, 0);
                    if (rc != SQLITE_OK) {
                        Failure failure{rc & 0xff, sqlite3_errmsg(m_db)};
                        sqlite3_blob_close(blob);
                        throw failure;
                    }
                    if (static_cast<std::int64_t>(XXH3_64bits(out, static_cast<std::size_t>(size))) != checksum)
                        verdict = KvBlockLookup::Corrupt;
                }
                sqlite3_blob_close(blob);
            }
            q.run();
            tx.commit();
        }
        if (verdict == KvBlockLookup::Found)
            return verdict;
        // Drop the bad row (only that row: the checksum guards against a block rewritten meanwhile).
        // A read-only or full database keeps it; the verdict is the same either way.
        try {
            Transaction tx(m_db, "BEGIN IMMEDIATE");
            m_connection->query("DELETE FROM kv_blocks WHERE rowid = ?1 AND key = ?2 AND checksum = ?3")
                .bindInt(1, rowid)
                .bindBytes(2, key.bytes)
                .bindInt(3, checksum)
                .run();
            tx.commit();
        } catch (const Failure &) {
        }
        return verdict;
    });
}

Result<bool> SessionStore::hasKvBlock(const KvBlockKey &key, const ModelFingerprint &fingerprint)
{
    return guarded(m_path, "looking up KV block " + key.hex(), [&] {
        Statement q =
            m_connection->query("SELECT 1 FROM kv_blocks WHERE key = ?1 AND fingerprint = ?2 AND format_version = ?3");
        q.bindBytes(1, key.bytes).bindBytes(2, fingerprint.bytes).bindInt(3, kKvFormatVersion);
        return q.step();
    });
}

Result<void> SessionStore::deleteKvBlock(const KvBlockKey &key)
{
    return guarded(m_path, "deleting KV block " + key.hex(), [&] {
        m_connection->kvWrite(
            [&] { m_connection->query("DELETE FROM kv_blocks WHERE key = ?1").bindBytes(1, key.bytes).run(); });
    });
}

Result<void> SessionStore::deleteKvBlocks(std::span<const KvBlockKey> keys)
{
    // Overwriting a block appends its pages to the log: short transactions keep the log small
    // and other processes' writers waiting briefly.
    constexpr std::size_t kKeysPerTransaction = 16;
    return guarded(m_path, "deleting " + std::to_string(keys.size()) + " KV blocks", [&] {
        for (std::size_t begin = 0; begin < keys.size(); begin += kKeysPerTransaction) {
            const auto chunk = keys.subspan(begin, std::min(kKeysPerTransaction, keys.size() - begin));
            m_connection->erasingWrite([&] {
                for (const KvBlockKey &key : chunk)
                    m_connection->query("DELETE FROM kv_blocks WHERE key = ?1").bindBytes(1, key.bytes).run();
            });
        }
        if (!keys.empty())
            checkpointAndTruncateLog();
    });
}

Result<std::vector<KvBlockKey>> SessionStore::kvBlockKeys()
{
    return guarded(m_path, "listing the KV blocks", [&] {
        Statement q = m_connection->query("SELECT key FROM kv_blocks");
        return readKeys(q);
    });
}

Result<std::uint64_t> SessionStore::kvBytes()
{
    return guarded(m_path, "summing the size of the KV blocks", [&] {
        Statement q = m_connection->query("SELECT COALESCE(SUM(size_bytes), 0) FROM kv_blocks");
        return static_cast<std::uint64_t>(q.step() ? q.integer(0) : 0);
    });
}

Result<std::vector<KvBlockKey>> SessionStore::leastRecentlyUsedKvBlocks(std::size_t limit)
{
    return guarded(m_path, "listing the least recently used KV blocks", [&] {
        Statement q = m_connection->query("SELECT key FROM kv_blocks ORDER BY last_used, key LIMIT ?1");
        q.bindInt(1, static_cast<std::int64_t>(std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max())));
        return readKeys(q);
    });
}

Result<void> SessionStore::touchKvBlocks(std::span<const KvBlockKey> keys)
{
    return guarded(m_path, "marking " + std::to_string(keys.size()) + " KV blocks as used", [&] {
        m_connection->kvWrite([&] {
            // Last key first, so the first key ends up the most recently used (see the header).
            for (auto it = keys.rbegin(); it != keys.rend(); ++it)
                m_connection
                    ->query(
                        "UPDATE kv_blocks SET last_used = (SELECT MAX(last_used) + 1 FROM kv_blocks) WHERE key = ?1")
                    .bindBytes(1, it->bytes)
                    .run();
        });
    });
}

Result<bool> SessionStore::integrityCheck()
{
    return guarded(m_path, "checking the database's integrity", [&] {
        Statement q = m_connection->query("PRAGMA integrity_check");
        return q.step() && q.text(0) == "ok";
    });
}

} // namespace kvchat::engine
