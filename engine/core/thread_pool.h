// SPDX-License-Identifier: MIT
// A persistent pool of worker threads for data-parallel loops. The calling thread takes part, so a
// pool of N threads starts N-1 workers. Workers spin briefly on an atomic before sleeping, because
// a decode step issues a few hundred short parallel loops and waking sleeping threads costs more
// than the loops themselves.
//
// Thread-safety: parallelFor may be called from one thread at a time (the engine thread that owns
// the backend); it is not re-entrant.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kvchat::engine {

class ThreadPool
{
public:
    // nThreads <= 0 means one per hardware thread.
    explicit ThreadPool(int nThreads = 0);
    // Stops and joins the workers; no loop may be running.
    ~ThreadPool();
    ThreadPool(const ThreadPool &) = delete;
    ThreadPool &operator=(const ThreadPool &) = delete;

    int size() const { return m_nThreads; }

    // Calls fn(begin, end, threadIndex) over [0, n) split into at most size() contiguous ranges of
    // near-equal length; returns when all have finished. The split depends only on n and size().
    void parallelFor(std::int64_t n, const std::function<void(std::int64_t, std::int64_t, int)> &fn);

    static int defaultThreadCount();

private:
    void workerLoop(int index);
    void runShare(int index);

    int m_nThreads = 1;
    std::vector<std::thread> m_workers;
    std::mutex m_mutex;
    std::condition_variable m_wake;
    std::atomic<std::uint64_t> m_generation{0};
    std::atomic<int> m_pending{0};
    std::atomic<bool> m_stop{false};
    const std::function<void(std::int64_t, std::int64_t, int)> *m_fn = nullptr;
    std::int64_t m_n = 0;
};

} // namespace kvchat::engine
