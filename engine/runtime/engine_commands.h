// SPDX-License-Identifier: MIT
// The engine thread's vocabulary: commands go in (EngineLoop::submit), events come out (the sink).
// Plain structs only, so the desktop app, the CLI and tests speak the same language. Every event
// about a turn carries its conversation and turn ids, so a UI can drop what it no longer shows.
#pragma once

#include "engine/kv/tiered_kv_cache.h"
#include "engine/runtime/chat_engine.h"

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace kvchat::engine {

using TurnId = std::uint64_t;

// --- commands ---
struct OpenModel
{
    std::string modelPath;
    ChatEngineOptions options;
};
struct StartTurn
{
    TurnId turn = 0;
    std::string conversation;                // name
    std::optional<std::string> systemPrompt; // for a new conversation
    std::optional<std::string> title;        // likewise
    std::optional<std::string> userText;     // nullopt: regenerate the reply to the last user message
    std::optional<std::int32_t> truncateFrom; // drop messages from this index first (edit, regenerate)
    std::int32_t maxNewTokens = 512;
    SamplingParams sampling;
    Clock::time_point submitted = Clock::now(); // stamped by the UI when the user pressed Enter
};
struct CancelTurn
{
    TurnId turn = 0;
};
struct PrefetchConversation
{
    std::string conversation;
};
struct CreateConversation
{
    std::string conversation;
    std::string systemPrompt;
};
struct RenameConversation
{
    std::string conversation;
    std::string title;
};
struct DeleteConversation
{
    std::string conversation;
};
struct LoadConversation // asks for a ConversationLoaded event
{
    std::string conversation;
};
struct ListConversations // asks for a ConversationList event
{
};
struct SearchConversations // asks for a SearchResults event
{
    std::string text;
};
// Do not reorder: the UI stores the last choice.
enum class ExportKind { ConversationMarkdown = 0, ConversationJson = 1, LatencyCsv = 2, LatencyJson = 3 };
struct ExportToFile // writes the file (atomically) and answers with ExportFinished
{
    ExportKind kind = ExportKind::ConversationMarkdown;
    std::string conversation; // "" with a latency kind: every conversation
    std::string path;
};
using Command = std::variant<OpenModel, StartTurn, CancelTurn, PrefetchConversation, CreateConversation,
                             RenameConversation, DeleteConversation, LoadConversation, ListConversations,
                             SearchConversations, ExportToFile>;

// --- events ---
struct ModelInfo
{
    std::string path;
    std::string name;
    std::string architecture;
    std::string chatTemplate;
    std::string backend;       // what runs the model: "cpu" or "cuda"
    std::string backendNotice; // why the backend asked for is not the one running, or ""
    std::string backendDetail; // Backend::describe(): the device, how the weights are held
    std::int32_t contextLength = 0; // what a conversation may use (ChatEngine::contextLimit)
    std::string contextNotice;      // why that is below the model's own context, or ""
    std::int32_t nLayers = 0;
    std::int64_t fileBytes = 0;
};
struct ModelLoaded
{
    ModelInfo info;
};
struct ModelLoadFailed
{
    std::string path;
    std::string message;
};
struct ConversationSummary
{
    ConversationRecord record;
    std::int32_t messageCount = 0;
    KvResidency residency;
};
struct ConversationList
{
    std::vector<ConversationSummary> conversations; // most recently used first
};
struct ConversationLoaded
{
    ConversationRecord record;
    std::vector<MessageRecord> messages;
    std::vector<TurnRecord> turns;
};
struct TurnStarted
{
    TurnId turn = 0;
    std::int64_t conversationId = 0;
    std::string conversation;
    std::optional<MessageRecord> userMessage; // none when regenerating
    std::int64_t assistantMessageId = 0;
};
struct FirstToken
{
    TurnId turn = 0;
    std::int64_t conversationId = 0;
    TurnRecord record; // TTFT and its parts
};
struct TokensAppended
{
    TurnId turn = 0;
    std::int64_t conversationId = 0;
    std::string text;
};
struct TurnFinished
{
    TurnId turn = 0;
    std::int64_t conversationId = 0;
    std::string reply;
    TurnRecord record;
    std::string stopReason;
    std::string warning;
};
struct TurnFailed
{
    TurnId turn = 0;
    std::string conversation;
    std::string message;
    // Some reply text was shown before the failure: the user's message and the partial reply stay
    // stored. Otherwise the turn stored nothing (ChatEngine::runTurn removes what it had saved).
    bool replyKept = false;
};
struct CacheStatsChanged
{
    KvCacheStats stats;
};
struct ResidencyChanged
{
    std::int64_t conversationId = 0;
    KvResidency residency;
};
struct SearchResults
{
    std::string text;
    std::vector<std::int64_t> conversationIds;
};
struct ExportFinished
{
    std::string path;
    bool ok = false;
    std::string message; // the error when !ok
};
struct EngineError
{
    std::string message;
};
using Event = std::variant<ModelLoaded, ModelLoadFailed, ConversationList, ConversationLoaded, TurnStarted, FirstToken,
                           TokensAppended, TurnFinished, TurnFailed, CacheStatsChanged, ResidencyChanged, SearchResults,
                           ExportFinished, EngineError>;

} // namespace kvchat::engine
