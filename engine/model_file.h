// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/formats/safetensors.h"
#include "core/process/process.h"
#include "core/util/error.h"
#include "models/autoencoders/autoencoder.h"
#include "models/backbone.h"

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

namespace tessera {

/// Metadata key of a Tessera model file holding its pipeline description as JSON:
/// {"format": 1, "backbone": {"kind", "config"}, "process": {...}, "classes": {...},
///  "source": {...}}, and optionally "data": {"kind": "image" | "latent", "channels",
///  "size": [H, W]} (what `sample` writes: PNGs or tensors), "defaults": {"sampler",
///  "cfg"} (what `sample` uses when not told) and "autoencoder": {"kind", "config",
///  "scale_factor", "shift_factor", "preview", "source"} (a latent model's first stage,
///  its tensors stored in the same file under "autoencoder.").
inline constexpr const char* kModelMetadataKey = "tessera.model";
inline constexpr int kModelFormatVersion = 1;

struct LoadedModel {
  std::string path;
  nlohmann::json description;             ///< the "tessera.model" JSON
  std::shared_ptr<BackboneImpl> backbone; ///< built from the registry, weights loaded, eval mode
  std::optional<Process> process;         ///< when the description names one
  /// A latent model's autoencoder (the description's "autoencoder"): samples are decoded
  /// to pixels with it.
  std::optional<LoadedAutoencoder> autoencoder;
};

/// The sampling settings a model file recommends ("defaults" in its description, written
/// by `eval --record-defaults` or the trainer); what `sample`, `eval` and the studio use
/// when not told otherwise.
struct SamplingDefaults {
  std::string sampler;                   ///< "ddim" for diffusion models, "euler" for interpolants
  std::int64_t steps = 50;
  double cfg = 1.0;                      ///< guidance scale (1 = none)
  double cfgLow = 0.0, cfgHigh = 1.0;    ///< guidance interval in progress (0 noise … 1 data)
  bool clipX0 = false;
  /// The time grid `sampler` uses ("default": the sampler's own). LDM imports record
  /// "ldm" (core/samplers/time_grid.h), so that DDIM takes LDM's timesteps unasked.
  std::string grid = "default";

  static SamplingDefaults of(const LoadedModel& model);
  /// The grid to use: `requested` unless it is "default" and `sampler` is the model's own.
  std::string gridFor(const std::string& sampler, const std::string& requested) const {
    return requested == "default" && sampler == this->sampler ? grid : requested;
  }
  /// The "defaults" object for a description.
  nlohmann::json toJson() const;
};

/// Writes weights + description as one safetensors file (atomically).
Result<void> writeModelFile(const std::string& path, const nlohmann::json& description, const NamedTensors& weights);

/// A number of a backbone config for the size estimates made before anything is built
/// (hidden_size, depth, num_heads, mlp_ratio): `otherwise` when absent or not a number.
/// Building the backbone validates the config; this only reads it.
double backboneConfigNumber(const nlohmann::json& config, const char* key, double otherwise = 0.0);

/// Reads a model file: checks the description, builds the backbone it names through the
/// registry and loads the weights strictly.
Result<LoadedModel> loadModelFile(const std::string& path);

}  // namespace tessera
