// SPDX-License-Identifier: Apache-2.0
// `fashion-native`: every Fashion-MNIST item cropped to its own bounding box, so that
// sizes and aspect ratios vary the way objects do (trousers tall and narrow, bags wide).
// The native-resolution data set of the training issue; the batching modes that feed
// it to models (buckets, packed sequences) come with the trainer.
#pragma once

#include "core/data/fashion_mnist.h"
#include "core/util/error.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

struct NativeCropOptions {
  int threshold = 16;  ///< a pixel belongs to the object when its value exceeds this (0–255)
  int margin = 1;      ///< pixels added on every side, clamped to the 28×28 frame
};

struct CropBox {
  std::int64_t top = 0, left = 0, height = 28, width = 28;
};

/// The bounding box of the pixels above the threshold in an (H, W) uint8 image, grown
/// by the margin and clamped to the image; an image with no such pixel keeps its frame.
CropBox boundingBox(const at::Tensor& image, const NativeCropOptions& options = {});

struct NativeSet {
  std::vector<at::Tensor> images;  ///< (H_i, W_i) uint8 crops (views of the split's images)
  at::Tensor labels;               ///< (N,) int64
  std::vector<CropBox> boxes;      ///< where each crop lies in its 28×28 source
};

/// Loads a Fashion-MNIST split and crops every item.
Result<NativeSet> loadFashionNative(const std::string& split, const std::string& dir = kFashionMnistDir,
                                    const NativeCropOptions& options = {});
/// Crops an already loaded split.
NativeSet cropNative(const FashionMnistSplit& split, const NativeCropOptions& options = {});

/// The distribution of widths and heights: histograms (index = size), quantiles, and
/// per-class means of width, height and aspect ratio (height / width).
nlohmann::json sizeDistribution(const NativeSet& set);

}  // namespace tessera
