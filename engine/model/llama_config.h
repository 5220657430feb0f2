// SPDX-License-Identifier: MIT
// Hyperparameters of a Llama-family model, read from GGUF metadata ("llama" architecture: Llama 2/3,
// TinyLlama, Mistral without sliding window, SmolLM/SmolLM2).
#pragma once

#include "engine/core/result.h"

#include <cstdint>
#include <string>

namespace kvchat::engine {

class GgufFile;

struct LlamaConfig
{
    std::string architecture;   // "llama"
    std::string name;           // general.name, for display
    std::int32_t nEmbd = 0;     // model width (dim)
    std::int32_t nLayers = 0;
    std::int32_t nHeads = 0;
    std::int32_t nKvHeads = 0;  // < nHeads: grouped-query attention
    std::int32_t headDim = 0;   // nEmbd / nHeads
    std::int32_t nRot = 0;      // dimensions rotated by RoPE (<= headDim)
    std::int32_t nFf = 0;       // feed-forward hidden size
    std::int32_t nVocab = 0;
    std::int32_t nCtxTrain = 0; // context length the model was trained for
    float rmsEps = 1e-5f;
    float ropeFreqBase = 10000.0f;
    float ropeFreqScale = 1.0f; // linear scaling: positions are multiplied by this (1 / factor)

    std::int32_t kvDim() const { return nKvHeads * headDim; }
    std::int32_t gqaGroup() const { return nHeads / nKvHeads; }

    // Reads and validates the hyperparameters; errors name the file and the key.
    static Result<LlamaConfig> fromGguf(const GgufFile &file);
};

// Architectures this engine runs, for error messages.
inline constexpr const char *kSupportedArchitectures =
    "llama (Llama 2, Llama 3, TinyLlama, Mistral without sliding window, SmolLM, SmolLM2)";

} // namespace kvchat::engine
