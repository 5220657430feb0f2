// SPDX-License-Identifier: MIT
#include "engine/runtime/generator.h"

namespace kvchat::engine {

std::string_view stopReasonName(StopReason reason)
{
    switch (reason) {
    case StopReason::EndOfGeneration:
        return "end_of_generation";
    case StopReason::MaxTokens:
        return "max_tokens";
    case StopReason::ContextFull:
        return "context_full";
    case StopReason::Stopped:
        return "stopped";
    }
    return "unknown";
}

double GenerationMetrics::prefillTokensPerSecond() const
{
    return prefill.count() > 0 ? nPromptTokens / (prefill.count() / 1000.0) : 0.0;
}

double GenerationMetrics::decodeTokensPerSecond() const
{
    return decode.count() > 0 ? nDecodeTokens / (decode.count() / 1000.0) : 0.0;
}

Result<GenerationResult> Generator::generate(const GenerationRequest &request, KvSequence &seq)
{
    const Tokenizer &tokenizer = m_model.tokenizer();
    const std::int32_t contextLimit = request.contextLimit > 0 ? request.contextLimit : m_model.config().nCtxTrain;
    if (request.newTokens.empty())
        return makeError("generate: the prompt is empty (no tokens to condition on)");
    const std::int64_t promptEnd =
        static_cast<std::int64_t>(seq.nTokens()) + static_cast<std::int64_t>(request.newTokens.size());
    if (promptEnd >= contextLimit)
        return makeError("generate: the prompt needs " + std::to_string(promptEnd) +
                         " positions but the context holds " + std::to_string(contextLimit));

    GenerationResult result;
    GenerationMetrics &m = result.metrics;
    m.nPromptTokens = static_cast<std::int32_t>(request.newTokens.size());
    const Clock::time_point started = Clock::now();
    m.queue = started - request.submitted;

    // History for the repetition penalty: the new prompt tokens plus what is generated.
    std::vector<TokenId> history(request.newTokens.begin(), request.newTokens.end());
    Sampler sampler(request.sampling);
    // Each step asks the backend only for the candidates the sampler can pick from (the top-k,
    // one when greedy), which a GPU backend selects on the device.
    CandidateRequest candidateRequest;
    sampler.candidateRequest(history, m_model.config().nVocab, candidateRequest);

    if (request.firstLogits) {
        if (auto ok = m_backend.forward(request.newTokens, seq, LogitsMode::Last, m_logits); !ok)
            return ok.error();
        *request.firstLogits = m_logits;
        selectCandidates(m_logits, candidateRequest, m_candidates);
    } else if (auto ok = m_backend.forwardCandidates(request.newTokens, seq, candidateRequest, m_candidates); !ok) {
        return ok.error();
    }
    const Clock::time_point prefilled = Clock::now();
    m.prefill = prefilled - started;
    // Generated text starts the sequence's text when everything before it is control tokens
    // (a prompt of BOS alone): then a sentencepiece dummy-prefix space is not part of the text.
    bool textStart = seq.nTokens() == static_cast<std::int32_t>(request.newTokens.size());
    for (TokenId id : request.newTokens)
        textStart = textStart && tokenizer.tokenKind(id) == TokenKind::Control;
    TextStream stream(tokenizer, textStart);
    Clock::time_point firstTokenAt{};
    bool keepGoing = true;

    while (true) {
        const TokenId next = sampler.sampleFromCandidates(m_candidates);
        result.tokens.push_back(next);
        history.push_back(next);
        const bool end = tokenizer.isEndOfGeneration(next);
        std::string piece = end ? std::string() : stream.push(next);
        if (result.tokens.size() == 1) {
            firstTokenAt = Clock::now();
            m.firstSample = firstTokenAt - prefilled;
            m.ttft = firstTokenAt - request.submitted;
            if (request.onFirstToken)
                request.onFirstToken(m);
        }
        if (!piece.empty()) {
            result.text += piece;
            if (request.onText)
                keepGoing = request.onText(piece);
        }
        if (end) {
            result.stopReason = StopReason::EndOfGeneration;
            break;
        }
        if (!keepGoing) {
            result.stopReason = StopReason::Stopped;
            break;
        }
        if (static_cast<std::int32_t>(result.tokens.size()) >= request.maxNewTokens) {
            result.stopReason = StopReason::MaxTokens;
            break;
        }
        if (seq.nTokens() + 1 >= contextLimit) {
            result.stopReason = StopReason::ContextFull;
            break;
        }
        sampler.candidateRequest(history, m_model.config().nVocab, candidateRequest);
        if (auto ok =
                m_backend.forwardCandidates(std::span<const TokenId>(&next, 1), seq, candidateRequest, m_candidates);
            !ok)
            return ok.error();
    }
    const std::string tail = stream.finish();
    result.text += tail;
    if (!tail.empty() && request.onText)
        request.onText(tail);
    m.nDecodeTokens = static_cast<std::int32_t>(result.tokens.size()) - 1;
    m.decode = Clock::now() - firstTokenAt;
    return result;
}

} // namespace kvchat::engine
