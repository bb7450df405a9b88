// SPDX-License-Identifier: Apache-2.0
// Autoencoders: the first stage of a latent diffusion model. An autoencoder maps pixels
// (N, 3, H, W) in [-1, 1] to a latent (N, C, H/f, W/f) and back; the backbone works on
// the latent scaled by the autoencoder's scale factor (and shift). Kinds are registered
// like backbones (models/autoencoders/autoencoders.def, one folder per family).
#pragma once

#include "core/formats/safetensors.h"
#include "core/util/error.h"
#include "models/state_dict.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tessera {

/// What encode() gives. A Gaussian posterior (KL) fills mean and std; a vector
/// quantiser (VQ) fills h (the latent before quantisation), quant and indices (N, h, w).
struct Encoded {
  at::Tensor mean, std;
  at::Tensor h, quant, indices;
};

/// The map between an autoencoder's latent z and the backbone's: backbone = (z − shift) · scale.
struct LatentScaling {
  double scale = 1.0;
  double shift = 0.0;
  at::Tensor toBackbone(const at::Tensor& z) const;
  at::Tensor fromBackbone(const at::Tensor& latent) const;
};

class AutoencoderImpl : public torch::nn::Module {
public:
  /// (N, inChannels, H, W) in [-1, 1], H and W multiples of downsampling(): the posterior or the codes.
  virtual Encoded encode(const at::Tensor& x) = 0;
  /// (N, latentChannels, h, w) → (N, outChannels, h·f, w·f), roughly in [-1, 1]. A VQ
  /// autoencoder quantises z first unless `quantize` is false.
  virtual at::Tensor decode(const at::Tensor& z, bool quantize = true) = 0;
  /// The latent a generative model is trained on from one encode: the posterior's mean
  /// (or a sample of it, given a generator) for KL, the pre-quantisation latent for VQ.
  virtual at::Tensor latentOf(const Encoded& encoded, at::Generator* generator = nullptr) const = 0;

  virtual std::string kind() const = 0;  ///< "kl", "vq"
  virtual std::int64_t latentChannels() const = 0;
  virtual std::int64_t imageChannels() const = 0;
  virtual std::int64_t downsampling() const = 0;  ///< f: the latent is H/f × W/f
};

/// Builds an autoencoder from its configuration (the "autoencoder.config" object of a model file).
using AutoencoderFactory = std::function<Result<std::shared_ptr<AutoencoderImpl>>(const nlohmann::json& config)>;

/// An official checkpoint converted: configuration, weights in our names, and what was inferred.
struct ImportedAutoencoder {
  std::string kind;
  nlohmann::json config;
  NamedTensors weights;
  std::optional<LatentScaling> scaling;  ///< when the checkpoint says (LDM's scale_factor buffer)
  std::string layout;                    ///< "compvis", "diffusers"
  std::vector<std::string> notes;
};

struct AutoencoderImporter {
  /// Whether these tensors (prefixes stripped) are this family's state dict.
  std::function<bool(const TensorShapes& shapes)> recognises;
  std::function<Result<ImportedAutoencoder>(const NamedTensors& stateDict)> convert;
  explicit operator bool() const { return recognises && convert; }
};

struct AutoencoderEntry {
  std::string name;         ///< "kl"
  std::string family;       ///< the folder: "ldm"
  std::string description;  ///< one line for listings
  AutoencoderFactory factory;
  /// A small configuration for tests (the conformance checks build every kind with it).
  nlohmann::json tiny;
  AutoencoderImporter importer{};  ///< shared by the kinds of one family
  /// A lower bound on the weights a configuration needs, computed without building it: a
  /// description that claims far more than its file holds is refused before anything is
  /// allocated (a damaged or hostile file).
  std::function<double(const nlohmann::json& config)> minimumWeights{};
};

