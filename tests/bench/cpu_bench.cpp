// SPDX-License-Identifier: MIT
// kvchat-bench: raw CPU throughput of the engine, measured the way llama.cpp's llama-bench does, so
// the two can be compared on the same GGUF and thread count.
//
//   kvchat-bench -m MODEL.gguf [--threads K] [--repeats R] [--pp 128,512] [--tg 128]
//                [--tg-depth 0,1024] [--ttft 2000] [--seed S] [--json OUT.json]
//
// Tests (each repeated R times after one untimed warm-up; the median is reported):
//   pp N        prefill: one batched Backend::forward of N random in-vocabulary tokens on a fresh
//               KV sequence, logits of the last token only (llama-bench's "pp N").
//   tg N @ d    decode: N forwards of one token each, logits every time, on a sequence that already
//               holds d positions (llama-bench's "tg N" at d = 0; its -d option is newer than the
//               pinned llama.cpp). The d positions are prefilled untimed.
//   ttft N      time to first token, cold: one forward of an N-token prompt on a fresh sequence
//               plus the greedy choice of the first token from its logits, in milliseconds.
// The model load is not timed. Tokens come from a fixed seed, so every run feeds the same ids.
// Peak RSS is getrusage's ru_maxrss at the end (the model is mmapped: its touched pages count; the
// matrices repacked for the integer kernels count once, their mapped pages are given back). It is
// compared with the budget the issue sets: model file + KV of the longest test + 10%.
#include "tests/bench/bench_machine.h"
#include "engine/backend/backend.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/kv/kv_cache.h"
#include "engine/model/ggml_type.h"
#include "engine/model/gguf_file.h"
#include "engine/model/llama_model.h"

#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using kvchat::bench::firstLine;
using kvchat::bench::machineInfo;

namespace {

using namespace kvchat::engine;
using nlohmann::json;
namespace fs = std::filesystem;
using BenchClock = std::chrono::steady_clock;

struct Options
{
    std::string model;
    int threads = 2;
    int repeats = 3;
    std::vector<int> pp{128, 512};
    int tg = 128;
    std::vector<int> tgDepth{0};
    int ttft = 2000;
    std::uint32_t seed = 1234;
    std::string jsonPath;
};

std::vector<int> parseList(const std::string &s)
{
    std::vector<int> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ','))
        if (!item.empty())
            out.push_back(std::max(0, std::stoi(item)));
    return out;
}

