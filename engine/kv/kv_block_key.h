// SPDX-License-Identifier: MIT
// Content addressing of KV blocks. A block's key is hash(parent key, its token ids, model
// fingerprint), so two sequences with the same prefix reach the same blocks (prefix sharing, prompt
// cache), and a block can never be reused with another model or KV layout.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <unordered_set>

namespace kvchat::engine {

// 128-bit content key of a KV block (full, or the partial tail of a sequence).
struct KvBlockKey
{
    std::array<std::uint8_t, 16> bytes{};
    bool operator==(const KvBlockKey &) const = default;
    std::string hex() const;
};

// Identifies the model and KV layout a block was computed with: the weights file's identity, KV
// dtype, layout and block size. Blocks are only ever reused under an equal fingerprint.
struct ModelFingerprint
{
    std::array<std::uint8_t, 16> bytes{};
    bool operator==(const ModelFingerprint &) const = default;
    std::string hex() const;
};

struct KvBlockKeyHash
{
    std::size_t operator()(const KvBlockKey &key) const noexcept
    {
        std::size_t h = 0;
        for (int i = 0; i < 8; ++i)
            h = (h << 8) | key.bytes[static_cast<std::size_t>(i)];
        return h;
    }
};

using KvBlockKeySet = std::unordered_set<KvBlockKey, KvBlockKeyHash>;

// The key of the block holding tokens (in order) after the block keyed parent; the first block of a
// sequence has parent = KvBlockKey{} (all zero).
KvBlockKey kvBlockKey(const KvBlockKey &parent, std::span<const std::int32_t> tokens,
                      const ModelFingerprint &fingerprint);

} // namespace kvchat::engine
