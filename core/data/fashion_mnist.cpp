// SPDX-License-Identifier: Apache-2.0
#include "core/data/fashion_mnist.h"

#include "core/formats/idx.h"

#include <ATen/ATen.h>

#include <filesystem>

namespace tessera {

const std::array<std::string, 10>& fashionMnistClassNames() {
  static const std::array<std::string, 10> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

Result<FashionMnistSplit> loadFashionMnist(const std::string& split, const std::string& dir) {
  std::string stem;
  if (split == "train") stem = "train";
  else if (split == "test") stem = "t10k";
  else return fail("Fashion-MNIST split '" + split + "' is unknown (expected 'train' or 'test')");

  auto locate = [&](const std::string& name) {
    const auto base = std::filesystem::path(dir) / name;
    if (std::filesystem::exists(base.string() + ".gz")) return base.string() + ".gz";
    return base.string();
  };
  const std::string imagePath = locate(stem + "-images-idx3-ubyte");
  const std::string labelPath = locate(stem + "-labels-idx1-ubyte");
  if (!std::filesystem::exists(imagePath))
    return fail("Fashion-MNIST not found: " + imagePath + " is missing (install the Debian package dataset-fashion-mnist)");

  auto images = readIdx(imagePath);
  if (!images) return fail(images.error());
  auto labels = readIdx(labelPath);
  if (!labels) return fail(labels.error());
  if (images->dim() != 3 || images->size(1) != 28 || images->size(2) != 28 || images->scalar_type() != at::kByte)
    return fail(imagePath + ": expected unsigned bytes of shape (N, 28, 28)");
  if (labels->dim() != 1 || labels->scalar_type() != at::kByte)
    return fail(labelPath + ": expected a 1-D array of unsigned bytes");
  if (labels->size(0) != images->size(0))
    return fail(labelPath + ": " + std::to_string(labels->size(0)) + " labels for " +
                std::to_string(images->size(0)) + " images");
  if (labels->numel() && labels->max().item<int>() > 9)
    return fail(labelPath + ": label " + std::to_string(labels->max().item<int>()) + " is out of range (expected 0..9)");
  return FashionMnistSplit{*images, labels->to(at::kLong)};
}

}  // namespace tessera
