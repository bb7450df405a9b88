// SPDX-License-Identifier: Apache-2.0
// Image folders: one sub-folder per class, any sizes and any format OpenCV reads, grey
// or colour. Unreadable files are skipped with a warning naming them and counted.
#pragma once

#include "core/util/error.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

/// The most pixels an image of a training folder may have (8192 × 8192): a larger one is
/// skipped, naming its size, before it is decoded.
inline constexpr std::uint64_t kMaxImagePixels = 8192ull * 8192ull;

struct ImageFolderOptions {
  int channels = 0;  ///< 1 grey, 3 RGB, 0: 3 when any readable image has colour, else 1
};

struct SkippedFile {
  std::string path, reason;
};

struct ImageFolder {
  std::vector<std::string> classNames;  ///< sub-folder names, sorted
  std::vector<at::Tensor> images;       ///< (C, H_i, W_i) uint8, RGB order for colour
  std::vector<std::int64_t> labels;     ///< index into classNames
  std::vector<std::string> files;       ///< where each image came from
  std::vector<SkippedFile> skipped;     ///< unreadable or not an image, with the reason
  int channels = 1;
  /// Counts per class, skipped files and size ranges, for a run's summary.
  nlohmann::json summary() const;
};

/// Reads `dir`: each sub-folder is a class (sorted by name), each file in it an image
/// (sorted by name; hidden files ignored). Fails when the folder is missing, holds no
/// class folder, or no readable image at all.
Result<ImageFolder> loadImageFolder(const std::string& dir, const ImageFolderOptions& options = {});

}  // namespace tessera
