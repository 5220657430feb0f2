// SPDX-License-Identifier: MIT
#include "engine/core/huge_page_buffer.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace kvchat::engine {

namespace {
constexpr std::size_t kHugePage = 2u << 20;
}

HugePageBuffer::HugePageBuffer(std::size_t bytes) : m_size(bytes)
{
    if (bytes == 0)
        return;
    void *p = nullptr;
    if (::posix_memalign(&p, kHugePage, bytes) != 0)
        throw std::bad_alloc();
    // Advice before the first touch, so the pages are faulted in as huge ones. Only the whole
    // 2 MiB pages: a huge page over the tail would make resident memory the buffer never uses
    // (small matrices would double). Only a hint: where THP is off the buffer works the same.
    if (const std::size_t whole = bytes / kHugePage * kHugePage; whole > 0)
        ::madvise(p, whole, MADV_HUGEPAGE);
    std::memset(p, 0, bytes);
    m_data = static_cast<std::uint8_t *>(p);
}

HugePageBuffer::~HugePageBuffer()
{
    std::free(m_data);
}

HugePageBuffer::HugePageBuffer(HugePageBuffer &&other) noexcept
    : m_data(std::exchange(other.m_data, nullptr)), m_size(std::exchange(other.m_size, 0))
{
}

HugePageBuffer &HugePageBuffer::operator=(HugePageBuffer &&other) noexcept
{
    if (this != &other) {
        std::free(m_data);
        m_data = std::exchange(other.m_data, nullptr);
        m_size = std::exchange(other.m_size, 0);
    }
    return *this;
}

} // namespace kvchat::engine