class AutoencoderRegistry {
public:
  Result<void> add(AutoencoderEntry entry);
  const AutoencoderEntry* find(const std::string& name) const;
  std::vector<std::string> names() const;
  Result<std::shared_ptr<AutoencoderImpl>> create(const std::string& kind, const nlohmann::json& config) const;
  /// The importers (one per family) whose recognises() accepts `shapes`, as entry names.
  std::vector<const AutoencoderEntry*> recognise(const TensorShapes& shapes) const;

private:
  std::map<std::string, AutoencoderEntry> m_entries;
};

const AutoencoderRegistry& autoencoderRegistry();

/// The number of weights `shapes` hold (a double: a hostile file's shapes may overflow integers).
double heldWeights(const TensorShapes& shapes);

/// Reduces a checkpoint to the autoencoder's tensors: those under "first_stage_model."
/// (LDM and Stable Diffusion checkpoints) or "vae." when present, else all of them, with
/// wrapper prefixes removed. `dropped` counts what was left out.
NamedTensors autoencoderTensors(const NamedTensors& tensors, std::int64_t* dropped = nullptr);

/// An autoencoder with its weights, read from a model file's "autoencoder" section.
struct LoadedAutoencoder {
  std::shared_ptr<AutoencoderImpl> network;
  LatentScaling scaling;
  nlohmann::json description;  ///< {"kind", "config", "scale_factor", "shift_factor", "preview"?}
  /// A linear latent → RGB map for fast previews: (3, C + 1) (weights, then the bias), or undefined.
  at::Tensor preview;
};

/// Metadata key of a Tessera autoencoder file (also the section of a model file).
inline constexpr const char* kAutoencoderMetadataKey = "tessera.autoencoder";
/// Prefix of the autoencoder's tensors inside a model file that holds a backbone too.
inline constexpr const char* kAutoencoderTensorPrefix = "autoencoder.";

/// Builds the autoencoder `description` names ({"kind", "config", "scale_factor", ...}) and
/// loads its weights from `file`'s tensors named `prefix` + its own names, strictly
/// (other tensors of the file are not looked at).
Result<LoadedAutoencoder> loadAutoencoder(const SafetensorsFile& file, const nlohmann::json& description,
                                          const std::string& prefix, const std::string& where);

/// Reads a Tessera autoencoder file (written by `tessera-cli import --from autoencoder`).
Result<LoadedAutoencoder> loadAutoencoderFile(const std::string& path);

/// Writes an autoencoder file: weights + {"format", "kind", "config", "scale_factor", ...}.
Result<void> writeAutoencoderFile(const std::string& path, const nlohmann::json& description,
                                  const NamedTensors& weights);

/// Fits the fast preview map: least squares from latents to the images averaged over each
/// latent cell, on `samples` random-colour images (8×8 latent cells each; 4×4 where f ≥ 16)
/// encoded by `ae`.
/// Returns (3, C + 1).
at::Tensor fitPreviewMap(AutoencoderImpl& ae, std::int64_t samples = 16, std::uint64_t seed = 0);
/// The same fit on given images (N, imageChannels, H, W) in [-1, 1], H and W multiples of
/// the downsampling: a trained autoencoder's own data.
at::Tensor fitPreviewMapOn(AutoencoderImpl& ae, const at::Tensor& images);

/// A preview map as the description's "preview" rows.
nlohmann::json previewMapJson(const at::Tensor& map);

/// The preview: latent z (N, C, h, w) → (N, 3, h, w) with `map` (3, C + 1).
at::Tensor previewDecode(const at::Tensor& map, const at::Tensor& z);

/// Decodes in tiles of `tile` × `tile` latent cells that overlap their neighbours by
/// `overlap` cells, blending each overlap linearly from one tile to the next; each tile is
/// decoded with `overlap` more cells of context around it, cut off afterwards. Memory is
/// bounded by one tile of (tile + 2·overlap)² cells whatever the image size. A latent that fits one tile is
/// decoded whole. The decoder's group norms and attention see one tile at a time, so
/// tiles differ slightly from a whole decode (measured in the tests).
at::Tensor decodeTiled(AutoencoderImpl& ae, const at::Tensor& z, std::int64_t tile, std::int64_t overlap,
                       bool quantize = true);

}  // namespace tessera
