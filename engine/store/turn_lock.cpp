// SPDX-License-Identifier: MIT
#include "engine/store/turn_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <sys/file.h>
#include <thread>
#include <utility>

namespace kvchat::engine {

std::optional<TurnLock> TurnLock::acquire(const std::string &databasePath, const std::function<bool()> &keepWaiting)
{
    const std::string path = databasePath + ".turn-lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return TurnLock();
    // Polled rather than blocking, so that the waiting thread can still give up.
    while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            ::close(fd);
            return TurnLock(); // no locking on this file system: go on without
        }
        if (keepWaiting && !keepWaiting()) {
            ::close(fd);
            return std::nullopt;
        }
        std::this_thread::sleep_for(kPollInterval);
    }
    return TurnLock(fd);
}

TurnLock::~TurnLock()
{
    if (m_fd >= 0)
        ::close(m_fd); // closing the only descriptor of the open file releases its flock
}

TurnLock::TurnLock(TurnLock &&other) noexcept : m_fd(std::exchange(other.m_fd, -1)) {}

TurnLock &TurnLock::operator=(TurnLock &&other) noexcept
{
    if (this != &other) {
        if (m_fd >= 0)
            ::close(m_fd);
        m_fd = std::exchange(other.m_fd, -1);
    }
    return *this;
}

} // namespace kvchat::engine
