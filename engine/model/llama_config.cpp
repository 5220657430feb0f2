// SPDX-License-Identifier: MIT
#include "engine/model/llama_config.h"

#include "engine/model/gguf_file.h"

namespace kvchat::engine {

namespace {

// Upper bounds that no real Llama-family model comes near; they keep a hostile file from asking
// for absurd buffers before the tensor shapes are checked.
constexpr std::uint64_t kMaxWidth = 1u << 16;
constexpr std::uint64_t kMaxLayers = 1024;
constexpr std::uint64_t kMaxContext = 1u << 24;

struct Reader
{
    const GgufFile &file;
    std::string prefix;
    Error error;
    bool failed = false;

    std::uint64_t uintKey(const std::string &suffix, std::optional<std::uint64_t> fallback, std::uint64_t max)
    {
        const std::string key = prefix + suffix;
        auto value = file.getUInt(key);
        if (!value) {
            fail(value.error().message);
            return 0;
        }
        if (!value->has_value()) {
            if (!fallback)
                fail(file.path() + ": required key " + key + " is missing");
            return fallback.value_or(0);
        }
        if (**value == 0 || **value > max)
            fail(file.path() + ": " + key + " = " + std::to_string(**value) + " is out of range (1.." +
                 std::to_string(max) + ")");
        return **value;
    }
    double floatKey(const std::string &suffix, double fallback)
    {
        auto value = file.getFloat(prefix + suffix);
        if (!value) {
            fail(value.error().message);
            return fallback;
        }
        return value->value_or(fallback);
    }
    void fail(std::string message)
    {
        if (!failed)
            error = makeError(std::move(message));
        failed = true;
    }
};

} // namespace

Result<LlamaConfig> LlamaConfig::fromGguf(const GgufFile &file)
{
    LlamaConfig config;
    auto arch = file.getString("general.architecture");
    if (!arch)
        return arch.error();
    if (!arch->has_value())
        return makeError(file.path() + ": general.architecture is missing");
    config.architecture = std::string(**arch);
    if (config.architecture != "llama")
        return makeError(file.path() + ": architecture '" + config.architecture + "' is not supported (supported: " +
                         kSupportedArchitectures + ")");
    if (auto name = file.getString("general.name"); name && name->has_value())
        config.name = std::string(**name);

    Reader r{file, "llama.", {}, false};
    if (auto experts = file.getUInt("llama.expert_count"); experts && experts->value_or(0) > 0)
        return makeError(file.path() + ": mixture-of-experts models (llama.expert_count = " +
                         std::to_string(**experts) + ") are not supported");
    config.nEmbd = static_cast<std::int32_t>(r.uintKey("embedding_length", std::nullopt, kMaxWidth));
    config.nLayers = static_cast<std::int32_t>(r.uintKey("block_count", std::nullopt, kMaxLayers));
    config.nFf = static_cast<std::int32_t>(r.uintKey("feed_forward_length", std::nullopt, kMaxWidth * 8));
    config.nHeads = static_cast<std::int32_t>(r.uintKey("attention.head_count", std::nullopt, kMaxWidth));
    config.nKvHeads = static_cast<std::int32_t>(
        r.uintKey("attention.head_count_kv", static_cast<std::uint64_t>(config.nHeads), kMaxWidth));
    config.nCtxTrain = static_cast<std::int32_t>(r.uintKey("context_length", 2048, kMaxContext));
    if (r.failed)
        return r.error;
    if (config.nEmbd % config.nHeads != 0)
        return makeError(file.path() + ": embedding_length " + std::to_string(config.nEmbd) +
                         " is not a multiple of head_count " + std::to_string(config.nHeads));
    if (config.nHeads % config.nKvHeads != 0)
        return makeError(file.path() + ": head_count " + std::to_string(config.nHeads) +
                         " is not a multiple of head_count_kv " + std::to_string(config.nKvHeads));
    config.headDim = config.nEmbd / config.nHeads;
    config.nRot = static_cast<std::int32_t>(
        r.uintKey("rope.dimension_count", static_cast<std::uint64_t>(config.headDim), kMaxWidth));
    if (r.failed)
        return r.error;
    if (config.nRot > config.headDim || config.nRot % 2 != 0)
        return makeError(file.path() + ": rope.dimension_count " + std::to_string(config.nRot) +
                         " must be even and at most the head size " + std::to_string(config.headDim));

    config.rmsEps = static_cast<float>(r.floatKey("attention.layer_norm_rms_epsilon", 1e-5));
    config.ropeFreqBase = static_cast<float>(r.floatKey("rope.freq_base", 10000.0));
    // Linear RoPE scaling: newer files say rope.scaling.type = linear with rope.scaling.factor,
    // older ones rope.scale_linear. Other scaling types (yarn) change the attention itself.
    auto scalingType = file.getString("llama.rope.scaling.type");
    if (!scalingType)
        return scalingType.error();
    double factor = 1.0;
    if (scalingType->has_value() && **scalingType != "none") {
        if (**scalingType != "linear")
            return makeError(file.path() + ": RoPE scaling '" + std::string(**scalingType) +
                             "' is not supported (supported: none, linear)");
        factor = r.floatKey("rope.scaling.factor", 1.0);
    } else {
        factor = r.floatKey("rope.scale_linear", 1.0);
    }
    if (r.failed)
        return r.error;
    if (!(factor > 0.0) || !(config.rmsEps > 0.0f) || !(config.ropeFreqBase > 0.0f))
        return makeError(file.path() + ": RoPE base, RoPE scaling factor and RMSNorm epsilon must be positive");
    config.ropeFreqScale = static_cast<float>(1.0 / factor);

    // The vocabulary size: llama.vocab_size when present, else the token list's length.
    auto vocab = file.getUInt("llama.vocab_size");
    if (!vocab)
        return vocab.error();
    if (vocab->has_value()) {
        config.nVocab = static_cast<std::int32_t>(std::min<std::uint64_t>(**vocab, 1u << 24));
    } else if (const GgufKv *tokens = file.find("tokenizer.ggml.tokens")) {
        config.nVocab = static_cast<std::int32_t>(std::min<std::uint64_t>(tokens->count, 1u << 24));
    }
    return config;
}

} // namespace kvchat::engine
