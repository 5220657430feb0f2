// SPDX-License-Identifier: MIT
// The next-token candidates a backend hands the sampler: the k best (id, logit) pairs of the last
// position after the repetition penalty, best first. Sampling (sampler.h) needs nothing else once
// top-k has cut the vocabulary, so a GPU backend selects them on the device and copies back k
// pairs instead of the whole vocabulary's logits.
//
// Order: higher logit first, then lower id (the greedy choice is the lowest id among the best).
#pragma once

#include "engine/model/tokenizer.h"

#include <cstdint>
#include <span>
#include <vector>

namespace kvchat::engine {

struct TokenCandidate
{
    TokenId id;
    float logit;
};

struct CandidateRequest
{
    std::int32_t k = 1;             // how many; the vocabulary size or more: all of them, sorted
    float repeatPenalty = 1.0f;     // 1: none
    std::vector<TokenId> penalised; // distinct ids the penalty applies to
};

// llama.cpp's repetition penalty: positive logits are divided by it, negative ones multiplied.
inline float penalisedLogit(float logit, float penalty)
{
    return logit > 0.0f ? logit / penalty : logit * penalty;
}

// Index of the first largest value by operator> (so a NaN is passed over, unless it is at index 0).
TokenId argmax(std::span<const float> logits);

// The reference selection, on the host: applies the penalty to logits in place (they are scratch
// afterwards, as on the device), then writes the best min(k, logits.size()) candidates to out.
void selectCandidates(std::span<float> logits, const CandidateRequest &request, std::vector<TokenCandidate> &out);

} // namespace kvchat::engine
