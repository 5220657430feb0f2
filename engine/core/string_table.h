// SPDX-License-Identifier: MIT
// Many short immutable strings in one buffer, addressed by index. A std::vector<std::string> of a
// 50k-150k token vocabulary costs 32 bytes per entry plus one heap block for every piece longer
// than the small-string buffer; this costs 4 bytes per entry plus the text itself. Views handed out
// stay valid until the next append().
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kvchat::engine {

class StringTable
{
public:
    void reserve(std::size_t count, std::size_t textBytes)
    {
        m_ends.reserve(count);
        m_text.reserve(textBytes);
    }
    void append(std::string_view s)
    {
        // Offsets are 32-bit; a vocabulary is a few megabytes at most, and callers bound it first.
        if (s.size() > std::numeric_limits<std::uint32_t>::max() - m_text.size())
            throw std::length_error("StringTable holds at most 4 GiB of text");
        m_text.append(s);
        m_ends.push_back(static_cast<std::uint32_t>(m_text.size()));
    }
    std::size_t size() const { return m_ends.size(); }
    bool empty() const { return m_ends.empty(); }
    std::size_t textBytes() const { return m_text.size(); }
    std::string_view operator[](std::size_t i) const
    {
        const std::uint32_t begin = i == 0 ? 0 : m_ends[i - 1];
        return std::string_view(m_text).substr(begin, m_ends[i] - begin);
    }
    std::string_view at(std::size_t i) const
    {
        if (i >= m_ends.size())
            throw std::out_of_range("StringTable index out of range");
        return (*this)[i];
    }
    // Largest total text append() accepts.
    static constexpr std::size_t maxTextBytes() { return std::numeric_limits<std::uint32_t>::max(); }

private:
    std::string m_text;
    std::vector<std::uint32_t> m_ends; // end offset of each string in m_text
};

} // namespace kvchat::engine
