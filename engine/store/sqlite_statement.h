// SPDX-License-Identifier: MIT
// Thin RAII helpers over the sqlite3 C API for the store (engine/store only; nothing outside it
// includes this). Failures are thrown as sqlite::Failure and turned into a Result with context by
// guarded() at the public method boundary, so no exception leaves the store.
//
// Thread-safety: none; they belong to the connection's thread.
#pragma once

#include "engine/core/result.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <sqlite3.h>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace kvchat::engine::sqlite {

// What failed, carried from where SQLite reported it to the method that adds the context.
struct Failure
{
    int rc = SQLITE_ERROR; // primary result code (SQLITE_FULL, SQLITE_READONLY, ...)
    std::string message;   // sqlite3_errmsg at the point of failure, or our own words
};

[[noreturn]] void fail(std::string message);
// Throws rc with db's current error message (read now: a later call, even ROLLBACK, replaces it).
[[noreturn]] void failFrom(sqlite3 *db, int rc);
// Runs one or more statements without results (PRAGMAs, DDL, BEGIN/COMMIT).
void exec(sqlite3 *db, const char *sql);

// A prepared statement in use; it does not own the statement (the connection's cache does).
// bind* take SQLite's 1-based parameter index, the column readers its 0-based column index. Text
// and blobs are bound without a copy, so they must outlive the Statement. The destructor resets
// the statement: one left mid-SELECT would keep a read transaction open and stop WAL checkpoints.
class Statement
{
public:
    Statement(sqlite3 *db, sqlite3_stmt *stmt) : m_db(db), m_stmt(stmt) {}
    ~Statement();
    Statement(const Statement &) = delete;
    Statement &operator=(const Statement &) = delete;

    Statement &bindInt(int i, std::int64_t v) { return check(sqlite3_bind_int64(m_stmt, i, v)); }
    Statement &bindReal(int i, double v) { return check(sqlite3_bind_double(m_stmt, i, v)); }
    Statement &bindText(int i, std::string_view v);
    Statement &bindBlob(int i, const void *data, std::size_t size);
    template <std::size_t N> Statement &bindBytes(int i, const std::array<std::uint8_t, N> &bytes)
    {
        return bindBlob(i, bytes.data(), N);
    }
    // Little-endian int32, whatever the host's byte order.
    Statement &bindTokens(int i, std::span<const std::int32_t> tokens);

    // True while there is a row to read.
    bool step();
    // Steps to the end (a write, or the rest of a RETURNING).
    void run();
    int changes() const { return sqlite3_changes(m_db); }

    std::int64_t integer(int col) const { return sqlite3_column_int64(m_stmt, col); }
    std::int32_t int32(int col) const { return sqlite3_column_int(m_stmt, col); }
    double real(int col) const { return sqlite3_column_double(m_stmt, col); }
    std::string text(int col) const;
    std::span<const std::uint8_t> blob(int col) const;
    // A token BLOB; owner names it for the error ("message 5"): a length that is not a multiple
    // of 4 is corruption, reported instead of read past.
    std::vector<std::int32_t> tokens(int col, const std::string &owner) const;

private:
    Statement &check(int rc)
    {
        if (rc != SQLITE_OK)
            failFrom(m_db, rc);
        return *this;
    }

    sqlite3 *m_db;
    sqlite3_stmt *m_stmt;
};

// BEGIN ... COMMIT; rolls back when left without commit().
class Transaction
{
public:
    // begin: "BEGIN" (a read snapshot) or "BEGIN IMMEDIATE" (takes the write lock now, so a busy
    // database fails here, after the busy timeout, rather than halfway through).
    Transaction(sqlite3 *db, const char *begin) : m_db(db) { exec(db, begin); }
    ~Transaction();
    Transaction(const Transaction &) = delete;
    Transaction &operator=(const Transaction &) = delete;
    void commit();

private:
    sqlite3 *m_db;
    bool m_committed = false;
};

// "<path>: <operation>: <why>", the shape of every store error.
Error storeError(const std::string &path, std::string_view operation, std::string_view why);

// Runs body and turns a Failure (or running out of memory) into an Error naming the operation
// and the database.
template <typename F>
auto guarded(const std::string &path, std::string_view operation, F &&body) -> Result<std::invoke_result_t<F>>
{
    try {
        if constexpr (std::is_void_v<std::invoke_result_t<F>>) {
            body();
            return {};
        } else {
            return body();
        }
    } catch (const Failure &failure) {
        return storeError(path, operation, failure.message);
    } catch (const std::bad_alloc &) {
        return storeError(path, operation, "out of memory");
    }
}

} // namespace kvchat::engine::sqlite
