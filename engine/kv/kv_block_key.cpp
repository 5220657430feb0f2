// SPDX-License-Identifier: MIT
#include "engine/kv/kv_block_key.h"

#include "engine/core/hash128.h"

namespace kvchat::engine {

namespace {
std::string toHex(std::span<const std::uint8_t> bytes)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (std::uint8_t b : bytes) {
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 15]);
    }
    return out;
}
} // namespace

std::string KvBlockKey::hex() const
{
    return toHex(bytes);
}

std::string ModelFingerprint::hex() const
{
    return toHex(bytes);
}

KvBlockKey kvBlockKey(const KvBlockKey &parent, std::span<const std::int32_t> tokens,
                      const ModelFingerprint &fingerprint)
{
    // XXH3-128 over parent key, fingerprint and the token ids (little-endian int32). The token
    // count is implied by the input length, so a partial block never collides with a full one.
    Hasher128 hasher;
    hasher.add(parent.bytes.data(), parent.bytes.size());
    hasher.add(fingerprint.bytes.data(), fingerprint.bytes.size());
    hasher.add(tokens.data(), tokens.size_bytes());
    KvBlockKey key;
    key.bytes = hasher.digest();
    return key;
}

} // namespace kvchat::engine
