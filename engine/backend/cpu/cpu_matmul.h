// SPDX-License-Identifier: MIT
// y = x · Wᵀ for a weight matrix of any supported type, over a batch of tokens.
// Prefill: rows of W are dequantized a panel at a time into per-thread scratch (F32 rows are read
// in place) and every token of the batch passes over the panel in register tiles of 4 rows x 3
// tokens (cpu_gemm_tile.h). Decode (up to 3 tokens): each block is dequantized into registers and
// multiplied in at once (cpu_gemm_fused.h). Both compute every output with the same fp32
// arithmetic, described in cpu_gemm_tile.h, so results do not depend on the batch size, the tiling
// or the thread count. The portable build uses cpu::dot per output.
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
