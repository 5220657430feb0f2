// SPDX-License-Identifier: MIT
// `chat` (one turn of a saved conversation per process) and `replay` (many turns in one process).
// TTFT counts from the moment the message is handed to the loaded engine: model loading and
// opening the database are start-up costs, not part of a turn.
#include "app/cli/cli_args.h"
#include "app/cli/cli_commands.h"
#include "engine/core/thread_pool.h"
#include "engine/runtime/chat_engine.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>

namespace kvchat::cli {

using namespace kvchat::engine;
using nlohmann::json;

namespace {

const std::set<std::string> kEngineOptions = {"-m", "--db", "--backend", "--threads", "--device-mb", "--host-mb", "--disk-mb",
                                              "--ctx", "--template", "-n", "--temp", "--seed", "--top-k", "--top-p",
                                              "--min-p", "--repeat-penalty"};

std::unique_ptr<ChatEngine> openEngine(const Args &args, bool useCache)
{
    ChatEngineOptions options;
    options.threads = args.intValue("--threads", ThreadPool::defaultThreadCount(), 1, 1024);
    options.backend = backendPreference(args);
    options.useCache = useCache;
    options.contextLimit = args.intValue("--ctx", 0, 0, 1 << 24);
    options.templateName = args.value("--template").value_or("");
    const std::string db = args.required("--db", "FILE");
    if (args.has("--device-mb") || args.has("--host-mb") || args.has("--disk-mb")) {
        KvBudgets budgets = KvBudgets::machineDefaults(db);
        const auto mb = [&](const char *name, std::size_t fallback) {
            return args.has(name) ? static_cast<std::size_t>(args.intValue(name, 0, 0, 1 << 24)) << 20 : fallback;
        };
        budgets.deviceBytes = mb("--device-mb", budgets.deviceBytes);
        budgets.hostBytes = mb("--host-mb", budgets.hostBytes);
        budgets.diskBytes = mb("--disk-mb", budgets.diskBytes);
        options.budgets = budgets;
    }
    auto engine = ChatEngine::create(args.required("-m", "MODEL.gguf"), db, options);
    if (!engine)
        throw CommandError{engine.error().message};
    if (!(*engine)->backendNotice().empty())
        std::cerr << "kvchat-cli: " << (*engine)->backendNotice() << "\n";
    if (!(*engine)->contextNotice().empty())
        std::cerr << "kvchat-cli: " << (*engine)->contextNotice() << "\n";
    return std::move(engine).value();
}

SamplingParams samplingFrom(const Args &args)
{
    SamplingParams s;
    s.temperature = static_cast<float>(args.doubleValue("--temp", 0.8));
    s.topK = args.intValue("--top-k", 40, 0, 1 << 24);
    s.topP = static_cast<float>(args.doubleValue("--top-p", 0.95));
    s.minP = static_cast<float>(args.doubleValue("--min-p", 0.05));
    s.repeatPenalty = static_cast<float>(args.doubleValue("--repeat-penalty", 1.0));
    s.seed = args.uint64Value("--seed", std::random_device{}());
    return s;
}

json metricsJson(const TurnRecord &r)
{
    const double restore = r.restoreDeviceMs + r.restoreHostMs + r.restoreDiskMs;
    return json{
        {"ttft_ms", r.ttftMs},
        {"queue_ms", r.queueMs},
        {"prepare_ms", r.prepareMs},
        {"restore_ms", restore},
        {"restore_device_ms", r.restoreDeviceMs},
        {"restore_host_ms", r.restoreHostMs},
        {"restore_disk_ms", r.restoreDiskMs},
        {"prefill_ms", r.prefillMs},
        {"first_decode_ms", r.firstDecodeMs},
        {"prompt_tokens", r.promptTokens},
        {"reused_device", r.reusedDevice},
        {"reused_host", r.reusedHost},
        {"reused_disk", r.reusedDisk},
        {"recomputed", r.recomputed},
        {"decode_tokens", r.decodeTokens},
        {"decode_ms", r.decodeMs},
        {"stop_reason", r.stopReason},
    };
}

json tierJson(const KvTierStats &t)
{
    return json{{"used_bytes", t.usedBytes}, {"budget_bytes", t.budgetBytes}, {"blocks", t.blocks}};
}

json cacheJson(const KvCacheStats &s)
{
    json j{{"device", tierJson(s.device)},
           {"host", tierJson(s.host)},
           {"disk", tierJson(s.disk)},
           {"shared_blocks", s.sharedBlocks},
           {"disk_enabled", s.diskEnabled}};
    if (!s.diskEnabled)
        j["disk_disabled_reason"] = s.diskDisabledReason;
    if (!s.diskWritesStoppedReason.empty())
        j["disk_writes_stopped_reason"] = s.diskWritesStoppedReason;
    return j;
}

std::string dump(const json &j)
{
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace

int runChat(int argc, char **argv)
{
    OptionSpec spec{kEngineOptions, {"--json", "--no-cache"}};
    spec.withValue.insert({"--session", "--system", "--message"});
    const Args args = Args::parse(argc, argv, 2, spec);
    if (!args.positionals().empty())
        throw UsageError{"unexpected argument '" + args.positionals().front() + "'"};
    const bool asJson = args.has("--json");
    TurnRequest request;
    request.conversation = args.required("--session", "NAME");
    request.systemPrompt = args.value("--system");
    request.userText = args.required("--message", "TEXT");
    request.maxNewTokens = args.intValue("-n", 256, 1, 1 << 20);
    request.sampling = samplingFrom(args);
    auto engine = openEngine(args, !args.has("--no-cache"));
    if (!asJson) {
        request.onText = [](std::string_view text) {
            std::fwrite(text.data(), 1, text.size(), stdout);
            std::fflush(stdout);
            return true;
        };
    }
    request.submitted = Clock::now();
    auto result = engine->runTurn(request);
    if (!result)
        throw CommandError{result.error().message};
    if (!result->warning.empty())
        std::fprintf(stderr, "kvchat-cli chat: warning: %s\n", result->warning.c_str());
    if (asJson)
        std::cout << dump(json{{"reply", result->reply}, {"metrics", metricsJson(result->record)}}) << "\n";
    else
        std::fputc('\n', stdout);
    return 0;
}

int runReplay(int argc, char **argv)
{
    OptionSpec spec{kEngineOptions, {"--json", "--no-cache", "--check-invariants"}};
    const Args args = Args::parse(argc, argv, 2, spec);
    if (args.positionals().size() != 1)
        throw UsageError{"expects one SCRIPT.jsonl"};
    const std::string scriptPath = args.positionals().front();
    std::ifstream script(scriptPath);
    if (!script)
        throw CommandError{"cannot read " + scriptPath};
    const SamplingParams sampling = samplingFrom(args);
    const std::int32_t maxTokens = args.intValue("-n", 64, 1, 1 << 20);
    auto engine = openEngine(args, !args.has("--no-cache"));
    const bool checkInvariants = args.has("--check-invariants");

    std::string line;
    int lineNumber = 0;
    while (std::getline(script, line)) {
        ++lineNumber;
        if (line.find_first_not_of(" \t\r") == std::string::npos)
            continue;
        const json step = json::parse(line, nullptr, false);
        if (step.is_discarded() || !step.is_object())
            throw CommandError{scriptPath + ":" + std::to_string(lineNumber) + ": not a JSON object"};
        json out;
        if (step.contains("prefetch")) {
            const std::string name = step.value("prefetch", "");
            auto report = engine->prefetch(name);
            if (!report)
                throw CommandError{scriptPath + ":" + std::to_string(lineNumber) + ": " + report.error().message};
            out = {{"prefetch", name},
                   {"reused_device", report->nDevice},
                   {"restored_host", report->nHost},
                   {"restored_disk", report->nDisk},
                   {"restore_host_ms", report->host.count()},
                   {"restore_disk_ms", report->disk.count()}};
        } else {
            TurnRequest request;
            request.conversation = step.value("session", "");
            request.userText = step.value("message", "");
            if (step.contains("system"))
                request.systemPrompt = step.value("system", "");
            if (request.conversation.empty() || !step.contains("message"))
                throw CommandError{scriptPath + ":" + std::to_string(lineNumber) +
                                   ": a turn needs \"session\" and \"message\""};
            request.maxNewTokens = maxTokens;
            request.sampling = sampling;
            request.submitted = Clock::now();
            auto result = engine->runTurn(request);
            if (!result)
                throw CommandError{scriptPath + ":" + std::to_string(lineNumber) + ": " + result.error().message};
            out = {{"session", request.conversation}, {"reply", result->reply}, {"metrics", metricsJson(result->record)}};
            if (!result->warning.empty())
                out["warning"] = result->warning;
        }
        out["cache"] = cacheJson(engine->cacheStats());
        if (checkInvariants) {
            const std::string problem = engine->checkCacheInvariants();
            if (!problem.empty())
                throw CommandError{scriptPath + ":" + std::to_string(lineNumber) + ": cache invariant broken: " + problem};
        }
        std::cout << dump(out) << std::endl;
    }
    return 0;
}

} // namespace kvchat::cli
