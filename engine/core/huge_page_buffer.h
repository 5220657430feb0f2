// SPDX-License-Identifier: MIT
// A large, long-lived byte buffer placed on transparent huge pages where the kernel allows it
// (2 MiB aligned, madvise(MADV_HUGEPAGE); Debian's default THP mode is "madvise"). Streaming
// hundreds of megabytes of weights through 4 KiB pages costs a TLB walk every 4 KiB, and the
// hardware prefetchers stop at every 4 KiB boundary; with 2 MiB pages decode reads closer to the
// memory's bandwidth. Without THP it is an ordinary aligned allocation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvchat::engine {

class HugePageBuffer
{
public:
    HugePageBuffer() = default;
    // Throws std::bad_alloc when the memory cannot be had. Contents are zero.
    explicit HugePageBuffer(std::size_t bytes);
    ~HugePageBuffer();
    HugePageBuffer(HugePageBuffer &&other) noexcept;
    HugePageBuffer &operator=(HugePageBuffer &&other) noexcept;
    HugePageBuffer(const HugePageBuffer &) = delete;
    HugePageBuffer &operator=(const HugePageBuffer &) = delete;

    std::uint8_t *data() { return m_data; }
    const std::uint8_t *data() const { return m_data; }
    std::size_t size() const { return m_size; }

private:
    std::uint8_t *m_data = nullptr;
    std::size_t m_size = 0;
};

} // namespace kvchat::engine
