// SPDX-License-Identifier: MIT
// y = x · Wᵀ for a weight matrix of any supported type, over a batch of tokens.
// Rows of W are dequantized a chunk at a time into per-thread scratch and reused for every token
// of the batch, so prefill reads each weight once per chunk rather than once per token. Each output
// is one cpu::dot of a dequantized row with a token's activations, independent of the batch size.
#pragma once

#include "engine/core/thread_pool.h"
#include "engine/model/llama_model.h"

#include <vector>

namespace kvchat::engine::cpu {

class MatmulScratch
{
public:
    // Per-thread row buffers, sized on first use and kept (no allocation in the token loop).
    float *rows(int thread, std::size_t floats);

private:
    std::vector<std::vector<float>> m_perThread;
};

// x: [nTokens][w.nIn] row-major; y: [nTokens][w.nOut] row-major.
void matmul(ThreadPool &pool, MatmulScratch &scratch, const WeightMatrix &w, const float *x, std::int64_t nTokens,
            float *y);

} // namespace kvchat::engine::cpu
