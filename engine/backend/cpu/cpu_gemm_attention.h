// SPDX-License-Identifier: MIT
// Kernel file owned by the CPU-backend performance owner (STYLE.md §5 exception).
//
// Causal attention over the KV cache for a range of (token, head) work items. Each output is
// computed by a fixed order of operations that does not depend on the batch size, on which items
// one call gets, or on the thread count:
//   score_p = dot(q, k_p) * scale        dot: the canonical arithmetic of cpu_gemm_tile.h
//   prob    = softmax(score_0..score_last)   cpu::softmax, last = startPos + t
//   out_i   = 0, then out_i = fma(prob_p, v_p[i], out_i) for p = 0..last in order
// The AVX2 build computes up to 3 queries that share a KV head together (heads of a GQA group,
// or consecutive tokens of one head) so that each key and value row loaded serves all of them;
// the portable build loops over items one at a time.
#pragma once

#include "engine/kv/kv_cache.h"

#include <cstdint>
#include <vector>

namespace kvchat::engine::cpu {

struct AttentionShape
{
    std::int32_t nHeads = 0;
    std::int32_t nKvHeads = 0;
    std::int32_t headDim = 0;
    float scale = 1.0f; // applied to each dot product
};

// Items [itemBegin, itemEnd) of the nHeads * nTokens items of a batch, item = h * nTokens + t
// (head-major, so that an even split of items between threads is also a near-even split of the
// causal work, and each call gets whole GQA groups or runs of tokens to tile). Token t is at position
// startPos + t, and its K/V rows are already in seq. q and out: [nTokens][nHeads * headDim].
// scratch: the calling thread's own buffer, grown as needed. Thread-safe for disjoint item ranges.
void attendItems(const AttentionShape &shape, const KvSequence &seq, std::int32_t layer, std::int32_t startPos,
                 std::int64_t nTokens, const float *q, float *out, std::int64_t itemBegin, std::int64_t itemEnd,
                 std::vector<float> &scratch);

} // namespace kvchat::engine::cpu
