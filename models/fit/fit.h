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

struct FiTConfig {
  std::int64_t inputSize = 32;   ///< side (latent cells or pixels) of the training grid: RoPE's trained length is inputSize / patch
  std::int64_t contextSize = 256;  ///< the token budget of a padded training sequence (FiT's context_size)
  std::int64_t patchSize = 2;
  std::int64_t inChannels = 4;
  std::int64_t hiddenSize = 1152;
  std::int64_t depth = 28;
  std::int64_t numHeads = 16;
  double mlpRatio = 4.0;
  std::string mlp = "swiglu";    ///< swiglu | gelu (timm Mlp, tanh GELU)
  bool swigluLarge = false;      ///< SwiGLU hidden = D·ratio (FiT v1) instead of ⌊2·D·ratio/3⌋ (FiTv2)
  bool qkNorm = false;           ///< LayerNorm without affine over each head's q and k (FiTv2)
  std::string adaLN = "normal";  ///< normal | lora (per block D→r→6D plus a global D→6D)
  std::int64_t adaLNRank = 0;
  double classDropoutProb = 0.1;
  std::int64_t numClasses = 1000;
  bool learnSigma = true;
  double ropeTheta = 10000.0;
  RopeExtrapolation extrapolation;  ///< for sizes beyond training (a setting, not a weight)
  double timeShifting = 1.0;     ///< t' = min(α t / (1 + (α − 1) t), 1) inside forward (FiTv2; 1 = identity)
  std::int64_t cfgChannels = 0;  ///< the reference forward_with_cfg guides the first 3 channels (0 = all)
  std::string prediction = "eps";

  std::int64_t outChannels() const { return learnSigma ? 2 * inChannels : inChannels; }
  std::int64_t mlpHidden() const;
  std::int64_t headDim() const { return hiddenSize / numHeads; }
  std::int64_t parameterCount() const;
  Result<void> validate() const;
  nlohmann::json toJson() const;
  static Result<FiTConfig> fromConfig(const Config& config, const std::string& path, const FiTConfig& defaults);
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
