// SPDX-License-Identifier: MIT
// Exports of conversations (Markdown, JSON) and of per-turn latency records (CSV, JSON), shared by
// kvchat-cli and the desktop app.
#pragma once

#include "engine/store/session_store.h"

#include <map>
#include <string>
#include <vector>

namespace kvchat::engine {

std::string conversationMarkdown(const ConversationRecord &conversation, const std::vector<MessageRecord> &messages);
std::string conversationJson(const ConversationRecord &conversation, const std::vector<MessageRecord> &messages,
                             const std::vector<TurnRecord> &turns);

// One row per turn: timestamp (ISO 8601 UTC), conversation (name), prompt tokens, tokens reused per
// tier, recomputed, TTFT and its parts, decode tokens and tokens/s. conversationNames maps ids.
std::string latencyCsv(const std::vector<TurnRecord> &turns, const std::map<std::int64_t, std::string> &conversationNames);
std::string latencyJson(const std::vector<TurnRecord> &turns, const std::map<std::int64_t, std::string> &conversationNames);

} // namespace kvchat::engine
