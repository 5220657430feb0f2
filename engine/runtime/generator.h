// SPDX-License-Identifier: MIT
// One generation: prefill the new prompt tokens as one batch on top of whatever KV the sequence
// already holds, then decode token by token, streaming text, until an end-of-generation token, the
// token limit, the context limit or a stop request. Measures the time to first token and its parts.
#pragma once

#include "engine/backend/backend.h"
#include "engine/model/llama_model.h"
#include "engine/runtime/sampler.h"

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kvchat::engine {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::duration<double, std::milli>;

enum class StopReason { EndOfGeneration, MaxTokens, ContextFull, Stopped };
std::string_view stopReasonName(StopReason reason);

struct GenerationMetrics
{
    std::int32_t nPromptTokens = 0; // tokens prefilled in this call
    std::int32_t nDecodeTokens = 0; // tokens generated after the first one
    Millis queue{0};                // submit -> generation started (tokenizing, waiting)
    Millis prefill{0};              // forward pass over the prompt tokens, with the first token's candidates
    Millis firstSample{0};          // sampling and detokenizing the first token
    Millis ttft{0};                 // submit -> first token's text available; = queue + prefill + firstSample
    Millis decode{0};               // first token -> last token

    double prefillTokensPerSecond() const;
    double decodeTokensPerSecond() const;
};

struct GenerationResult
{
    std::vector<TokenId> tokens; // generated ids, the end-of-generation token included when it ended
    std::string text;            // their text (control tokens contribute none)
    StopReason stopReason = StopReason::MaxTokens;
    GenerationMetrics metrics;
};

struct GenerationRequest
{
    std::vector<TokenId> newTokens; // appended after the KV already in the sequence
    std::int32_t maxNewTokens = 256;
    std::int32_t contextLimit = 0; // positions the sequence may reach; 0: the model's context length
    SamplingParams sampling;
    Clock::time_point submitted = Clock::now();
    // Called with each new piece of text as soon as it is complete UTF-8; return false to stop.
    std::function<bool(std::string_view)> onText;
    // Called once, when the first token's text is available, with the metrics up to that moment
    // (before onText receives that text).
    std::function<void(const GenerationMetrics &)> onFirstToken;
    // When set, receives the logits the first token was sampled from (exactness tests).
    std::vector<float> *firstLogits = nullptr;
};

class Generator
{
public:
    Generator(const LlamaModel &model, Backend &backend) : m_model(model), m_backend(backend) {}

    // The sequence ends holding KV for every token fed to the model: the prompt and each generated
    // token except the last (which was sampled but not yet fed).
    Result<GenerationResult> generate(const GenerationRequest &request, KvSequence &seq);

private:
    const LlamaModel &m_model;
    Backend &m_backend;
    std::vector<float> m_logits;              // when the request wants the first logits
    std::vector<TokenCandidate> m_candidates; // the next token's, from the backend
};

} // namespace kvchat::engine
