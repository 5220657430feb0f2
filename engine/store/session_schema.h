// SPDX-License-Identifier: MIT
// The store's schema: what makes a SQLite file a kvchat database (PRAGMA application_id), its
// version (PRAGMA user_version) and the tables of schema version 1:
//
//   conversations(id, name UNIQUE, title, system_prompt, system_tokens, tokens_fingerprint,
//                 window_start, created_at_ms, updated_at_ms)
//   messages(id, conversation_id -> conversations ON DELETE CASCADE, idx, role, content, complete,
//            tokens, created_at_ms, UNIQUE(conversation_id, idx))
//   turns(id, conversation_id -> conversations ON DELETE CASCADE,
//         message_id -> messages ON DELETE SET NULL (a regenerated reply's TTFT stays on record),
//         created_at_ms, the TurnRecord times and counts)
//   kv_blocks(key PRIMARY KEY, fingerprint, format_version, n_tokens, checksum, size_bytes,
//             last_used, payload)
#pragma once

#include <cstdint>

struct sqlite3;

namespace kvchat::engine {

inline constexpr std::int32_t kSessionApplicationId = 0x6b766368; // "kvch"; never change it
inline constexpr int kSessionSchemaVersion = 1;

// Checks that db holds a kvchat database this build can read, turning an empty file into one,
// and switches a writable connection to WAL. A file of another application is refused before
// anything is written to it. Throws sqlite::Failure saying what is wrong.
void prepareSessionSchema(sqlite3 *db, bool readOnly);

} // namespace kvchat::engine
