// SPDX-License-Identifier: MIT
// The SQLite store (one database file, WAL): conversations, their messages, the exact token
// sequence each conversation has fed the model, one record per turn (TTFT and its parts), and KV
// blocks spilled to disk.
//
// Durability: a user's message and a completed (or cut-off) assistant message are committed with
// synchronous=FULL before the call returns; KV blocks, which can always be recomputed, are written
// with synchronous=NORMAL. A KV block row carries a format version, the model fingerprint, its key
// and a checksum; a row that fails any check is deleted, never returned (getKvBlock says why).
//
// Errors: every method returns a Result whose message names the operation and the database path
// and carries SQLite's message (e.g. "database or disk is full"). kvWritable() turns false after
// a KV write fails for lack of space or a lock, so the caller can run without the disk tier.
//
// Thread-safety: none. One SessionStore (one connection) belongs to one thread, the engine thread.
#pragma once

#include "engine/core/result.h"
#include "engine/kv/kv_block_key.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct sqlite3;

namespace kvchat::engine {

struct ConversationRecord
{
    std::int64_t id = 0;
    std::string name;         // unique; what the CLI's --session names
    std::string title;        // for display; starts as the name
    std::string systemPrompt; // "" for none
    std::int64_t createdAtMs = 0; // Unix epoch milliseconds
    std::int64_t updatedAtMs = 0; // last message or rename
    // The token sequence the conversation feeds the model is systemTokens followed by the tokens
    // of each message from index windowStart on (earlier ones fell out of the context). Token ids
    // are only meaningful for the model whose fingerprint is tokensFingerprint; with another model
    // the messages are re-tokenized from their text.
    std::vector<std::int32_t> systemTokens;
    std::string tokensFingerprint; // ModelFingerprint::hex(), "" when not tokenized yet
    std::int32_t windowStart = 0;
};

struct MessageRecord
{
    std::int64_t id = 0;
    std::int64_t conversationId = 0;
    std::int32_t index = 0;  // 0-based position in the conversation
    std::string role;        // "user" or "assistant" ("system" lives on the conversation)
    std::string content;
    bool complete = true;    // false: an assistant reply still generating, or cut off by a crash
    std::int64_t createdAtMs = 0;
    // The exact tokens this message fed the model, template markers included (for an assistant
    // message: the generation prompt, the generated tokens and the end-of-turn suffix).
    std::vector<std::int32_t> tokens;
};

struct TurnRecord
{
    std::int64_t id = 0;
    std::int64_t conversationId = 0;
    std::int64_t messageId = 0; // the assistant message this turn produced
    std::int64_t createdAtMs = 0;
    // Times in milliseconds; ttft = queue + prepare + restore (all tiers) + prefill + firstDecode.
    double ttftMs = 0, queueMs = 0, prepareMs = 0;
    double restoreDeviceMs = 0, restoreHostMs = 0, restoreDiskMs = 0;
    double prefillMs = 0, firstDecodeMs = 0, decodeMs = 0;
    std::int32_t promptTokens = 0;  // tokens of the whole sequence the turn conditions on
    std::int32_t reusedDevice = 0, reusedHost = 0, reusedDisk = 0, recomputed = 0;
    std::int32_t decodeTokens = 0;
    std::string stopReason;
};

// What getKvBlock found.
enum class KvBlockLookup { Found, Missing, Corrupt, Mismatched };

// How open() opens the database; the defaults are what the app uses.
struct SessionStoreOptions
{
    // Open for reading only: every write returns an error and kvWritable() is false. A file the
    // process may not write is opened this way even without the flag.
    bool readOnly = false;
    // Upper bound on the database size in pages (PRAGMA max_page_count, per connection; a page is
    // 64 KiB in a database this class creates); 0 keeps SQLite's limit. Writes beyond it fail as
    // on a full disk, which is how the tests reach that path without a small file system.
    std::uint32_t maxPageCount = 0;
};

class SessionStore
{
public:
    // Opens (creating if needed) the database at path, sets WAL and a busy timeout, and creates or
    // checks the schema. A file that is not a kvchat database, or of a newer schema, is an error.
    static Result<std::unique_ptr<SessionStore>> open(const std::string &path, const SessionStoreOptions &options = {});
    ~SessionStore();
    SessionStore(const SessionStore &) = delete;
    SessionStore &operator=(const SessionStore &) = delete;

    const std::string &path() const { return m_path; }

    // --- conversations ---
    Result<std::optional<ConversationRecord>> findConversation(std::string_view name);
    Result<std::optional<ConversationRecord>> conversation(std::int64_t id);
    Result<ConversationRecord> createConversation(std::string_view name, std::string_view systemPrompt);
    Result<std::vector<ConversationRecord>> listConversations(); // most recently updated first
    // Ids of conversations whose title, name or any message contains text (case-insensitive for
    // ASCII), most recently updated first.
    Result<std::vector<std::int64_t>> searchConversations(std::string_view text);
    Result<void> renameConversation(std::int64_t id, std::string_view title);
    // Deletes the conversation, its messages, tokens and turns. KV blocks are keyed by content, not
    // by conversation: see kvBlocksOnlyOf (conversation_blocks.h) for the ones to delete with it.
    Result<void> deleteConversation(std::int64_t id);

