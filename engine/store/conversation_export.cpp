// SPDX-License-Identifier: MIT
// Exports of a conversation and of turn records. Formats (kvchat-cli's scripts and the desktop
// app's "Export" read them, so change them only by adding):
//   - Markdown: "# title", a metadata list, "### System prompt" (when there is one), then one
//     "### User" / "### Assistant" section per message with its timestamp and content verbatim.
//   - JSON: {"format": "kvchat-conversation", "version": 1, ...}; see conversationJson.
//   - latency CSV / JSON: one row (object) per turn, with the columns of latencyCsv's header.
// Timestamps are ISO 8601 UTC with milliseconds ("2024-05-01T12:34:56.789Z"); times in ms and
// tokens/s are rounded to 3 decimals everywhere, so the CSV and JSON exports agree.
#include "engine/store/conversation_export.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace kvchat::engine {

// ordered_json: keys come out in the order written here ("format" and "version" first, latency
// rows in the CSV's column order), not sorted.
using json = nlohmann::ordered_json;

namespace {

std::string isoUtc(std::int64_t epochMs)
{
    using namespace std::chrono;
    const sys_time<milliseconds> time{milliseconds(epochMs)};
    // floor, not a cast: a time before 1970 still lands on the right day.
    const sys_days day = floor<days>(time);
    const year_month_day ymd{day};
    const hh_mm_ss<milliseconds> hms{time - day};
    char buf[48];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                  static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                  static_cast<int>(hms.seconds().count()), static_cast<int>(hms.subseconds().count()));
    return buf;
}

// Rounded to 3 decimals (microseconds for times): more digits are timer noise and make the CSV
// unreadable. Halves round away from zero.
double round3(double value)
{
    return std::round(value * 1000.0) / 1000.0;
}

// round3 first: printf rounds an exact half to even (4.0625 -> "4.062") where round3, and so the
// JSON export, rounds away from zero (4.063).
std::string fixed3(double value)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", round3(value));
    return buf;
}

double decodeTokensPerSecond(const TurnRecord &turn)
{
    return turn.decodeMs > 0 ? turn.decodeTokens / (turn.decodeMs / 1000.0) : 0.0;
}

// JSON must never throw on text that ends inside a UTF-8 sequence (a reply cut off mid-character):
// invalid bytes become U+FFFD.
std::string dumpJson(const json &j)
{
    return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

// RFC 4180: a field with a comma, a quote or a line break is quoted, and quotes inside are doubled.
std::string csvField(const std::string &field)
{
    if (field.find_first_of(",\"\r\n") == std::string::npos)
        return field;
    std::string out = "\"";
    for (char c : field) {
        if (c == '"')
            out += '"';
        out += c;
    }
    out += '"';
    return out;
}

// A heading or list item must stay on one line, whatever the title holds.
std::string oneLine(const std::string &text)
{
    std::string out = text;
    for (char &c : out)
        if (c == '\n' || c == '\r')
            c = ' ';
    return out;
}

// Content is Markdown already and goes out verbatim; it only has to end with a line break so
// that the next heading starts a line of its own.
void appendBlock(std::string &out, const std::string &content)
{
    out += content;
    if (!content.empty() && content.back() != '\n')
        out += '\n';
    out += '\n';
}

std::string roleHeading(const std::string &role)
{
    if (role == "user")
        return "User";
    if (role == "assistant")
        return "Assistant";
    if (role == "system")
        return "System";
    return role.empty() ? std::string("Unknown") : oneLine(role);
}

std::string conversationName(std::int64_t id, const std::map<std::int64_t, std::string> &names)
{
    auto it = names.find(id);
    // A caller that did not pass the name still gets a row that says which conversation it was.
    return it != names.end() ? it->second : std::to_string(id);
}

json turnMetrics(const TurnRecord &t)
{
    return json{
        {"ttft_ms", round3(t.ttftMs)},
        {"queue_ms", round3(t.queueMs)},
        {"prepare_ms", round3(t.prepareMs)},
        {"restore_device_ms", round3(t.restoreDeviceMs)},
        {"restore_host_ms", round3(t.restoreHostMs)},
        {"restore_disk_ms", round3(t.restoreDiskMs)},
        {"prefill_ms", round3(t.prefillMs)},
        {"first_decode_ms", round3(t.firstDecodeMs)},
        {"decode_ms", round3(t.decodeMs)},
        {"prompt_tokens", t.promptTokens},
        {"reused_device", t.reusedDevice},
        {"reused_host", t.reusedHost},
        {"reused_disk", t.reusedDisk},
        {"recomputed", t.recomputed},
        {"decode_tokens", t.decodeTokens},
        {"decode_tokens_per_s", round3(decodeTokensPerSecond(t))},
    };
}

} // namespace

