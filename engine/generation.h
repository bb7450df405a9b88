// SPDX-License-Identifier: Apache-2.0
// Generation from a model file: the backbone, its process and the samplers, with
// guidance, per-image seeds, given noise, observers and cancellation. generate() plans
// a request (generation_plan.h: what will run, checked up front) and runs the plan batch
// by batch. Used by `tessera-cli sample`, the benchmarks and the studio's generation job.
#pragma once

#include "core/guidance/guidance.h"
#include "core/samplers/sampler.h"
#include "core/util/error.h"
#include "engine/generation_plan.h"
#include "engine/model_file.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace tessera {

class Probe;

struct GenerationRequest {
  std::vector<std::int64_t> classes;  ///< one per image
  std::int64_t height = 0, width = 0; ///< 0: the trained size
  /// Several sizes (H, W) in one request: image i gets sizes[i mod k]. A backbone that
  /// takes packed sequences (Capabilities::packed) runs each batch of mixed sizes as one packed
  /// forward per step; the others run one batch per size. Empty: height × width.
  std::vector<std::pair<std::int64_t, std::int64_t>> sizes;
  /// Explicit per-image seeds (one per image); empty: seed + i.
  std::vector<std::uint64_t> seeds;
  std::string sampler = "ddim";
  SamplerOptions options;
  GuidanceConfig guidance;            ///< channels 0 + referenceGuidanceRule → the model's rule
  bool referenceGuidanceRule = true;  ///< use ModelTraits::guidedChannels (the DiT/SiT quirk) when the model has one
  std::uint64_t seed = 0;             ///< image i uses seed + i, for its noise and its step noise
  std::int64_t batch = 8;             ///< images per forward batch
  std::optional<at::Tensor> noise;      ///< (n, C, H, W): the initial noise instead of the seeds'
  std::optional<at::Tensor> stepNoise;  ///< (steps, n, C, H, W): each step's noise instead of the seeds'
  bool recordTrajectory = false;      ///< keep every state and x0 estimate (host copies)
  bool guidanceParts = false;         ///< observers also get the conditional-only and unconditional-only x0
  StepObserver* observer = nullptr;   ///< every step of every batch
  /// Inspection taps: `probe` rides on the first network evaluation of every step for
  /// which `probeStep(step)` is true (every step when empty), so that the observer's
  /// onStep for that step finds it filled (the observer reads and clears it). Null: no
  /// taps, nothing computed or copied.
  Probe* probe = nullptr;
  std::function<bool(std::int64_t step)> probeStep;
  const CancelToken* cancel = nullptr;
  std::function<void(std::int64_t done, std::int64_t total)> onImages;  ///< after each batch
  /// Decoding a latent model's samples: tiles of this many latent cells (overlapping by
  /// decodeOverlap), so that memory stays bounded for large pictures; ≤ 0 decodes whole.
  std::int64_t decodeTile = 96, decodeOverlap = 8;
};

struct GenerationResult {
  /// (n, C, H, W) float on the CPU, in the model's data range (one size only); pixels in
  /// [-1, 1] for a latent model with an autoencoder.
  at::Tensor samples;
  std::vector<at::Tensor> images;  ///< every image (C, H_i, W_i), also for mixed sizes; decoded likewise
  /// A latent model with an autoencoder: what the backbone sampled, before decoding
  /// (n, C, h, w), and per image.
  at::Tensor latentSamples;
  std::vector<at::Tensor> latents;
  std::vector<double> times;   ///< every state's time in the model's convention
  std::vector<double> taus;    ///< the same as progress τ
  std::int64_t steps = 0, nfe = 0, forwardRows = 0;
  double seconds = 0;
  bool cancelled = false;
  std::int64_t completed = 0;  ///< images finished (all unless cancelled)
  at::Tensor trajectoryX;      ///< (states, n, C, H, W) when recorded
  at::Tensor trajectoryX0;     ///< (steps, n, C, H, W) when recorded
  nlohmann::json settings;     ///< everything needed to reproduce the run (sampler, grid, guidance, seeds…)
};

/// Plans the request (planGeneration, so bad input fails before any sampling, naming
/// it) and runs the plan batch by batch.
Result<GenerationResult> generate(const LoadedModel& model, const GenerationRequest& request);

/// The backbone as samplers see it: (x, t, y) → its prediction.
ModelFn modelFunction(const LoadedModel& model);

/// Moves the model to "cpu", "cuda" or "cuda:N", failing clearly when that device is
/// not there. The noise is still drawn on the CPU (SeededNoise), so a seed means the
/// same picture on every device, up to arithmetic.
Result<void> moveModel(LoadedModel& model, const std::string& device);

/// How the model treats sizes beyond its training grid, as its backbone offers
/// (BackboneImpl::setSizeExtrapolation): for RoPE backbones none | linear | ntk |
/// ntk-by-parts | yarn | ntk-pro1 | ntk-pro2 | scale1 | scale2, with `decouple` for
/// per-axis scales; for sin-cos backbones none (computed for the grid) or interpolate
/// (positions squeezed into the trained range). Fails naming the methods it has.
Result<void> setExtrapolation(LoadedModel& model, const std::string& method, bool decouple = false);

/// Per-image noise from seeds: image i draws from its own CPU generator seeded with
/// seed + i (first its initial noise, then one draw per stochastic step), so that a
/// seed means the same image alone or in any batch, on any device.
class SeededNoise final : public NoiseSource {
public:
  SeededNoise(std::uint64_t firstSeed, std::int64_t count, std::vector<std::int64_t> shape);
  /// One seed per image; `packPatch` > 0 with per-image shapes (C, H_i, W_i): every draw
  /// is each image's noise at its own size, patchified and packed (L, C, p, p) — the
  /// same numbers the image gets when generated alone.
  SeededNoise(const std::vector<std::uint64_t>& seeds, std::vector<std::vector<std::int64_t>> shapes, std::int64_t packPatch = 0);
  /// The initial noise (count, C, H, W), or the pack.
  at::Tensor initial();
  at::Tensor draw(std::int64_t step, const at::Tensor& like) override;

private:
  std::vector<at::Generator> m_generators;
  std::vector<std::vector<std::int64_t>> m_shapes;
  std::int64_t m_packPatch = 0;
};

}  // namespace tessera
