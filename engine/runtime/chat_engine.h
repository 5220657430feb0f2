// SPDX-License-Identifier: MIT
// Conversations with a cached KV: the runtime behind `kvchat-cli chat/replay` and the desktop app's
// engine thread. It owns the model, the backend, the session store and the tiered KV cache.
//
// A turn: save the user's message (durably, before anything else), append its templated tokens to
// the conversation's token sequence (never re-tokenizing the history), restore the longest cached
// prefix of that sequence, prefill the rest, stream the reply (saving progress as it goes), then
// commit the reply, the turn's TTFT record and the new KV blocks. A turn that fails before any
// reply text removes its messages again (the caller still has the user's text); one that fails
// mid-reply keeps the partial reply, marked incomplete, as a crash would leave it.
//
// Thread-safety: none. One thread (the engine thread) makes every call.
#pragma once

#include "engine/backend/backend.h"
#include "engine/kv/tiered_kv_cache.h"
#include "engine/model/llama_model.h"
#include "engine/runtime/generator.h"
#include "engine/store/session_store.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace kvchat::engine {

struct ChatEngineOptions
{
    std::string backend = "cpu"; // "cpu", "cuda" (the CPU with a notice where it cannot) or "auto"
    int threads = 0;             // 0: one per hardware thread
    std::int32_t kvBlockTokens = 16;
    std::optional<KvBudgets> budgets; // unset: KvBudgets::machineDefaults
    bool useCache = true;             // false: recompute everything, cache nothing (the exactness reference)
    std::int32_t contextLimit = 0;    // 0: the model's context length
    std::string templateName;         // "": the model's own template; else a ChatTemplate::names() entry
    SessionStoreOptions storeOptions;
    // Tests: wraps the backend that was chosen (to make it fail on cue, say); unset elsewhere.
    std::function<std::unique_ptr<Backend>(std::unique_ptr<Backend>)> wrapBackend;
};

struct TurnRequest
{
    std::string conversation;                // name; created on first use
    std::optional<std::string> systemPrompt; // used only when the conversation is created
    std::optional<std::string> title;        // likewise (else the title is the name)
    std::optional<std::string> userText;     // nullopt: reply again to the last user message
    // Edit or regenerate: the messages from this index on are replaced (deleted once the new
    // message is known to fit the context).
    std::optional<std::int32_t> truncateFrom;
    std::int32_t maxNewTokens = 512;
    SamplingParams sampling;
    Clock::time_point submitted = Clock::now();
    std::function<bool(std::string_view)> onText; // streaming; return false to stop
    // Called once the user's message and the empty assistant message are committed.
    std::function<void(const ConversationRecord &, const MessageRecord *user, std::int64_t assistantMessageId)>
        onMessagesSaved;
    // Called when the first token's text is available, with the TTFT and its parts filled in.
    std::function<void(const TurnRecord &)> onFirstToken;
    std::vector<float> *firstLogits = nullptr; // exactness tests
    // Called about every 20 ms while another process's turn holds the database (TurnLock);
    // returning false gives up, and the turn fails having changed nothing.
    std::function<bool()> whileWaiting;
};

struct TurnResult
{
    std::int64_t conversationId = 0;
    std::int64_t assistantMessageId = 0;
    std::string reply;
    std::vector<TokenId> generated;
    StopReason stopReason = StopReason::MaxTokens;
    TurnRecord record;   // what was stored for this turn (TTFT and its parts)
    std::string warning; // e.g. the disk tier was switched off during this turn
};

class ChatEngine
{
public:
    static Result<std::unique_ptr<ChatEngine>> create(const std::string &modelPath, const std::string &databasePath,
                                                      const ChatEngineOptions &options);
    ~ChatEngine();

    Result<TurnResult> runTurn(const TurnRequest &request);
    // Starts bringing a conversation's cached KV to the device before its next turn.
    Result<RestoreReport> prefetch(std::string_view conversation);
    // Deletes a conversation with the cached KV only its history reaches (in every tier).
    Result<void> deleteConversation(std::string_view conversation);
    // Deletes messages from fromIndex on (benchmarks; a turn does it with TurnRequest::truncateFrom).
    Result<void> truncate(std::string_view conversation, std::int32_t fromIndex);
    // Where a conversation's KV is now (nothing moves).
    Result<KvResidency> residency(std::int64_t conversationId);

    const LlamaModel &model() const { return *m_model; }
    // Positions a conversation's sequence may reach: the model's context, or less where the
    // device KV budget holds less (contextNotice() then says so), or ChatEngineOptions::contextLimit.
    std::int32_t contextLimit() const { return m_contextLimit; }
    const std::string &contextNotice() const { return m_contextNotice; }
    const Backend &backend() const { return *m_backend; }
    // Why options.backend was not honoured (e.g. "running on the CPU: no usable CUDA GPU: ..."), or "".
    const std::string &backendNotice() const { return m_backendNotice; }
    SessionStore &store() { return *m_store; }
    const ChatTemplate &chatTemplate() const { return m_template; }
    KvCacheStats cacheStats() const;
    std::string checkCacheInvariants() const;

private:
    ChatEngine() = default;
    // The KV layout, fingerprint, context limit and the cache (or the private pool) for m_backend,
    // with the first blocks' memory taken; an error when the pool's memory cannot be reserved.
    Result<void> setUpKv(const std::string &databasePath);
    // Deletes its messages from fromIndex on (a window that started there starts at 0 again).
    Result<void> truncateStored(ConversationRecord &conversation, std::int32_t fromIndex);
    // The named conversation, or an error saying there is none.
    Result<ConversationRecord> existingConversation(std::string_view name);
    // The request's conversation; created (and created set) when it does not exist yet.
    Result<ConversationRecord> openConversation(const TurnRequest &request, bool &created);
    Result<void> ensureTokenized(ConversationRecord &conversation, std::vector<MessageRecord> &messages);
    Result<void> repairInterruptedReplies(const ConversationRecord &conversation, std::vector<MessageRecord> &messages);
    std::vector<TokenId> renderTokens(const ChatMessage &message, std::size_t index, bool hasSystem,
                                      bool atSequenceStart) const;
    Error contextTooSmall(std::size_t neededTokens) const;
    // A turn that fails after saving its user message: with reply text shown (in assistant), the
    // partial reply is kept, marked incomplete, with the tokens of that text; otherwise the turn's
    // messages (from firstNewIndex) are deleted again and the context window is put back.
    void abandonTurn(const ConversationRecord &conversation, std::int32_t windowBefore, std::int32_t firstNewIndex,
                     const MessageRecord *assistant, const std::string &replySoFar);
    std::vector<TokenId> sequenceOf(const ConversationRecord &conversation,
                                    const std::vector<MessageRecord> &messages) const;

    std::unique_ptr<LlamaModel> m_model;
    std::unique_ptr<Backend> m_backend;
    std::string m_backendNotice; // why the wanted GPU backend is not used; "" otherwise
    std::unique_ptr<SessionStore> m_store;
    std::unique_ptr<TieredKvCache> m_cache;     // null with useCache = false
    std::unique_ptr<KvBlockPool> m_privatePool; // used with useCache = false
    ChatTemplate m_template = ChatTemplate::detect({});
    ModelFingerprint m_fingerprint;
    ChatEngineOptions m_options;
    std::int32_t m_contextLimit = 0;
    std::string m_contextNotice; // why m_contextLimit is below the model's context, or ""
};

} // namespace kvchat::engine