    // --- messages (committed durably before returning) ---
    Result<MessageRecord> appendMessage(std::int64_t conversationId, std::string_view role, std::string_view content,
                                        bool complete, std::span<const std::int32_t> tokens);
    // Progress of a streaming reply (what was generated so far), durable like appendMessage.
    Result<void> updateMessage(std::int64_t messageId, std::string_view content, bool complete,
                               std::span<const std::int32_t> tokens);
    Result<std::vector<MessageRecord>> messages(std::int64_t conversationId);
    // Deletes messages with index >= fromIndex (edit or regenerate continues from there).
    Result<void> truncateMessages(std::int64_t conversationId, std::int32_t fromIndex);

    // --- the token bookkeeping of a conversation (see ConversationRecord) ---
    Result<void> setConversationTokens(std::int64_t conversationId, std::span<const std::int32_t> systemTokens,
                                       std::string_view tokensFingerprint, std::int32_t windowStart);
    // Replaces the tokens of every message (after re-tokenizing for another model), in one transaction.
    Result<void> setMessageTokens(std::span<const std::pair<std::int64_t, std::vector<std::int32_t>>> messageTokens);

    // Commits, in one durable transaction, what a finished turn produced: the assistant message's
    // final text and tokens, and the turn record (turn.messageId is that message). Returns the turn id.
    Result<std::int64_t> finishTurn(std::int64_t assistantMessageId, std::string_view content, bool complete,
                                    std::span<const std::int32_t> tokens, const TurnRecord &turn);

    // --- per-turn records ---
    Result<std::vector<TurnRecord>> turns(std::optional<std::int64_t> conversationId); // oldest first

    // --- KV blocks (the disk tier) ---
    // Stores a block payload under key (replacing an existing row with the same key).
    Result<void> putKvBlock(const KvBlockKey &key, const ModelFingerprint &fingerprint, std::int32_t nTokens,
                            std::span<const std::byte> payload);
    // Reads a block into out (resized; empty unless Found, unspecified after an error). Corrupt
    // (checksum, size, or a format version other than kKvFormatVersion of model_fingerprint.h) and
    // Mismatched (another model's fingerprint) rows are deleted before returning.
    Result<KvBlockLookup> getKvBlock(const KvBlockKey &key, const ModelFingerprint &fingerprint,
                                     std::vector<std::byte> &out);
    // The same, reading straight into out, whose size is the payload size expected: a stored
    // payload of another size is Corrupt. The cache restores into its pool blocks this way, with
    // no intermediate buffer (out is unspecified unless Found).
    Result<KvBlockLookup> getKvBlockInto(const KvBlockKey &key, const ModelFingerprint &fingerprint,
                                         std::span<std::byte> out);
    Result<bool> hasKvBlock(const KvBlockKey &key, const ModelFingerprint &fingerprint);
    Result<void> deleteKvBlock(const KvBlockKey &key);
    // Deletes the rows of these keys (those that exist), overwriting their content (secure_delete),
    // a few dozen per transaction, then checkpoints the log so that the overwritten pages replace
    // the old ones in the database file and the log's copies of them are truncated away.
    Result<void> deleteKvBlocks(std::span<const KvBlockKey> keys);
    // Every stored block's key.
    Result<std::vector<KvBlockKey>> kvBlockKeys();
    // Total payload bytes of stored blocks, and the least recently used keys (for eviction).
    Result<std::uint64_t> kvBytes();
    Result<std::vector<KvBlockKey>> leastRecentlyUsedKvBlocks(std::size_t limit);
    // Marks blocks as used now (LRU order on disk). Within one call an earlier key counts as more
    // recently used than a later one: pass a sequence's blocks in order and its tail is evicted
    // before its prefix, which every later block depends on and other conversations may share.
    Result<void> touchKvBlocks(std::span<const KvBlockKey> keys);
    // False once a KV write failed for lack of space, a read-only file or a lock (it stays false
    // for the life of this object), and from the start for a read-only database. A message write
    // that finds the database full deletes least recently used KV blocks to make room and turns it
    // false too: a user's text outranks cached KV.
    bool kvWritable() const { return m_kvWritable; }

    // PRAGMA integrity_check == "ok".
    Result<bool> integrityCheck();

private:
    // Copies the log into the database file and truncates it (after deleting a user's data).
    void checkpointAndTruncateLog();
    struct Connection; // prepared statements and per-connection state (session_store.cpp)

    SessionStore() = default;
    // getKvBlock's body: destination(size) gives where a payload of that size goes, or nullptr
    // when that size cannot be right (the row is then Corrupt).
    Result<KvBlockLookup> readKvBlock(const KvBlockKey &key, const ModelFingerprint &fingerprint,
                                      const std::function<std::byte *(std::size_t)> &destination);
    sqlite3 *m_db = nullptr;
    std::unique_ptr<Connection> m_connection; // destroyed before m_db is closed
    std::string m_path;
    bool m_kvWritable = true;
};

} // namespace kvchat::engine
