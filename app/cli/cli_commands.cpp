// SPDX-License-Identifier: MIT
#include "app/cli/cli_commands.h"

#include "app/cli/cli_args.h"
#include "engine/backend/backend.h"
#include "engine/model/bpe_pretokenizer.h"
#include "engine/core/thread_pool.h"
#include "engine/model/llama_model.h"
#include "engine/model/prompt_tokens.h"
#include "engine/runtime/generator.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <map>

namespace kvchat::cli {

using namespace kvchat::engine;
using nlohmann::json;

namespace {

std::unique_ptr<LlamaModel> loadModel(const Args &args)
{
    const std::string path = args.required("-m", "MODEL.gguf");
    auto model = LlamaModel::load(path);
    if (!model)
        throw CommandError{model.error().message};
    return std::move(model).value();
}

// JSON output must never throw on a reply that ends inside a UTF-8 sequence.
std::string dumpJson(const json &j)
{
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace

int runGenerate(int argc, char **argv)
{
    const OptionSpec spec{{"-m", "-p", "-n", "--temp", "--seed", "--backend", "--threads", "--top-k", "--top-p", "--min-p",
                           "--repeat-penalty", "--ctx"},
                          {"--json"}};
    const Args args = Args::parse(argc, argv, 2, spec);
    if (!args.positionals().empty())
        throw UsageError{"unexpected argument '" + args.positionals().front() + "'"};
    const std::string prompt = args.required("-p", "PROMPT");
    const bool asJson = args.has("--json");

    const Clock::time_point loadStart = Clock::now();
    auto model = loadModel(args);
    const int threads = args.intValue("--threads", ThreadPool::defaultThreadCount(), 1, 1024);
    BackendChoice choice = chooseBackend(backendPreference(args), *model, threads);
    if (!choice.notice.empty())
        std::cerr << "kvchat-cli: " << choice.notice << "\n";
    std::unique_ptr<Backend> backend = std::move(choice.backend);
    const Millis loadTime = Clock::now() - loadStart;

    GenerationRequest request;
    request.submitted = Clock::now(); // TTFT counts from here: the prompt is handed to the engine
    request.newTokens = tokenizeRawPrompt(model->tokenizer(), prompt);
    if (request.newTokens.empty())
        throw CommandError{"the prompt is empty and the model has no BOS token to start from"};
    request.maxNewTokens = args.intValue("-n", 128, 1, 1 << 20);
    request.contextLimit = args.intValue("--ctx", model->config().nCtxTrain, 2, 1 << 24);
    request.sampling.temperature = static_cast<float>(args.doubleValue("--temp", 0.8));
    request.sampling.topK = args.intValue("--top-k", 40, 0, 1 << 24);
    request.sampling.topP = static_cast<float>(args.doubleValue("--top-p", 0.95));
    request.sampling.minP = static_cast<float>(args.doubleValue("--min-p", 0.05));
    request.sampling.repeatPenalty = static_cast<float>(args.doubleValue("--repeat-penalty", 1.0));
    request.sampling.seed = args.uint64Value("--seed", std::random_device{}());
    if (!asJson) {
        request.onText = [](std::string_view text) {
            std::fwrite(text.data(), 1, text.size(), stdout);
            std::fflush(stdout);
            return true;
        };
    }

    const KvLayout layout = backend->kvLayout();
    KvBlockPool pool(layout,
                     static_cast<std::uint32_t>((request.contextLimit + layout.blockTokens - 1) / layout.blockTokens),
                     backend->kvMemory());
    if (!pool.valid())
        throw CommandError{std::string("cannot reserve ") + pool.memory().name() + " memory for the KV cache"};
    KvSequence seq(pool);
    Generator generator(*model, *backend);
    auto result = generator.generate(request, seq);
    if (!result)
        throw CommandError{result.error().message};

    if (asJson) {
        const GenerationMetrics &m = result->metrics;
        json out = {
            {"text", result->text},
            {"tokens", result->tokens},
            {"prompt_tokens", m.nPromptTokens},
            {"prompt_ids", request.newTokens},
            {"ttft_ms", m.ttft.count()},
            {"prefill_ms", m.prefill.count()},
            {"prefill_tokens_per_s", m.prefillTokensPerSecond()},
            {"decode_tokens", m.nDecodeTokens},
            {"decode_ms", m.decode.count()},
            {"decode_tokens_per_s", m.decodeTokensPerSecond()},
            {"stop_reason", std::string(stopReasonName(result->stopReason))},
            {"threads", threads},
            {"backend", std::string(backend->name())},
            {"load_ms", loadTime.count()},
        };
        std::cout << dumpJson(out) << "\n";
    } else {
        std::fputc('\n', stdout);
    }
    return 0;
}

int runTokenize(int argc, char **argv)
{
    const Args args = Args::parse(argc, argv, 2, OptionSpec{{"-m"}, {"--json"}});
    if (args.positionals().size() != 1)
        throw UsageError{"expects exactly one TEXT argument"};
    auto model = loadModel(args);
    const std::vector<TokenId> ids = model->tokenizer().encode(args.positionals().front(), true);
    if (args.has("--json")) {
        std::cout << json(ids).dump() << "\n";
    } else {
        for (std::size_t i = 0; i < ids.size(); ++i)
            std::cout << (i ? " " : "") << ids[i];
        std::cout << "\n";
    }
    return 0;
}

int runInfo(int argc, char **argv)
{
    const Args args = Args::parse(argc, argv, 2, OptionSpec{{"-m"}, {}});
    if (!args.positionals().empty())
        throw UsageError{"unexpected argument '" + args.positionals().front() + "'"};
    auto model = loadModel(args);
    const LlamaConfig &c = model->config();
    const GgufFile &file = model->file();
    const Tokenizer &tok = model->tokenizer();

    std::map<std::string, int> typeCounts;
    std::uint64_t weightBytes = 0;
    for (const GgufTensorInfo &t : file.tensors()) {
        ++typeCounts[std::string(ggmlTypeName(t.type))];
        weightBytes += t.sizeBytes;
    }
    std::string types;
    for (const auto &[name, count] : typeCounts)
        types += (types.empty() ? "" : ", ") + name + " x" + std::to_string(count);
    auto meta = [&](const char *key) {
        auto v = file.getString(key);
        return v && v->has_value() ? std::string(**v) : std::string("-");
    };
    const ChatTemplate &tmpl = model->chatTemplate();
    auto tokenText = [&](std::optional<TokenId> id) {
        return id ? std::to_string(*id) + " " + std::string(tok.piece(*id)) : std::string("-");
    };

    std::printf("file:            %s (GGUF v%u, %.1f MiB)\n", file.path().c_str(), file.version(),
                static_cast<double>(file.fileBytes()) / (1 << 20));
    std::printf("name:            %s\n", c.name.empty() ? "-" : c.name.c_str());
    std::printf("architecture:    %s\n", c.architecture.c_str());
    std::printf("layers:          %d\n", c.nLayers);
    std::printf("embedding:       %d\n", c.nEmbd);
    std::printf("feed-forward:    %d\n", c.nFf);
    std::printf("heads:           %d (kv heads %d, head size %d, rope dims %d)\n", c.nHeads, c.nKvHeads, c.headDim,
                c.nRot);
    std::printf("rope:            base %g, linear scale %g%s\n", static_cast<double>(c.ropeFreqBase),
                static_cast<double>(1.0f / c.ropeFreqScale), model->ropeFreqFactors().empty() ? "" : ", freq factors");
    std::printf("rms norm eps:    %g\n", static_cast<double>(c.rmsEps));
    std::printf("context length:  %d\n", c.nCtxTrain);
    std::printf("embeddings:      %s\n", model->tiedEmbeddings() ? "tied (no output.weight)" : "separate output.weight");
    std::printf("tensors:         %zu (%s), %.1f MiB\n", file.tensors().size(), types.c_str(),
                static_cast<double>(weightBytes) / (1 << 20));
    std::string vocabulary = tok.kind() == VocabKind::Spm ? "llama (sentencepiece)" : "gpt2 (byte-level BPE)";
    vocabulary += ", " + std::to_string(tok.vocabSize()) + " tokens";
    if (tok.kind() == VocabKind::Bpe) {
        const std::string requested = meta("tokenizer.ggml.pre");
        const auto choice = BpePreTokenizer::resolve(requested == "-" ? "" : requested);
        vocabulary += ", pre-tokenizer " + choice.name;
        if (choice.isFallback)
            vocabulary += " (fallback: '" + requested + "' is not supported)";
    }
    std::printf("vocabulary:      %s\n", vocabulary.c_str());
    std::printf("special tokens:  bos %s, eos %s, eot %s, add bos %s\n", tokenText(tok.bos()).c_str(),
                tokenText(tok.eos()).c_str(), tokenText(tok.eot()).c_str(), tok.addBos() ? "yes" : "no");
    std::printf("chat template:   %s%s\n", std::string(tmpl.name()).c_str(),
                model->chatTemplateSource().empty()           ? " (the file has none)"
                : tmpl.style() == ChatStyle::Completion ? " (not recognised; plain completion)"
                                                          : "");
    return 0;
}

} // namespace kvchat::cli
