// SPDX-License-Identifier: MIT
// The reference CPU backend: the Llama forward pass over a batch of tokens with fp32 activations
// and KV, weights read in place from the mapped file. It is the oracle other backends are checked
// against, so every step is deterministic and independent of batch size.
#pragma once

#include "engine/backend/backend.h"
#include "engine/backend/cpu/cpu_matmul.h"
#include "engine/core/thread_pool.h"
#include "engine/model/llama_model.h"

namespace kvchat::engine::cpu {

class CpuBackend final : public Backend
{
public:
    CpuBackend(const LlamaModel &model, int nThreads, std::int32_t kvBlockTokens);

    std::string_view name() const override { return "cpu"; }
    KvLayout kvLayout() const override { return m_kvLayout; }
    int threads() const { return m_pool.size(); }

    Result<void> forward(std::span<const TokenId> tokens, KvSequence &seq, LogitsMode mode,
                         std::vector<float> &logits) override;

private:
    void ensureScratch(std::int64_t nTokens);
    void computeRopeTable(std::int32_t startPos, std::int64_t nTokens);
    void attention(std::int32_t layer, std::int32_t startPos, std::int64_t nTokens, const KvSequence &seq);

    const LlamaModel &m_model;
    ThreadPool m_pool;
    MatmulScratch m_matmulScratch;
    KvLayout m_kvLayout;

    // Activations, [nTokens][width] row-major; grown on demand, never shrunk.
    std::vector<float> m_x;      // residual stream [n][nEmbd]
    std::vector<float> m_xNorm;  // [n][nEmbd]
    std::vector<float> m_q;      // [n][nHeads * headDim]
    std::vector<float> m_k;      // [n][kvDim]
    std::vector<float> m_v;      // [n][kvDim]
    std::vector<float> m_attnOut; // [n][nHeads * headDim]
    std::vector<float> m_proj;   // [n][nEmbd]
    std::vector<float> m_gate;   // [n][nFf]
    std::vector<float> m_up;     // [n][nFf]
    std::vector<float> m_ropeTable; // [n][nRot/2][cos, sin]
    std::vector<std::vector<float>> m_scores; // per thread: attention scores over the context
};

} // namespace kvchat::engine::cpu
