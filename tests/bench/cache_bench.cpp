// SPDX-License-Identifier: MIT
// kvchat-bench-cache: time to first token (TTFT) of a ~30-token message in a conversation with
// ~2,000 tokens of history whose KV is recomputed (cold), on the device, in host RAM, or on disk
// after a restart; and a ~1,000-token system prompt shared by ten conversations.
//
//   kvchat-bench-cache -m MODEL.gguf [--threads K] [--repeats R] [--workdir DIR] [--json OUT.json]
//
// Scenarios (each repeated R times; median, min and max of TTFT and the median of each part):
//   alone          the message as the first turn of a new conversation (no system prompt, no cache)
//   cold           history + message with useCache = false: everything recomputed
//   device         history + message, the history's KV on the device (built in this process)
//   host           history + message, the history evicted to host RAM by two conversations of the
//                  same size (device budget 1.5 sequences; disk tier off, see host())
//   disk_restart   history + message in a new ChatEngine on the same database, OS page cache warm
//   disk_restart_cold_pagecache   the same after `echo 3 > /proc/sys/vm/drop_caches` (root only)
//   shared_system  ten conversations with one ~1,000-token system prompt, one turn each
// Every measured turn sends a message (28-32 tokens) used nowhere else, so its own blocks are never
// found, and truncate() removes the turn again so every repeat sees the same history. The text
// comes from word lists and a fixed seed: varied prose, the same on every run.
#include "tests/bench/bench_machine.h"
#include "engine/runtime/chat_engine.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <stdexcept>
#include <thread>
#include <type_traits>

using kvchat::bench::firstLine;
using kvchat::bench::machineInfo;

namespace {

using namespace kvchat::engine;
using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::int32_t kBlockTokens = 16;
constexpr std::int32_t kHistoryTokens = 2000;
constexpr std::int32_t kSystemTokens = 1000;
constexpr int kConversations = 10;
constexpr std::int32_t kMeasuredNewTokens = 2; // only the first token is timed

const char *const kSubjects[] = {
    "The old lighthouse keeper", "My neighbour across the street", "A group of tired students", "The city council",
    "Our small research team", "The farmer down the road", "A young engineer from the north", "The museum guide",
    "Her grandfather", "The night-shift nurse", "A travelling musician", "The baker on the corner",
    "Two retired teachers", "The harbour master", "A curious child", "The new librarian"};
const char *const kVerbs[] = {"repaired", "described", "painted", "carried", "studied", "photographed",
                              "sold", "borrowed", "cleaned", "measured", "ordered", "planted",
                              "forgot", "rebuilt", "explained", "discovered"};
const char *const kObjects[] = {
    "a wooden fishing boat", "the broken kitchen clock", "three baskets of green apples",
    "an old map of the northern coast", "the bicycle with the red bell", "a letter from a distant cousin",
    "the roof of the village school", "a small garden of herbs", "the recipe for plum cake",
    "a box of faded photographs", "the engine of a rusty tractor", "a song about the winter sea",
    "the timetable of the night train", "a pair of leather boots"};
const char *const kWhen[] = {
    "before the storm arrived", "on a quiet Sunday morning", "after the long meeting",
    "during the first week of spring", "late in the evening", "while the radio played", "just as the market opened",
    "on the way back from the station", "when nobody else was watching", "in the middle of the harvest"};
const char *const kWhy[] = {"because the roads were closed", "so that the children could play outside",
                            "although the weather was terrible", "since nobody else knew how",
                            "to surprise an old friend", "because the price had doubled",
                            "for reasons that were never explained", "as the mayor had asked"};
const char *const kOpeners[] = {"", "", "Later, ", "Meanwhile, ", "Surprisingly, ", "Because of that, ",
                                "In the end, ", "A few days later, "};
const char *const kNames[] = {"Anna", "Ben", "Clara", "David", "Elena", "Frank", "Grace", "Henry", "Irene", "Jack",
                              "Karen", "Leo", "Maria", "Nick", "Olivia", "Peter", "Quinn", "Rosa", "Sam", "Tina",
                              "Umar", "Vera", "Walter", "Xavier", "Yusuf", "Zoe", "Alice", "Bruno", "Carmen", "Dmitri",
                              "Emma", "Felix", "Greta", "Hugo", "Ingrid", "Jonas", "Kira", "Lucas", "Mila", "Noah"};
const char *const kAsks[] = {"Could you explain why", "Do you think it was wise that", "Can you guess why",
                             "What would you say if", "Please tell me whether it matters that",
                             "How would you describe the moment when"};

template <std::size_t N>
std::string pick(std::mt19937 &rng, const char *const (&list)[N])
{
    return list[rng() % N]; // the engine's raw output: the same text with every standard library
}

std::string lowerFirst(std::string s)
{
    if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z')
        s[0] = static_cast<char>(s[0] - 'A' + 'a');
    return s;
}

// Deterministic, varied English: sentences, paragraphs of a given token length, short questions.
class Prose
{
public:
    Prose(const Tokenizer &tokenizer, std::uint32_t seed) : m_tokenizer(tokenizer), m_rng(seed) {}

