// SPDX-License-Identifier: Apache-2.0
// DC-AE (Chen et al. 2024, "Deep Compression Autoencoder for Efficient High-Resolution
// Diffusion Models"; mit-han-lab/efficientvit, efficientvit/models/efficientvit/dc_ae.py):
// the f32, 32-channel autoencoder NiT samples in. A deterministic encoder and decoder of
// stages of residual convolution blocks and EfficientViT blocks (ReLU linear attention
// with multi-scale token aggregation, then a gated inverted bottleneck), with
// space-to-channel shortcuts around every change of resolution. Sub-module names are the
// original state-dict keys; diffusers' AutoencoderDC names are mapped on import.
#pragma once

#include "models/autoencoders/autoencoder.h"

#include <nlohmann/json.hpp>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

/// One stage of the encoder or decoder, in the official names: block_type "ResBlock",
/// "EViT_GLU" (no multi-scale aggregation) or "EViTS5_GLU" (5×5 aggregation); norm
/// "trms2d" (RMS over channels with a bias) or "bn2d"; act "silu" or "relu".
struct DcAeStage {
  std::int64_t width = 0, depth = 0;
  std::string block = "ResBlock", norm = "trms2d", act = "silu";
};

struct DcAeConfig {
  std::int64_t inChannels = 3;
  std::int64_t latentChannels = 32;
  std::int64_t headDim = 32;  ///< LiteMLA's per-head dimension (the official `dim`)
  std::vector<DcAeStage> encoder, decoder;
  std::string downsample = "Conv";                  ///< "Conv" (3×3 stride 2) or "ConvPixelUnshuffle"
  std::string upsample = "InterpolateConv";         ///< "InterpolateConv" (nearest ×2, 3×3) or "ConvPixelShuffle"
  std::string outNorm = "trms2d", outAct = "relu";  ///< the decoder's last norm and activation

  /// f: every stage after the first halves the size, and so does the projection in when
  /// the first stage has no blocks.
  std::int64_t downsampling() const { return std::int64_t{1} << (encoder.size() - 1); }
  /// A lower bound on the weights: 10·width² per block (a ResBlock has 18, an EfficientViT block about 16).
  double minimumWeights() const;
  Result<void> validate() const;
  nlohmann::json toJson() const;
  static Result<DcAeConfig> fromJson(const nlohmann::json& j, const std::string& where);
  /// The official f32c32 configurations: "sana" (dc-ae-f32c32-sana-1.0/1.1) and "in"
  /// (dc-ae-f32c32-in-1.0 / mix-1.0, which differ only in their weights).
  static DcAeConfig f32c32(const std::string& variant);
};

/// The official "averaging" shortcut: pixel_unshuffle by `factor`, then the mean of each
/// group of in·factor²/out consecutive channels.
at::Tensor dcAverageShortcut(const at::Tensor& x, std::int64_t outChannels, std::int64_t factor);
/// The official "duplicating" shortcut: each channel repeated out·factor²/in times, then
/// pixel_shuffle by `factor` (the transpose of the averaging one).
at::Tensor dcDuplicateShortcut(const at::Tensor& x, std::int64_t outChannels, std::int64_t factor);
/// RMS norm over channels (TritonRMSNorm2d): x · rsqrt(mean_c x² + eps) · w + b, in fp32.
at::Tensor dcRmsNorm2d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps = 1e-5);
/// LiteMLA's ReLU linear attention on qkv (B, groups·3d, H, W), d = `dim`: per group,
/// Σ_m v_m (k_m·q_n) / (Σ_m k_m·q_n + 1e-15) with q and k through ReLU. `quadratic`
/// takes the official route for small grids (H·W ≤ d): the n×n map, then v times it.
at::Tensor dcReluLinearAttention(const at::Tensor& qkv, std::int64_t dim, bool quadratic);

class DcAeEncoderImpl : public torch::nn::Module {
public:
  explicit DcAeEncoderImpl(const DcAeConfig& c);
  at::Tensor forward(at::Tensor x);

private:
  DcAeConfig m_config;
  std::shared_ptr<torch::nn::Module> project_in, project_out;
  torch::nn::ModuleList stages{nullptr};
  std::vector<torch::nn::ModuleList> m_stageOps;  ///< each stage's op_list, found once at construction
  std::shared_ptr<torch::nn::Module> m_outConv;   ///< project_out.main.op_list.0
};
TORCH_MODULE(DcAeEncoder);

class DcAeDecoderImpl : public torch::nn::Module {
public:
  explicit DcAeDecoderImpl(const DcAeConfig& c);
  at::Tensor forward(at::Tensor z);

private:
  DcAeConfig m_config;
  std::shared_ptr<torch::nn::Module> project_in, project_out;
  torch::nn::ModuleList stages{nullptr};
  std::vector<torch::nn::ModuleList> m_stageOps;  ///< each stage's op_list, found once at construction
  std::shared_ptr<torch::nn::Module> m_inConv;    ///< project_in.main
  torch::nn::ModuleList m_outOps{nullptr};        ///< project_out.op_list: norm, act, conv
};
TORCH_MODULE(DcAeDecoder);

class DcAutoencoderImpl final : public AutoencoderImpl {
public:
  explicit DcAutoencoderImpl(const DcAeConfig& config);

  /// The latent in `mean` (the encoder is deterministic: `std` is zero).
  Encoded encode(const at::Tensor& x) override;
  at::Tensor decode(const at::Tensor& z, bool quantize = true) override;
  at::Tensor latentOf(const Encoded& encoded, at::Generator* generator = nullptr) const override;
  std::string kind() const override { return "dc"; }
  std::int64_t latentChannels() const override { return m_config.latentChannels; }
  std::int64_t imageChannels() const override { return m_config.inChannels; }
  std::int64_t downsampling() const override { return m_config.downsampling(); }
  const DcAeConfig& config() const { return m_config; }

private:
  DcAeConfig m_config;
  DcAeEncoder encoder{nullptr};
  DcAeDecoder decoder{nullptr};
};

/// Whether `shapes` are a DC-AE in the original or the diffusers layout.
bool looksLikeDcAe(const TensorShapes& shapes);

/// Original names of a state dict in diffusers' AutoencoderDC layout (to_q/to_k/to_v
/// joined into qkv, Linear weights made 1×1 convolutions). Fails naming a key it cannot place.
Result<NamedTensors> dcAeFromDiffusers(const NamedTensors& tensors);

/// Configuration from the shapes of a state dict (either layout), checked tensor by tensor.
Result<ImportedAutoencoder> importDcAe(const NamedTensors& stateDict);

}  // namespace tessera
