// SPDX-License-Identifier: MIT
#include "engine/backend/rope_table.h"

#include <cmath>
#include <vector>

namespace kvchat::engine {

void fillRopeTable(const LlamaConfig &c, const std::vector<float> &factors, std::int32_t startPos, std::int64_t nTokens,
                   float *out)
{
    // The pair frequencies once per call: the per-token loop is then only cos and sin.
    std::vector<double> freq(static_cast<std::size_t>(c.nRot / 2));
    for (std::int32_t i = 0; i < c.nRot / 2; ++i)
        freq[static_cast<std::size_t>(i)] = std::pow(static_cast<double>(c.ropeFreqBase), -2.0 * i / c.nRot);
    for (std::int64_t t = 0; t < nTokens; ++t) {
        const double pos = static_cast<double>(startPos + t) * c.ropeFreqScale;
        float *row = out + t * c.nRot;
        for (std::int32_t i = 0; i < c.nRot / 2; ++i) {
            double theta = pos * freq[static_cast<std::size_t>(i)];
            if (!factors.empty())
                theta /= factors[static_cast<std::size_t>(i)];
            row[2 * i] = static_cast<float>(std::cos(theta));
            row[2 * i + 1] = static_cast<float>(std::sin(theta));
        }
    }
}

} // namespace kvchat::engine
