// SPDX-License-Identifier: MIT
#include "engine/store/turn_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <sys/file.h>
#include <utility>

namespace kvchat::engine {

TurnLock TurnLock::acquire(const std::string &databasePath)
{
    const std::string path = databasePath + ".turn-lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return TurnLock();
    int rc = 0;
    do
        rc = ::flock(fd, LOCK_EX);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        ::close(fd);
        return TurnLock();
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
