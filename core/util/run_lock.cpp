// SPDX-License-Identifier: Apache-2.0
#include "core/util/run_lock.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace tessera {
namespace {

std::string lockPath(const std::string& runDir) { return runDir + "/" + RunLock::kFileName; }

std::int64_t readPid(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  char* end = nullptr;
  const long long pid = std::strtoll(buf, &end, 10);
  return pid > 0 ? pid : 0;
}

}  // namespace

RunLock::RunLock(RunLock&& other) noexcept : m_fd(other.m_fd) { other.m_fd = -1; }

RunLock& RunLock::operator=(RunLock&& other) noexcept {
  if (this != &other) {
    if (m_fd >= 0) ::close(m_fd);
    m_fd = other.m_fd;
    other.m_fd = -1;
  }
  return *this;
}

RunLock::~RunLock() {
  if (m_fd >= 0) ::close(m_fd);  // closing the last descriptor releases the flock
}

Result<RunLock> RunLock::acquire(const std::string& runDir) {
  const std::string path = lockPath(runDir);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return fail(path + ": cannot open the run's lock file: " + std::strerror(errno));
  RunLock lock(fd);
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) {
      const std::int64_t pid = readPid(fd);
      return fail(runDir + ": another trainer" + (pid ? " (process " + std::to_string(pid) + ")" : std::string()) +
                  " is using this run directory; wait for it to end or stop it first");
    }
    return fail(path + ": cannot lock it: " + std::strerror(errno));
  }
  const std::string pid = std::to_string(static_cast<long long>(::getpid())) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    return fail(path + ": cannot write the run's lock file: " + std::strerror(errno));
  return lock;
}

std::int64_t RunLock::holder(const std::string& runDir) {
  const int fd = ::open(lockPath(runDir).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::int64_t pid = 0;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
    // Held: the holder has written its id right after taking the lock; a reader that
    // comes in between sees an empty file and asks again.
    if (errno == EWOULDBLOCK) {
      for (int tries = 0; tries < 100 && (pid = readPid(fd)) == 0; ++tries) ::usleep(1000);
      if (pid == 0) pid = -1;  // held, by a process that has not said who it is
    }
  }
  ::close(fd);  // releases the shared lock if this call took it
  return pid;
}

}  // namespace tessera
