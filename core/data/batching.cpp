// SPDX-License-Identifier: Apache-2.0
#include "core/data/batching.h"

#include "core/data/fashion_mnist.h"
#include "core/data/fashion_native.h"
#include "core/data/image_folder.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

namespace tessera {

std::uint64_t mixSeed(std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = a + 0x9E3779B97F4A7C15ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

/// Applies a class subset: keeps items of the named classes and relabels them in the
/// order given.
Result<void> selectClasses(LabelledImages& data, const std::vector<std::string>& classes) {
  if (classes.empty()) return {};
  std::vector<std::int64_t> newLabel(data.classNames.size(), -1);
  std::vector<std::string> names;
  for (const std::string& token : classes) {
    std::int64_t found = -1;
    for (std::size_t i = 0; i < data.classNames.size(); ++i)
      if (lower(data.classNames[i]) == lower(token)) found = static_cast<std::int64_t>(i);
    if (found < 0 && !token.empty() && std::all_of(token.begin(), token.end(), ::isdigit)) {
      const long long v = std::stoll(token);
      if (v >= 0 && v < static_cast<long long>(data.classNames.size())) found = v;
    }
    if (found < 0) {
      std::string known;
      for (const auto& n : data.classNames) known += (known.empty() ? "" : ", ") + n;
      return fail("data.classes: no class '" + token + "' in this data (its classes: " + known + ")");
    }
    if (newLabel[static_cast<std::size_t>(found)] >= 0)
      return fail("data.classes: class '" + token + "' is named twice");
    newLabel[static_cast<std::size_t>(found)] = static_cast<std::int64_t>(names.size());
    names.push_back(data.classNames[static_cast<std::size_t>(found)]);
  }
  LabelledImages out;
  out.classNames = names;
  out.channels = data.channels;
  out.summary = data.summary;
  for (std::size_t i = 0; i < data.images.size(); ++i) {
    const std::int64_t l = newLabel[static_cast<std::size_t>(data.labels[i])];
    if (l < 0) continue;
    out.images.push_back(data.images[i]);
    out.labels.push_back(l);
  }
  out.summary["classes"] = names;
  data = std::move(out);
  return {};
}

/// (C, H, W) uint8 → (C, h, w) uint8 with OpenCV (area filter when shrinking).
at::Tensor resizeImage(const at::Tensor& chw, std::int64_t h, std::int64_t w) {
  if (chw.size(1) == h && chw.size(2) == w) return chw;
  const int c = static_cast<int>(chw.size(0));
  const at::Tensor hwc = chw.permute({1, 2, 0}).contiguous();
  cv::Mat src(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_8UC(c), hwc.data_ptr());
  cv::Mat dst;
  const bool shrink = h * w < chw.size(1) * chw.size(2);
  cv::resize(src, dst, cv::Size(static_cast<int>(w), static_cast<int>(h)), 0, 0,
             shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
  at::Tensor out = at::from_blob(dst.data, {h, w, c}, at::kByte).clone();
  return out.permute({2, 0, 1}).contiguous();
}

/// Scales to cover (h, w) and crops the centre.
at::Tensor coverCrop(const at::Tensor& chw, std::int64_t h, std::int64_t w) {
  const double sh = static_cast<double>(h) / static_cast<double>(chw.size(1));
  const double sw = static_cast<double>(w) / static_cast<double>(chw.size(2));
  const double s = std::max(sh, sw);
  const std::int64_t rh = std::max<std::int64_t>(h, std::llround(static_cast<double>(chw.size(1)) * s));
  const std::int64_t rw = std::max<std::int64_t>(w, std::llround(static_cast<double>(chw.size(2)) * s));
  const at::Tensor r = resizeImage(chw, rh, rw);
  const std::int64_t top = (rh - h) / 2, left = (rw - w) / 2;
  return r.slice(1, top, top + h).slice(2, left, left + w).contiguous();
}

/// Scales to fit inside (h, w) and pads the rest with black, centred.
at::Tensor letterbox(const at::Tensor& chw, std::int64_t h, std::int64_t w) {
  if (chw.size(1) == h && chw.size(2) == w) return chw;
  const double s = std::min(static_cast<double>(h) / static_cast<double>(chw.size(1)),
                            static_cast<double>(w) / static_cast<double>(chw.size(2)));
  const std::int64_t rh = std::clamp<std::int64_t>(std::llround(static_cast<double>(chw.size(1)) * s), 1, h);
  const std::int64_t rw = std::clamp<std::int64_t>(std::llround(static_cast<double>(chw.size(2)) * s), 1, w);
  const at::Tensor r = resizeImage(chw, rh, rw);
  at::Tensor out = at::zeros({chw.size(0), h, w}, at::kByte);
  const std::int64_t top = (h - rh) / 2, left = (w - rw) / 2;
  out.slice(1, top, top + rh).slice(2, left, left + rw).copy_(r);
  return out;
}

std::int64_t roundToMultiple(double v, std::int64_t m) {
  return std::max<std::int64_t>(m, static_cast<std::int64_t>(std::llround(v / static_cast<double>(m))) * m);
}

at::Tensor toFloat(const at::Tensor& u8) { return u8.to(at::kFloat).div_(127.5).sub_(1.0); }

}  // namespace

Result<LabelledImages> loadLabelledImages(const DataSpec& spec) {
  LabelledImages data;
  const std::string dir = spec.dir.empty() ? std::string(kFashionMnistDir) : spec.dir;
  if (spec.source == "fashion-mnist" || spec.source == "fashion-native") {
    if (spec.split != "train" && spec.split != "test")
      return fail("data.split: expected \"train\" or \"test\", got \"" + spec.split + "\"");
    auto split = loadFashionMnist(spec.split, dir);
    if (!split) return tl::unexpected(split.error());
    const auto& names = fashionMnistClassNames();
    data.classNames.assign(names.begin(), names.end());
    data.channels = 1;
    const std::int64_t n = split->labels.size(0);
    const auto* labels = split->labels.data_ptr<std::int64_t>();
    data.labels.assign(labels, labels + n);
    if (spec.source == "fashion-mnist") {
      const at::Tensor all = split->images.unsqueeze(1);  // (N, 1, 28, 28)
      data.images.reserve(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i) data.images.push_back(all[i]);
    } else {
      NativeSet set = cropNative(*split);
      data.images.reserve(set.images.size());
      for (auto& img : set.images) data.images.push_back(img.unsqueeze(0));
    }
    data.summary = {{"source", spec.source}, {"split", spec.split}, {"dir", dir}, {"images", n}};
  } else {
    auto folder = loadImageFolder(spec.source);
    if (!folder)
      return fail("data.source: expected fashion-mnist, fashion-native or an image folder; " +
                  folder.error().message());
    data.classNames = folder->classNames;
    data.channels = folder->channels;
    data.images = folder->images;
    data.labels = folder->labels;
    data.summary = folder->summary();
    data.summary["source"] = spec.source;
  }
  if (auto r = selectClasses(data, spec.classes); !r) return tl::unexpected(r.error());
  data.summary["images"] = data.size();
  if (data.images.empty()) return fail("data: no images left after choosing the classes");
  return data;
}

std::pair<LabelledImages, LabelledImages> holdOut(const LabelledImages& data, std::int64_t count, std::uint64_t seed) {
  LabelledImages kept, held;
  for (LabelledImages* d : {&kept, &held}) {
    d->classNames = data.classNames;
    d->channels = data.channels;
    d->summary = data.summary;
  }
  count = std::clamp<std::int64_t>(count, 0, data.size());
  auto gen = at::make_generator<at::CPUGeneratorImpl>(mixSeed(seed, 0x4B1D));
  const at::Tensor perm = at::randperm(data.size(), gen, at::kLong);
  std::vector<bool> isHeld(static_cast<std::size_t>(data.size()), false);
  for (std::int64_t i = 0; i < count; ++i) isHeld[static_cast<std::size_t>(perm[i].item<std::int64_t>())] = true;
  for (std::size_t i = 0; i < data.images.size(); ++i) {
    LabelledImages& d = isHeld[i] ? held : kept;
    d.images.push_back(data.images[i]);
    d.labels.push_back(data.labels[i]);
  }
  kept.summary["images"] = kept.size();
  held.summary["images"] = held.size();
  return {std::move(kept), std::move(held)};
}

Result<BatchMode> parseBatchMode(const std::string& name) {
  if (name == "fixed") return BatchMode::Fixed;
  if (name == "buckets") return BatchMode::Buckets;
  if (name == "packed") return BatchMode::Packed;
  return fail("batching: expected fixed, buckets or packed, got \"" + name + "\"");
}

std::string batchModeName(BatchMode mode) {
  switch (mode) {
    case BatchMode::Fixed: return "fixed";
    case BatchMode::Buckets: return "buckets";
    case BatchMode::Packed: return "packed";
  }
  return "?";
}

Result<BatchingOptions> BatchingOptions::fromConfig(const Config& config, const std::string& path) {
  BatchingOptions o;
  const auto key = [&](const char* k) { return path.empty() ? std::string(k) : path + "." + k; };
  if (auto r = config.rejectUnknown(
          path, {"batching", "batch", "size", "fit", "max_aspect", "token_budget", "max_side", "flip", "drop_last",
                 "source", "split", "dir", "classes", "validation", "multiple", "latents"});
      !r)
    return tl::unexpected(r.error());
  auto mode = config.string(key("batching"), std::string("fixed"), {"fixed", "buckets", "packed"});
  if (!mode) return tl::unexpected(mode.error());
  o.mode = *parseBatchMode(*mode);
  auto batch = config.integer(key("batch"), 64, 1, 1 << 20);
  if (!batch) return tl::unexpected(batch.error());
  o.batchSize = *batch;
  if (config.has(key("size"))) {
    std::string pointer = "/" + key("size");
    std::replace(pointer.begin(), pointer.end(), '.', '/');
    const nlohmann::json* node = &config.json().at(nlohmann::json::json_pointer(pointer));
    if (!node->is_array() || node->size() != 2 || !(*node)[0].is_number_integer() || !(*node)[1].is_number_integer() ||
        (*node)[0].get<std::int64_t>() < 1 || (*node)[1].get<std::int64_t>() < 1)
      return fail(config.source() + ": field '" + key("size") + "': expected [height, width] in pixels, got " +
                  node->dump());
    o.height = (*node)[0].get<std::int64_t>();
    o.width = (*node)[1].get<std::int64_t>();
  }
  auto fit = config.string(key("fit"), std::string("pad"), {"pad", "stretch", "crop"});
  if (!fit) return tl::unexpected(fit.error());
  o.fit = *fit;
  auto aspect = config.number(key("max_aspect"), 4.0, 1.0, 64.0);
  if (!aspect) return tl::unexpected(aspect.error());
  o.maxAspect = *aspect;
  auto budget = config.integer(key("token_budget"), 4096, 1, 1 << 24);
  if (!budget) return tl::unexpected(budget.error());
  o.tokenBudget = *budget;
  auto maxSide = config.integer(key("max_side"), 0, 0, 1 << 16);
  if (!maxSide) return tl::unexpected(maxSide.error());
  o.maxSide = *maxSide;
  auto flip = config.boolean(key("flip"), false);
  if (!flip) return tl::unexpected(flip.error());
  o.flip = *flip;
  auto dropLast = config.boolean(key("drop_last"), false);
  if (!dropLast) return tl::unexpected(dropLast.error());
  o.dropLast = *dropLast;
  return o;
}

nlohmann::json BatchingOptions::toJson() const {
  return {{"batching", batchModeName(mode)}, {"batch", batchSize},      {"size", {height, width}},
          {"multiple", multiple},            {"fit", fit},              {"max_aspect", maxAspect},
          {"token_budget", tokenBudget},     {"max_side", maxSide},     {"flip", flip},
          {"seed", seed},                    {"drop_last", dropLast}};
}

std::vector<std::pair<std::int64_t, std::int64_t>> Batcher::makeBuckets(std::int64_t height, std::int64_t width,
                                                                        std::int64_t multiple, double maxAspect) {
  const double area = static_cast<double>(height * width);
  std::set<std::pair<std::int64_t, std::int64_t>> found;
  const std::int64_t maxSide = roundToMultiple(std::sqrt(area * maxAspect), multiple);
  for (std::int64_t h = multiple; h <= maxSide; h += multiple) {
    const std::int64_t w = roundToMultiple(area / static_cast<double>(h), multiple);
    const double ratio = static_cast<double>(h) / static_cast<double>(w);
    if (ratio < 1.0 / maxAspect - 1e-9 || ratio > maxAspect + 1e-9) continue;
    found.insert({h, w});
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> buckets(found.begin(), found.end());
  std::sort(buckets.begin(), buckets.end(), [](const auto& a, const auto& b) {
    return static_cast<double>(a.first) / static_cast<double>(a.second) <
           static_cast<double>(b.first) / static_cast<double>(b.second);
  });
  // Keep one bucket per aspect ratio (the one closest to the target area).
  std::vector<std::pair<std::int64_t, std::int64_t>> unique;
  for (const auto& b : buckets) {
    if (!unique.empty() && unique.back().first * b.second == unique.back().second * b.first) {
      if (std::abs(static_cast<double>(b.first * b.second) - area) <
          std::abs(static_cast<double>(unique.back().first * unique.back().second) - area))
        unique.back() = b;
      continue;
    }
    unique.push_back(b);
  }
  return unique;
}

Result<Batcher> Batcher::create(const LabelledImages& data, const BatchingOptions& options) {
  if (data.images.empty()) return fail("batching: the data set is empty");
  const std::int64_t m = std::max<std::int64_t>(1, options.multiple);
  Batcher b;
  b.m_options = options;
  b.m_labels = data.labels;
  b.m_prepared.reserve(data.images.size());
  const std::int64_t n = data.size();
  switch (options.mode) {
    case BatchMode::Fixed: {
      if (options.height % m != 0 || options.width % m != 0)
        return fail("data.size: " + std::to_string(options.height) + "x" + std::to_string(options.width) +
                    " is not a multiple of the patch size " + std::to_string(m) + " (nearest: " +
                    std::to_string(roundToMultiple(static_cast<double>(options.height), m)) + "x" +
                    std::to_string(roundToMultiple(static_cast<double>(options.width), m)) + ")");
      for (const at::Tensor& img : data.images) {
        at::Tensor p = options.fit == "stretch" ? resizeImage(img, options.height, options.width)
                       : options.fit == "crop"  ? coverCrop(img, options.height, options.width)
                                                : letterbox(img, options.height, options.width);
        b.m_prepared.push_back(p);
      }
      b.m_stacked = at::stack(b.m_prepared).contiguous();
      b.m_stepsPerEpoch = (n + options.batchSize - 1) / options.batchSize;
      break;
    }
    case BatchMode::Buckets: {
      b.m_buckets = makeBuckets(options.height, options.width, m, options.maxAspect);
      if (b.m_buckets.empty()) return fail("batching: no aspect-ratio bucket fits these sizes");
      for (const at::Tensor& img : data.images) {
        const double r = std::log(static_cast<double>(img.size(1)) / static_cast<double>(img.size(2)));
        std::size_t best = 0;
        double bestD = 1e300;
        for (std::size_t k = 0; k < b.m_buckets.size(); ++k) {
          const double d = std::abs(
              r - std::log(static_cast<double>(b.m_buckets[k].first) / static_cast<double>(b.m_buckets[k].second)));
          if (d < bestD) bestD = d, best = k;
        }
        b.m_bucketOf.push_back(static_cast<std::int64_t>(best));
        b.m_prepared.push_back(coverCrop(img, b.m_buckets[best].first, b.m_buckets[best].second));
      }
      b.m_stepsPerEpoch = static_cast<std::int64_t>(b.epochPlan(0)->size());
      if (b.m_stepsPerEpoch == 0) return fail("batching: every bucket holds fewer images than a batch (drop_last)");
      break;
    }
    case BatchMode::Packed: {
      for (const at::Tensor& img : data.images) {
        double h = static_cast<double>(img.size(1)), w = static_cast<double>(img.size(2));
        if (options.maxSide > 0 && std::max(h, w) > static_cast<double>(options.maxSide)) {
          const double s = static_cast<double>(options.maxSide) / std::max(h, w);
          h *= s, w *= s;
        }
        const std::int64_t th = roundToMultiple(h, m), tw = roundToMultiple(w, m);
        if ((th / m) * (tw / m) > options.tokenBudget)
          return fail("batching: an image of " + std::to_string(th) + "x" + std::to_string(tw) + " needs " +
                      std::to_string((th / m) * (tw / m)) + " patches, more than token_budget " +
                      std::to_string(options.tokenBudget) + " (raise it or set max_side)");
        b.m_prepared.push_back(resizeImage(img, th, tw));
      }
      b.m_stepsPerEpoch = static_cast<std::int64_t>(b.epochPlan(0)->size());
      break;
    }
  }
  return b;
}

std::shared_ptr<const std::vector<std::vector<std::int64_t>>> Batcher::epochPlan(std::int64_t epoch) const {
  {
    std::lock_guard<std::mutex> lock(*m_mutex);
    auto it = m_plans.find(epoch);
    if (it != m_plans.end()) return it->second;
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(mixSeed(m_options.seed, static_cast<std::uint64_t>(epoch)));
  const std::int64_t n = itemCount();
  const at::Tensor perm = at::randperm(n, gen, at::kLong);
  const std::int64_t* order = perm.data_ptr<std::int64_t>();
  auto plan = std::make_shared<std::vector<std::vector<std::int64_t>>>();
  if (m_options.mode == BatchMode::Fixed) {
    plan->emplace_back(order, order + n);  // one list: the epoch's order
  } else if (m_options.mode == BatchMode::Buckets) {
    std::vector<std::vector<std::int64_t>> perBucket(m_buckets.size());
    for (std::int64_t i = 0; i < n; ++i) perBucket[static_cast<std::size_t>(m_bucketOf[static_cast<std::size_t>(order[i])])].push_back(order[i]);
    for (const auto& items : perBucket)
      for (std::size_t s = 0; s < items.size(); s += static_cast<std::size_t>(m_options.batchSize)) {
        const std::size_t e = std::min(items.size(), s + static_cast<std::size_t>(m_options.batchSize));
        if (m_options.dropLast && e - s < static_cast<std::size_t>(m_options.batchSize)) continue;
        plan->emplace_back(items.begin() + static_cast<std::ptrdiff_t>(s), items.begin() + static_cast<std::ptrdiff_t>(e));
      }
    // Shuffle the batches so that buckets interleave.
    const at::Tensor batchOrder = at::randperm(static_cast<std::int64_t>(plan->size()), gen, at::kLong);
    std::vector<std::vector<std::int64_t>> shuffled;
    shuffled.reserve(plan->size());
    for (std::int64_t i = 0; i < batchOrder.size(0); ++i) shuffled.push_back((*plan)[static_cast<std::size_t>(batchOrder[i].item<std::int64_t>())]);
    *plan = std::move(shuffled);
  } else {
    const std::int64_t m = std::max<std::int64_t>(1, m_options.multiple);
    std::vector<std::int64_t> current;
    std::int64_t tokens = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const at::Tensor& img = m_prepared[static_cast<std::size_t>(order[i])];
      const std::int64_t t = (img.size(1) / m) * (img.size(2) / m);
      if (!current.empty() && (tokens + t > m_options.tokenBudget ||
                               static_cast<std::int64_t>(current.size()) >= m_options.batchSize)) {
        plan->push_back(std::move(current));
        current.clear();
        tokens = 0;
      }
      current.push_back(order[i]);
      tokens += t;
    }
    if (!current.empty()) plan->push_back(std::move(current));
  }
  std::lock_guard<std::mutex> lock(*m_mutex);
  if (m_plans.size() > 4) m_plans.erase(m_plans.begin());
  m_plans[epoch] = plan;
  return plan;
}

Batch Batcher::batch(std::int64_t step) const {
  Batch out;
  out.step = step;
  const std::int64_t n = itemCount();
  if (m_options.mode == BatchMode::Fixed) {
    // Batches run across epoch boundaries, so every batch is full and no item is dropped.
    const std::int64_t first = step * m_options.batchSize;
    out.epoch = first / n;
    for (std::int64_t j = 0; j < m_options.batchSize; ++j) {
      const std::int64_t pos = first + j;
      const auto plan = epochPlan(pos / n);
      out.indices.push_back((*plan)[0][static_cast<std::size_t>(pos % n)]);
    }
  } else {
    out.epoch = step / m_stepsPerEpoch;
    const auto plan = epochPlan(out.epoch);
    out.indices = (*plan)[static_cast<std::size_t>(step % m_stepsPerEpoch)];
  }
  const std::int64_t count = static_cast<std::int64_t>(out.indices.size());
  std::vector<std::int64_t> labels;
  labels.reserve(out.indices.size());
  for (std::int64_t i = 0; i < count; ++i) {
    labels.push_back(m_labels[static_cast<std::size_t>(out.indices[static_cast<std::size_t>(i)])]);
    out.flipped.push_back(m_options.flip && (mixSeed(mixSeed(m_options.seed ^ 0xF11Full, static_cast<std::uint64_t>(step)),
                                                    static_cast<std::uint64_t>(i)) & 1u));
  }
  out.labels = at::tensor(labels, at::kLong);
  if (m_options.mode == BatchMode::Packed) {
    for (std::int64_t i = 0; i < count; ++i) {
      at::Tensor img = toFloat(m_prepared[static_cast<std::size_t>(out.indices[static_cast<std::size_t>(i)])]);
      if (out.flipped[static_cast<std::size_t>(i)]) img = img.flip({2});
      out.images.push_back(img.contiguous());
    }
    return out;
  }
  at::Tensor u8;
  if (m_stacked.defined()) {
    u8 = m_stacked.index_select(0, at::tensor(out.indices, at::kLong));
  } else {
    std::vector<at::Tensor> parts;
    for (std::int64_t idx : out.indices) parts.push_back(m_prepared[static_cast<std::size_t>(idx)]);
    u8 = at::stack(parts);
  }
  out.x = toFloat(u8);
  if (m_options.flip) {
    std::vector<std::int64_t> rows;
    for (std::int64_t i = 0; i < count; ++i)
      if (out.flipped[static_cast<std::size_t>(i)]) rows.push_back(i);
    if (!rows.empty()) {
      const at::Tensor r = at::tensor(rows, at::kLong);
      out.x.index_copy_(0, r, out.x.index_select(0, r).flip({3}));
    }
  }
  return out;
}

at::Tensor Batcher::item(std::int64_t index) const { return toFloat(m_prepared.at(static_cast<std::size_t>(index))); }

std::pair<std::int64_t, std::int64_t> Batcher::itemSize(std::int64_t index) const {
  const at::Tensor& t = m_prepared.at(static_cast<std::size_t>(index));
  return {t.size(1), t.size(2)};
}

nlohmann::json Batcher::describe() const {
  nlohmann::json j = m_options.toJson();
  j["items"] = itemCount();
  j["steps_per_epoch"] = m_stepsPerEpoch;
  if (m_options.mode == BatchMode::Buckets) {
    std::vector<std::int64_t> counts(m_buckets.size(), 0);
    for (std::int64_t b : m_bucketOf) ++counts[static_cast<std::size_t>(b)];
    nlohmann::json buckets = nlohmann::json::array();
    for (std::size_t k = 0; k < m_buckets.size(); ++k)
      if (counts[k] > 0) buckets.push_back({{"size", {m_buckets[k].first, m_buckets[k].second}}, {"images", counts[k]}});
    j["buckets"] = buckets;
  } else if (m_options.mode == BatchMode::Packed) {
    std::map<std::pair<std::int64_t, std::int64_t>, std::int64_t> sizes;
    for (const auto& t : m_prepared) ++sizes[{t.size(1), t.size(2)}];
    j["distinct_sizes"] = sizes.size();
  }
  return j;
}

}  // namespace tessera
