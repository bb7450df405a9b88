// SPDX-License-Identifier: Apache-2.0
// FiT (Lu et al., ICML 2024) and FiTv2 (Wang et al., 2024), one network as in the
// reference (whlzy/FiT fit/model/fit_model.py): flexible tokenisation — a batch is a
// padded set of token sequences with a validity mask — 2-D RoPE with FiT's
// resolution-extrapolation variants, SwiGLU MLPs, and for FiTv2 q/k LayerNorm and
// low-rank adaLN with a global modulation. Sub-module names are the reference keys.
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
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <string>
#include <utility>
#include <vector>

namespace tessera {

/// A FiT / FiTv2 configuration; its fields are listed in models/fit/fit_config.def.
struct FiTConfig {
#define TESSERA_FIELD(type, member, value, key, constraint, doc) type member = value;
#include "models/fit/fit_config.def"
#undef TESSERA_FIELD

  std::int64_t outChannels() const { return learnSigma ? 2 * inChannels : inChannels; }
  std::int64_t mlpHidden() const;
  std::int64_t headDim() const { return hiddenSize / numHeads; }
  std::int64_t parameterCount() const;
  Result<void> validate() const;
  nlohmann::json toJson() const;
  static Result<FiTConfig> fromConfig(const Config& config, const std::string& path, const FiTConfig& defaults);
  /// The table of fit_config.def's fields ("preset" accepted too).
  static const ConfigTable<FiTConfig>& table();
};

std::vector<std::pair<std::string, std::vector<std::int64_t>>> fitStateShapes(const FiTConfig& config);
/// "FiT-XL/2", "FiTv2-XL/2", "FiTv2-3B/2", "FiTv2-HR-XL/2", "FiTv2-HR-3B/2" (configs/fit*).
Result<FiTConfig> fitPreset(const std::string& name);
std::vector<std::string> fitPresetNames();

/// FiT's PatchEmbedder: a Linear on pre-patchified (c, p1, p2) token features.
class TokenEmbedImpl : public torch::nn::Module {
public:
  TokenEmbedImpl(std::int64_t features, std::int64_t hidden);
  torch::nn::Linear proj{nullptr};
};
TORCH_MODULE(TokenEmbed);

class SwiGLUImpl : public torch::nn::Module {
public:
  SwiGLUImpl(std::int64_t hidden, std::int64_t inner);
  at::Tensor forward(const at::Tensor& x);  ///< fc2(SiLU(fc1_g(x)) ⊙ fc1_x(x))
  torch::nn::Linear fc1_g{nullptr}, fc1_x{nullptr}, fc2{nullptr};
};
TORCH_MODULE(SwiGLU);

class FiTAttentionImpl : public torch::nn::Module {
public:
  FiTAttentionImpl(std::int64_t hidden, std::int64_t heads, bool qkNorm);
  /// x (B, N, D); cos/sin (B, 1, N, d); valid (B, N) bool or undefined (no padding).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& valid,
                     Probe* probe = nullptr, int layer = -1);
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  bool qkNorm;
  std::int64_t heads;
};
TORCH_MODULE(FiTAttention);

class FiTBlockImpl : public torch::nn::Module {
public:
  explicit FiTBlockImpl(const FiTConfig& config);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mod, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& valid,
                     Probe* probe = nullptr, int layer = -1);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  FiTAttention attn{nullptr};
  SwiGLU swiglu{nullptr};  ///< registered as "mlp" when the MLP is SwiGLU
  Mlp gelu{nullptr};       ///< registered as "mlp" otherwise
  torch::nn::Sequential adaLN_modulation{nullptr};
};
TORCH_MODULE(FiTBlock);

class FiTImpl : public BackboneImpl {
public:
  explicit FiTImpl(FiTConfig config, bool initialize = true);

  /// Images (N, C, H, W) of one size, or a pack x (L, C, p, p) with `sizes` (B, 2) in
  /// pixels: the pack is padded to the longest image's tokens, as FiT batches are.
  BackboneOutput forward(const BackboneInput& input) override;
  Capabilities capabilities() const override;
  std::string kind() const override { return "fit"; }
  /// One of RopeExtrapolation::methods(), replacing the configured extrapolation (its
  /// trained length becomes the model's grid).
  Result<void> setSizeExtrapolation(const std::string& method, bool decouple) override;

  /// The reference forward: x (B, N, p²C) features ordered (c, p1, p2); grid (B, 2, N)
  /// with grid[:, 0] the column and grid[:, 1] the row; mask (B, N); t, y (B,). RoPE
  /// tables for the grid lengths `peLength` (rows, columns; FiT's max_pe_len_h/w), or
  /// each sequence's own extent when {0, 0}. Returns (B, N, p²C_out), zero at padding.
  at::Tensor forwardTokens(const at::Tensor& x, const at::Tensor& grid, const at::Tensor& mask, const at::Tensor& t,
                           const at::Tensor& y, std::pair<double, double> peLength = {0, 0});

  void initializeWeights();
  const FiTConfig& config() const { return m_config; }
  void setExtrapolation(const RopeExtrapolation& e) { m_config.extrapolation = e; }
  /// cos/sin tables (N, d) for tokens at rows/cols, with frequencies for grid lengths (h, w).
  RopeTables ropeFor(const at::Tensor& rows, const at::Tensor& cols, double lengthH, double lengthW) const;

  TokenEmbed x_embedder{nullptr};
  TimestepEmbedder t_embedder{nullptr};
  LabelEmbedder y_embedder{nullptr};
  torch::nn::Sequential global_adaLN_modulation{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  FinalLayer final_layer{nullptr};

private:
  at::Tensor run(const at::Tensor& tokens, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& valid,
                 const at::Tensor& t, const at::Tensor& y, Probe* probe = nullptr);
  FiTConfig m_config;
};
TORCH_MODULE(FiT);

}  // namespace tessera
