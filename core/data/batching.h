// SPDX-License-Identifier: Apache-2.0
// Training data as the trainer sees it: a labelled image set (from Fashion-MNIST,
// fashion-native or an image folder) and a batcher that turns it into batches in one of
// three modes — fixed size, aspect-ratio buckets or packed variable-size sequences.
// Every batch is a pure function of (seed, step): no iterator state to save, so a resumed
// run and every data-parallel rank see exactly the batches of an uninterrupted run.
#pragma once

#include "core/config/config.h"
#include "core/util/error.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tessera {

/// A labelled image set: (C, H_i, W_i) uint8 images, labels in 0 … classNames.size() − 1.
struct LabelledImages {
  std::vector<std::string> classNames;
  int channels = 1;
  std::vector<at::Tensor> images;
  std::vector<std::int64_t> labels;
  nlohmann::json summary;  ///< where the data came from, counts, skipped files

  std::int64_t size() const { return static_cast<std::int64_t>(images.size()); }
};

struct DataSpec {
  std::string source = "fashion-mnist";  ///< fashion-mnist | fashion-native | a folder path
  std::string split = "train";           ///< train | test (Fashion-MNIST sources)
  std::string dir;                       ///< Fashion-MNIST files ("" = the Debian package's)
  /// A subset of classes by name or index, in the order they get their new labels
  /// (empty = all, keeping their labels).
  std::vector<std::string> classes;
};

/// Loads the images a spec names. Unknown classes or sources fail naming what exists.
Result<LabelledImages> loadLabelledImages(const DataSpec& spec);

/// Keeps the items whose index is (or is not) in a held-out set: `count` items drawn
/// without replacement with `seed`, for a validation split of data with no test split.
std::pair<LabelledImages, LabelledImages> holdOut(const LabelledImages& data, std::int64_t count, std::uint64_t seed);

enum class BatchMode { Fixed, Buckets, Packed };
Result<BatchMode> parseBatchMode(const std::string& name);
std::string batchModeName(BatchMode mode);

struct BatchingOptions {
  BatchMode mode = BatchMode::Fixed;
  std::int64_t batchSize = 64;        ///< images per batch (fixed, buckets)
  std::int64_t height = 28, width = 28;  ///< fixed: the grid; buckets: its area is the target area
  std::int64_t multiple = 1;          ///< sides are multiples of this (the patch size)
  std::string fit = "pad";            ///< fixed: pad (letterbox) | stretch | crop (cover, centred)
  double maxAspect = 4.0;             ///< buckets: aspect ratios (H/W) from 1/maxAspect to maxAspect
  std::int64_t tokenBudget = 4096;    ///< packed: patches per batch at most
  std::int64_t maxSide = 0;           ///< packed: longest side after resizing (0 = native size)
  bool flip = false;                  ///< horizontal flip with probability ½
  std::uint64_t seed = 0;
  bool dropLast = false;              ///< buckets: drop a bucket's last partial batch each epoch

  static Result<BatchingOptions> fromConfig(const Config& config, const std::string& path);
  nlohmann::json toJson() const;
};

struct Batch {
  std::int64_t step = 0, epoch = 0;
  at::Tensor x;                    ///< fixed / buckets: (B, C, H, W) float in [-1, 1]
  std::vector<at::Tensor> images;  ///< packed: (C, H_i, W_i) float in [-1, 1]
  at::Tensor labels;               ///< (B,) int64
  std::vector<std::int64_t> indices;  ///< items of the data set, in batch order
  std::vector<bool> flipped;

  std::int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

/// Turns a labelled image set into batches. Images are resized once, when the batcher is
/// built (to the fixed grid, their bucket's size, or a multiple of the patch size), so
/// drawing a batch only gathers and flips.
class Batcher {
public:
  static Result<Batcher> create(const LabelledImages& data, const BatchingOptions& options);

  /// The batch of `step` (0-based), the same for the same data, options and step.
  Batch batch(std::int64_t step) const;
  /// Batches in one pass over the data.
  std::int64_t stepsPerEpoch() const { return m_stepsPerEpoch; }
  const BatchingOptions& options() const { return m_options; }
  std::int64_t itemCount() const { return static_cast<std::int64_t>(m_prepared.size()); }
  /// Buckets with their sizes and counts, packed size ranges…, for a run's summary.
  nlohmann::json describe() const;
  /// The (H, W) each item is trained at.
  std::pair<std::int64_t, std::int64_t> itemSize(std::int64_t index) const;
  /// Item `index` as it is trained (fitted to its size, not flipped): (C, H, W) float in [-1, 1].
  at::Tensor item(std::int64_t index) const;

  /// The aspect-ratio buckets for a target area: sides multiples of `multiple`, area
  /// close to height×width, ratios within [1/maxAspect, maxAspect]; sorted by H/W.
  static std::vector<std::pair<std::int64_t, std::int64_t>> makeBuckets(std::int64_t height, std::int64_t width,
                                                                        std::int64_t multiple, double maxAspect);

private:
  Batcher() = default;
  /// One epoch's batches (lists of item indices), computed once per epoch and cached.
  std::shared_ptr<const std::vector<std::vector<std::int64_t>>> epochPlan(std::int64_t epoch) const;

  BatchingOptions m_options;
  std::vector<at::Tensor> m_prepared;        ///< (C, H, W) uint8 at the size each is trained at
  std::vector<std::int64_t> m_labels;
  std::vector<std::int64_t> m_bucketOf;      ///< buckets: the bucket of each item
  std::vector<std::pair<std::int64_t, std::int64_t>> m_buckets;
  at::Tensor m_stacked;                      ///< fixed: all items (N, C, H, W) uint8
  std::int64_t m_stepsPerEpoch = 0;
  std::unique_ptr<std::mutex> m_mutex = std::make_unique<std::mutex>();
  mutable std::map<std::int64_t, std::shared_ptr<const std::vector<std::vector<std::int64_t>>>> m_plans;
};

/// SplitMix64: the hash that derives every per-step seed from the run's seed.
std::uint64_t mixSeed(std::uint64_t a, std::uint64_t b);

}  // namespace tessera
