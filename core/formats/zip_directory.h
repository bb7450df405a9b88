// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

/// One record of a zip archive as its central directory describes it.
struct ZipRecord {
  std::string name;
  std::uint16_t method = 0;  ///< 0 stored, 8 deflated
  std::uint64_t compressedSize = 0, size = 0;
};

/// The central directory of a zip archive (ZIP64 included), read without inflating
/// anything: what each record claims to hold, so that a reader can refuse a record that
/// would inflate to more than it should before anything is allocated for it. Fails on a
/// directory that is missing, truncated or points outside the file.
Result<std::vector<ZipRecord>> readZipDirectory(const std::string& path);

}  // namespace tessera
