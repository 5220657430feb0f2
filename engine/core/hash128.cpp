// SPDX-License-Identifier: MIT
#include "engine/core/hash128.h"

#include <xxhash.h>

#include <cstring>

namespace kvchat::engine {

Hasher128::Hasher128() : m_state(XXH3_createState())
{
    XXH3_128bits_reset(static_cast<XXH3_state_t *>(m_state));
}

Hasher128::~Hasher128()
{
    XXH3_freeState(static_cast<XXH3_state_t *>(m_state));
}

void Hasher128::add(const void *data, std::size_t size)
{
    XXH3_128bits_update(static_cast<XXH3_state_t *>(m_state), data, size);
}

void Hasher128::addString(std::string_view s)
{
    const std::uint64_t n = s.size();
    add(&n, sizeof n);
    add(s.data(), s.size());
}

std::array<std::uint8_t, 16> Hasher128::digest() const
{
    const XXH128_hash_t hash = XXH3_128bits_digest(static_cast<XXH3_state_t *>(m_state));
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, hash);
    std::array<std::uint8_t, 16> out;
    std::memcpy(out.data(), canonical.digest, out.size());
    return out;
}

} // namespace kvchat::engine
