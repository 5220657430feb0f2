// SPDX-License-Identifier: MIT
// Token sampling: greedy (temperature <= 0) or temperature with top-k, top-p and min-p filtering,
// plus a repetition penalty over the recent tokens; seeded and deterministic for a given seed.
#pragma once

#include "engine/backend/token_candidates.h"
#include "engine/model/tokenizer.h"

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace kvchat::engine {

struct SamplingParams
{
    float temperature = 0.8f;   // <= 0: greedy (argmax, lowest id on ties)
    std::int32_t topK = 40;     // <= 0: off
    float topP = 0.95f;         // >= 1: off
    float minP = 0.05f;         // <= 0: off; keeps tokens with p >= minP * p(best)
    float repeatPenalty = 1.0f; // 1: off; > 1 discourages tokens seen in the last repeatLastN
    std::int32_t repeatLastN = 64;
    std::uint64_t seed = 0;
};

class Sampler
{
public:
    explicit Sampler(const SamplingParams &params);

    // Picks the next token from logits [nVocab]; history is every token so far (prompt included),
    // of which the last repeatLastN are penalised. The same as candidateRequest, selectCandidates
    // and sampleFromCandidates in turn.
    TokenId sample(std::span<const float> logits, std::span<const TokenId> history);

    // What the backend narrows the logits to for these params (token_candidates.h): the top-k
    // (1 when greedy, the whole vocabulary when top-k is off), with the penalty on the distinct
    // ids of history's last repeatLastN tokens.
    void candidateRequest(std::span<const TokenId> history, std::int32_t nVocab, CandidateRequest &out) const;
    // Picks the next token from candidates as candidateRequest asked for them, best first.
    TokenId sampleFromCandidates(std::span<const TokenCandidate> candidates);

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
    // sample()'s scratch, reused between calls.
    CandidateRequest m_request;
    std::vector<float> m_logits;
    std::vector<TokenCandidate> m_selected;
};


} // namespace kvchat::engine
