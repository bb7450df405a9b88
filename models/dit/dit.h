// SPDX-License-Identifier: Apache-2.0
// DiT (Peebles & Xie, ICCV 2023) and SiT (Ma et al., ECCV 2024), which uses the same
// network. Sub-module names are the reference state-dict keys (facebookresearch/DiT
// models.py), so importing is a name lookup.
#pragma once

#include "core/config/config.h"
#include "core/util/error.h"
#include "models/backbone.h"
#include "models/config_table.h"

#include <nlohmann/json.hpp>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace tessera {

class Probe;

/// A DiT's (or SiT's) configuration; its fields are listed in models/dit/dit_config.def.
struct DiTConfig {
#define TESSERA_FIELD(type, member, value, key, constraint, doc) type member = value;
#include "models/dit/dit_config.def"
#undef TESSERA_FIELD

  std::int64_t outChannels() const { return learnSigma ? 2 * inChannels : inChannels; }
  std::int64_t mlpHidden() const { return static_cast<std::int64_t>(static_cast<double>(hiddenSize) * mlpRatio); }
  /// Parameters including the fixed pos_embed, computed from the configuration alone.
  std::int64_t parameterCount() const;
  /// Checks a configuration however it was made (the table checks each field's bounds as it reads).
  Result<void> validate() const;
  nlohmann::json toJson() const;
  /// Reads the fields of toJson() from `config` (at `path`, "" = root); absent fields
  /// keep the values of `defaults`.
  static Result<DiTConfig> fromConfig(const Config& config, const std::string& path, const DiTConfig& defaults);
  /// The table of dit_config.def's fields ("preset" accepted too).
  static const ConfigTable<DiTConfig>& table();
};

/// Names and shapes of the state dict a DiT of this configuration has, computed from the
/// configuration alone (checked against the module in the tests), so that checkpoints
/// can be verified without allocating the network.
std::vector<std::pair<std::string, std::vector<std::int64_t>>> ditStateShapes(const DiTConfig& config);

/// Official presets: "DiT-XL/2" … "DiT-S/8" and the same for "SiT-…" (SiT presets set
/// dropSigmaOutput and velocity prediction).
Result<DiTConfig> ditPreset(const std::string& name);
std::vector<std::string> ditPresetNames();

class TimestepEmbedderImpl : public torch::nn::Module {
public:
  TimestepEmbedderImpl(std::int64_t hidden, std::int64_t frequencyDim = 256);
  at::Tensor forward(const at::Tensor& t);  // (N,) -> (N, D)
  torch::nn::Sequential mlp{nullptr};
  std::int64_t frequencyDim;
};
TORCH_MODULE(TimestepEmbedder);

class LabelEmbedderImpl : public torch::nn::Module {
public:
  LabelEmbedderImpl(std::int64_t numClasses, std::int64_t hidden, double dropoutProb);
  /// Replaces labels by the null class with probability dropoutProb when `train`.
  at::Tensor forward(const at::Tensor& labels, bool train);  // (N,) -> (N, D)
  torch::nn::Embedding embedding_table{nullptr};
  std::int64_t numClasses;
  double dropoutProb;
};
TORCH_MODULE(LabelEmbedder);

class PatchEmbedImpl : public torch::nn::Module {
public:
  PatchEmbedImpl(std::int64_t inChannels, std::int64_t hidden, std::int64_t patch);
  at::Tensor forward(const at::Tensor& x);  // (N, C, H, W) -> (N, T, D)
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

class AttentionImpl : public torch::nn::Module {
public:
  AttentionImpl(std::int64_t hidden, std::int64_t heads);
  at::Tensor forward(const at::Tensor& x, Probe* probe, int layer);  // (N, T, D) -> (N, T, D)
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  std::int64_t heads;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
public:
  MlpImpl(std::int64_t hidden, std::int64_t inner);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

class DiTBlockImpl : public torch::nn::Module {
public:
  DiTBlockImpl(std::int64_t hidden, std::int64_t heads, std::int64_t mlpHidden);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& c, Probe* probe, int layer);  // (N,T,D),(N,D)
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};
  torch::nn::Sequential adaLN_modulation{nullptr};
};
TORCH_MODULE(DiTBlock);

