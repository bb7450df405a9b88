// SPDX-License-Identifier: Apache-2.0
#include "core/util/atomic_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <random>
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

}  // namespace

Result<void> writeFileAtomically(const std::string& path,
                                 const std::function<bool(std::ostream&)>& write) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::random_device rd;
  const std::string tmp =
      (dir / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
              std::to_string(rd())))
          .string();
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return fail(path + ": cannot create temporary file " + tmp + ": " + std::strerror(errno));
    const bool ok = write(out);
    out.flush();
    if (!ok || !out) {
      out.close();
      std::error_code ec;
      fs::remove(tmp, ec);
      return fail(path + ": writing failed" + (ok ? std::string(" (disk full?)") : std::string()));
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
