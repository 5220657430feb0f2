// SPDX-License-Identifier: MIT
#include "engine/store/sqlite_statement.h"

#include <bit>

namespace kvchat::engine::sqlite {

void fail(std::string message)
{
    throw Failure{SQLITE_ERROR, std::move(message)};
}

void failFrom(sqlite3 *db, int rc)
{
    throw Failure{rc & 0xff, sqlite3_errmsg(db)};
}

void exec(sqlite3 *db, const char *sql)
{
    char *message = nullptr;
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &message);
    if (rc != SQLITE_OK) {
        Failure failure{rc & 0xff, message ? message : sqlite3_errstr(rc)};
        sqlite3_free(message);
        throw failure;
    }
}

Statement::~Statement()
{
    sqlite3_reset(m_stmt);
    sqlite3_clear_bindings(m_stmt);
}

// A null pointer would bind SQL NULL: "" keeps an empty string or blob what it is.
Statement &Statement::bindText(int i, std::string_view v)
{
    return check(sqlite3_bind_text64(m_stmt, i, v.empty() ? "" : v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8));
}

Statement &Statement::bindBlob(int i, const void *data, std::size_t size)
{
    return check(sqlite3_bind_blob64(m_stmt, i, size == 0 ? "" : data, size, SQLITE_STATIC));
}

Statement &Statement::bindTokens(int i, std::span<const std::int32_t> tokens)
{
    if constexpr (std::endian::native == std::endian::little) {
        return bindBlob(i, tokens.data(), tokens.size_bytes());
    } else {
        std::string bytes(tokens.size_bytes(), '\0');
        for (std::size_t t = 0; t < tokens.size(); ++t) {
            const auto v = static_cast<std::uint32_t>(tokens[t]);
            for (std::size_t b = 0; b < 4; ++b)
                bytes[4 * t + b] = static_cast<char>(v >> (8 * b));
        }
        return check(sqlite3_bind_blob64(m_stmt, i, bytes.data(), bytes.size(), SQLITE_TRANSIENT));
    }
}

bool Statement::step()
{
    const int rc = sqlite3_step(m_stmt);
    if (rc == SQLITE_ROW)
        return true;
    if (rc != SQLITE_DONE)
        failFrom(m_db, rc);
    return false;
}

void Statement::run()
{
    while (step()) {
    }
}

std::string Statement::text(int col) const
{
    const auto *p = reinterpret_cast<const char *>(sqlite3_column_text(m_stmt, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(m_stmt, col))) : std::string();
}

std::span<const std::uint8_t> Statement::blob(int col) const
{
    // An empty blob comes back as a null pointer.
    const auto *p = static_cast<const std::uint8_t *>(sqlite3_column_blob(m_stmt, col));
    return p ? std::span(p, static_cast<std::size_t>(sqlite3_column_bytes(m_stmt, col)))
             : std::span<const std::uint8_t>();
}

std::vector<std::int32_t> Statement::tokens(int col, const std::string &owner) const
{
    const auto bytes = blob(col);
    if (bytes.size() % 4 != 0)
        fail("the tokens of " + owner + " are corrupt (" + std::to_string(bytes.size()) +
             " bytes, not a multiple of 4)");
    std::vector<std::int32_t> out(bytes.size() / 4);
    for (std::size_t t = 0; t < out.size(); ++t) {
        const std::uint8_t *b = bytes.data() + 4 * t;
        out[t] = static_cast<std::int32_t>(std::uint32_t(b[0]) | std::uint32_t(b[1]) << 8 | std::uint32_t(b[2]) << 16 |
                                           std::uint32_t(b[3]) << 24);
    }
    return out;
}

// SQLite may already have rolled back by itself (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM), hence
// the autocommit check: a second ROLLBACK would only fail.
Transaction::~Transaction()
{
    if (!m_committed && !sqlite3_get_autocommit(m_db))
        sqlite3_exec(m_db, "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit()
{
    exec(m_db, "COMMIT");
    m_committed = true;
}

Error storeError(const std::string &path, std::string_view operation, std::string_view why)
{
    std::string message = path;
    message.append(": ").append(operation).append(": ").append(why);
    return makeError(std::move(message));
}

} // namespace kvchat::engine::sqlite