class FinalLayerImpl : public torch::nn::Module {
public:
  FinalLayerImpl(std::int64_t hidden, std::int64_t patch, std::int64_t outChannels);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& c);  // (N,T,D) -> (N,T,p*p*C)
  torch::nn::LayerNorm norm_final{nullptr};
  torch::nn::Linear linear{nullptr};
  torch::nn::Sequential adaLN_modulation{nullptr};
};
TORCH_MODULE(FinalLayer);

/// The DiT family's reference initialisation (DiT's `initialize_weights`, repeated by
/// FiT and NiT): every Linear under `root` xavier-uniform with zero bias, the label table
/// and the timestep MLP's weights N(0, 0.02), and zero for the last Linear of each of
/// `zeroLast` (the adaLN modulations) and for the final layer's modulation and linear,
/// so that a new network outputs exactly 0. A convolutional patch embedding (DiT, NiT)
/// is xavier-initialised on its (D, C·p·p) view with zero bias, right after the
/// Linears: the reference's order of random draws, which a seed's weights depend on.
void initializeDiTFamily(torch::nn::Module& root, LabelEmbedderImpl& labels, TimestepEmbedderImpl& time,
                         FinalLayerImpl& finalLayer, const std::vector<torch::nn::Sequential>& zeroLast,
                         PatchEmbedImpl* patchEmbed = nullptr);

/// Fails (c10::Error, naming `who`) unless every label lies in [0, numClasses − 1], or
/// [0, numClasses] when label numClasses is the null class.
void checkClassLabels(const at::Tensor& y, std::int64_t numClasses, bool nullClass, const std::string& who);

/// The number of parameters in a list of names and shapes.
std::int64_t parameterCountOf(const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& shapes);

/// The DiT network. Any grid whose sides are multiples of the patch size: the
/// position embedding is computed for the requested grid (the stored one is used when
/// the grid is the one it was made for).
class DiTImpl : public BackboneImpl {
public:
  /// `initialize` = false leaves the weights uninitialised for a checkpoint to fill.
  explicit DiTImpl(DiTConfig config, bool initialize = true);

  BackboneOutput forward(const BackboneInput& input) override;
  Capabilities capabilities() const override;
  std::string kind() const override { return m_kind; }
  /// none (sin-cos computed for the grid) or interpolate (setPositionInterpolation).
  Result<void> setSizeExtrapolation(const std::string& method, bool decouple) override;

  /// The reference forward(x, t, y). x (N, C, H, W), t (N,) timesteps, y (N,) labels.
  at::Tensor forwardTensors(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y, Probe* probe = nullptr);
  /// The reference forward_with_cfg: the first half of the batch is run twice (its own
  /// labels and those of the second half, normally the null class), the first
  /// cfgChannels channels are guided, u + s (c - u), and the result is repeated for
  /// both halves.
  at::Tensor forwardWithCfg(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y, double scale);

  /// The official initialisation (xavier linears, zeroed adaLN and final layer).
  void initializeWeights();
  const DiTConfig& config() const { return m_config; }
  void setKind(std::string kind) { m_kind = std::move(kind); }
  /// Position interpolation for grids larger than the stored one: positions scaled by
  /// stored / requested per axis, so the sin-cos embedding stays in the trained range.
  void setPositionInterpolation(bool on);
  bool positionInterpolation() const { return m_interpolate; }

  PatchEmbed x_embedder{nullptr};
  TimestepEmbedder t_embedder{nullptr};
  LabelEmbedder y_embedder{nullptr};
  at::Tensor pos_embed;  ///< (1, T, D), not trained, part of the state dict
  torch::nn::ModuleList blocks{nullptr};
  FinalLayer final_layer{nullptr};

private:
  at::Tensor positionEmbedding(std::int64_t gridH, std::int64_t gridW);

  DiTConfig m_config;
  std::string m_kind = "dit";
  bool m_interpolate = false;
  std::mutex m_posMutex;
  std::map<std::pair<std::int64_t, std::int64_t>, at::Tensor> m_posCache;
};
TORCH_MODULE(DiT);

}  // namespace tessera
