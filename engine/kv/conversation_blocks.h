// SPDX-License-Identifier: MIT
// Which cached KV blocks belong to a conversation, from what the store holds of it (its tokens and
// the fingerprint they were computed for), so that deleting a conversation deletes the KV derived
// from it — that KV encodes its text — while blocks other conversations can still use (a shared
// system prompt) stay. Needs no model: the CLI deletes without loading one.
#pragma once

#include "engine/core/result.h"
#include "engine/kv/kv_block_key.h"
#include "engine/store/session_store.h"

#include <cstdint>
#include <span>
#include <vector>

namespace kvchat::engine {

// The token sequence a conversation feeds the model while its window starts at message
// windowStart: the system prompt's tokens, then each message's from there on.
std::vector<std::int32_t> conversationSequence(const ConversationRecord &conversation,
                                               std::span<const MessageRecord> messages, std::int32_t windowStart);

// Adds to keys those of cached (the blocks that exist) that a cache may hold for tokens: each
// full block, and a partial block of every length at every block (the tail an earlier, shorter
// turn of the same history cached).
void addSequenceBlockKeys(std::span<const std::int32_t> tokens, const ModelFingerprint &fingerprint,
                          std::int32_t blockTokens, const KvBlockKeySet &cached, KvBlockKeySet &keys);

// Of the cached blocks (the store's rows and inMemory, a cache's blocks not written yet), those only
// this conversation's history reaches: its keys under every window its history had, less those
// of every other conversation's current window. Blocks of replies it no longer holds
// (regenerated, edited away), or computed under another model's fingerprint before it was
// re-tokenized, cannot be named this way; they age out of the cache.
Result<std::vector<KvBlockKey>> kvBlocksOnlyOf(SessionStore &store, std::int64_t conversationId,
                                               std::int32_t blockTokens, const KvBlockKeySet &inMemory = {});

} // namespace kvchat::engine
