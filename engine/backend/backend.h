// SPDX-License-Identifier: MIT
// The compute backend interface, chosen once in app/ (CPU now; CUDA in its own library later). A
// backend is bound to one model and owns the scratch memory for its forward passes.
//
// Thread-safety: a backend is used by one thread at a time (the engine thread); it may run its own
// worker threads inside a call.
#pragma once

#include "engine/core/result.h"
#include "engine/kv/kv_cache.h"
#include "engine/model/tokenizer.h"

#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace kvchat::engine {

class LlamaModel;

enum class LogitsMode {
    Last, // logits of the last token only: [nVocab]
    All,  // logits of every token: [nTokens][nVocab]
};

class Backend
{
public:
    virtual ~Backend() = default;
    virtual std::string_view name() const = 0;

    // The KV layout this backend writes for its model.
    virtual KvLayout kvLayout() const = 0;

    // Runs the model over tokens at positions [seq.nTokens(), seq.nTokens() + tokens.size()),
    // processing them as one batch; appends their K/V to seq (reserving blocks as needed) and
    // writes logits as mode says (resizing the vector). On error seq is unchanged.
    virtual Result<void> forward(std::span<const TokenId> tokens, KvSequence &seq, LogitsMode mode,
                                 std::vector<float> &logits) = 0;
};

// The reference CPU backend. nThreads <= 0: one per hardware thread.
std::unique_ptr<Backend> makeCpuBackend(const LlamaModel &model, int nThreads, std::int32_t kvBlockTokens = 16);

} // namespace kvchat::engine
