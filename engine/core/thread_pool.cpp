// SPDX-License-Identifier: MIT
#include "engine/core/thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KVCHAT_CPU_RELAX() _mm_pause()
#else
#define KVCHAT_CPU_RELAX() std::this_thread::yield()
#endif

namespace kvchat::engine {

namespace {
// How long an idle worker polls before it sleeps on the condition variable.
constexpr auto kSpinTime = std::chrono::microseconds(200);
} // namespace

int ThreadPool::defaultThreadCount()
{
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
}

ThreadPool::ThreadPool(int nThreads) : m_nThreads(nThreads > 0 ? nThreads : defaultThreadCount())
{
    for (int i = 1; i < m_nThreads; ++i)
        m_workers.emplace_back([this, i] { workerLoop(i); });
}

ThreadPool::~ThreadPool()
{
    {
        std::lock_guard lock(m_mutex);
        m_stop.store(true);
        m_generation.fetch_add(1);
    }
    m_wake.notify_all();
    for (auto &worker : m_workers)
        worker.join();
}

void ThreadPool::runShare(int index)
{
    const std::int64_t chunk = m_n / m_nThreads;
    const std::int64_t rest = m_n % m_nThreads;
    const std::int64_t begin = index * chunk + std::min<std::int64_t>(index, rest);
    const std::int64_t end = begin + chunk + (index < rest ? 1 : 0);
    if (begin < end)
        (*m_fn)(begin, end, index);
}

void ThreadPool::parallelFor(std::int64_t n, const std::function<void(std::int64_t, std::int64_t, int)> &fn)
{
    if (n <= 0)
        return;
    if (m_nThreads == 1 || n == 1) {
        fn(0, n, 0);
        return;
    }
    {
        std::lock_guard lock(m_mutex);
        m_fn = &fn;
        m_n = n;
        m_pending.store(m_nThreads - 1);
        m_generation.fetch_add(1, std::memory_order_release);
    }
    m_wake.notify_all();
    runShare(0);
    // The workers finish within microseconds of us: pause-spin rather than yield to the kernel.
    while (m_pending.load(std::memory_order_acquire) > 0)
        KVCHAT_CPU_RELAX();
}

void ThreadPool::workerLoop(int index)
{
    std::uint64_t seen = 0;
    for (;;) {
        // Spin first: the next loop usually follows within microseconds. The clock is read only
        // every 64 polls; reading it on every poll cost a tenth of a decode step.
        const auto spinUntil = std::chrono::steady_clock::now() + kSpinTime;
        for (unsigned polls = 1; m_generation.load(std::memory_order_acquire) == seen; ++polls) {
            KVCHAT_CPU_RELAX();
            if (polls % 64 == 0 && std::chrono::steady_clock::now() >= spinUntil)
                break;
        }
        if (m_generation.load(std::memory_order_acquire) == seen) {
            std::unique_lock lock(m_mutex);
            m_wake.wait(lock, [&] { return m_generation.load() != seen; });
        }
        seen = m_generation.load(std::memory_order_acquire);
        if (m_stop.load())
            return;
        runShare(index);
        m_pending.fetch_sub(1, std::memory_order_acq_rel);
    }
}

} // namespace kvchat::engine
