// SPDX-License-Identifier: Apache-2.0
// A training configuration read and checked: its sections as structs with the defaults
// filled in, the learning-rate schedule, and what a resumed run may change. The JSON
// form (`TrainSettings::resolved`) is what config.json and every checkpoint record.
#pragma once

#include "core/config/config.h"
#include "core/data/batching.h"
#include "core/util/error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

/// 'data', and train.limit: the images, their batching and the validation images.
struct TrainDataSettings {
  DataSpec spec;
  BatchingOptions batching;             ///< its seed is train.seed
  std::int64_t validationImages = 256;  ///< the test split's first, or held out of the data
  std::int64_t limit = 0;               ///< train.limit: the first N images only (0 = all)
};

/// The run's length and its learning-rate schedule (the rate itself is the optimiser's).
struct ScheduleSettings {
  std::int64_t steps = 1000;
  std::int64_t warmup = 0;
  std::string kind = "constant";  ///< constant | cosine | wsd
  double minLrRatio = 0.0;
  std::int64_t decay = 0;  ///< wsd: the final steps over which the rate falls
};

/// AdamW, gradient clipping and the EMA of the weights.
struct OptimiserSettings {
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.0;
  double clip = 1.0;  ///< the gradients' global norm is clipped to this (0 = measured only)
  double ema = 0.9999;
  bool emaWarmup = true;
};

/// 'checkpoint': how often the run saves, how many it keeps, the model file's dtype.
struct CheckpointSettings {
  std::int64_t every = 1000, keep = 2;
  std::string modelDtype = "float32";
};

/// 'validation': the loss on the validation images at fixed timesteps and noise.
struct ValidationSettings {
  std::int64_t every = 500;  ///< 0 = never
  std::int64_t timesteps = 4;
};

/// 'samples': the preview grids (the EMA model, a fixed seed).
struct SampleGridSettings {
  std::int64_t every = 1000;  ///< 0 = only when asked (TrainRequest::sampleNow)
  std::int64_t perClass = 1, steps = 50;
  std::vector<std::string> classes;  ///< names or indices; empty = every class
  std::string sampler;               ///< "" = the process's default
  double cfg = 4.0;
  bool clipX0 = false;
  std::uint64_t seed = 0;
};

/// An autoencoder run (model.kind "autoencoder"): which kind, and the loss. The loss is
/// LDM's (LPIPSWithDiscriminator) without its perceptual and adversarial terms and with
/// its learned log-variance at 0, divided by the pixel count: the mean reconstruction
/// error plus kl_weight × the posterior's KL divergence from N(0, I) per pixel.
struct AutoencoderTrainSettings {
  std::string kind = "kl";            ///< a registered autoencoder kind (KL only: VQ has no codebook loss here)
  nlohmann::json config;              ///< its configuration (in and out channels come from the data)
  std::string reconstruction = "l1";  ///< l1 | l2
  double klWeight = 1e-6;             ///< LDM's kl_weight for its f4 and f8 KL autoencoders
};

/// A whole training configuration.
struct TrainSettings {
  /// {"backbone", "config", "process", "autoencoder"?}, or for an autoencoder run
  /// {"kind": "autoencoder", "autoencoder", "config", "loss"}.
  nlohmann::json model;
  bool autoencoderRun = false;  ///< model.kind "autoencoder": the run trains an autoencoder
  AutoencoderTrainSettings autoencoder;
  /// Latent training: model.autoencoder, the autoencoder (file, or a model file holding one)
  /// whose latents the backbone learns; the data are encoded once into data.latents' cache.
  std::string firstStage;
  std::string latentCache;  ///< data.latents: the cache folder (set whenever firstStage is)
  TrainDataSettings data;
  ScheduleSettings schedule;
  OptimiserSettings optimiser;
  double labelDropout = 0.1;
  std::uint64_t seed = 0;
  std::string precision = "fp32";  ///< fp32 | bf16 (CUDA autocast)
  std::int64_t logEvery = 10;
  CheckpointSettings checkpoint;
  ValidationSettings validation;
  SampleGridSettings samples;
  nlohmann::json resolved;  ///< the whole configuration with defaults
};

/// Reads a training configuration, naming the field of the first bad or unknown value.
Result<TrainSettings> parseTrainSettings(const Config& config);

/// The settings of a configuration fine-tuning the model a model file describes
/// (`description`): the architecture and process come from that model, so the
/// configuration may leave out the model section or give only the backbone's name.
/// A latent model's autoencoder comes along: model.autoencoder defaults to `initPath`.
Result<TrainSettings> trainSettingsForInit(const Config& config, const nlohmann::json& description,
                                           const std::string& initPath = {});

/// Where data.latents: true keeps its caches: $XDG_CACHE_HOME/tessera/latents, else
/// ~/.cache/tessera/latents.
std::string defaultLatentCacheDir();

/// The learning rate of a step under a resolved 'train' section: linear warm-up, then
/// constant, cosine down to min_lr_ratio, or wsd (constant, then linear down over the last
/// 'decay' steps).
double learningRateAt(const nlohmann::json& train, std::int64_t step);

/// Whether a run trained for `trainedSteps` steps under the resolved configuration
/// `before` may continue under `now`; the failure says what changed.
Result<void> checkResumable(const nlohmann::json& before, const nlohmann::json& now, std::int64_t trainedSteps);

}  // namespace tessera
