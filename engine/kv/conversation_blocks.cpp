// SPDX-License-Identifier: MIT
#include "engine/kv/conversation_blocks.h"

#include <algorithm>
#include <optional>

namespace kvchat::engine {

namespace {

std::optional<ModelFingerprint> fingerprintFromHex(const std::string &hex)
{
    ModelFingerprint fingerprint;
    if (hex.size() != fingerprint.bytes.size() * 2)
        return std::nullopt;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < fingerprint.bytes.size(); ++i) {
        const int high = nibble(hex[2 * i]), low = nibble(hex[2 * i + 1]);
        if (high < 0 || low < 0)
            return std::nullopt;
        fingerprint.bytes[i] = static_cast<std::uint8_t>(high * 16 + low);
    }
    return fingerprint;
}

} // namespace

std::vector<std::int32_t> conversationSequence(const ConversationRecord &conversation,
                                               std::span<const MessageRecord> messages, std::int32_t windowStart)
{
    std::vector<std::int32_t> sequence = conversation.systemTokens;
    for (const MessageRecord &m : messages)
        if (m.index >= windowStart)
            sequence.insert(sequence.end(), m.tokens.begin(), m.tokens.end());
    return sequence;
}

void addSequenceBlockKeys(std::span<const std::int32_t> tokens, const ModelFingerprint &fingerprint,
                          std::int32_t blockTokens, const KvBlockKeySet &cached, KvBlockKeySet &keys)
{
    // Only keys that exist are kept: a long conversation has a key per token per window.
    const auto keep = [&](const KvBlockKey &key) {
        if (cached.contains(key))
            keys.insert(key);
    };
    const std::size_t bt = static_cast<std::size_t>(blockTokens);
    KvBlockKey parent{};
    for (std::size_t begin = 0; begin < tokens.size(); begin += bt) {
        const std::size_t full = std::min(bt, tokens.size() - begin);
        for (std::size_t n = 1; n < full; ++n)
            keep(kvBlockKey(parent, tokens.subspan(begin, n), fingerprint));
        if (full < bt)
            break;
        parent = kvBlockKey(parent, tokens.subspan(begin, bt), fingerprint);
        keep(parent);
    }
}

Result<std::vector<KvBlockKey>> kvBlocksOnlyOf(SessionStore &store, std::int64_t conversationId,
                                               std::int32_t blockTokens, const KvBlockKeySet &inMemory)
{
    auto stored = store.kvBlockKeys();
    if (!stored)
        return stored.error();
    KvBlockKeySet cached = inMemory;
    cached.insert(stored->begin(), stored->end());
    auto conversations = store.listConversations();
    if (!conversations)
        return conversations.error();
    KvBlockKeySet mine, others;
    for (const ConversationRecord &conversation : *conversations) {
        const auto fingerprint = fingerprintFromHex(conversation.tokensFingerprint);
        if (!fingerprint)
            continue; // never tokenized for a model: nothing of it was cached
        auto messages = store.messages(conversation.id);
        if (!messages)
            return messages.error();
        if (conversation.id != conversationId) {
            addSequenceBlockKeys(conversationSequence(conversation, *messages, conversation.windowStart), *fingerprint,
                                 blockTokens, cached, others);
            continue;
        }
        // Every window it had started at message 0 or at a user message up to the current start.
        for (const MessageRecord &m : *messages)
            if (m.index <= conversation.windowStart && (m.index == 0 || m.role == "user"))
                addSequenceBlockKeys(conversationSequence(conversation, *messages, m.index), *fingerprint, blockTokens,
                                     cached, mine);
        if (messages->empty())
            addSequenceBlockKeys(conversation.systemTokens, *fingerprint, blockTokens, cached, mine);
    }
    std::vector<KvBlockKey> only;
    for (const KvBlockKey &key : mine)
        if (!others.contains(key))
            only.push_back(key);
    return only;
}

} // namespace kvchat::engine
