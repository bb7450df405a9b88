// SPDX-License-Identifier: Apache-2.0
#pragma once
// One trainer per run directory. A trainer holds an advisory lock (flock) on
// RUN_DIR/train.lock for as long as it lives, with its process id in the file; the kernel
// releases the lock when the process ends, however it ends. A second trainer on the same
// directory is refused, and the studio asks the lock, not its own records, whether a job's
// trainer still runs.

#include "core/util/error.h"

#include <cstdint>
#include <string>

namespace tessera {

class RunLock {
public:
  RunLock() = default;
  RunLock(RunLock&& other) noexcept;
  RunLock& operator=(RunLock&& other) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  ~RunLock();

  /// Takes the lock of the existing directory `runDir` and writes this process's id into
  /// it; fails, naming the holder's process id, while another process holds it.
  static Result<RunLock> acquire(const std::string& runDir);

  /// The process id of whoever holds `runDir`'s lock now; 0 when nobody does (no lock
  /// file, or its holder has ended); -1 when it is held by a process that has not written
  /// its id within 0.1 s of taking it.
  static std::int64_t holder(const std::string& runDir);

  /// The lock file's name inside a run directory.
  static constexpr const char* kFileName = "train.lock";

  bool held() const { return m_fd >= 0; }

private:
  explicit RunLock(int fd) : m_fd(fd) {}
  int m_fd = -1;
};

}  // namespace tessera