std::string conversationMarkdown(const ConversationRecord &conversation, const std::vector<MessageRecord> &messages)
{
    const std::string title = conversation.title.empty() ? conversation.name : conversation.title;
    std::string out = "# " + oneLine(title) + "\n\n";
    out += "- Conversation: " + oneLine(conversation.name) + "\n";
    out += "- Created: " + isoUtc(conversation.createdAtMs) + "\n";
    out += "- Updated: " + isoUtc(conversation.updatedAtMs) + "\n\n";
    if (!conversation.systemPrompt.empty()) {
        out += "### System prompt\n\n";
        appendBlock(out, conversation.systemPrompt);
    }
    for (const MessageRecord &m : messages) {
        // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive) on "literal" + string here.
        out += "### ";
        out += roleHeading(m.role);
        out += "\n\n_";
        out += isoUtc(m.createdAtMs);
        // The marker goes above the content: a reply cut off inside a code fence would swallow
        // anything written after it.
        out += m.complete ? "_\n\n" : " (incomplete)_\n\n";
        appendBlock(out, m.content);
    }
    return out;
}

std::string conversationJson(const ConversationRecord &conversation, const std::vector<MessageRecord> &messages,
                             const std::vector<TurnRecord> &turns)
{
    json jsonMessages = json::array();
    for (const MessageRecord &m : messages) {
        jsonMessages.push_back({
            {"index", m.index},
            {"role", m.role},
            {"content", m.content},
            {"complete", m.complete},
            {"created_at", isoUtc(m.createdAtMs)},
        });
    }
    json jsonTurns = json::array();
    for (const TurnRecord &t : turns) {
        json turn = turnMetrics(t);
        turn["stop_reason"] = t.stopReason;
        // message_id is the store's id (null once that message was deleted by an edit); the export
        // has no ids, so message_index names the message within "messages" (null when absent).
        turn["message_id"] = t.messageId != 0 ? json(t.messageId) : json(nullptr);
        json index = nullptr;
        for (const MessageRecord &m : messages)
            if (t.messageId != 0 && m.id == t.messageId)
                index = m.index;
        turn["message_index"] = index;
        turn["created_at"] = isoUtc(t.createdAtMs);
        jsonTurns.push_back(std::move(turn));
    }
    const json out = {
        {"format", "kvchat-conversation"},
        {"version", 1},
        {"name", conversation.name},
        {"title", conversation.title},
        {"system_prompt", conversation.systemPrompt},
        {"created_at", isoUtc(conversation.createdAtMs)},
        {"updated_at", isoUtc(conversation.updatedAtMs)},
        {"messages", std::move(jsonMessages)},
        {"turns", std::move(jsonTurns)},
    };
    return dumpJson(out);
}

std::string latencyCsv(const std::vector<TurnRecord> &turns,
                       const std::map<std::int64_t, std::string> &conversationNames)
{
    // Scripts read these columns by position as well as by name: append only.
    std::string out = "timestamp,conversation,prompt_tokens,reused_device,reused_host,reused_disk,recomputed,"
                      "ttft_ms,queue_ms,prepare_ms,restore_device_ms,restore_host_ms,restore_disk_ms,prefill_ms,"
                      "first_decode_ms,decode_tokens,decode_ms,decode_tokens_per_s\n";
    for (const TurnRecord &t : turns) {
        const std::string fields[] = {
            isoUtc(t.createdAtMs),
            csvField(conversationName(t.conversationId, conversationNames)),
            std::to_string(t.promptTokens),
            std::to_string(t.reusedDevice),
            std::to_string(t.reusedHost),
            std::to_string(t.reusedDisk),
            std::to_string(t.recomputed),
            fixed3(t.ttftMs),
            fixed3(t.queueMs),
            fixed3(t.prepareMs),
            fixed3(t.restoreDeviceMs),
            fixed3(t.restoreHostMs),
            fixed3(t.restoreDiskMs),
            fixed3(t.prefillMs),
            fixed3(t.firstDecodeMs),
            std::to_string(t.decodeTokens),
            fixed3(t.decodeMs),
            fixed3(decodeTokensPerSecond(t)),
        };
        for (std::size_t i = 0; i < std::size(fields); ++i)
            out += (i ? "," : "") + fields[i];
        out += '\n';
    }
    return out;
}

std::string latencyJson(const std::vector<TurnRecord> &turns,
                        const std::map<std::int64_t, std::string> &conversationNames)
{
    json out = json::array();
    for (const TurnRecord &t : turns) {
        // The CSV's columns, in its order.
        json row = {
            {"timestamp", isoUtc(t.createdAtMs)},
            {"conversation", conversationName(t.conversationId, conversationNames)},
            {"prompt_tokens", t.promptTokens},
            {"reused_device", t.reusedDevice},
            {"reused_host", t.reusedHost},
            {"reused_disk", t.reusedDisk},
            {"recomputed", t.recomputed},
            {"ttft_ms", round3(t.ttftMs)},
            {"queue_ms", round3(t.queueMs)},
            {"prepare_ms", round3(t.prepareMs)},
            {"restore_device_ms", round3(t.restoreDeviceMs)},
            {"restore_host_ms", round3(t.restoreHostMs)},
            {"restore_disk_ms", round3(t.restoreDiskMs)},
            {"prefill_ms", round3(t.prefillMs)},
            {"first_decode_ms", round3(t.firstDecodeMs)},
            {"decode_tokens", t.decodeTokens},
            {"decode_ms", round3(t.decodeMs)},
            {"decode_tokens_per_s", round3(decodeTokensPerSecond(t))},
        };
        out.push_back(std::move(row));
    }
    return dumpJson(out);
}

} // namespace kvchat::engine
