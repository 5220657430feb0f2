// SPDX-License-Identifier: MIT
#include "engine/kv/kv_memory.h"

#include <unistd.h>

#include <cstring>
#include <new>
#include <sys/mman.h>
#include <utility>

namespace kvchat::engine {

namespace {

class HostKvMemory final : public KvMemory
{
public:
    const char *name() const override { return "host"; }
    bool hostAccessible() const override { return true; }

    void *allocateArena(std::size_t bytes) override
    {
        // Anonymous pages read as zero and are only backed once written, so a pool sized by its
        // budget costs what its blocks in use cost (as one allocation per block did before).
        void *p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        return p == MAP_FAILED ? nullptr : p;
    }
    void freeArena(void *arena, std::size_t bytes) override
    {
        if (arena != nullptr)
            ::munmap(arena, bytes);
    }
    void commit(void *p, std::size_t bytes) override
    {
        // MADV_POPULATE_WRITE (Linux 5.14) faults the range in with one call; older kernels
        // reject it, and then one write per page does the same.
        if (bytes == 0 || ::madvise(p, bytes, MADV_POPULATE_WRITE) == 0)
            return;
        const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        auto *bytesPtr = static_cast<volatile unsigned char *>(p);
        for (std::size_t off = 0; off < bytes; off += page)
            bytesPtr[off] = 0;
    }
    void *allocateHost(std::size_t bytes) override { return ::operator new(bytes, std::nothrow); }
    void freeHost(void *p, std::size_t) override { ::operator delete(p); }

    void copyToPool(void *dst, const void *src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
    void copyFromPool(void *dst, const void *src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
    void copyWithinPool(void *dst, const void *src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
};

} // namespace

std::shared_ptr<KvMemory> hostKvMemory()
{
    static const std::shared_ptr<KvMemory> memory = std::make_shared<HostKvMemory>();
    return memory;
}

HostKvBuffer::HostKvBuffer(std::shared_ptr<KvMemory> memory, std::size_t bytes)
    : m_memory(std::move(memory)), m_data(static_cast<std::byte *>(m_memory->allocateHost(bytes))),
      m_bytes(m_data != nullptr ? bytes : 0)
{}

HostKvBuffer &HostKvBuffer::operator=(HostKvBuffer &&other) noexcept
{
    if (this != &other) {
        reset();
        m_memory = std::move(other.m_memory);
        m_data = std::exchange(other.m_data, nullptr);
        m_bytes = std::exchange(other.m_bytes, 0);
    }
    return *this;
}

void HostKvBuffer::reset()
{
    if (m_data != nullptr)
        m_memory->freeHost(m_data, m_bytes);
    m_data = nullptr;
    m_bytes = 0;
}

} // namespace kvchat::engine
