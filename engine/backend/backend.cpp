// SPDX-License-Identifier: MIT
#include "engine/backend/backend.h"

#include <algorithm>

namespace kvchat::engine {

Result<std::int32_t> beginForward(std::span<const TokenId> tokens, std::int32_t nVocab, KvSequence &seq)
{
    if (tokens.empty())
        return makeError("forward: no tokens to process");
    for (TokenId id : tokens)
        if (id < 0 || id >= nVocab)
            return makeError("forward: token id " + std::to_string(id) + " is outside the vocabulary (" +
                             std::to_string(nVocab) + ")");
    const std::int32_t startPos = seq.nTokens();
    if (!seq.reserve(startPos + static_cast<std::int32_t>(tokens.size())))
        return makeError("forward: the KV cache has no room for " + std::to_string(tokens.size()) +
                         " more tokens after " + std::to_string(startPos));
    return startPos;
}

Result<void> Backend::forwardCandidates(std::span<const TokenId> tokens, KvSequence &seq,
                                        const CandidateRequest &request, std::vector<TokenCandidate> &out)
{
    if (auto ok = forward(tokens, seq, LogitsMode::Last, m_candidateLogits); !ok)
        return ok;
    selectCandidates(m_candidateLogits, request, out);
    return {};
}

void forEachMicroBatch(std::int64_t n, std::int64_t maxBatch, LogitsMode mode, std::int32_t nVocab,
                       std::vector<float> *logits, const std::function<void(std::int64_t, std::int64_t, float *)> &run)
{
    const std::int64_t nOutputs = mode == LogitsMode::All ? n : 1;
    if (logits != nullptr)
        logits->resize(static_cast<std::size_t>(nOutputs * nVocab));
    for (std::int64_t begin = 0; begin < n; begin += maxBatch) {
        const std::int64_t end = std::min(n, begin + maxBatch);
        float *chunkLogits = nullptr;
        if (logits != nullptr)
            chunkLogits =
                mode == LogitsMode::All ? logits->data() + begin * nVocab : (end == n ? logits->data() : nullptr);
        run(begin, end, chunkLogits);
    }
}

#ifndef KVCHAT_HAS_CUDA
// This build has no CUDA backend (KVCHAT_CUDA=OFF or no CUDA compiler).
Result<std::unique_ptr<Backend>> makeCudaBackend(const LlamaModel &, int, std::int32_t)
{
    return makeError(cudaUnavailableReason());
}

std::string cudaUnavailableReason()
{
    return "this build of kvchat has no CUDA backend (configure with -DKVCHAT_CUDA=ON and the CUDA toolkit)";
}
#endif

BackendChoice chooseBackend(std::string_view preference, const LlamaModel &model, int nThreads,
                            std::int32_t kvBlockTokens)
{
    BackendChoice choice;
    if (preference == "cuda" || preference == "auto") {
        auto cuda = makeCudaBackend(model, nThreads, kvBlockTokens);
        if (cuda) {
            choice.backend = std::move(cuda).value();
            return choice;
        }
        if (preference == "cuda")
            choice.notice = "running on the CPU: " + cuda.error().message;
    }
    choice.backend = makeCpuBackend(model, nThreads, kvBlockTokens);
    return choice;
}

} // namespace kvchat::engine