    std::int32_t countTokens(const std::string &text) const
    {
        return static_cast<std::int32_t>(m_tokenizer.encode(text, false).size());
    }
    std::string sentence()
    {
        std::string s = pick(m_rng, kOpeners);
        s += s.empty() ? pick(m_rng, kSubjects) : lowerFirst(pick(m_rng, kSubjects));
        s += " " + pick(m_rng, kVerbs) + " " + pick(m_rng, kObjects) + " " + pick(m_rng, kWhen);
        return s + (m_rng() % 2 ? " " + pick(m_rng, kWhy) : std::string()) + ".";
    }
    std::string paragraph(std::int32_t targetTokens)
    {
        std::string text;
        while (countTokens(text) < targetTokens)
            text += (text.empty() ? "" : " ") + sentence();
        return text;
    }
    // A question of minTokens..maxTokens tokens. It opens with a name picked by index, so questions
    // with indices below 40 differ from their first token: a block that holds the end of the
    // history and the start of the message is never found again by the next message.
    std::string question(std::int32_t minTokens, std::int32_t maxTokens, std::size_t index)
    {
        const std::string head = std::string(kNames[index % std::size(kNames)]) + ", " +
                                 lowerFirst(kAsks[index % std::size(kAsks)]) + " " + lowerFirst(pick(m_rng, kSubjects));
        for (int attempt = 0; attempt < 100000; ++attempt) {
            std::string q = head + " " + pick(m_rng, kVerbs) + " " + pick(m_rng, kObjects) + " " + pick(m_rng, kWhen);
            q += (m_rng() % 2 ? " " + pick(m_rng, kWhy) : std::string()) + "?";
            if (const std::int32_t n = countTokens(q); n >= minTokens && n <= maxTokens)
                return q;
        }
        throw std::runtime_error("no question of " + std::to_string(minTokens) + "-" + std::to_string(maxTokens) +
                                 " tokens");
    }

private:
    const Tokenizer &m_tokenizer;
    std::mt19937 m_rng;
};

struct Options
{
    std::string model;
    int threads = 2;
    int repeats = 5;
    fs::path workdir = fs::temp_directory_path() / "kvchat-bench-cache";
    std::string jsonPath;
};

template <typename T>
T need(Result<T> result, const std::string &what)
{
    if (!result)
        throw std::runtime_error(what + ": " + result.error().message);
    if constexpr (!std::is_void_v<T>)
        return std::move(result).value();
}

double median(std::vector<double> v)
{
    if (v.empty())
        return 0.0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The parts of a TurnRecord that are reported: times in ms, then token counts.
const std::pair<const char *, double TurnRecord::*> kTimes[] = {
    {"ttft", &TurnRecord::ttftMs}, {"queue", &TurnRecord::queueMs}, {"prepare", &TurnRecord::prepareMs},
    {"restore_device", &TurnRecord::restoreDeviceMs}, {"restore_host", &TurnRecord::restoreHostMs},
    {"restore_disk", &TurnRecord::restoreDiskMs}, {"prefill", &TurnRecord::prefillMs},
    {"first_decode", &TurnRecord::firstDecodeMs}};
const std::pair<const char *, std::int32_t TurnRecord::*> kCounts[] = {
    {"prompt_tokens", &TurnRecord::promptTokens}, {"reused_device", &TurnRecord::reusedDevice},
    {"reused_host", &TurnRecord::reusedHost}, {"reused_disk", &TurnRecord::reusedDisk},
    {"recomputed", &TurnRecord::recomputed}};

struct Scenario
{
    explicit Scenario(std::string n) : name(std::move(n)) {}

    std::string name;
    std::vector<TurnRecord> runs;
    std::vector<std::int32_t> messageTokens; // tokens of each run's message text
    json extra = json::object();

    template <typename T>
    double medianOf(T TurnRecord::*field) const
    {
        std::vector<double> v;
        for (const TurnRecord &r : runs)
            v.push_back(static_cast<double>(r.*field));
        return median(v);
    }
    double ttft() const { return medianOf(&TurnRecord::ttftMs); }

    json toJson() const
    {
        json j = {{"name", name}, {"repeats", runs.size()}};
        if (runs.empty())
            return j;
        const auto [lo, hi] = std::minmax_element(runs.begin(), runs.end(),
                                                  [](const auto &a, const auto &b) { return a.ttftMs < b.ttftMs; });
        j["ttft_ms"] = {{"median", ttft()}, {"min", lo->ttftMs}, {"max", hi->ttftMs}};
        for (const auto &[key, field] : kTimes)
            j["breakdown_ms_median"][key] = medianOf(field);
        for (const auto &[key, field] : kCounts)
            j["counts_median"][key] = medianOf(field);
        for (std::size_t i = 0; i < runs.size(); ++i) {
            json run = {{"message_tokens", messageTokens.at(i)}};
            for (const auto &[key, field] : kTimes)
                run[std::string(key) + "_ms"] = runs[i].*field;
            for (const auto &[key, field] : kCounts)
                run[key] = runs[i].*field;
            j["runs"].push_back(run);
        }
        j.update(extra);
        return j;
    }
};

void removeDatabase(const fs::path &db)
{
    for (const char *suffix : {"", "-wal", "-shm"})
        fs::remove(db.string() + suffix);
}

// Bytes of a file in the OS page cache, as fincore (util-linux) reports them; "" without fincore.
std::string cachedBytes(const fs::path &file)
{
    const std::string out = firstLine("fincore --bytes --noheadings --output RES '" + file.string() + "' 2>/dev/null");
    return out.substr(std::min(out.size(), out.find_first_not_of(' ')));
}

bool dropPageCache()
{
    ::sync();
    std::ofstream file("/proc/sys/vm/drop_caches");
    file << "3\n" << std::flush;
    return file.good();
}

class CacheBench
{
public:
    explicit CacheBench(Options options) : m_options(std::move(options)) {}

    json run()
    {
        fs::create_directories(m_options.workdir);
        m_historyDb = m_options.workdir / "history.db";
        removeDatabase(m_historyDb);
        alone();
        buildHistoryAndMeasureDevice();
        diskRestart(false);
        diskRestart(true);
        cold();
        host();
        sharedSystem();
        json scenarios = json::array();
        for (const Scenario &s : m_scenarios)
            scenarios.push_back(s.toJson());
        return {{"scenarios", scenarios}, {"history_tokens", m_historyTokens}, {"history_messages", m_historyMessages}};
    }
    const std::vector<Scenario> &scenarios() const { return m_scenarios; }
    const Scenario *find(const std::string &name) const
    {
        for (const Scenario &s : m_scenarios)
            if (s.name == name && !s.runs.empty())
                return &s;
        return nullptr;
    }

private:
    std::unique_ptr<ChatEngine> open(const fs::path &db, bool useCache, std::optional<KvBudgets> budgets = {})
    {
        ChatEngineOptions options;
        options.threads = m_options.threads;
        options.kvBlockTokens = kBlockTokens;
        options.useCache = useCache;
        options.budgets = budgets;
        return need(ChatEngine::create(m_options.model, db.string(), options), "opening " + db.string());
    }

    // text nullopt: reply again to the last user message.
    static TurnRecord turn(ChatEngine &engine, const std::string &conversation, std::optional<std::string> text,
                           std::int32_t maxNewTokens, const std::string &systemPrompt = "")
    {
        TurnRequest request;
        request.conversation = conversation;
        request.systemPrompt = systemPrompt; // explicit: "" is none, not the template's default
        request.userText = std::move(text);
        request.maxNewTokens = maxNewTokens;
        request.sampling.temperature = 0.0f; // greedy
        request.submitted = Clock::now();
        TurnResult result = need(engine.runTurn(request), "turn in '" + conversation + "'");
        if (!result.warning.empty())
            std::cerr << "warning (" << conversation << "): " << result.warning << "\n";
        return result.record;
    }

    // Messages in the conversation, and the tokens of its sequence (system prompt included).
    static std::pair<std::int32_t, std::int32_t> extent(ChatEngine &engine, const std::string &conversation)
    {
        auto conv = need(engine.store().findConversation(conversation), "finding " + conversation);
        if (!conv)
            return {0, 0};
        auto messages = need(engine.store().messages(conv->id), "messages of " + conversation);
        std::size_t tokens = conv->systemTokens.size();
        for (const MessageRecord &m : messages)
            tokens += m.tokens.size();
        return {static_cast<std::int32_t>(messages.size()), static_cast<std::int32_t>(tokens)};
    }

    // A turn after which the conversation's messages are as before (its KV stays cached).
    static TurnRecord scratchTurn(ChatEngine &engine, const std::string &conversation, const std::string &text,
                                  std::int32_t maxNewTokens = kMeasuredNewTokens)
    {
        const std::int32_t before = extent(engine, conversation).first;
        const TurnRecord record = turn(engine, conversation, text, maxNewTokens);
        need(engine.truncate(conversation, before), "truncating " + conversation);
        return record;
    }

    // A ~30-token message that no other turn of this run sends.
    std::pair<std::string, std::int32_t> nextMessage(const Tokenizer &tokenizer)
    {
        const std::size_t index = m_nextMessage++;
        Prose prose(tokenizer, 1000u + static_cast<std::uint32_t>(index));
        std::string text = prose.question(28, 32, index);
        const std::int32_t n = prose.countTokens(text);
        return {std::move(text), n};
    }

    // The measured turn of one repeat; afterwards the conversation is as before.
    void measure(ChatEngine &engine, Scenario &s, const std::string &conversation)
    {
        const auto [text, nTokens] = nextMessage(engine.model().tokenizer());
        s.runs.push_back(scratchTurn(engine, conversation, text));
        s.messageTokens.push_back(nTokens);
        s.extra["loadavg_after_each_run"].push_back(firstLine("cat /proc/loadavg")); // other work on the machine
        const TurnRecord &r = s.runs.back();
        std::cout << "  " << s.name << " #" << s.runs.size() << ": ttft " << r.ttftMs << " ms, prompt "
                  << r.promptTokens << ", reused dev/host/disk " << r.reusedDevice << "/" << r.reusedHost << "/"
                  << r.reusedDisk << ", recomputed " << r.recomputed << ", message " << nTokens << " tokens\n"
                  << std::flush;
    }

    void alone()
    {
        const fs::path db = m_options.workdir / "alone.db";
        removeDatabase(db);
        auto engine = open(db, false);
        turn(*engine, "warmup", nextMessage(engine->model().tokenizer()).first, kMeasuredNewTokens); // page in weights
        Scenario s{"alone"};
        for (int i = 0; i < m_options.repeats; ++i)
            measure(*engine, s, "alone-" + std::to_string(i + 1));
        m_scenarios.push_back(std::move(s));
    }

    // User turns of ~220 tokens of prose with short greedy replies, until ~kHistoryTokens.
    void buildHistoryAndMeasureDevice()
    {
        auto engine = open(m_historyDb, true);
        Prose prose(engine->model().tokenizer(), 42);
        for (std::size_t turns = 0;; ++turns) {
            const std::int32_t remaining = kHistoryTokens - extent(*engine, "history").second;
            if (remaining < 80)
                break;
            const std::string text = prose.paragraph(std::min(220, remaining - 40));
            turn(*engine, "history", text + " " + prose.question(10, 40, 200 + turns), 16);
        }
        std::tie(m_historyMessages, m_historyTokens) = extent(*engine, "history");
        std::cout << "history: " << m_historyMessages << " messages, " << m_historyTokens << " tokens\n";
        const KvCacheStats stats = engine->cacheStats();
        m_blockBytes = stats.device.blocks ? stats.device.usedBytes / stats.device.blocks : 0;
        Scenario s{"device"};
        for (int i = 0; i < m_options.repeats; ++i)
            measure(*engine, s, "history");
        m_scenarios.push_back(std::move(s));
    } // destroying the engine is the first half of a restart: each turn persisted its blocks

    void diskRestart(bool coldPageCache)
    {
        Scenario s{coldPageCache ? "disk_restart_cold_pagecache" : "disk_restart"};
        std::vector<double> startMs;
        for (int i = 0; i < m_options.repeats; ++i) {
            if (coldPageCache && !dropPageCache()) {
                std::cout << "  " << s.name << ": skipped (cannot write /proc/sys/vm/drop_caches; needs root)\n";
                return;
            }
            s.extra["page_cache_bytes_at_restart"].push_back({{"db", cachedBytes(m_historyDb)},
                                                              {"model", cachedBytes(m_options.model)}});
            const auto start = Clock::now();
            auto engine = open(m_historyDb, true);
            startMs.push_back(Millis(Clock::now() - start).count());
            measure(*engine, s, "history");
        }
        // Another process that maps the model keeps its pages cached through drop_caches.
        s.extra["page_cache"] = coldPageCache ? "dropped before each restart" : "warm";
        s.extra["engine_start_ms_median"] = median(startMs); // model load + store open: not part of TTFT
        m_scenarios.push_back(std::move(s));
    }

    void cold()
    {
        auto engine = open(m_historyDb, false);
        Scenario s{"cold"};
        for (int i = 0; i < m_options.repeats; ++i)
            measure(*engine, s, "history");
        m_scenarios.push_back(std::move(s));
    }

    // The disk tier is off here. With it on, persist() writes every block to disk after its turn,
    // and TieredKvCache::reclaimDeviceBlock drops a device block that has a disk copy instead of
    // copying it to host RAM, so an evicted history would come back from disk, never from host.
    void host()
    {
        const auto sequenceBlocks = static_cast<std::size_t>(m_historyTokens + 64 + kBlockTokens - 1) / kBlockTokens;
        KvBudgets budgets;
        budgets.deviceBytes = sequenceBlocks * 3 / 2 * m_blockBytes; // one sequence fits, two do not
        budgets.hostBytes = std::size_t(1) << 30;
        budgets.diskBytes = 0;
        auto engine = open(m_historyDb, true, budgets);
        // Onto the device by regenerating the last reply (recomputed, no disk tier; greedy and exact,
        // so the same tokens): the cache then holds what the device scenario's did, last partial
        // block included.
        need(engine->truncate("history", m_historyMessages - 1), "truncating history");
        turn(*engine, "history", std::nullopt, 16);
        if (extent(*engine, "history").second != m_historyTokens)
            std::cerr << "warning: the regenerated history differs from the original\n";
        Prose prose(engine->model().tokenizer(), 7);
        const std::string fillers[] = {"filler-b", "filler-c"};
        for (const std::string &f : fillers)
            turn(*engine, f, prose.paragraph(m_historyTokens), 1);
        Scenario s{"host"};
        for (int i = 0; i < m_options.repeats; ++i) {
            for (const std::string &f : fillers) // between them they evict the whole history to host RAM
                scratchTurn(*engine, f, "Thank you.", 1);
            measure(*engine, s, "history");
        }
        s.extra["device_budget_bytes"] = budgets.deviceBytes;
        s.extra["disk_tier"] = "off (see host() in tests/bench/cache_bench.cpp)";
        m_scenarios.push_back(std::move(s));
    }

    void sharedSystem()
    {
        Scenario first{"shared_system_conv1"}, last{"shared_system_conv10"};
        for (int i = 0; i < m_options.repeats; ++i) {
            const fs::path db = m_options.workdir / "shared.db";
            removeDatabase(db);
            auto engine = open(db, true);
            Prose prose(engine->model().tokenizer(), 99);
            const std::string system =
                "You are a helpful assistant. Notes about the village: " + prose.paragraph(kSystemTokens - 16);
            std::size_t naiveBlocks = 0; // what the ten would hold with nothing shared
            for (int c = 0; c < kConversations; ++c) {
                const auto [text, nTokens] = nextMessage(engine->model().tokenizer());
                const TurnRecord r = turn(*engine, "shared-" + std::to_string(c + 1), text, kMeasuredNewTokens, system);
                naiveBlocks += static_cast<std::size_t>(r.promptTokens + r.decodeTokens + kBlockTokens - 1) /
                               static_cast<std::size_t>(kBlockTokens);
                if (c == 0 || c == kConversations - 1) {
                    Scenario &s = c == 0 ? first : last;
                    s.runs.push_back(r);
                    s.messageTokens.push_back(nTokens);
                    s.extra["loadavg_after_each_run"].push_back(firstLine("cat /proc/loadavg"));
                    std::cout << "  " << s.name << " #" << i + 1 << ": ttft " << r.ttftMs << " ms, reused "
                              << r.reusedDevice << ", recomputed " << r.recomputed << "\n";
                }
            }
            const KvCacheStats stats = engine->cacheStats();
            const auto conv = need(engine->store().findConversation("shared-1"), "finding shared-1");
            const std::int32_t systemTokens = static_cast<std::int32_t>(conv->systemTokens.size());
            const std::uint32_t systemBlocks = static_cast<std::uint32_t>(systemTokens / kBlockTokens); // full blocks
            // Stored once: the tenth conversation reused every full block of the system prompt, and
            // the device holds at least nine copies' worth of blocks fewer than ten separate ones.
            const bool storedOnce = last.runs.back().reusedDevice >= systemTokens / kBlockTokens * kBlockTokens &&
                                    stats.device.blocks + (kConversations - 1) * systemBlocks <= naiveBlocks;
            last.extra["memory"] = {
                {"system_prompt_tokens", systemTokens}, {"system_full_blocks", systemBlocks},
                {"shared_blocks", stats.sharedBlocks}, {"device_blocks_used", stats.device.blocks},
                {"device_bytes_used", stats.device.usedBytes}, {"host_bytes_used", stats.host.usedBytes},
                {"disk_kv_bytes", need(engine->store().kvBytes(), "kvBytes")},
                {"bytes_if_stored_ten_times", naiveBlocks * m_blockBytes}, {"block_bytes", m_blockBytes},
                {"stored_once", storedOnce}};
        }
        m_scenarios.push_back(std::move(first));
        m_scenarios.push_back(std::move(last));
    }

    Options m_options;
    fs::path m_historyDb;
    std::vector<Scenario> m_scenarios;
    std::size_t m_nextMessage = 0;
    std::int32_t m_historyTokens = 0, m_historyMessages = 0;
    std::size_t m_blockBytes = 0;
};

std::string fixed(double v, int decimals = 1)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

void printTable(const CacheBench &bench)
{
    std::cout << "\n| scenario | prompt tok | reused dev/host/disk | recomputed | TTFT ms median (min–max) | queue | "
                 "prepare | restore dev/host/disk | prefill | first decode |\n"
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const Scenario &s : bench.scenarios()) {
        if (s.runs.empty())
            continue;
        const json j = s.toJson();
        const json &b = j["breakdown_ms_median"], &c = j["counts_median"];
        std::cout << "| " << s.name << " | " << fixed(c["prompt_tokens"], 0) << " | " << fixed(c["reused_device"], 0)
                  << "/" << fixed(c["reused_host"], 0) << "/" << fixed(c["reused_disk"], 0) << " | "
                  << fixed(c["recomputed"], 0) << " | "
                  << fixed(j["ttft_ms"]["median"]) << " (" << fixed(j["ttft_ms"]["min"]) << "–"
                  << fixed(j["ttft_ms"]["max"]) << ") | " << fixed(b["queue"], 2) << " | " << fixed(b["prepare"])
                  << " | "
                  << fixed(b["restore_device"]) << "/" << fixed(b["restore_host"]) << "/" << fixed(b["restore_disk"])
                  << " | " << fixed(b["prefill"]) << " | " << fixed(b["first_decode"], 2) << " |\n";
    }
}

json ratios(const CacheBench &bench)
{
    json r = json::object();
    const auto ratio = [&](const char *num, const char *den, double target) {
        const Scenario *a = bench.find(num), *b = bench.find(den);
        if (!a || !b || b->ttft() <= 0)
            return;
        const double v = a->ttft() / b->ttft();
        r[std::string(num) + "_over_" + den] = {{"value", v}, {"target_max", target}, {"met", v <= target}};
        std::cout << num << " / " << den << " = " << fixed(v, 3) << " (target <= " << target
                  << "): " << (v <= target ? "met" : "NOT met") << "\n";
    };
    ratio("device", "alone", 2.0);
    ratio("host", "alone", 2.0);
    ratio("disk_restart", "cold", 0.25);
    ratio("disk_restart_cold_pagecache", "cold", 0.25);
    if (const Scenario *s = bench.find("shared_system_conv10")) {
        const json &m = s->extra["memory"];
        r["shared_prompt_stored_once"] = m["stored_once"];
        std::cout << "shared system prompt stored once: " << (m["stored_once"].get<bool>() ? "yes" : "NO") << " ("
                  << m["system_full_blocks"] << " full system blocks, " << m["shared_blocks"]
                  << " shared blocks; device " << m["device_bytes_used"].get<std::size_t>() / 1024 << " KiB vs "
                  << m["bytes_if_stored_ten_times"].get<std::size_t>() / 1024 << " KiB if stored ten times; disk "
                  << m["disk_kv_bytes"].get<std::size_t>() / 1024 << " KiB)\n";
    }
    return r;
}

int usage()
{
    std::cerr << "usage: kvchat-bench-cache -m MODEL.gguf [--threads K] [--repeats R] [--workdir DIR]"
                 " [--json OUT.json]\n";
    return 2;
}

} // namespace

