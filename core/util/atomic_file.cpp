// SPDX-License-Identifier: Apache-2.0
#include "core/util/atomic_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <signal.h>
#include <string>
#include <unistd.h>

namespace tessera {
namespace {

bool fsyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

/// Removes the temporary files that writers killed before their rename left in `dir`
/// (".NAME.tmp-PID-RANDOM" of a process that no longer exists). Once a folder per process:
/// the listing costs one pass, whatever number of files is written there.
void sweepDeadWritersTemporaries(const std::filesystem::path& dir) {
  static std::mutex mutex;
  static std::set<std::string> swept;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!swept.insert(dir.string()).second) return;
  }
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const std::size_t mark = name.rfind(".tmp-");
    if (name.empty() || name.front() != '.' || mark == std::string::npos) continue;
    const std::size_t dash = name.find('-', mark + 5);
    if (dash == std::string::npos || dash == mark + 5 || dash - mark - 5 > 9) continue;
    const std::string digits = name.substr(mark + 5, dash - mark - 5);
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(digits));
    if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH)
      continue;  // alive, or not ours to judge
    std::error_code removeError;
    std::filesystem::remove(it->path(), removeError);
  }
}

}  // namespace

Result<void> writeFileAtomically(const std::string& path,
                                 const std::function<bool(std::ostream&)>& write) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  sweepDeadWritersTemporaries(dir);
  std::random_device rd;
  const std::string tmp =
      (dir / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
              std::to_string(rd())))
          .string();
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return fail(path + ": cannot create temporary file " + tmp + ": " + std::strerror(errno));
    errno = 0;
    const bool ok = write(out);
    out.flush();
    // The stream keeps no errno of its own: the one its failed write(2) left is the cause
    // (ENOSPC on a full disk, EDQUOT, EIO, EFBIG).
    const int e = errno;
    if (ok && out) out.close();
    if (!ok || !out) {
      const int cause = e ? e : errno;
      if (out.is_open()) out.close();
      std::error_code ec;
      fs::remove(tmp, ec);
      // A writer that gave up because the stream failed is the stream's failure too.
      const bool streamFailed = !out || (!ok && cause != 0);
      return fail(path + ": writing failed" +
                  (streamFailed ? ": " + std::string(cause ? std::strerror(cause) : "the stream reported an error")
                                : std::string()));
    }
  }
  if (!fsyncPath(tmp, O_RDONLY)) {
    std::error_code ec;
    fs::remove(tmp, ec);
    return fail(path + ": fsync failed: " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::error_code ec;
    fs::remove(tmp, ec);
    return fail(path + ": cannot rename temporary file into place: " + std::strerror(e));
  }
  fsyncPath(dir.string(), O_RDONLY | O_DIRECTORY);  // best effort: some filesystems refuse
  return {};
}

Result<void> writeFileAtomically(const std::string& path, std::string_view bytes) {
  return writeFileAtomically(path, [bytes](std::ostream& out) {
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return static_cast<bool>(out);
  });
}

}  // namespace tessera
