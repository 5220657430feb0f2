// SPDX-License-Identifier: MIT
#include "engine/kv/kv_block_key.h"

#include <xxhash.h>

#include <cstring>

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
    XXH3_state_t *state = XXH3_createState();
    XXH3_128bits_reset(state);
    XXH3_128bits_update(state, parent.bytes.data(), parent.bytes.size());
    XXH3_128bits_update(state, fingerprint.bytes.data(), fingerprint.bytes.size());
    XXH3_128bits_update(state, tokens.data(), tokens.size_bytes());
    const XXH128_hash_t hash = XXH3_128bits_digest(state);
    XXH3_freeState(state);
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, hash);
    KvBlockKey key;
    std::memcpy(key.bytes.data(), canonical.digest, key.bytes.size());
    return key;
}

} // namespace kvchat::engine
