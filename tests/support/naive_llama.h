// SPDX-License-Identifier: MIT
// An independent, deliberately plain double-precision Llama forward pass over the decoded weights
// of a RandomModel: the oracle for the engine's logits. It shares no code with the engine.
#pragma once

#include "tests/support/random_model.h"

#include <cstdint>
#include <vector>

namespace kvchat::testing {

// Logits of every position, [tokens.size()][nVocab], for the sequence processed from position 0.
// int8Activations: the input of every matrix product inside the layers is first rounded as
// llama.cpp's (and the CPU backend's) integer kernels do: per block of 32, d = max|x| / 127,
// x -> d * round(x / d); the output projection is not. This is the model the CPU backend's
// integer path computes, evaluated in double.
std::vector<std::vector<double>> naiveLlamaLogits(const RandomModel &model, const std::vector<std::int32_t> &tokens,
                                                  bool int8Activations = false);

} // namespace kvchat::testing
