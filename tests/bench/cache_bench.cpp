// SPDX-License-Identifier: MIT
// kvchat-bench-cache: time to first token (TTFT) of a ~30-token message in a conversation with
// ~2,000 tokens of history, with that history's KV recomputed (cold), on the device, in host RAM,
// and on disk after a restart; and a ~1,000-token system prompt shared by ten conversations.
//
//   kvchat-bench-cache -m MODEL.gguf [--threads K] [--repeats R] [--workdir DIR] [--json OUT.json]
//
// Scenarios (each repeated R times; median, min and max of TTFT, median of each part):
//   alone          the ~30-token message as the first turn of a new conversation (no system prompt)
//   cold           history + message, useCache = false: everything recomputed
//   device         history + message, the history's KV on the device (built in this process)
//   host           history + message, the history evicted to host RAM by two other conversations
//                  (device budget 1.5 sequences; disk tier off, see hostScenario)
//   disk_restart   history + message in a new ChatEngine on the same database (OS page cache warm)
//   disk_restart_cold_pagecache   the same after `echo 3 > /proc/sys/vm/drop_caches` (root only)
//   shared_system  ten conversations with one ~1,000-token system prompt, one turn each
// Every repeat sends a different message (28-32 tokens) so its own blocks are never found again,
// and truncate() removes the measured turn so every repeat sees the same history.
// Text is generated from word lists with a fixed seed: varied prose, identical on every run.
#include "engine/runtime/chat_engine.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <stdexcept>
#include <thread>

namespace {

using namespace kvchat::engine;
using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::int32_t kBlockTokens = 16;
constexpr std::int32_t kHistoryTokens = 2000;
constexpr std::int32_t kSystemTokens = 1000;
constexpr std::int32_t kConversations = 10;
constexpr std::int32_t kMeasuredNewTokens = 2; // only the first token matters

const char *const kSubjects[] = {
    "The old lighthouse keeper", "My neighbour across the street", "A group of tired students", "The city council",
    "Our small research team", "The farmer down the road", "A young engineer from the north", "The museum guide",
    "Her grandfather", "The night-shift nurse", "A travelling musician", "The baker on the corner",
    "Two retired teachers", "The harbour master", "A curious child", "The new librarian"};
const char *const kVerbs[] = {"repaired", "described", "painted", "carried", "studied", "photographed", "sold",
                              "borrowed", "cleaned", "measured", "ordered", "planted", "forgot", "rebuilt",
                              "explained", "discovered"};
const char *const kObjects[] = {"a wooden fishing boat", "the broken kitchen clock", "three baskets of green apples",
                                "an old map of the northern coast", "the bicycle with the red bell",
                                "a letter from a distant cousin", "the roof of the village school",
                                "a small garden of herbs", "the recipe for plum cake", "a box of faded photographs",
                                "the engine of a rusty tractor", "a song about the winter sea",
                                "the timetable of the night train", "a pair of leather boots"};
const char *const kWhen[] = {"before the storm arrived", "on a quiet Sunday morning", "after the long meeting",
                             "during the first week of spring", "late in the evening", "while the radio played",
                             "just as the market opened", "on the way back from the station",
                             "when nobody else was watching", "in the middle of the harvest"};
const char *const kWhy[] = {"because the roads were closed", "so that the children could play outside",
                            "although the weather was terrible", "since nobody else knew how",
                            "to surprise an old friend", "because the price had doubled",
                            "for reasons that were never explained", "as the mayor had asked"};
const char *const kOpeners[] = {"", "", "Later, ", "Meanwhile, ", "Surprisingly, ", "Because of that, ",
                                "In the end, ", "A few days later, "};
const char *const kAsks[] = {"Could you explain why", "Do you think it was wise that", "Can you guess why",
                             "What would you say if", "Please tell me whether it matters that",
                             "How would you describe the moment when"};

template <std::size_t N>
std::string pick(std::mt19937 &rng, const char *const (&list)[N])
{
    return list[rng() % N]; // raw engine output: the same text on every standard library
}

std::string lowerFirst(std::string s)
{
    if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z')
        s[0] = static_cast<char>(s[0] - 'A' + 'a');
    return s;
}

// Deterministic natural-looking English: sentences, paragraphs and short questions.
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
        const std::string subject = pick(m_rng, kSubjects);
        s += s.empty() ? subject : lowerFirst(subject);
        s += " " + pick(m_rng, kVerbs) + " " + pick(m_rng, kObjects) + " " + pick(m_rng, kWhen);
        if (m_rng() % 2)
            s += " " + pick(m_rng, kWhy);
        return s + ".";
    }
    // Sentences until the text has about targetTokens tokens.
    std::string paragraph(std::int32_t targetTokens)
    {
        std::string text;
        while (countTokens(text) < targetTokens)
            text += (text.empty() ? "" : " ") + sentence();
        return text;
    }
    // A question of minTokens..maxTokens tokens (draws until one fits).
    std::string question(std::int32_t minTokens, std::int32_t maxTokens)
    {
        for (;;) {
            std::string q = pick(m_rng, kAsks) + " " + lowerFirst(pick(m_rng, kSubjects)) + " " + pick(m_rng, kVerbs) +
                            " " + pick(m_rng, kObjects) + " " + pick(m_rng, kWhen);
            if (m_rng() % 2)
                q += " " + pick(m_rng, kWhy);
            q += "?";
            const std::int32_t n = countTokens(q);
            if (n >= minTokens && n <= maxTokens)
                return q;
        }
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
    return std::move(result).value();
}

