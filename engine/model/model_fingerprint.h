// SPDX-License-Identifier: MIT
// The fingerprint under which KV blocks are cached: the identity of the weights file and of the KV
// layout the backend writes. Two models (or two quantizations, or two block sizes) never share one.
#pragma once

#include "engine/kv/kv_block_key.h"
#include "engine/kv/kv_cache.h"

#include <string_view>

namespace kvchat::engine {

class LlamaModel;

// kvDtype names the KV element type ("f32"); bump kKvFormatVersion when the payload layout changes.
inline constexpr std::uint32_t kKvFormatVersion = 1;
ModelFingerprint computeModelFingerprint(const LlamaModel &model, const KvLayout &layout, std::string_view kvDtype);

} // namespace kvchat::engine
