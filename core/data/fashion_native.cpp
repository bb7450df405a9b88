// SPDX-License-Identifier: Apache-2.0
#include "core/data/fashion_native.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace tessera {

CropBox boundingBox(const at::Tensor& image, const NativeCropOptions& o) {
  TORCH_CHECK(image.dim() == 2 && image.scalar_type() == at::kByte, "fashion-native: expected an (H, W) uint8 image, got ",
              image.sizes());
  const at::Tensor img = image.contiguous();
  const std::int64_t H = img.size(0), W = img.size(1);
  const std::uint8_t* p = img.data_ptr<std::uint8_t>();
  std::int64_t top = H, bottom = -1, left = W, right = -1;
  for (std::int64_t y = 0; y < H; ++y)
    for (std::int64_t x = 0; x < W; ++x)
      if (p[y * W + x] > o.threshold) {
        top = std::min(top, y);
        bottom = std::max(bottom, y);
        left = std::min(left, x);
        right = std::max(right, x);
      }
  if (bottom < 0) return {0, 0, H, W};
  top = std::max<std::int64_t>(0, top - o.margin);
  left = std::max<std::int64_t>(0, left - o.margin);
  bottom = std::min(H - 1, bottom + o.margin);
  right = std::min(W - 1, right + o.margin);
  return {top, left, bottom - top + 1, right - left + 1};
}

NativeSet cropNative(const FashionMnistSplit& split, const NativeCropOptions& options) {
  NativeSet set;
  set.labels = split.labels;
  const std::int64_t n = split.images.size(0);
  set.images.reserve(static_cast<std::size_t>(n));
  set.boxes.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const at::Tensor image = split.images[i];
    const CropBox b = boundingBox(image, options);
    set.boxes.push_back(b);
    set.images.push_back(image.narrow(0, b.top, b.height).narrow(1, b.left, b.width));
  }
  return set;
}

Result<NativeSet> loadFashionNative(const std::string& split, const std::string& dir, const NativeCropOptions& options) {
  if (options.threshold < 0 || options.threshold > 254) return fail("fashion-native: threshold must lie in [0, 254]");
  if (options.margin < 0 || options.margin > 27) return fail("fashion-native: margin must lie in [0, 27]");
  auto data = loadFashionMnist(split, dir);
  if (!data) return fail(data.error());
  return cropNative(*data, options);
}

nlohmann::json sizeDistribution(const NativeSet& set) {
  const auto n = static_cast<std::int64_t>(set.boxes.size());
  std::vector<std::int64_t> widths, heights, wHist(29, 0), hHist(29, 0);
  std::vector<double> sumW(10, 0), sumH(10, 0), sumAspect(10, 0);
  std::vector<std::int64_t> count(10, 0);
  const at::Tensor labels = set.labels.to(at::kLong).contiguous();
  const std::int64_t* lab = labels.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    const CropBox& b = set.boxes[static_cast<std::size_t>(i)];
    widths.push_back(b.width);
    heights.push_back(b.height);
    ++wHist[static_cast<std::size_t>(std::min<std::int64_t>(b.width, 28))];
    ++hHist[static_cast<std::size_t>(std::min<std::int64_t>(b.height, 28))];
    const auto k = static_cast<std::size_t>(std::clamp<std::int64_t>(lab[i], 0, 9));
    sumW[k] += static_cast<double>(b.width);
    sumH[k] += static_cast<double>(b.height);
    sumAspect[k] += static_cast<double>(b.height) / static_cast<double>(b.width);
    ++count[k];
  }
  auto quantiles = [](std::vector<std::int64_t> v) {
    nlohmann::json q = nlohmann::json::object();
    if (v.empty()) return q;
    std::sort(v.begin(), v.end());
    for (double p : {0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0})
      q[std::to_string(static_cast<int>(std::lround(p * 100)))] = v[static_cast<std::size_t>(std::lround(p * static_cast<double>(v.size() - 1)))];
    return q;
  };
  nlohmann::json perClass = nlohmann::json::array();
  for (std::size_t k = 0; k < 10; ++k) {
    const double c = std::max<double>(1.0, static_cast<double>(count[k]));
    perClass.push_back({{"class", k}, {"name", fashionMnistClassNames()[k]}, {"count", count[k]},
                        {"mean_width", sumW[k] / c}, {"mean_height", sumH[k] / c}, {"mean_aspect_h_over_w", sumAspect[k] / c}});
  }
  return {{"images", n},
          {"width", {{"quantiles", quantiles(widths)}, {"histogram", wHist}}},
          {"height", {{"quantiles", quantiles(heights)}, {"histogram", hHist}}},
          {"per_class", perClass}};
}

}  // namespace tessera
