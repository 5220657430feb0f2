// SPDX-License-Identifier: MIT
// A loaded Llama-family model: the mapped GGUF file, its hyperparameters, tokenizer, chat template
// and views of its weight tensors. Weights stay memory-mapped in their file type; backends read
// them in place (the CPU backend) or upload them (a GPU backend).
//
// Thread-safety: immutable after load(); may be shared by reference across threads.
#pragma once

#include "engine/core/result.h"
#include "engine/model/chat_template.h"
#include "engine/model/ggml_type.h"
#include "engine/model/gguf_file.h"
#include "engine/model/llama_config.h"
#include "engine/model/tokenizer.h"

#include <array>
#include <memory>
#include <string>
#include <vector>

namespace kvchat::engine {

// A 2-D weight matrix in ggml orientation: nOut rows of nIn elements, each row rowBytes long.
struct WeightMatrix
{
    GgmlType type = GgmlType::F32;
    std::int64_t nIn = 0;
    std::int64_t nOut = 0;
    std::size_t rowBytes = 0;
    const std::byte *data = nullptr;

    const std::byte *row(std::int64_t r) const { return data + static_cast<std::size_t>(r) * rowBytes; }
};

struct LlamaLayerWeights
{
    std::vector<float> attnNorm; // [nEmbd]
    WeightMatrix wq;             // [nHeads * headDim] x [nEmbd]
    WeightMatrix wk;             // [kvDim] x [nEmbd]
    WeightMatrix wv;             // [kvDim] x [nEmbd]
    WeightMatrix wo;             // [nEmbd] x [nEmbd]
    std::vector<float> ffnNorm;  // [nEmbd]
    WeightMatrix wGate;          // [nFf] x [nEmbd]
    WeightMatrix wUp;            // [nFf] x [nEmbd]
    WeightMatrix wDown;          // [nEmbd] x [nFf]

    // The seven projection matrices, in the order above.
    std::array<const WeightMatrix *, 7> matrices() const { return {&wq, &wk, &wv, &wo, &wGate, &wUp, &wDown}; }
};

class LlamaModel
{
public:
    // Opens, validates and maps a GGUF model; errors name the file and what is wrong or missing.
    static Result<std::unique_ptr<LlamaModel>> load(const std::string &path);

    const GgufFile &file() const { return *m_file; }
    const LlamaConfig &config() const { return m_config; }
    const Tokenizer &tokenizer() const { return *m_tokenizer; }
    // The template recognised from tokenizer.chat_template (Completion when there is none).
    const ChatTemplate &chatTemplate() const { return m_chatTemplate; }
    const std::string &chatTemplateSource() const { return m_chatTemplateSource; }

    const WeightMatrix &tokenEmbedding() const { return m_tokenEmbedding; } // [nVocab] x [nEmbd]
    const WeightMatrix &output() const { return m_output; } // classifier; the embedding when tied
    bool tiedEmbeddings() const { return m_tied; }
    const std::vector<float> &outputNorm() const { return m_outputNorm; }
    const std::vector<LlamaLayerWeights> &layers() const { return m_layers; }
    // Per-frequency RoPE divisors (rope_freqs.weight, Llama 3.1 style), empty when absent.
    const std::vector<float> &ropeFreqFactors() const { return m_ropeFreqFactors; }

private:
    LlamaModel(std::unique_ptr<GgufFile> file, LlamaConfig config, std::unique_ptr<Tokenizer> tokenizer);
    Result<void> bindTensors();

    std::unique_ptr<GgufFile> m_file;
    LlamaConfig m_config;
    std::unique_ptr<Tokenizer> m_tokenizer;
    ChatTemplate m_chatTemplate;
    std::string m_chatTemplateSource;
    WeightMatrix m_tokenEmbedding;
    WeightMatrix m_output;
    bool m_tied = false;
    std::vector<float> m_outputNorm;
    std::vector<LlamaLayerWeights> m_layers;
    std::vector<float> m_ropeFreqFactors;
};

} // namespace kvchat::engine
