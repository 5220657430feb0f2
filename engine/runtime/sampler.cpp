// SPDX-License-Identifier: MIT
#include "engine/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace kvchat::engine {

TokenId argmax(std::span<const float> logits)
{
    TokenId best = 0;
    for (std::size_t i = 1; i < logits.size(); ++i)
        if (logits[i] > logits[static_cast<std::size_t>(best)])
            best = static_cast<TokenId>(i);
    return best;
}

Sampler::Sampler(const SamplingParams &params) : m_params(params), m_rng(params.seed) {}

TokenId Sampler::sample(std::span<const float> logits, std::span<const TokenId> history)
{
    const bool penalise = m_params.repeatPenalty != 1.0f && m_params.repeatLastN != 0;
    std::unordered_set<TokenId> recent;
    if (penalise) {
        const std::size_t window = m_params.repeatLastN < 0
                                       ? history.size()
                                       : std::min(history.size(), static_cast<std::size_t>(m_params.repeatLastN));
        recent.insert(history.end() - static_cast<std::ptrdiff_t>(window), history.end());
    }
    // The penalty as llama.cpp applies it: divide positive logits, multiply negative ones.
    auto penalised = [&](TokenId id, float logit) {
        if (!penalise || !recent.contains(id))
            return logit;
        return logit > 0 ? logit / m_params.repeatPenalty : logit * m_params.repeatPenalty;
    };

    if (m_params.temperature <= 0.0f) {
        TokenId best = 0;
        float bestLogit = penalised(0, logits[0]);
        for (std::size_t i = 1; i < logits.size(); ++i) {
            const float l = penalised(static_cast<TokenId>(i), logits[i]);
            if (l > bestLogit) {
                bestLogit = l;
                best = static_cast<TokenId>(i);
            }
        }
        return best;
    }

    m_candidates.clear();
    m_candidates.reserve(logits.size());
    for (std::size_t i = 0; i < logits.size(); ++i)
        m_candidates.push_back({static_cast<TokenId>(i), penalised(static_cast<TokenId>(i), logits[i]), 0.0f});
    auto byLogit = [](const Candidate &a, const Candidate &b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    };
    // Top-k first: it bounds the sort to k candidates.
    std::size_t keep = m_candidates.size();
    if (m_params.topK > 0 && static_cast<std::size_t>(m_params.topK) < keep) {
        keep = static_cast<std::size_t>(m_params.topK);
        std::partial_sort(m_candidates.begin(), m_candidates.begin() + static_cast<std::ptrdiff_t>(keep),
                          m_candidates.end(), byLogit);
    } else {
        std::sort(m_candidates.begin(), m_candidates.end(), byLogit);
    }
    m_candidates.resize(keep);

    // Softmax at the temperature, in double for stable sums over large vocabularies.
    const double maxLogit = m_candidates.front().logit;
    double sum = 0.0;
    for (auto &c : m_candidates) {
        c.p = static_cast<float>(std::exp((c.logit - maxLogit) / m_params.temperature));
        sum += c.p;
    }
    for (auto &c : m_candidates)
        c.p = static_cast<float>(c.p / sum);

    if (m_params.minP > 0.0f) {
        const float threshold = m_params.minP * m_candidates.front().p;
        std::size_t n = 1;
        while (n < m_candidates.size() && m_candidates[n].p >= threshold)
            ++n;
        m_candidates.resize(n);
    }
    if (m_params.topP < 1.0f) {
        double cumulative = 0.0;
        std::size_t n = 0;
        while (n < m_candidates.size()) {
            cumulative += m_candidates[n].p;
            ++n;
            if (cumulative >= m_params.topP)
                break;
        }
        m_candidates.resize(n);
    }

    double total = 0.0;
    for (const auto &c : m_candidates)
        total += c.p;
    // A uniform draw in [0, total): generate_canonical gives the same sequence on every platform
    // with libstdc++, unlike uniform_real_distribution whose algorithm is unspecified.
    const double r = std::generate_canonical<double, 53>(m_rng) * total;
    double acc = 0.0;
    for (const auto &c : m_candidates) {
        acc += c.p;
        if (r < acc)
            return c.id;
    }
    return m_candidates.back().id;
}

} // namespace kvchat::engine
