// SPDX-License-Identifier: Apache-2.0
#include "core/formats/tensor_file.h"

#include <filesystem>
#include <fstream>

namespace tessera {

TensorFileFormat detectTensorFileFormat(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return TensorFileFormat::Unknown;  // a pipe would block the read
  std::ifstream in(path, std::ios::binary);
  unsigned char head[9] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  const auto n = in.gcount();
  if (n >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) return TensorFileFormat::TorchZip;
  if (n >= 2 && head[0] == 0x80 && head[1] <= 5) return TensorFileFormat::LegacyTorch;
  if (n >= 9 && head[8] == '{') return TensorFileFormat::Safetensors;
  if (std::filesystem::path(path).extension() == ".safetensors") return TensorFileFormat::Safetensors;
  return TensorFileFormat::Unknown;
}

}  // namespace tessera
