// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/formats/dtype.h"
#include "core/util/error.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tessera {

class MappedFile;

/// One tensor's entry in a safetensors header. Offsets are relative to the start of
/// the data area (just after the header), as in the format.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

/// A validated, memory-mapped safetensors file. Opening checks the whole header
/// against the file (sizes, offsets, dtypes, UTF-8, JSON) before any tensor is read,
/// so a malformed file yields an Error naming the file and the fault.
class SafetensorsFile {
public:
  /// Header size the reference implementation accepts at most (100 MB).
  static constexpr std::uint64_t kMaxHeaderSize = 100'000'000;

  static Result<SafetensorsFile> open(const std::string& path);

  const std::string& path() const;
  /// Entries in data order (ascending offsets).
  const std::vector<SafetensorsEntry>& entries() const { return m_entries; }
  const std::map<std::string, std::string>& metadata() const { return m_metadata; }
  const SafetensorsEntry* find(const std::string& name) const;
  bool contains(const std::string& name) const { return find(name) != nullptr; }

  /// A tensor that owns a copy of the bytes.
  Result<at::Tensor> load(const std::string& name) const;
  /// Copies tensor `name` into `target` (same shape; converted to its dtype and device)
  /// without an intermediate copy when the dtypes match.
  Result<void> readInto(const std::string& name, at::Tensor& target) const;
  /// Every tensor, by name.
  Result<std::map<std::string, at::Tensor>> loadAll() const;
  /// Sum of element counts over all tensors.
  std::int64_t parameterCount() const;

private:
  std::shared_ptr<MappedFile> m_file;
  std::uint64_t m_dataStart = 0;
  std::vector<SafetensorsEntry> m_entries;
  std::map<std::string, std::string> m_metadata;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// The exact bytes of a safetensors file: header in the reference writer's layout
/// (`__metadata__` first, then tensors by descending dtype rank and name, compact JSON,
/// padded with spaces to a multiple of 8), then the tensors' little-endian data.
Result<std::string> serializeSafetensors(const NamedTensors& tensors,
                                         const std::map<std::string, std::string>& metadata = {});

/// Writes a safetensors file atomically (temporary file, fsync, rename).
Result<void> writeSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace tessera
