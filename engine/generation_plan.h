// SPDX-License-Identifier: Apache-2.0
// What a generation request will run, worked out and checked before any tensor is made:
// every image's class, seed and size, how the images group into sampler runs and
// batches, the resolved guidance, the sampler and its time grids, and where the noise
// comes from. generate() runs a plan; the studio and the CLI can show one.
#pragma once

#include "core/guidance/guidance.h"
#include "core/samplers/sampler.h"
#include "core/util/error.h"
#include "engine/model_file.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

struct GenerationRequest;

/// What generation needs to know about a model, from its backbone and description.
struct ModelTraits {
  std::int64_t channels = 0;
  std::int64_t sizeMultiple = 1;
  std::int64_t trainedHeight = 0, trainedWidth = 0;
  std::int64_t numClasses = 0;
  bool nullClass = false;
  std::vector<std::string> classNames;  ///< empty when the model has none
  std::int64_t guidedChannels = 0;      ///< the reference guidance rule (0 = all channels)
  /// "image" (pixels in [-1, 1], written as PNG) or "latent" (what the backbone samples
  /// is a latent: decoded to pixels when the model has an autoencoder, else tensors only).
  std::string dataKind = "latent";
  /// With an autoencoder: its pixel channels and downsampling (an h×w latent is an
  /// (h·f)×(w·f) picture). Sizes in requests stay in the backbone's cells.
  bool decodes = false;
  std::int64_t imageChannels = 0;
  std::int64_t pixelFactor = 1;

  /// Whether generation ends in pictures (pixel models, and latent ones with an autoencoder).
  bool makesPictures() const { return dataKind == "image" || decodes; }
  /// The channels of what generation returns: pixels when it makes pictures.
  std::int64_t outputChannels() const { return decodes ? imageChannels : channels; }
};
/// The model's traits; fails when the description is malformed or names no process.
Result<ModelTraits> modelTraits(const LoadedModel& model);

/// A class given as an index ("3") or a name ("Trouser", case-insensitive).
Result<std::int64_t> resolveClass(const ModelTraits& traits, const std::string& token);
/// Checks H×W for the model, naming the nearest valid sizes when it is not.
Result<void> checkSize(const ModelTraits& traits, std::int64_t height, std::int64_t width);

/// What generating `count` images of at most height × width, `batch` at a time, holds at its
/// peak, in bytes (in floating point: an absurd request must not overflow into a small
/// number): every finished image (the result keeps them all), and one batch's working
/// set, doubled for guidance: the sampler's states, the backbone's activations, and one
/// attention matrix of heads × tokens² a sample (LibTorch's attention materialises it).
double estimateGenerationBytes(const LoadedModel& model, const ModelTraits& traits, std::int64_t count,
                               std::int64_t batch, std::int64_t height, std::int64_t width);
/// Fails, naming the estimate, what this machine has available and what to change, when
/// the estimate is more than the memory this process may still take.
Result<void> checkGenerationMemory(const LoadedModel& model, const ModelTraits& traits, std::int64_t count,
                                   std::int64_t batch, std::int64_t height, std::int64_t width);

/// One image of a plan, at its place in the request.
struct PlannedImage {
  std::int64_t classLabel = 0;
  std::uint64_t seed = 0;  ///< seeds its initial noise and its step noise (unless given)
  std::int64_t height = 0, width = 0;
};

/// Images that one sampling loop runs together: a batch, or a pack when sizes differ.
struct PlannedBatch {
  std::vector<std::int64_t> images;  ///< indices into GenerationPlan::images, ascending
};

/// How a request's sizes become sampler runs.
enum class SizeBatching {
  OneSize,       ///< every image has the same size
  Packed,        ///< mixed sizes, each batch one packed sequence (Capabilities::packed)
  OneRunPerSize  ///< mixed sizes, one group per size in order of first appearance
};

/// Images that share one time grid, run batch after batch.
struct PlannedGroup {
  std::int64_t height = 0, width = 0;  ///< its first image's size, which sets the grid's resolution scale
  SamplerOptions options;              ///< the request's, with that resolution scale
  std::vector<double> grid;            ///< the sampler's τ of every state (first = noise)
  std::vector<PlannedBatch> batches;

  std::int64_t steps() const { return static_cast<std::int64_t>(grid.size()) - 1; }
};

/// Everything generate() will do for a request, as plain data.
struct GenerationPlan {
  ModelTraits traits;
  std::vector<PlannedImage> images;  ///< in the request's (and the result's) order
  SizeBatching sizeBatching = SizeBatching::OneSize;
  std::string sampler;               ///< the registry's name for the request's sampler
  bool stochastic = false;           ///< the sampler draws noise during its steps
  GuidanceConfig guidance;           ///< with the model's reference rule applied
  bool givenNoise = false;           ///< the initial noise is the request's tensor
  bool givenStepNoise = false;       ///< the step noise is the request's tensor
  std::vector<PlannedGroup> groups;  ///< in the order they run

  /// Sampling loops the plan runs, over all groups.
  std::int64_t batchCount() const;
  /// The plan for display: images, groups with their sizes, steps and batches.
  nlohmann::json toJson() const;
};

/// Works out what generate() will run for the request and checks it against the model,
/// before any tensor work. Bad input (sizes, classes, seeds, batch, guidance, sampler,
/// steps, noise shapes) fails with a message naming it.
Result<GenerationPlan> planGeneration(const LoadedModel& model, const GenerationRequest& request);

}  // namespace tessera
