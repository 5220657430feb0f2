// SPDX-License-Identifier: MIT
#include "tests/support/random_model.h"

#include "tests/support/gguf_writer.h"
#include "tests/support/quantize.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>

namespace kvchat::testing {

namespace {

std::vector<float> randomValues(std::mt19937_64 &rng, std::size_t n, float scale, float offset = 0.0f)
{
    std::uniform_real_distribution<float> dist(-scale, scale);
    std::vector<float> v(n);
    for (float &x : v)
        x = offset + dist(rng);
    return v;
}

} // namespace

RandomModel writeRandomModel(const std::string &path, const RandomModelSpec &spec)
{
    RandomModel model{spec, {}};
    GgufWriter w;
    w.addString("general.architecture", "llama");
    w.addString("general.name", "random-test-model");
    w.addUInt32("llama.context_length", static_cast<std::uint32_t>(spec.nCtx));
    w.addUInt32("llama.embedding_length", static_cast<std::uint32_t>(spec.nEmbd));
    w.addUInt32("llama.block_count", static_cast<std::uint32_t>(spec.nLayers));
    w.addUInt32("llama.feed_forward_length", static_cast<std::uint32_t>(spec.nFf));
    w.addUInt32("llama.attention.head_count", static_cast<std::uint32_t>(spec.nHeads));
    w.addUInt32("llama.attention.head_count_kv", static_cast<std::uint32_t>(spec.nKvHeads));
    w.addUInt32("llama.rope.dimension_count", static_cast<std::uint32_t>(spec.nEmbd / spec.nHeads));
    w.addFloat32("llama.rope.freq_base", spec.ropeFreqBase);
    if (spec.ropeScaleLinear != 1.0f) {
        w.addString("llama.rope.scaling.type", "linear");
        w.addFloat32("llama.rope.scaling.factor", spec.ropeScaleLinear);
    }
    w.addFloat32("llama.attention.layer_norm_rms_epsilon", spec.rmsEps);
    w.addUInt32("llama.vocab_size", static_cast<std::uint32_t>(spec.nVocab));

    // Vocabulary: <unk>, <s>, </s>, the 256 byte pieces, then filler pieces "▁w<i>".
    std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
    std::vector<std::int32_t> types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        pieces.emplace_back(name);
        types.push_back(6);
    }
    while (static_cast<std::int32_t>(pieces.size()) < spec.nVocab) {
        pieces.push_back("\xE2\x96\x81w" + std::to_string(pieces.size()));
        types.push_back(1);
    }
    std::vector<float> scores(pieces.size());
    for (std::size_t i = 0; i < scores.size(); ++i)
        scores[i] = -static_cast<float>(i);
    w.addString("tokenizer.ggml.model", "llama");
    w.addStringArray("tokenizer.ggml.tokens", pieces);
    w.addFloat32Array("tokenizer.ggml.scores", scores);
    w.addInt32Array("tokenizer.ggml.token_type", types);
    w.addUInt32("tokenizer.ggml.bos_token_id", 1);
    w.addUInt32("tokenizer.ggml.eos_token_id", 2);
    w.addUInt32("tokenizer.ggml.unknown_token_id", 0);
    w.addBool("tokenizer.ggml.add_bos_token", true);

    std::mt19937_64 rng(spec.seed);
    const std::int64_t headDim = spec.nEmbd / spec.nHeads;
    const std::int64_t kvDim = headDim * spec.nKvHeads;
    auto add = [&](const std::string &name, std::int64_t ne0, std::int64_t ne1, float scale, float offset,
                   engine::GgmlType type) {
        const std::vector<float> values = randomValues(rng, static_cast<std::size_t>(ne0 * ne1), scale, offset);
        std::vector<std::int64_t> ne = ne1 == 1 ? std::vector<std::int64_t>{ne0} : std::vector<std::int64_t>{ne0, ne1};
        w.addTensor(name, ne, type, values);
        if (!spec.keepDecodedTensors)
            return;
        // What the file holds, decoded independently of the engine.
        const std::vector<std::uint8_t> bytes = quantize(type, values.data(), ne0 * ne1);
        model.tensors[name] = referenceDequantize(type, bytes.data(), ne0 * ne1);
    };
    const engine::GgmlType wt = spec.weightType;
    const engine::GgmlType wMore = spec.moreBitsType.value_or(wt);
    // Scales of about 1/sqrt(fan-in) keep activations O(1) through the layers.
    const float sIn = 1.0f / std::sqrt(static_cast<float>(spec.nEmbd));
    const float sFf = 1.0f / std::sqrt(static_cast<float>(spec.nFf));
    add("token_embd.weight", spec.nEmbd, spec.nVocab, 1.0f, 0.0f, wt);
    for (std::int32_t l = 0; l < spec.nLayers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        add(p + "attn_norm.weight", spec.nEmbd, 1, 0.2f, 1.0f, engine::GgmlType::F32);
        add(p + "attn_q.weight", spec.nEmbd, spec.nEmbd, 2.0f * sIn, 0.0f, wt);
        add(p + "attn_k.weight", spec.nEmbd, kvDim, 2.0f * sIn, 0.0f, wt);
        add(p + "attn_v.weight", spec.nEmbd, kvDim, sIn, 0.0f, wMore);
        add(p + "attn_output.weight", spec.nEmbd, spec.nEmbd, sIn, 0.0f, wt);
        add(p + "ffn_norm.weight", spec.nEmbd, 1, 0.2f, 1.0f, engine::GgmlType::F32);
        add(p + "ffn_gate.weight", spec.nEmbd, spec.nFf, sIn, 0.0f, wt);
        add(p + "ffn_up.weight", spec.nEmbd, spec.nFf, sIn, 0.0f, wt);
        add(p + "ffn_down.weight", spec.nFf, spec.nEmbd, sFf, 0.0f, wMore);
    }
    add("output_norm.weight", spec.nEmbd, 1, 0.2f, 1.0f, engine::GgmlType::F32);
    if (!spec.tiedEmbeddings)
        add("output.weight", spec.nEmbd, spec.nVocab, sIn, 0.0f, wMore);
    if (!w.writeFile(path))
        throw std::runtime_error("cannot write random model to " + path);
    return model;
}

std::vector<std::int32_t> randomTokens(std::size_t n, std::int32_t vocab, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<std::int32_t> dist(0, vocab - 1);
    std::vector<std::int32_t> t(n);
    for (auto &id : t)
        id = dist(rng);
    return t;
}

} // namespace kvchat::testing