int main(int argc, char **argv)
{
    Options options;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string arg = argv[i], value = argv[i + 1];
        if (arg == "-m")
            options.model = value;
        else if (arg == "--threads")
            options.threads = std::max(1, std::atoi(value.c_str()));
        else if (arg == "--repeats")
            options.repeats = std::max(1, std::atoi(value.c_str()));
        else if (arg == "--workdir")
            options.workdir = value;
        else if (arg == "--json")
            options.jsonPath = value;
        else
            return usage();
    }
    if (options.model.empty() || argc % 2 == 0)
        return usage();
    try {
        json out = {
            {"benchmark", "kvchat-bench-cache"},
            {"date_utc", firstLine("date -u +%Y-%m-%dT%H:%M:%SZ")},
            {"machine", machineInfo(options.threads)},
            {"model", {{"file", fs::path(options.model).filename().string()}, {"bytes", fs::file_size(options.model)}}},
            {"kvchat_commit",
             firstLine("git -C '" KVCHAT_SOURCE_DIR "' describe --always --dirty --abbrev=7 2>/dev/null")},
            {"repeats", options.repeats},
            {"kv_block_tokens", kBlockTokens},
            {"notes", "TTFT: runTurn's submit to the first token's text; engine start-up (model load, database "
                      "open) is not part of it. disk_restart runs with the OS page cache warm."}};
        CacheBench bench(options);
        out.update(bench.run());
        printTable(bench);
        std::cout << "\n";
        out["ratios"] = ratios(bench);
        out["machine"]["loadavg_at_end"] = firstLine("cat /proc/loadavg");
        if (!options.jsonPath.empty()) {
            std::ofstream(options.jsonPath) << out.dump(2) << "\n";
            std::cout << "wrote " << options.jsonPath << "\n";
        }
    } catch (const std::exception &e) {
        std::cerr << "kvchat-bench-cache: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
