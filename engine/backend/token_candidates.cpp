// SPDX-License-Identifier: MIT
#include "engine/backend/token_candidates.h"

#include <algorithm>

namespace kvchat::engine {

TokenId argmax(std::span<const float> logits)
{
    TokenId best = 0;
    for (std::size_t i = 1; i < logits.size(); ++i)
        if (logits[i] > logits[static_cast<std::size_t>(best)])
            best = static_cast<TokenId>(i);
    return best;
}

void selectCandidates(std::span<float> logits, const CandidateRequest &request, std::vector<TokenCandidate> &out)
{
    if (request.repeatPenalty != 1.0f)
        for (TokenId id : request.penalised)
            if (id >= 0 && static_cast<std::size_t>(id) < logits.size())
                logits[static_cast<std::size_t>(id)] =
                    penalisedLogit(logits[static_cast<std::size_t>(id)], request.repeatPenalty);
    out.clear();
    if (logits.empty())
        return;
    const std::size_t k = std::min(static_cast<std::size_t>(std::max(request.k, 1)), logits.size());
    if (k == 1) { // greedy: one pass
        const TokenId best = argmax(logits);
        out.push_back({best, logits[static_cast<std::size_t>(best)]});
        return;
    }
    out.reserve(logits.size());
    for (std::size_t i = 0; i < logits.size(); ++i)
        out.push_back({static_cast<TokenId>(i), logits[i]});
    const auto better = [](const TokenCandidate &a, const TokenCandidate &b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    };
    std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(k), out.end(), better);
    out.resize(k);
}

} // namespace kvchat::engine
