// SPDX-License-Identifier: MIT
// Random-weight Llama models of any shape, written as GGUF with the test GgufWriter, together with
// the weights as the file stores them (decoded by the tests' own reference decoder), so that an
// independent reference can compute what the engine should output.
#pragma once

#include "engine/model/ggml_type.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kvchat::testing {

struct RandomModelSpec
{
    std::int32_t nEmbd = 64;
    std::int32_t nLayers = 2;
    std::int32_t nHeads = 4;
    std::int32_t nKvHeads = 2;
    std::int32_t nFf = 96;
    std::int32_t nVocab = 320; // >= 259: <unk>, <s>, </s>, 256 byte tokens, then normal pieces
    std::int32_t nCtx = 256;
    bool tiedEmbeddings = false;
    engine::GgmlType weightType = engine::GgmlType::F32; // matrices; norms stay F32
    // When set, attn_v, ffn_down and output are stored in this type instead, as Q4_K_M files keep
    // them in Q6_K next to Q4_K matrices.
    std::optional<engine::GgmlType> moreBitsType;
    float ropeFreqBase = 10000.0f;
    float ropeScaleLinear = 1.0f; // written as rope.scaling.type = linear when != 1
    float rmsEps = 1e-5f;
    std::uint64_t seed = 1;
    // Whether writeRandomModel also returns every tensor decoded (RandomModel::tensors). Benchmarks
    // writing billion-parameter models switch it off: the floats would need 4 bytes per weight.
    bool keepDecodedTensors = true;
};

struct RandomModel
{
    RandomModelSpec spec;
    // Every tensor as the file stores it, decoded to float by referenceDequantize; keyed by GGUF
    // name, row-major [ne1][ne0].
    std::map<std::string, std::vector<float>> tensors;
};

// Writes the model to path (a sentencepiece-style vocabulary of byte and filler pieces); returns
// the decoded weights, or throws std::runtime_error when the file cannot be written.
RandomModel writeRandomModel(const std::string &path, const RandomModelSpec &spec);

// n token ids uniform in [0, vocab), the same for the same seed.
std::vector<std::int32_t> randomTokens(std::size_t n, std::int32_t vocab, std::uint64_t seed);

} // namespace kvchat::testing
