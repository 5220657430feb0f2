// SPDX-License-Identifier: MIT
// One turn at a time per database, across processes. Two processes running a turn of the same
// conversation (two `kvchat-cli chat` calls, or the app and one) would otherwise both read its
// history before either saved a reply, and interleave their messages. SQLite's own locks cannot
// serialize this: they last a transaction, and a turn is many. So a turn holds an advisory lock
// (flock) on DATABASE.turn-lock from before it reads the conversation until its reply is stored;
// a turn in another process waits for it.
//
// Best effort: where the lock file cannot be created (a read-only folder), the lock holds nothing.
// Thread-safety: a TurnLock is used by one thread.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace kvchat::engine {

class TurnLock
{
public:
    // Waits until no other process holds the database's turn lock, then holds it. While waiting,
    // keepWaiting (if given) is called every kPollInterval; when it returns false the wait ends
    // and the result is nullopt (a cancelled turn, an app that closes).
    static constexpr std::chrono::milliseconds kPollInterval{20};
    static std::optional<TurnLock> acquire(const std::string &databasePath,
                                           const std::function<bool()> &keepWaiting = {});
    TurnLock() = default;
    ~TurnLock();
    TurnLock(TurnLock &&other) noexcept;
    TurnLock &operator=(TurnLock &&other) noexcept;
    TurnLock(const TurnLock &) = delete;
    TurnLock &operator=(const TurnLock &) = delete;

    bool held() const { return m_fd >= 0; }

private:
    explicit TurnLock(int fd) : m_fd(fd) {}
    int m_fd = -1;
};

} // namespace kvchat::engine
