// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvchat::testing {

// The worse of a running worst error and a new one, where an error that is NaN or infinite (an
// output that is) counts as infinitely large. std::max alone passes over a NaN (every comparison
// with one is false), so a kernel writing NaNs would pass any tolerance.
inline double worseError(double worst, double error)
{
    return std::isfinite(error) ? std::max(worst, error) : std::numeric_limits<double>::infinity();
}

} // namespace kvchat::testing
