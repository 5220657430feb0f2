// SPDX-License-Identifier: MIT
// Token sampling: greedy (temperature <= 0) or temperature with top-k, top-p and min-p filtering,
// plus a repetition penalty over the recent tokens; seeded and deterministic for a given seed.
#pragma once

#include "engine/model/tokenizer.h"

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace kvchat::engine {

struct SamplingParams
{
    float temperature = 0.8f;    // <= 0: greedy (argmax, lowest id on ties)
    std::int32_t topK = 40;      // <= 0: off
    float topP = 0.95f;          // >= 1: off
    float minP = 0.05f;          // <= 0: off; keeps tokens with p >= minP * p(best)
    float repeatPenalty = 1.0f;  // 1: off; > 1 discourages tokens seen in the last repeatLastN
    std::int32_t repeatLastN = 64;
    std::uint64_t seed = 0;
};

class Sampler
{
public:
    explicit Sampler(const SamplingParams &params);

    // Picks the next token from logits [nVocab]; history is every token so far (prompt included),
    // of which the last repeatLastN are penalised.
    TokenId sample(std::span<const float> logits, std::span<const TokenId> history);

private:
    struct Candidate
    {
        TokenId id;
        float logit;
        float p;
    };
    SamplingParams m_params;
    std::mt19937_64 m_rng;
    std::vector<Candidate> m_candidates; // reused between calls
};

// Index of the largest value; the lowest index on ties.
TokenId argmax(std::span<const float> logits);

} // namespace kvchat::engine
