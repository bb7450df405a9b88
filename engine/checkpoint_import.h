// SPDX-License-Identifier: Apache-2.0
// Reading official checkpoints for `tessera-cli import` and the studio's import dialog:
// the state dict inside a torch.save archive or a safetensors file, and autoencoders
// (LDM/Stable Diffusion/diffusers) converted into Tessera autoencoder files.
#pragma once

#include "core/formats/safetensors.h"
#include "core/util/error.h"
#include "models/autoencoders/autoencoder.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace tessera {

struct CheckpointStateDict {
  NamedTensors tensors;
  std::string container;  ///< the dict inside a torch.save archive ("" = top level or safetensors)
};

/// The state dict of a reference checkpoint: torch.save archives (the dict at `key`, or
/// the one chooseStateDict picks) and safetensors files alike.
Result<CheckpointStateDict> readCheckpointStateDict(const std::string& path, const std::string& key = {});

struct AutoencoderImportOptions {
  std::optional<double> scaleFactor, shiftFactor;  ///< what the user says; otherwise found or defaulted (see notes)
  std::string key;                                 ///< the state dict inside a torch.save archive
};

/// A Tessera autoencoder: its description ({"kind", "config", "scale_factor",
/// "shift_factor", "preview", "source"}) and weights (our names, float32).
struct AutoencoderContents {
  nlohmann::json description;
  NamedTensors weights;
  std::vector<std::string> notes;  ///< what was inferred, for the user
};

/// Whether `tensors` (as read from a checkpoint) hold an autoencoder some family recognises.
bool holdsAutoencoder(const NamedTensors& tensors);

/// Converts an official autoencoder checkpoint read from `path`. The scale factor is,
/// in this order: options.scaleFactor; diffusers' config.json beside the file
/// ("scaling_factor", "shift_factor"); the checkpoint's own "scale_factor" (LDM's
/// LatentDiffusion); 0.18215 for a 4-channel f8 KL autoencoder (Stable Diffusion 1/2's
/// VAE, which DiT, SiT and FiT use; said in the notes, since SDXL's has 0.13025); else 1.
/// Fits the preview map.
Result<AutoencoderContents> importAutoencoder(const std::string& path, const NamedTensors& raw,
                                              const AutoencoderImportOptions& options);

/// `path` as an autoencoder: a Tessera autoencoder file as it is (a scale or shift in
/// `options` overrides its own), or an official checkpoint imported.
Result<AutoencoderContents> readAutoencoder(const std::string& path, const AutoencoderImportOptions& options);

/// Builds the network of `contents` with its weights (to check it, or to use it at once).
Result<LoadedAutoencoder> buildAutoencoder(const AutoencoderContents& contents);

}  // namespace tessera
