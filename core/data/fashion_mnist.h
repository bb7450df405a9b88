// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"

#include <ATen/core/Tensor.h>

#include <array>
#include <string>

namespace tessera {

/// Where Debian's dataset-fashion-mnist package installs the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

/// The ten class names in label order.
const std::array<std::string, 10>& fashionMnistClassNames();

struct FashionMnistSplit {
  at::Tensor images;  ///< (N, 28, 28) uint8
  at::Tensor labels;  ///< (N,) int64 in 0..9
};

/// Loads the "train" (60000) or "test" (10000) split from `dir`, checking that images
/// and labels agree in count, images are 28x28 bytes and labels lie in 0..9.
Result<FashionMnistSplit> loadFashionMnist(const std::string& split, const std::string& dir = kFashionMnistDir);

}  // namespace tessera
