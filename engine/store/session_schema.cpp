// SPDX-License-Identifier: MIT
#include "engine/store/session_schema.h"

#include "engine/store/sqlite_statement.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

namespace kvchat::engine {

namespace {

// 64 KiB pages: measured on ~700 KB KV blocks they make writes ~2.4x and reads ~2.2x faster than
// 4 KiB pages (fewer overflow pages to chain), while a durable message commit goes from ~0.25 to
// ~0.5 ms. Only a new file takes it; WAL fixes the page size once the first write happened.
constexpr int kPageSize = 65536;

constexpr const char *kSchema = R"sql(
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    system_prompt TEXT NOT NULL,
    system_tokens BLOB NOT NULL DEFAULT x'',
    tokens_fingerprint TEXT NOT NULL DEFAULT '',
    window_start INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS conversations_by_update ON conversations(updated_at_ms);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    complete INTEGER NOT NULL,
    tokens BLOB NOT NULL DEFAULT x'',
    created_at_ms INTEGER NOT NULL,
    UNIQUE (conversation_id, idx));
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
    created_at_ms INTEGER NOT NULL,
    ttft_ms REAL NOT NULL, queue_ms REAL NOT NULL, prepare_ms REAL NOT NULL,
    restore_device_ms REAL NOT NULL, restore_host_ms REAL NOT NULL, restore_disk_ms REAL NOT NULL,
    prefill_ms REAL NOT NULL, first_decode_ms REAL NOT NULL, decode_ms REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL, reused_device INTEGER NOT NULL, reused_host INTEGER NOT NULL,
    reused_disk INTEGER NOT NULL, recomputed INTEGER NOT NULL, decode_tokens INTEGER NOT NULL,
    stop_reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns(conversation_id);
CREATE INDEX IF NOT EXISTS turns_by_message ON turns(message_id);
CREATE TABLE IF NOT EXISTS kv_blocks (
    key BLOB PRIMARY KEY CHECK (length(key) = 16),
    fingerprint BLOB NOT NULL,
    format_version INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL,
    checksum INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    last_used INTEGER NOT NULL,
    payload BLOB NOT NULL);
-- Covers both the LRU scan and SUM(size_bytes) without touching the payload pages.
CREATE INDEX IF NOT EXISTS kv_blocks_by_use ON kv_blocks(last_used, key, size_bytes);
)sql";

// The first row's first column of a one-off query (PRAGMAs).
std::string scalar(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *raw = nullptr;
    if (const int rc = sqlite3_prepare_v2(db, sql, -1, &raw, nullptr); rc != SQLITE_OK)
        sqlite::failFrom(db, rc);
    std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> owned(raw, &sqlite3_finalize);
    sqlite::Statement statement(db, raw);
    return statement.step() ? statement.text(0) : std::string();
}

// PRAGMA journal_mode=WAL, retried for a few seconds: leaving the rollback journal takes an
// exclusive lock, and SQLite returns SQLITE_BUSY at once, without its busy handler, while another
// process holds the file (two processes creating a database at the same moment). Returns the mode.
std::string switchToWal(sqlite3 *db)
{
    constexpr auto kRetryFor = std::chrono::seconds(5);
    const auto giveUp = std::chrono::steady_clock::now() + kRetryFor;
    for (;;) {
        try {
            return scalar(db, "PRAGMA journal_mode=WAL");
        } catch (const sqlite::Failure &failure) {
            if (failure.rc != SQLITE_BUSY || std::chrono::steady_clock::now() >= giveUp)
                throw;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

} // namespace

void prepareSessionSchema(sqlite3 *db, bool readOnly)
{
    using sqlite::exec;
    using sqlite::fail;
    // Reading the header is also what tells a SQLite file from anything else ("file is not a
    // database"), before anything is written.
    const auto appId =
        static_cast<std::int32_t>(std::strtoll(scalar(db, "PRAGMA application_id").c_str(), nullptr, 10));
    const long long version = std::strtoll(scalar(db, "PRAGMA user_version").c_str(), nullptr, 10);
    const bool empty = scalar(db, "SELECT count(*) FROM sqlite_schema") == "0";
    if (appId != kSessionApplicationId && !(appId == 0 && empty)) {
        char hexId[16];
        std::snprintf(hexId, sizeof hexId, "%08x", static_cast<std::uint32_t>(appId));
        fail(std::string("not a kvchat database (application_id 0x") + hexId + ")");
    }
    if (appId == kSessionApplicationId && version > kSessionSchemaVersion)
        fail("written by a newer kvchat (schema version " + std::to_string(version) + ", this build reads up to " +
             std::to_string(kSessionSchemaVersion) + ")");
    if (readOnly) {
        if (empty)
            fail("the database is empty and open read-only");
        return;
    }
    if (empty)
        exec(db, ("PRAGMA page_size=" + std::to_string(kPageSize)).c_str());
    // WAL: readers (the CLI listing a store) never block the engine's writes, and a commit is one
    // sequential append plus, with synchronous=FULL, one fsync.
    if (const std::string mode = switchToWal(db); mode != "wal")
        fail("cannot switch to WAL journaling (journal_mode stays '" + mode +
             "'; WAL needs shared memory, which some network file systems lack)");
    if (version < kSessionSchemaVersion) {
        // Version 0 is a file being created (IF NOT EXISTS: two processes may race to create
        // it); later versions add their migrations here, in this transaction.
        sqlite::Transaction tx(db, "BEGIN IMMEDIATE");
        exec(db, kSchema);
        exec(db, ("PRAGMA application_id=" + std::to_string(kSessionApplicationId)).c_str());
        exec(db, ("PRAGMA user_version=" + std::to_string(kSessionSchemaVersion)).c_str());
        tx.commit();
    }
}

} // namespace kvchat::engine
