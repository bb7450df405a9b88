// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace tessera {

/// A read-only memory mapping of a whole file. Shared ownership lets tensors that
/// view the mapping keep it alive.
class MappedFile {
public:
  static Result<std::shared_ptr<MappedFile>> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::uint8_t* data() const { return m_data; }
  std::size_t size() const { return m_size; }
  const std::string& path() const { return m_path; }

private:
  MappedFile() = default;
  const std::uint8_t* m_data = nullptr;
  std::size_t m_size = 0;
  std::string m_path;
};

}  // namespace tessera
