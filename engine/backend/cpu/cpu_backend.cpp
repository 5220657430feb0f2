// SPDX-License-Identifier: MIT
#include "engine/backend/cpu/cpu_backend.h"

#include "engine/backend/cpu/cpu_gemm_attention.h"
#include "engine/backend/cpu/cpu_kernels.h"

#include <cmath>

namespace kvchat::engine {

std::unique_ptr<Backend> makeCpuBackend(const LlamaModel &model, int nThreads, std::int32_t kvBlockTokens)
{
    return std::make_unique<cpu::CpuBackend>(model, nThreads, kvBlockTokens);
}

namespace cpu {

namespace {
std::size_t sz(std::int64_t n)
{
    return static_cast<std::size_t>(n);
}
} // namespace

CpuBackend::CpuBackend(const LlamaModel &model, int nThreads, std::int32_t kvBlockTokens)
    : m_model(model), m_pool(nThreads)
{
    const LlamaConfig &c = model.config();
    m_kvLayout = KvLayout{c.nLayers, c.kvDim(), kvBlockTokens};
}

void CpuBackend::ensureScratch(std::int64_t n)
{
    const LlamaConfig &c = m_model.config();
    const std::int64_t qDim = static_cast<std::int64_t>(c.nHeads) * c.headDim;
    auto grow = [](std::vector<float> &v, std::int64_t size) {
        if (v.size() < sz(size))
            v.resize(sz(size));
    };
    grow(m_x, n * c.nEmbd);
    grow(m_xNorm, n * c.nEmbd);
    grow(m_q, n * qDim);
    grow(m_k, n * c.kvDim());
    grow(m_v, n * c.kvDim());
    grow(m_attnOut, n * qDim);
    grow(m_proj, n * c.nEmbd);
    grow(m_gate, n * c.nFf);
    grow(m_up, n * c.nFf);
    grow(m_ropeTable, n * c.nRot);
}

void CpuBackend::computeRopeTable(std::int32_t startPos, std::int64_t n)
{
    // Angles in double: theta_i = pos * freqScale * base^(-2i / nRot) / freqFactor_i.
    const LlamaConfig &c = m_model.config();
    const auto &factors = m_model.ropeFreqFactors();
    for (std::int64_t t = 0; t < n; ++t) {
        const double pos = static_cast<double>(startPos + t) * c.ropeFreqScale;
        float *row = m_ropeTable.data() + t * c.nRot;
        for (std::int32_t i = 0; i < c.nRot / 2; ++i) {
            double theta = pos * std::pow(static_cast<double>(c.ropeFreqBase), -2.0 * i / c.nRot);
            if (!factors.empty())
                theta /= factors[sz(i)];
            row[2 * i] = static_cast<float>(std::cos(theta));
            row[2 * i + 1] = static_cast<float>(std::sin(theta));
        }
    }
}

void CpuBackend::attention(std::int32_t layer, std::int32_t startPos, std::int64_t n, const KvSequence &seq)
{
    const LlamaConfig &c = m_model.config();
    const AttentionShape shape{c.nHeads, c.nKvHeads, c.headDim, 1.0f / std::sqrt(static_cast<float>(c.headDim))};
    if (m_scores.size() < sz(m_pool.size()))
        m_scores.resize(sz(m_pool.size()));

    // One work item per (head, token); each thread's items go to the tiled kernel in one call.
    m_pool.parallelFor(n * c.nHeads, [&](std::int64_t begin, std::int64_t end, int thread) {
        attendItems(shape, seq, layer, startPos, n, m_q.data(), m_attnOut.data(), begin, end, m_scores[sz(thread)]);
    });
}

Result<void> CpuBackend::forward(std::span<const TokenId> tokens, KvSequence &seq, LogitsMode mode,
                                 std::vector<float> &logits)
{
    const LlamaConfig &c = m_model.config();
    const std::int64_t n = static_cast<std::int64_t>(tokens.size());
    if (n == 0)
        return makeError("forward: no tokens to process");
    for (TokenId id : tokens)
        if (id < 0 || id >= c.nVocab)
            return makeError("forward: token id " + std::to_string(id) + " is outside the vocabulary (" +
                             std::to_string(c.nVocab) + ")");
    const std::int32_t startPos = seq.nTokens();
    if (!seq.reserve(startPos + static_cast<std::int32_t>(n)))
        return makeError("forward: the KV cache has no room for " + std::to_string(n) + " more tokens after " +
                         std::to_string(startPos));

    ensureScratch(n);
    computeRopeTable(startPos, n);
    const std::int64_t qDim = static_cast<std::int64_t>(c.nHeads) * c.headDim;
    const std::int64_t kvDim = c.kvDim();

    for (std::int64_t t = 0; t < n; ++t)
        dequantizeRow(m_model.tokenEmbedding().type, m_model.tokenEmbedding().row(tokens[sz(t)]),
                      m_x.data() + t * c.nEmbd, c.nEmbd);

    for (std::int32_t l = 0; l < c.nLayers; ++l) {
        const LlamaLayerWeights &w = m_model.layers()[sz(l)];
        for (std::int64_t t = 0; t < n; ++t)
            rmsNorm(m_xNorm.data() + t * c.nEmbd, m_x.data() + t * c.nEmbd, w.attnNorm.data(), c.nEmbd, c.rmsEps);
        matmul(m_pool, m_matmulScratch, w.wq, m_xNorm.data(), n, m_q.data());
        matmul(m_pool, m_matmulScratch, w.wk, m_xNorm.data(), n, m_k.data());
        matmul(m_pool, m_matmulScratch, w.wv, m_xNorm.data(), n, m_v.data());
        for (std::int64_t t = 0; t < n; ++t) {
            const float *cosSin = m_ropeTable.data() + t * c.nRot;
            rope(m_q.data() + t * qDim, c.nHeads, c.headDim, c.nRot, cosSin);
            rope(m_k.data() + t * kvDim, c.nKvHeads, c.headDim, c.nRot, cosSin);
            const std::int32_t pos = startPos + static_cast<std::int32_t>(t);
            std::copy_n(m_k.data() + t * kvDim, kvDim, seq.keyRow(l, pos));
            std::copy_n(m_v.data() + t * kvDim, kvDim, seq.valueRow(l, pos));
        }
        attention(l, startPos, n, seq);
        matmul(m_pool, m_matmulScratch, w.wo, m_attnOut.data(), n, m_proj.data());
        add(m_x.data(), m_proj.data(), n * c.nEmbd);

        for (std::int64_t t = 0; t < n; ++t)
            rmsNorm(m_xNorm.data() + t * c.nEmbd, m_x.data() + t * c.nEmbd, w.ffnNorm.data(), c.nEmbd, c.rmsEps);
        matmul(m_pool, m_matmulScratch, w.wGate, m_xNorm.data(), n, m_gate.data());
        matmul(m_pool, m_matmulScratch, w.wUp, m_xNorm.data(), n, m_up.data());
        siluMul(m_gate.data(), m_up.data(), n * c.nFf);
        matmul(m_pool, m_matmulScratch, w.wDown, m_gate.data(), n, m_proj.data());
        add(m_x.data(), m_proj.data(), n * c.nEmbd);
    }

    const std::int64_t first = mode == LogitsMode::All ? 0 : n - 1;
    const std::int64_t nOut = n - first;
    for (std::int64_t t = first; t < n; ++t)
        rmsNorm(m_xNorm.data() + (t - first) * c.nEmbd, m_x.data() + t * c.nEmbd, m_model.outputNorm().data(),
                c.nEmbd, c.rmsEps);
    logits.resize(sz(nOut * c.nVocab));
    matmul(m_pool, m_matmulScratch, m_model.output(), m_xNorm.data(), nOut, logits.data());
    seq.setTokenCount(startPos + static_cast<std::int32_t>(n));
    return {};
}

} // namespace cpu
} // namespace kvchat::engine
