// SPDX-License-Identifier: Apache-2.0
// Reading official checkpoints for `tessera-cli import` and the studio's import dialog:
// the state dict inside a torch.save archive or a safetensors file, and autoencoders
// (LDM/Stable Diffusion/diffusers) converted into Tessera autoencoder files.
#pragma once

#include "core/formats/safetensors.h"
#include "core/util/error.h"
#include "models/autoencoders/autoencoder.h"

#include <nlohmann/json.hpp>

#include <cstdint>
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
  std::vector<std::string> notes;   ///< what was inferred, for the user
  std::int64_t latentChannels = 0;  ///< of the network, once built (every importer and reader builds it)
  std::int64_t downsampling = 0;    ///< likewise
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

/// What the commands take as an autoencoder: a Tessera autoencoder file, a model file that
/// holds one, or an official checkpoint (imported in memory; `notes` gets what was inferred).
Result<LoadedAutoencoder> loadAnyAutoencoder(const std::string& path, std::vector<std::string>* notes = nullptr);

/// What `tessera-cli import` and the studio's import dialog ask for.
struct ModelImportRequest {
  std::string in;             ///< the official checkpoint
  std::string from = "auto";  ///< a backbone kind with an importer, "autoencoder", or "auto"
  std::string key;            ///< the state dict inside a torch.save archive
  std::string preset;         ///< for what the shapes cannot tell (heads)
  std::int64_t heads = 0, numClasses = 0, inChannels = 0;
  // U-Net options (ImportRequest's, models/registry.h)
  std::optional<std::int64_t> headChannels, headsUpsample, imageSize;
  std::optional<bool> newAttentionOrder;
  std::optional<std::string> attentionResolutions;
  std::string autoencoder;  ///< a latent backbone's autoencoder: a Tessera file or an official one
  std::optional<double> scaleFactor, shiftFactor;  ///< the autoencoder's
};

/// An import done in memory: a model file's or an autoencoder file's contents.
struct ModelImport {
  bool autoencoderOnly = false;  ///< an autoencoder file, not a model
  std::string kind;              ///< the backbone's kind (or the autoencoder's, for autoencoderOnly)
  std::string recognisedAs;      ///< non-empty when `from` was auto: what the tensors were recognised as
  nlohmann::json description;    ///< the model's (or the autoencoder's)
  NamedTensors weights;
  std::vector<std::string> notes;
  std::int64_t parameters = 0;  ///< the backbone's (or the autoencoder's)
  std::int64_t autoencoderParameters = 0;
  std::int64_t autoencoderDownsampling = 0;

  /// The "imported" event `tessera-cli import` prints (without "out").
  nlohmann::json summary() const;
};

/// The kinds `from` may name: "auto", every backbone with an importer, "autoencoder".
std::vector<std::string> importSources();

/// Reads and converts `request.in` (and its autoencoder), checking every tensor; writes
/// nothing. Every failure is the input's (a message naming the file, tensor or option).
Result<ModelImport> importModel(const ModelImportRequest& request);

/// Writes an import atomically to `path`.
Result<void> writeImport(const std::string& path, const ModelImport& import);

}  // namespace tessera
