// SPDX-License-Identifier: MIT
// The reference CPU backend: the Llama forward pass over a batch of tokens with fp32 activations
// and KV. Q8_0/Q4_0/Q4_K matrices are repacked at load for the integer kernels of
// cpu_int8_matmul.h (activations quantized to int8 per block of 32, as llama.cpp does); the other
// types are read in place from the mapped file and multiplied in fp32. It is the oracle other
// backends are checked against, so every step is deterministic and independent of batch size.
#pragma once

#include "engine/backend/backend.h"
#include "engine/backend/cpu/cpu_int8_matmul.h"
#include "engine/backend/cpu/cpu_matmul.h"
#include "engine/core/thread_pool.h"
#include "engine/model/llama_model.h"

#include <unordered_map>

namespace kvchat::engine::cpu {

class CpuBackend final : public Backend
{
public:
    // useInt8: repack Q8_0/Q4_0/Q4_K matrices for the integer kernels (the default; off, every
    // matrix goes through the fp32 kernels, for comparisons). The environment variable
    // KVCHAT_CPU_INT8=0 switches it off for the whole process.
    CpuBackend(const LlamaModel &model, int nThreads, std::int32_t kvBlockTokens, bool useInt8 = true);

    std::string_view name() const override { return "cpu"; }
    KvLayout kvLayout() const override { return m_kvLayout; }
    int threads() const { return m_pool.size(); }
    std::string describe() const override;
    // Matrices that take the integer path.
    std::size_t packedMatrixCount() const { return m_packed.size(); }

    Result<void> forward(std::span<const TokenId> tokens, KvSequence &seq, LogitsMode mode,
                         std::vector<float> &logits) override;

private:
    // The most tokens one pass through the layers takes; longer inputs are split.
    static constexpr std::int64_t kMaxMicroBatch = 256;

    // One micro-batch at positions startPos.., after forward() checked the input and reserved the
    // KV room. logits: where the wanted rows go (all tokens' or the last one's), or nullptr.
    void forwardMicroBatch(std::span<const TokenId> tokens, KvSequence &seq, std::int32_t startPos, LogitsMode mode,
                           float *logits);
    // Repacks what the integer kernels take (when useInt8) and maps the rest now.
    void prepareWeights(bool useInt8);
    // y = x · Wᵀ, through the integer kernels when w was packed. Matrices that share one input
    // pass the same `quantized` flag, so x is quantized once for all of them.
    void project(const WeightMatrix &w, const float *x, std::int64_t nTokens, float *y, bool &quantized);
    void ensureScratch(std::int64_t nTokens);
    void attention(std::int32_t layer, std::int32_t startPos, std::int64_t nTokens, const KvSequence &seq);

    const LlamaModel &m_model;
    ThreadPool m_pool;
    MatmulScratch m_matmulScratch;
    std::unordered_map<const std::byte *, PackedMatrix> m_packed; // by WeightMatrix::data
    QuantizedActivations m_quantizedInput;
    KvLayout m_kvLayout;

    // Activations, [nTokens][width] row-major; grown on demand, never shrunk. Steps whose
    // buffers are dead by then reuse them (the accessors below): for a small model the scratch is
    // a large share of the memory beyond weights and KV.
    std::vector<float> m_x;     // residual stream [n][nEmbd]
    std::vector<float> m_xNorm; // [n][max(nEmbd, qDim)]
    std::vector<float> m_q;     // [n][max(qDim, nEmbd)]
    std::vector<float> m_k;     // [n][kvDim]
    std::vector<float> m_v;     // [n][kvDim]
    std::vector<float> m_gate;  // [n][nFf]
    std::vector<float> m_up;    // [n][max(nFf, nEmbd)]
    // The attention output [n][qDim]: the normed input is dead once Q, K and V are projected.
    float *attnOut() { return m_xNorm.data(); }
    // The Wo projection [n][nEmbd]: Q is dead once attention has read it.
    float *attnProjection() { return m_q.data(); }
    // The down projection [n][nEmbd]: "up" is dead once SwiGLU has folded it into "gate".
    float *ffnProjection() { return m_up.data(); }
    std::vector<float> m_ropeTable; // [n][nRot/2][cos, sin]
    std::vector<std::vector<float>> m_scores; // per thread: attention scores over the context
};

} // namespace kvchat::engine::cpu
