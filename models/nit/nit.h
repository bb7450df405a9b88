// SPDX-License-Identifier: Apache-2.0
// NiT, the native-resolution diffusion transformer (Wang et al., NeurIPS 2025;
// WZDTHU/NiT nit/models/c2i/nit_model.py). A batch is a pack: the patches of images of
// different sizes concatenated into one sequence with per-image lengths; attention
// runs within each image only (variable-length attention) with a 2-D RoPE per image,
// and no padding token exists. Sub-module names are the reference state-dict keys.
#pragma once

#include "core/config/config.h"
#include "core/util/error.h"
#include "models/backbone.h"
#include "models/common/packing.h"
#include "models/common/rope.h"
#include "models/config_table.h"
#include "models/dit/dit.h"

#include <nlohmann/json.hpp>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace tessera {

/// A NiT configuration; its fields are listed in models/nit/nit_config.def.
struct NiTConfig {
#define TESSERA_FIELD(type, member, value, key, constraint, doc) type member = value;
#include "models/nit/nit_config.def"
#undef TESSERA_FIELD

  std::int64_t outChannels() const { return learnSigma ? 2 * inChannels : inChannels; }
  std::int64_t mlpHidden() const { return static_cast<std::int64_t>(static_cast<double>(hiddenSize) * mlpRatio); }
  std::int64_t headDim() const { return hiddenSize / numHeads; }
  std::int64_t parameterCount() const;
  Result<void> validate() const;
  nlohmann::json toJson() const;
  static Result<NiTConfig> fromConfig(const Config& config, const std::string& path, const NiTConfig& defaults);
  /// The table of nit_config.def's fields ("preset" accepted too).
  static const ConfigTable<NiTConfig>& table();
};

/// Names and shapes of the state dict of a NiT of this configuration (no projector).
std::vector<std::pair<std::string, std::vector<std::int64_t>>> nitStateShapes(const NiTConfig& config);
/// "NiT-S" … "NiT-XXL" (configs/c2i; DC-AE f32c32 latents, patch 1).
Result<NiTConfig> nitPreset(const std::string& name);
std::vector<std::string> nitPresetNames();

class NiTAttentionImpl : public torch::nn::Module {
public:
  NiTAttentionImpl(std::int64_t hidden, std::int64_t heads, bool qkNorm);
  /// x (L, D) packed; cos/sin (L, d); cuSeqlens (B+1,).
  at::Tensor forward(const at::Tensor& x, const RopeTables& rope, const at::Tensor& cuSeqlens, Probe* probe = nullptr, int layer = -1);
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  torch::nn::LayerNorm q_norm{nullptr}, k_norm{nullptr};
  std::int64_t heads;
};
TORCH_MODULE(NiTAttention);

class NiTBlockImpl : public torch::nn::Module {
public:
  NiTBlockImpl(const NiTConfig& config);
  /// x (L, D); mod (L, 6D): each token's modulation (its image's).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mod, const RopeTables& rope, const at::Tensor& cuSeqlens,
                     Probe* probe = nullptr, int layer = -1);
  /// The 6D modulation of each image, (B, 6D).
  at::Tensor modulation(const at::Tensor& cond);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  NiTAttention attn{nullptr};
  Mlp mlp{nullptr};
  torch::nn::Sequential adaLN_modulation{nullptr};
};
TORCH_MODULE(NiTBlock);

class NiTImpl : public BackboneImpl {
public:
  explicit NiTImpl(NiTConfig config, bool initialize = true);

  /// BackboneInput: either images (N, C, H, W) of one size, or a pack — x (L, C, p, p)
  /// with `sizes` (B, 2) the pixel size of each image — with t and y per image.
  BackboneOutput forward(const BackboneInput& input) override;
  Capabilities capabilities() const override;
  std::string kind() const override { return "nit"; }
  /// One of RopeExtrapolation::methods(), replacing the configured extrapolation (its
  /// trained length becomes the model's grid).
  Result<void> setSizeExtrapolation(const std::string& method, bool decouple) override;

  /// The reference forward on a pack: x (L, C, p, p), token grids, t (B,), y (B,) → (L, C_out, p, p).
  /// `peLength` (rows, columns) fixes the RoPE extrapolation lengths for every image (NiT's
  /// max_pe_len_h/w); {0, 0}: each image's own grid.
  at::Tensor forwardPacked(const at::Tensor& x, const GridSizes& grids, const at::Tensor& t, const at::Tensor& y,
                           std::pair<double, double> peLength = {0, 0}, Probe* probe = nullptr);

  void initializeWeights();
  const NiTConfig& config() const { return m_config; }
  /// The extrapolation used for grids larger than training (a sampling setting).
  void setExtrapolation(const RopeExtrapolation& e);
  /// The positions (a, b) RoPE gives the tokens of an h×w grid (see NiTConfig::ropePositions).
  std::pair<at::Tensor, at::Tensor> ropePositions(std::int64_t gridH, std::int64_t gridW) const;

  PatchEmbed x_embedder{nullptr};  ///< its proj (D, C, p, p) is applied to each (C, p, p) token
  TimestepEmbedder t_embedder{nullptr};
  LabelEmbedder y_embedder{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  FinalLayer final_layer{nullptr};

private:
  RopeTables ropeFor(const GridSizes& grids, std::pair<double, double> peLength);

  NiTConfig m_config;
  std::mutex m_ropeMutex;
  std::map<std::tuple<std::int64_t, std::int64_t, double, double>, RopeTables> m_ropeCache;
};
TORCH_MODULE(NiT);

}  // namespace tessera