double median(std::vector<double> v)
{
    if (v.empty())
        return 0.0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void check(Result<void> r, const std::string &what)
{
    if (!r)
        throw std::runtime_error(what + ": " + r.error().message);
}

class CpuBench
{
public:
    CpuBench(const Options &options, const LlamaModel &model)
        : m_options(options), m_model(model), m_backend(makeCpuBackend(model, options.threads)),
          m_rng(options.seed)
    {
        int maxCtx = 1;
        for (int n : options.pp)
            maxCtx = std::max(maxCtx, n);
        for (int d : options.tgDepth)
            maxCtx = std::max(maxCtx, d + options.tg);
        maxCtx = std::max(maxCtx, options.ttft);
        m_maxCtx = maxCtx;
        const KvLayout layout = m_backend->kvLayout();
        // Room for one sequence of the longest test, plus slack for a block boundary.
        m_pool = std::make_unique<KvBlockPool>(
            layout, static_cast<std::uint32_t>((maxCtx + layout.blockTokens - 1) / layout.blockTokens + 1));
    }

    std::vector<TokenId> randomTokens(int n)
    {
        std::uniform_int_distribution<TokenId> dist(0, static_cast<TokenId>(m_model.config().nVocab - 1));
        std::vector<TokenId> out(static_cast<std::size_t>(n));
        for (TokenId &t : out)
            t = dist(m_rng);
        return out;
    }

    // Seconds for one batched forward of n tokens on a fresh sequence.
    double prefillOnce(int n)
    {
        const std::vector<TokenId> tokens = randomTokens(n);
        KvSequence seq(*m_pool);
        const auto start = BenchClock::now();
        check(m_backend->forward(tokens, seq, LogitsMode::Last, m_logits), "prefill forward");
        return std::chrono::duration<double>(BenchClock::now() - start).count();
    }

    // Seconds for n single-token forwards on a sequence that already holds depth positions.
    double decodeOnce(int n, int depth)
    {
        KvSequence seq(*m_pool);
        if (depth > 0) {
            const std::vector<TokenId> ctx = randomTokens(depth);
            check(m_backend->forward(ctx, seq, LogitsMode::Last, m_logits), "depth prefill");
        }
        const std::vector<TokenId> tokens = randomTokens(n);
        const auto start = BenchClock::now();
        for (int i = 0; i < n; ++i)
            check(m_backend->forward(std::span<const TokenId>(&tokens[static_cast<std::size_t>(i)], 1), seq,
                                     LogitsMode::Last, m_logits),
                  "decode forward");
        return std::chrono::duration<double>(BenchClock::now() - start).count();
    }

    // Seconds from a cold n-token prompt to its first (greedy) token.
    double ttftOnce(int n)
    {
        const std::vector<TokenId> tokens = randomTokens(n);
        KvSequence seq(*m_pool);
        const auto start = BenchClock::now();
        check(m_backend->forward(tokens, seq, LogitsMode::Last, m_logits), "prompt forward");
        const auto first = std::max_element(m_logits.begin(), m_logits.end()) - m_logits.begin();
        const double seconds = std::chrono::duration<double>(BenchClock::now() - start).count();
        m_sink += static_cast<std::int64_t>(first);
        return seconds;
    }

    int maxContext() const { return m_maxCtx; }
    std::size_t int8Matrices() const
    {
        const auto *cpu = dynamic_cast<const cpu::CpuBackend *>(m_backend.get());
        return cpu != nullptr ? cpu->packedMatrixCount() : 0;
    }

    json testJson(const std::string &name, int nTokens, int depth, const std::vector<double> &seconds) const
    {
        std::vector<double> tps;
        for (double s : seconds)
            tps.push_back(nTokens / s);
        const auto [mn, mx] = std::minmax_element(tps.begin(), tps.end());
        return {{"test", name},           {"n_tokens", nTokens},   {"depth", depth},
                {"seconds", seconds},     {"tokens_per_s", tps},   {"median_tokens_per_s", median(tps)},
                {"min_tokens_per_s", *mn}, {"max_tokens_per_s", *mx}};
    }

    json run()
    {
        json tests = json::array();
        // Warm-up, untimed: touches the mmapped weights and the backend's scratch buffers.
        prefillOnce(std::min(32, std::max(1, m_options.pp.empty() ? 32 : m_options.pp.front())));
        decodeOnce(2, 0);
        for (int n : m_options.pp) {
            if (n <= 0)
                continue;
            prefillOnce(n); // warm-up at this size, as llama-bench does
            std::vector<double> seconds;
            for (int r = 0; r < m_options.repeats; ++r)
                seconds.push_back(prefillOnce(n));
            tests.push_back(testJson("pp" + std::to_string(n), n, 0, seconds));
            report(tests.back());
        }
        if (m_options.tg > 0) {
            for (int d : m_options.tgDepth) {
                decodeOnce(1, d); // warm-up
                std::vector<double> seconds;
                for (int r = 0; r < m_options.repeats; ++r)
                    seconds.push_back(decodeOnce(m_options.tg, d));
                const std::string name = "tg" + std::to_string(m_options.tg) + (d ? "@d" + std::to_string(d) : "");
                tests.push_back(testJson(name, m_options.tg, d, seconds));
                report(tests.back());
            }
        }
        if (m_options.ttft > 0) {
            ttftOnce(m_options.ttft); // warm-up
            std::vector<double> seconds;
            for (int r = 0; r < m_options.repeats; ++r)
                seconds.push_back(ttftOnce(m_options.ttft));
            json t = testJson("ttft" + std::to_string(m_options.ttft), m_options.ttft, 0, seconds);
            std::vector<double> ms;
            for (double sec : seconds)
                ms.push_back(sec * 1000.0);
            t["ttft_ms"] = ms;
            t["median_ttft_ms"] = median(ms);
            std::printf("%-12s %10.1f ms\n", t["test"].get<std::string>().c_str(), t["median_ttft_ms"].get<double>());
            tests.push_back(t);
        }
        return tests;
    }

private:
    static void report(const json &t)
    {
        std::printf("%-12s %10.2f t/s  (min %.2f, max %.2f)\n", t["test"].get<std::string>().c_str(),
                    t["median_tokens_per_s"].get<double>(), t["min_tokens_per_s"].get<double>(),
                    t["max_tokens_per_s"].get<double>());
        std::fflush(stdout);
    }

    const Options &m_options;
    const LlamaModel &m_model;
    std::unique_ptr<Backend> m_backend;
    std::unique_ptr<KvBlockPool> m_pool;
    std::mt19937 m_rng;
    std::vector<float> m_logits;
    int m_maxCtx = 1;
    std::int64_t m_sink = 0; // keeps the greedy choice from being optimized away
};

json modelInfo(const LlamaModel &model, const std::string &path)
{
    const LlamaConfig &c = model.config();
    std::map<std::string, int> typeCounts;
    std::uint64_t weightBytes = 0;
    for (const GgufTensorInfo &t : model.file().tensors()) {
        ++typeCounts[std::string(ggmlTypeName(t.type))];
        weightBytes += t.sizeBytes;
    }
    return {{"file", fs::path(path).filename().string()},
            {"bytes", fs::file_size(path)},
            {"weight_bytes", weightBytes},
            {"tensor_types", typeCounts},
            {"n_embd", c.nEmbd},
            {"n_layers", c.nLayers},
            {"n_heads", c.nHeads},
            {"n_kv_heads", c.nKvHeads},
            {"n_ff", c.nFf},
            {"n_vocab", c.nVocab}};
}

int usage()
{
    std::cerr << "usage: kvchat-bench -m MODEL.gguf [--threads K] [--repeats R] [--pp 128,512] [--tg 128]\n"
                 "                    [--tg-depth 0,1024] [--ttft 2000] [--seed S] [--json OUT.json]\n";
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
        else if (arg == "--pp")
            options.pp = parseList(value);
        else if (arg == "--tg")
            options.tg = std::max(0, std::atoi(value.c_str()));
        else if (arg == "--tg-depth")
            options.tgDepth = parseList(value);
        else if (arg == "--ttft")
            options.ttft = std::max(0, std::atoi(value.c_str()));
        else if (arg == "--seed")
            options.seed = static_cast<std::uint32_t>(std::stoul(value));
        else if (arg == "--json")
            options.jsonPath = value;
        else
            return usage();
    }
    if (options.model.empty() || argc % 2 == 0)
        return usage();
    try {
        json out = {{"benchmark", "kvchat-bench"},
                    {"date_utc", firstLine("date -u +%Y-%m-%dT%H:%M:%SZ")},
                    {"machine", machineInfo(options.threads)},
                    {"kvchat_commit",
                     firstLine("git -C '" KVCHAT_SOURCE_DIR "' describe --always --dirty --abbrev=7 2>/dev/null")},
                    {"repeats", options.repeats},
                    {"backend", "cpu"}};
        const auto loadStart = BenchClock::now();
        auto loaded = LlamaModel::load(options.model);
        if (!loaded)
            throw std::runtime_error("loading " + options.model + ": " + loaded.error().message);
        const std::unique_ptr<LlamaModel> model = std::move(loaded).value();
        out["load_ms"] = std::chrono::duration<double, std::milli>(BenchClock::now() - loadStart).count();
        out["model"] = modelInfo(*model, options.model);
        CpuBench bench(options, *model);
        out["int8_matrices"] = bench.int8Matrices();
        out["tests"] = bench.run();
        rusage usage{};
        getrusage(RUSAGE_SELF, &usage);
        const double mib = 1024.0 * 1024.0;
        const double peakRss = static_cast<double>(usage.ru_maxrss) / 1024.0; // ru_maxrss is in KiB on Linux
        const double kvMib = static_cast<double>(model->config().nLayers) * 2.0 * model->config().kvDim() *
                             sizeof(float) * bench.maxContext() / mib;
        const double fileMib = static_cast<double>(fs::file_size(options.model)) / mib;
        const double budget = (fileMib + kvMib) * 1.10;
        out["peak_rss_mib"] = peakRss;
        out["rss_budget"] = {{"model_file_mib", fileMib},
                             {"kv_mib_at_max_context", kvMib},
                             {"max_context", bench.maxContext()},
                             {"budget_mib", budget},
                             {"within_budget", peakRss <= budget}};
        out["machine"]["loadavg_at_end"] = firstLine("cat /proc/loadavg");
        std::printf("peak RSS     %10.1f MiB (budget: file %.1f + KV %.1f + 10%% = %.1f MiB)\n", peakRss, fileMib,
                    kvMib, budget);
        if (!options.jsonPath.empty()) {
            std::ofstream(options.jsonPath) << out.dump(2) << "\n";
            std::cout << "wrote " << options.jsonPath << "\n";
        }
    } catch (const std::exception &e) {
        std::cerr << "kvchat-bench: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
