// SPDX-License-Identifier: MIT
// Incremental 128-bit hashing (XXH3-128) for content keys and fingerprints.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kvchat::engine {

class Hasher128
{
public:
    Hasher128();
    ~Hasher128();
    Hasher128(const Hasher128 &) = delete;
    Hasher128 &operator=(const Hasher128 &) = delete;

    void add(const void *data, std::size_t size);
    // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    void addString(std::string_view s);
    template <typename T> void addValue(const T &value) { add(&value, sizeof value); }
    // The digest in canonical (big-endian) byte order.
    std::array<std::uint8_t, 16> digest() const;

private:
    void *m_state; // XXH3_state_t, kept out of this header
};

} // namespace kvchat::engine
