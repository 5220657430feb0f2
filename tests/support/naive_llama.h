// SPDX-License-Identifier: MIT
// An independent, deliberately plain double-precision Llama forward pass over the decoded weights
// of a RandomModel: the oracle for the engine's logits. It shares no code with the engine.
#pragma once

#include "tests/support/random_model.h"

#include <cstdint>
#include <vector>

namespace kvchat::testing {

// Logits of every position, [tokens.size()][nVocab], for the sequence processed from position 0.
std::vector<std::vector<double>> naiveLlamaLogits(const RandomModel &model, const std::vector<std::int32_t> &tokens);

} // namespace kvchat::testing
