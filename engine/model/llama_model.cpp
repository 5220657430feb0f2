// SPDX-License-Identifier: MIT
#include "engine/model/llama_model.h"

namespace kvchat::engine {

namespace {

std::string shapeText(const std::vector<std::int64_t> &ne)
{
    std::string s = "[";
    for (std::size_t i = 0; i < ne.size(); ++i)
        s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

class TensorBinder
{
public:
    explicit TensorBinder(const GgufFile &file) : m_file(file) {}

    Result<WeightMatrix> matrix(const std::string &name, std::int64_t nIn, std::int64_t nOut) const
    {
        const GgufTensorInfo *t = m_file.tensor(name);
        if (!t)
            return makeError(m_file.path() + ": tensor '" + name + "' is missing");
        if (t->ne.size() != 2 || t->ne[0] != nIn || t->ne[1] != nOut)
            return makeError(m_file.path() + ": tensor '" + name + "' has shape " + shapeText(t->ne) + ", expected [" +
                             std::to_string(nIn) + ", " + std::to_string(nOut) + "]");
        WeightMatrix m;
        m.type = t->type;
        m.nIn = nIn;
        m.nOut = nOut;
        m.rowBytes = *ggmlRowBytes(t->type, nIn); // the reader checked ne[0] against the block size
        m.data = t->data;
        return m;
    }

    // A vector tensor, dequantized to fp32 (norm weights are tiny and used every step).
    Result<std::vector<float>> vector(const std::string &name, std::int64_t n) const
    {
        const GgufTensorInfo *t = m_file.tensor(name);
        if (!t)
            return makeError(m_file.path() + ": tensor '" + name + "' is missing");
        if (t->nElements() != n || t->ne[0] != n)
            return makeError(m_file.path() + ": tensor '" + name + "' has shape " + shapeText(t->ne) + ", expected [" +
                             std::to_string(n) + "]");
        std::vector<float> v(static_cast<std::size_t>(n));
        dequantizeRow(t->type, t->data, v.data(), n);
        return v;
    }

    bool has(const std::string &name) const { return m_file.tensor(name) != nullptr; }

private:
    const GgufFile &m_file;
};

} // namespace

LlamaModel::LlamaModel(std::unique_ptr<GgufFile> file, LlamaConfig config, std::unique_ptr<Tokenizer> tokenizer)
    : m_file(std::move(file)), m_config(std::move(config)), m_tokenizer(std::move(tokenizer)),
      m_chatTemplate(ChatTemplate::detect({}))
{
}

Result<std::unique_ptr<LlamaModel>> LlamaModel::load(const std::string &path)
{
    auto file = GgufFile::open(path);
    if (!file)
        return file.error();
    auto config = LlamaConfig::fromGguf(**file);
    if (!config)
        return config.error();
    auto tokenizer = Tokenizer::fromGguf(**file);
    if (!tokenizer)
        return tokenizer.error();
    if (config->nVocab == 0)
        config->nVocab = (*tokenizer)->vocabSize();
    if (config->nVocab != (*tokenizer)->vocabSize())
        return makeError(path + ": llama.vocab_size " + std::to_string(config->nVocab) + " differs from the " +
                         std::to_string((*tokenizer)->vocabSize()) + " tokens of the vocabulary");

    std::unique_ptr<LlamaModel> model(
        new LlamaModel(std::move(file).value(), std::move(config).value(), std::move(tokenizer).value()));
    if (auto bound = model->bindTensors(); !bound)
        return bound.error();
    auto source = model->m_file->getString("tokenizer.chat_template");
    if (source && source->has_value())
        model->m_chatTemplateSource = std::string(**source);
    model->m_chatTemplate = ChatTemplate::detect(model->m_chatTemplateSource);
    return model;
}

Result<void> LlamaModel::bindTensors()
{
    const LlamaConfig &c = m_config;
    const TensorBinder bind(*m_file);
    const std::int64_t qDim = static_cast<std::int64_t>(c.nHeads) * c.headDim;

    auto embd = bind.matrix("token_embd.weight", c.nEmbd, c.nVocab);
    if (!embd)
        return embd.error();
    m_tokenEmbedding = *embd;
    if (bind.has("output.weight")) {
        auto out = bind.matrix("output.weight", c.nEmbd, c.nVocab);
        if (!out)
            return out.error();
        m_output = *out;
    } else {
        m_output = m_tokenEmbedding; // tied embeddings (SmolLM2, llama2.c models)
        m_tied = true;
    }
    auto outNorm = bind.vector("output_norm.weight", c.nEmbd);
    if (!outNorm)
        return outNorm.error();
    m_outputNorm = std::move(outNorm).value();

    if (bind.has("rope_freqs.weight")) {
        auto freqs = bind.vector("rope_freqs.weight", c.nRot / 2);
        if (!freqs)
            return freqs.error();
        m_ropeFreqFactors = std::move(freqs).value();
    }

    m_layers.resize(static_cast<std::size_t>(c.nLayers));
    for (std::int32_t i = 0; i < c.nLayers; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        LlamaLayerWeights &l = m_layers[static_cast<std::size_t>(i)];
        struct MatrixSpec
        {
            const char *name;
            std::int64_t nIn, nOut;
            WeightMatrix *slot;
        };
        const MatrixSpec specs[] = {
            {"attn_q.weight", c.nEmbd, qDim, &l.wq},      {"attn_k.weight", c.nEmbd, c.kvDim(), &l.wk},
            {"attn_v.weight", c.nEmbd, c.kvDim(), &l.wv}, {"attn_output.weight", qDim, c.nEmbd, &l.wo},
            {"ffn_gate.weight", c.nEmbd, c.nFf, &l.wGate}, {"ffn_up.weight", c.nEmbd, c.nFf, &l.wUp},
            {"ffn_down.weight", c.nFf, c.nEmbd, &l.wDown},
        };
        for (const MatrixSpec &spec : specs) {
            auto m = bind.matrix(p + spec.name, spec.nIn, spec.nOut);
            if (!m)
                return m.error();
            *spec.slot = *m;
        }
        auto attnNorm = bind.vector(p + "attn_norm.weight", c.nEmbd);
        if (!attnNorm)
            return attnNorm.error();
        l.attnNorm = std::move(attnNorm).value();
        auto ffnNorm = bind.vector(p + "ffn_norm.weight", c.nEmbd);
        if (!ffnNorm)
            return ffnNorm.error();
        l.ffnNorm = std::move(ffnNorm).value();
    }
    return {};
}

} // namespace kvchat::engine
