// SPDX-License-Identifier: MIT
#include "engine/runtime/sampler.h"

#include <algorithm>
#include <cmath>

namespace kvchat::engine {

Sampler::Sampler(const SamplingParams &params) : m_params(params), m_rng(params.seed) {}

TokenId Sampler::sample(std::span<const float> logits, std::span<const TokenId> history)
{
    candidateRequest(history, static_cast<std::int32_t>(logits.size()), m_request);
    m_logits.assign(logits.begin(), logits.end());
    selectCandidates(m_logits, m_request, m_selected);
    return sampleFromCandidates(m_selected);
}

void Sampler::candidateRequest(std::span<const TokenId> history, std::int32_t nVocab, CandidateRequest &out) const
{
    if (m_params.temperature <= 0.0f)
        out.k = 1;
    else if (m_params.topK > 0)
        out.k = std::min(m_params.topK, nVocab);
    else
        out.k = nVocab;
    out.repeatPenalty = m_params.repeatPenalty;
    out.penalised.clear();
    if (m_params.repeatPenalty == 1.0f || m_params.repeatLastN == 0)
        return;
    const std::size_t window = m_params.repeatLastN < 0
                                   ? history.size()
                                   : std::min(history.size(), static_cast<std::size_t>(m_params.repeatLastN));
    out.penalised.assign(history.end() - static_cast<std::ptrdiff_t>(window), history.end());
    std::sort(out.penalised.begin(), out.penalised.end());
    out.penalised.erase(std::unique(out.penalised.begin(), out.penalised.end()), out.penalised.end());
}

TokenId Sampler::sampleFromCandidates(std::span<const TokenCandidate> candidates)
{
    if (candidates.empty())
        return 0;
    if (m_params.temperature <= 0.0f)
        return candidates.front().id;

    // Candidates arrive best first and already cut to top-k.
    m_candidates.clear();
    for (const TokenCandidate &c : candidates)
        m_candidates.push_back({c.id, c.logit, 0.0f});

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
