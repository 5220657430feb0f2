// SPDX-License-Identifier: MIT
// The compute backend interface, chosen once in app/ (CPU now; CUDA in its own library later). A
// backend is bound to one model and owns the scratch memory for its forward passes.
//
// Thread-safety: a backend is used by one thread at a time (the engine thread); it may run its own
// worker threads inside a call.
#pragma once

#include "engine/backend/token_candidates.h"
#include "engine/core/result.h"
#include "engine/kv/kv_cache.h"
#include "engine/model/tokenizer.h"

#include <functional>
#include <memory>
#include <span>
#include <string>
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
    // What it runs on and how it holds the weights, in a line for the user (the app's model
    // tooltip): e.g. the GPU, and how many matrices are packed in 4 or 8 bits.
    virtual std::string describe() const { return std::string(name()); }

    // The KV layout this backend writes for its model.
    virtual KvLayout kvLayout() const = 0;
    // Names how this backend computes KV, for the model fingerprint: blocks computed by one
    // backend are never restored into another (they differ in rounding).
    virtual std::string_view kvFormat() const { return "f32"; }
    // Where its KV pools live (GPU memory for CUDA) and its host tier's buffers come from.
    virtual std::shared_ptr<KvMemory> kvMemory() const { return hostKvMemory(); }
    // Bytes of KV the device tier should hold by default; 0: the machine's RAM-based default.
    virtual std::size_t defaultDeviceKvBytes() const { return 0; }

    // Runs the model over tokens at positions [seq.nTokens(), seq.nTokens() + tokens.size()),
    // processing them as one batch; appends their K/V to seq (reserving blocks as needed) and
    // writes logits as mode says (resizing the vector). On error seq is unchanged.
    virtual Result<void> forward(std::span<const TokenId> tokens, KvSequence &seq, LogitsMode mode,
                                 std::vector<float> &logits) = 0;
    // forward() with only the last position's best candidates as its output (token_candidates.h):
    // what generation needs. This default runs forward() and selects on the host; the CUDA
    // backend selects on the device and copies back request.k pairs instead of every logit.
    virtual Result<void> forwardCandidates(std::span<const TokenId> tokens, KvSequence &seq,
                                           const CandidateRequest &request, std::vector<TokenCandidate> &out);

private:
    std::vector<float> m_candidateLogits; // the default forwardCandidates' logits, kept between calls
};

// What every backend's forward() checks first: tokens is not empty and every id is in the
// vocabulary; then it reserves KV room for the tokens after seq's positions. Returns the position
// of the first token (seq.nTokens()), or the error for forward() to return (seq unchanged).
Result<std::int32_t> beginForward(std::span<const TokenId> tokens, std::int32_t nVocab, KvSequence &seq);

// Splits a forward pass over n tokens into micro-batches of at most maxBatch tokens, sizes *logits
// for mode, and calls run(begin, end, chunkLogits) for each in order; chunkLogits is where that
// micro-batch's wanted logits go (every row with LogitsMode::All, the last token's in the last
// micro-batch with LogitsMode::Last), or nullptr when it has none to give. logits may be nullptr
// (the caller keeps its outputs elsewhere): then every chunkLogits is nullptr.
void forEachMicroBatch(std::int64_t n, std::int64_t maxBatch, LogitsMode mode, std::int32_t nVocab,
                       std::vector<float> *logits,
                       const std::function<void(std::int64_t begin, std::int64_t end, float *chunkLogits)> &run);

// The reference CPU backend. nThreads <= 0: one per hardware thread.
std::unique_ptr<Backend> makeCpuBackend(const LlamaModel &model, int nThreads, std::int32_t kvBlockTokens = 16);

// The CUDA backend on device 0 (engine/backend/cuda/), or why it cannot run: built without CUDA,
// no usable GPU, not enough GPU memory for the weights. nThreads: host threads for loading.
Result<std::unique_ptr<Backend>> makeCudaBackend(const LlamaModel &model, int nThreads,
                                                 std::int32_t kvBlockTokens = 16);
// "" when this binary has the CUDA backend and a GPU it can use; else why not.
std::string cudaUnavailableReason();

// What ChatEngine runs on: "cuda" when it can (else the CPU, with the reason in notice), "cpu",
// or "auto" (= "cuda" where a GPU is usable, silently the CPU elsewhere).
struct BackendChoice
{
    std::unique_ptr<Backend> backend;
    std::string notice; // why a wanted GPU is not used; "" otherwise
};
BackendChoice chooseBackend(std::string_view preference, const LlamaModel &model, int nThreads,
                            std::int32_t kvBlockTokens = 16);

} // namespace kvchat::engine
