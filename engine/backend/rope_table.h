// SPDX-License-Identifier: MIT
// RoPE rotation angles, shared by every backend so that they rotate by the very same floats:
// theta_i = pos * freqScale * base^(-2i / nRot) / freqFactor_i, computed in double.
#pragma once

#include "engine/model/llama_config.h"

#include <cstdint>
#include <vector>

namespace kvchat::engine {

// out: [nTokens][nRot] = cos, sin of pair i at 2i, 2i + 1, for positions startPos + t.
// factors: per-pair divisors (rope_freqs.weight), empty when the model has none.
void fillRopeTable(const LlamaConfig &config, const std::vector<float> &factors, std::int32_t startPos,
                   std::int64_t nTokens, float *out);

} // namespace kvchat::engine