void need(Result<void> result, const std::string &what)
{
    if (!result)
        throw std::runtime_error(what + ": " + result.error().message);
}

double median(std::vector<double> v)
{
    if (v.empty())
        return 0.0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Scenario
{
    explicit Scenario(std::string n) : name(std::move(n)) {}

    std::string name;
    std::vector<TurnRecord> runs;
    std::vector<std::int32_t> messageTokens; // tokens of each run's message text
    json extra = json::object();

    double medianOf(double TurnRecord::*field) const
    {
        std::vector<double> v;
        for (const TurnRecord &r : runs)
            v.push_back(r.*field);
        return median(v);
    }
    std::int32_t medianOf(std::int32_t TurnRecord::*field) const
    {
        std::vector<double> v;
        for (const TurnRecord &r : runs)
            v.push_back(r.*field);
        return static_cast<std::int32_t>(median(v));
    }
    double ttft() const { return medianOf(&TurnRecord::ttftMs); }

    json toJson() const
    {
        json j = {{"name", name}, {"repeats", runs.size()}};
        if (runs.empty())
            return j;
        const auto [lo, hi] = std::minmax_element(runs.begin(), runs.end(), [](const auto &a, const auto &b) {
            return a.ttftMs < b.ttftMs;
        });
        j["ttft_ms"] = {{"median", ttft()}, {"min", lo->ttftMs}, {"max", hi->ttftMs}};
        j["breakdown_ms_median"] = {
            {"queue", medianOf(&TurnRecord::queueMs)},           {"prepare", medianOf(&TurnRecord::prepareMs)},
            {"restore_device", medianOf(&TurnRecord::restoreDeviceMs)}, {"restore_host", medianOf(&TurnRecord::restoreHostMs)},
            {"restore_disk", medianOf(&TurnRecord::restoreDiskMs)}, {"prefill", medianOf(&TurnRecord::prefillMs)},
            {"first_decode", medianOf(&TurnRecord::firstDecodeMs)}};
        j["counts_median"] = {{"prompt_tokens", medianOf(&TurnRecord::promptTokens)},
                              {"reused_device", medianOf(&TurnRecord::reusedDevice)},
                              {"reused_host", medianOf(&TurnRecord::reusedHost)},
                              {"reused_disk", medianOf(&TurnRecord::reusedDisk)},
                              {"recomputed", medianOf(&TurnRecord::recomputed)}};
        json runsJson = json::array();
        for (std::size_t i = 0; i < runs.size(); ++i) {
            const TurnRecord &r = runs[i];
            runsJson.push_back({{"ttft_ms", r.ttftMs}, {"queue_ms", r.queueMs}, {"prepare_ms", r.prepareMs},
                                {"restore_device_ms", r.restoreDeviceMs}, {"restore_host_ms", r.restoreHostMs},
                                {"restore_disk_ms", r.restoreDiskMs}, {"prefill_ms", r.prefillMs},
                                {"first_decode_ms", r.firstDecodeMs}, {"prompt_tokens", r.promptTokens},
                                {"reused_device", r.reusedDevice}, {"reused_host", r.reusedHost},
                                {"reused_disk", r.reusedDisk}, {"recomputed", r.recomputed},
                                {"message_tokens", i < messageTokens.size() ? messageTokens[i] : 0}});
        }
        j["runs"] = runsJson;
        j.update(extra);
        return j;
    }
};

void removeDatabase(const fs::path &db)
{
    for (const char *suffix : {"", "-wal", "-shm"})
        fs::remove(db.string() + suffix);
}

std::string commandOutput(const std::string &command)
{
    std::string out;
    if (FILE *pipe = popen(command.c_str(), "r")) {
        char buf[256];
        while (fgets(buf, sizeof buf, pipe))
            out += buf;
        pclose(pipe);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
        out.pop_back();
    return out;
}

json machineInfo(int threads)
{
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line, cpu, flags;
    while (std::getline(cpuinfo, line)) {
        if (cpu.empty() && line.rfind("model name", 0) == 0)
            cpu = line.substr(line.find(':') + 2);
        if (flags.empty() && line.rfind("flags", 0) == 0)
            flags = " " + line.substr(line.find(':') + 1) + " ";
    }
    const auto has = [&](const char *f) { return flags.find(" " + std::string(f) + " ") != std::string::npos; };
    std::ifstream loadavg("/proc/loadavg");
    std::string load;
    std::getline(loadavg, load);
    return {{"cpu", cpu}, {"avx2", has("avx2")}, {"fma", has("fma")}, {"f16c", has("f16c")},
            {"hardware_threads", std::thread::hardware_concurrency()}, {"threads_used", threads},
            {"loadavg_at_start", load}};
}

std::string utcNow()
{
    const std::time_t t = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    return buf;
}

bool dropPageCache()
{
    ::sync();
    FILE *f = std::fopen("/proc/sys/vm/drop_caches", "w");
    if (!f)
        return false;
    const bool ok = std::fputs("3\n", f) >= 0;
    return std::fclose(f) == 0 && ok;
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

    static TurnRecord turn(ChatEngine &engine, const std::string &conversation, const std::string &text,
                           std::int32_t maxNewTokens, const std::string &systemPrompt = "")
    {
        TurnRequest request;
        request.conversation = conversation;
        request.systemPrompt = systemPrompt; // explicit: "" means none, not the template's default
        request.userText = text;
        request.maxNewTokens = maxNewTokens;
        request.sampling.temperature = 0.0f; // greedy
        request.submitted = Clock::now();
        TurnResult result = need(engine.runTurn(request), "turn in '" + conversation + "'");
        if (!result.warning.empty())
            std::cerr << "warning (" << conversation << "): " << result.warning << "\n";
        return result.record;
    }

    // Messages in the conversation and the tokens of its sequence (system prompt included).
    static std::pair<std::int32_t, std::int32_t> extent(ChatEngine &engine, const std::string &conversation)
    {
        auto conv = need(engine.store().findConversation(conversation), "finding " + conversation);
        if (!conv)
            return {0, 0};
        auto messages = need(engine.store().messages(conv->id), "messages of " + conversation);
        std::int32_t tokens = static_cast<std::int32_t>(conv->systemTokens.size());
        for (const MessageRecord &m : messages)
            tokens += static_cast<std::int32_t>(m.tokens.size());
        return {static_cast<std::int32_t>(messages.size()), tokens};
    }

    // A turn that leaves the conversation's messages as they were (its KV stays cached).
    static void scratchTurn(ChatEngine &engine, const std::string &conversation, const std::string &text)
    {
        const std::int32_t before = extent(engine, conversation).first;
        turn(engine, conversation, text, 1);
        need(engine.truncate(conversation, before), "truncating " + conversation);
    }

    // The message of repeat i: the same R messages in every scenario, each 28-32 tokens.
    std::string message(const Tokenizer &tokenizer, int i)
    {
        while (static_cast<int>(m_messages.size()) <= i) {
            Prose prose(tokenizer, 1000u + static_cast<std::uint32_t>(m_messages.size()));
            const std::string q = prose.question(28, 32);
            m_messages.push_back(q);
            m_messageTokens.push_back(prose.countTokens(q));
        }
        return m_messages[static_cast<std::size_t>(i)];
    }

    // Runs the measured turn of repeat i in conversation and removes it again.
    void measure(ChatEngine &engine, Scenario &s, const std::string &conversation, int i)
    {
        const std::string text = message(engine.model().tokenizer(), i);
        const std::int32_t before = extent(engine, conversation).first;
        s.runs.push_back(turn(engine, conversation, text, kMeasuredNewTokens));
        s.messageTokens.push_back(m_messageTokens[static_cast<std::size_t>(i)]);
        need(engine.truncate(conversation, before), "truncating " + conversation);
        const TurnRecord &r = s.runs.back();
        std::cout << "  " << s.name << " #" << i + 1 << ": ttft " << r.ttftMs << " ms, prompt " << r.promptTokens
                  << ", reused dev/host/disk " << r.reusedDevice << "/" << r.reusedHost << "/" << r.reusedDisk
                  << ", recomputed " << r.recomputed << ", message " << s.messageTokens.back() << " tokens\n"
                  << std::flush;
    }

    void alone()
    {
        const fs::path db = m_options.workdir / "alone.db";
        removeDatabase(db);
        auto engine = open(db, false);
        turn(*engine, "warmup", message(engine->model().tokenizer(), 0), kMeasuredNewTokens); // page in the weights
        Scenario s{"alone"};
        for (int i = 0; i < m_options.repeats; ++i)
            measure(*engine, s, "alone-" + std::to_string(i), i);
        m_scenarios.push_back(std::move(s));
    }

    // Several user turns of plain prose with short greedy replies, until ~kHistoryTokens.
    void buildHistory(ChatEngine &engine, const std::string &conversation)
    {
        Prose prose(engine.model().tokenizer(), 42);
        for (;;) {
            const std::int32_t remaining = kHistoryTokens - extent(engine, conversation).second;
            if (remaining < 80)
                break;
            const std::string text = prose.paragraph(std::min(220, remaining - 40)) + " " + prose.question(10, 40);
            turn(engine, conversation, text, 16);
        }
        std::tie(m_historyMessages, m_historyTokens) = extent(engine, conversation);
        std::cout << "history: " << m_historyMessages << " messages, " << m_historyTokens << " tokens\n";
    }

    void buildHistoryAndMeasureDevice()
    {
        auto engine = open(m_historyDb, true);
        buildHistory(*engine, "history");
        const KvCacheStats stats = engine->cacheStats();
        m_blockBytes = stats.device.blocks ? stats.device.usedBytes / stats.device.blocks : 0;
        Scenario s{"device"};
        for (int i = 0; i < m_options.repeats; ++i)
            measure(*engine, s, "history", i);
        m_scenarios.push_back(std::move(s));
    } // destroying the engine is the first half of a restart: every block was persisted by its turn

    void diskRestart(bool coldPageCache)
    {
        Scenario s{coldPageCache ? "disk_restart_cold_pagecache" : "disk_restart"};
        std::vector<double> startMs;
        for (int i = 0; i < m_options.repeats; ++i) {
            if (coldPageCache && !dropPageCache()) {
                std::cout << "  " << s.name << ": skipped (cannot write /proc/sys/vm/drop_caches; needs root)\n";
                return;
            }
            const auto start = Clock::now();
            auto engine = open(m_historyDb, true);
            startMs.push_back(Millis(Clock::now() - start).count());
            measure(*engine, s, "history", i);
        }
        s.extra["page_cache"] = coldPageCache ? "dropped before each restart (model file and database)" : "warm";
        s.extra["engine_start_ms_median"] = median(startMs); // model load + store open, not part of TTFT
        m_scenarios.push_back(std::move(s));
    }

    void cold()
    {
        auto engine = open(m_historyDb, false);
        Scenario s{"cold"};
        for (int i = 0; i < m_options.repeats; ++i)
            measure(*engine, s, "history", i);
        m_scenarios.push_back(std::move(s));
    }

    // The disk tier is off here: with it on, persist() has already written every block to disk
    // after its turn, and a device block that has a disk copy is dropped on eviction rather than
    // copied to host RAM (TieredKvCache::reclaimDeviceBlock), so the history would come from disk.
    void host()
    {
        const std::size_t sequenceBlocks = static_cast<std::size_t>(m_historyTokens + 64 + kBlockTokens - 1) / kBlockTokens;
        KvBudgets budgets;
        budgets.deviceBytes = sequenceBlocks * 3 / 2 * m_blockBytes; // one sequence fits, two do not
        budgets.hostBytes = std::size_t(1) << 30;
        budgets.diskBytes = 0;
        auto engine = open(m_historyDb, true, budgets);
        // History onto the device (recomputed: no disk tier), then two fillers of the same size.
        scratchTurn(*engine, "history", "Thank you.");
        Prose prose(engine->model().tokenizer(), 7);
        const std::string fillers[] = {"filler-b", "filler-c"};
        for (const std::string &f : fillers)
            turn(*engine, f, prose.paragraph(m_historyTokens), 1);
        Scenario s{"host"};
        for (int i = 0; i < m_options.repeats; ++i) {
            for (const std::string &f : fillers) // the fillers evict the history to host RAM
                scratchTurn(*engine, f, "Thank you.");
            measure(*engine, s, "history", i);
        }
        s.extra["device_budget_bytes"] = budgets.deviceBytes;
        s.extra["disk_tier"] = "off (see the comment on host() in cache_bench.cpp)";
        m_scenarios.push_back(std::move(s));
    }

    void sharedSystem()
    {
        Scenario first{"shared_system_conv1"}, last{"shared_system_conv10"};
        json memory;
        for (int i = 0; i < m_options.repeats; ++i) {
            const fs::path db = m_options.workdir / "shared.db";
            removeDatabase(db);
            auto engine = open(db, true);
            Prose prose(engine->model().tokenizer(), 99);
            const std::string system = "You are a helpful assistant. Here are background notes about the village: " +
                                       prose.paragraph(kSystemTokens - 20);
            std::size_t naiveBlocks = 0;
            for (int c = 0; c < kConversations; ++c) {
                const std::string name = "shared-" + std::to_string(c + 1);
                const std::string text = message(engine->model().tokenizer(), i * kConversations + c);
                const TurnRecord r = turn(*engine, name, text, kMeasuredNewTokens, system);
                naiveBlocks += static_cast<std::size_t>(r.promptTokens + r.decodeTokens + kBlockTokens - 1) / kBlockTokens;
                if (c == 0 || c == kConversations - 1) {
                    Scenario &s = c == 0 ? first : last;
                    s.runs.push_back(r);
                    s.messageTokens.push_back(m_messageTokens[static_cast<std::size_t>(i * kConversations + c)]);
                }
            }
            const KvCacheStats stats = engine->cacheStats();
            const std::int32_t systemTokens = static_cast<std::int32_t>(
                need(engine->store().findConversation("shared-1"), "finding shared-1")->systemTokens.size());
            const std::size_t diskBytes = need(engine->store().kvBytes(), "kvBytes");
            const std::int32_t systemBlocks = systemTokens / kBlockTokens; // only full blocks are shared
            const bool storedOnce = static_cast<std::int32_t>(stats.sharedBlocks) == systemBlocks &&
                                    last.runs.back().reusedDevice == systemBlocks * kBlockTokens;
            memory = {{"system_prompt_tokens", systemTokens}, {"shared_blocks", stats.sharedBlocks},
                      {"system_full_blocks", systemBlocks}, {"device_bytes_used", stats.device.usedBytes},
                      {"device_blocks_used", stats.device.blocks}, {"disk_kv_bytes", diskBytes},
                      {"bytes_if_stored_ten_times", naiveBlocks * m_blockBytes}, {"block_bytes", m_blockBytes},
                      {"stored_once", storedOnce}};
            std::cout << "  shared_system #" << i + 1 << ": " << memory.dump() << "\n" << std::flush;
        }
        last.extra["memory"] = memory;
        m_scenarios.push_back(std::move(first));
        m_scenarios.push_back(std::move(last));
    }

    Options m_options;
    fs::path m_historyDb;
    std::vector<Scenario> m_scenarios;
    std::vector<std::string> m_messages;
    std::vector<std::int32_t> m_messageTokens;
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
    std::cout << "\n| scenario | prompt tok | reused dev/host/disk | recomputed | TTFT median ms (min–max) | queue | "
                 "prepare | restore dev/host/disk | prefill | first decode |\n"
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const Scenario &s : bench.scenarios()) {
        if (s.runs.empty())
            continue;
        const json j = s.toJson();
        const json &b = j["breakdown_ms_median"];
        const json &c = j["counts_median"];
        std::cout << "| " << s.name << " | " << c["prompt_tokens"] << " | " << c["reused_device"] << "/"
                  << c["reused_host"] << "/" << c["reused_disk"] << " | " << c["recomputed"] << " | "
                  << fixed(j["ttft_ms"]["median"]) << " (" << fixed(j["ttft_ms"]["min"]) << "–"
                  << fixed(j["ttft_ms"]["max"]) << ") | " << fixed(b["queue"], 2) << " | " << fixed(b["prepare"], 2)
                  << " | " << fixed(b["restore_device"], 2) << "/" << fixed(b["restore_host"], 2) << "/"
                  << fixed(b["restore_disk"], 2) << " | " << fixed(b["prefill"]) << " | " << fixed(b["first_decode"], 2)
                  << " |\n";
    }
}

json ratios(const CacheBench &bench)
{
    json r = json::object();
    const auto ratio = [&](const char *key, const char *num, const char *den, double target) {
        const Scenario *a = bench.find(num), *b = bench.find(den);
        if (!a || !b || b->ttft() <= 0)
            return;
        const double v = a->ttft() / b->ttft();
        r[key] = {{"value", v}, {"target_max", target}, {"met", v <= target}};
        std::cout << key << " = " << fixed(v, 3) << " (target <= " << target << "): " << (v <= target ? "met" : "NOT met")
                  << "\n";
    };
    ratio("device_over_alone", "device", "alone", 2.0);
    ratio("host_over_alone", "host", "alone", 2.0);
    ratio("disk_restart_over_cold", "disk_restart", "cold", 0.25);
    ratio("disk_restart_cold_pagecache_over_cold", "disk_restart_cold_pagecache", "cold", 0.25);
    if (const Scenario *s = bench.find("shared_system_conv10")) {
        const json &m = s->extra["memory"];
        r["shared_prompt_stored_once"] = m["stored_once"];
        std::cout << "shared system prompt stored once: " << (m["stored_once"].get<bool>() ? "yes" : "NO") << " ("
                  << m["shared_blocks"] << " shared blocks of " << m["system_full_blocks"] << "; device "
                  << m["device_bytes_used"].get<std::size_t>() / 1024 << " KiB vs "
                  << m["bytes_if_stored_ten_times"].get<std::size_t>() / 1024 << " KiB if stored ten times; disk "
                  << m["disk_kv_bytes"].get<std::size_t>() / 1024 << " KiB)\n";
    }
    return r;
}

int usage()
{
    std::cerr << "usage: kvchat-bench-cache -m MODEL.gguf [--threads K] [--repeats R] [--workdir DIR] [--json OUT.json]\n";
    return 2;
}

} // namespace

int main(int argc, char **argv)
{
    Options options;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (i + 1 >= argc)
            return usage();
        const std::string value = argv[++i];
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
    if (options.model.empty())
        return usage();
    try {
        json out = {{"benchmark", "kvchat-bench-cache"}, {"date_utc", utcNow()}, {"machine", machineInfo(options.threads)},
                    {"model", {{"file", fs::path(options.model).filename().string()}, {"bytes", fs::file_size(options.model)}}},
                    {"kvchat_commit", commandOutput("git -C '" KVCHAT_SOURCE_DIR "' describe --always --dirty --abbrev=7 2>/dev/null")},
                    {"repeats", options.repeats}, {"kv_block_tokens", kBlockTokens},
                    {"notes", "TTFT from runTurn's submit to the first token's text; engine start-up (model load, "
                              "database open) is not part of it. disk_restart runs with the OS page cache warm."}};
        CacheBench bench(options);
        out.update(bench.run());
        printTable(bench);
        std::cout << "\n";
        out["ratios"] = ratios(bench);
        std::ifstream loadavg("/proc/loadavg");
        std::string load;
        std::getline(loadavg, load);
        out["machine"]["loadavg_at_end"] = load;
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
