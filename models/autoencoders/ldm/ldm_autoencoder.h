// SPDX-License-Identifier: Apache-2.0
// LDM's autoencoders (Rombach et al. 2022; CompVis/latent-diffusion): the convolutional
// Encoder/Decoder of ldm/modules/diffusionmodules/model.py with a Gaussian posterior
// (AutoencoderKL: Stable Diffusion's VAE, which DiT, SiT and FiT sample in) or a vector
// quantiser (VQModel with taming's VectorQuantizer2: LDM's ImageNet models). Sub-module
// names are the CompVis state-dict keys; diffusers' names are mapped on import.
#pragma once

#include "models/autoencoders/autoencoder.h"

#include <nlohmann/json.hpp>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

struct LdmAutoencoderConfig {
  std::string kind = "kl";  ///< "kl" (Gaussian posterior) or "vq" (vector quantiser)
  std::int64_t inChannels = 3, outChannels = 3;
  std::int64_t ch = 128;                         ///< channels of the first level
  std::vector<std::int64_t> chMult{1, 2, 4, 4};  ///< per level; f = 2^(levels − 1)
  std::int64_t numResBlocks = 2;                 ///< per encoder level (the decoder has one more)
  std::vector<std::int64_t> attnLevels;          ///< levels with attention after each block (LDM's attn_resolutions)
  std::int64_t zChannels = 4;                    ///< the encoder's latent (doubled for KL's mean and log-variance)
  std::int64_t embedDim = 4;                     ///< the latent after quant_conv: what the backbone sees
  std::int64_t numEmbeddings = 0;                ///< VQ codebook size
  std::int64_t normGroups = 32;                  ///< GroupNorm groups (32 in every LDM model)

  std::int64_t downsampling() const { return std::int64_t{1} << (chMult.size() - 1); }
  /// A lower bound on the weights: the 3×3 convolutions of the encoder's and decoder's blocks.
  double minimumWeights() const;
  Result<void> validate() const;
  nlohmann::json toJson() const;
  static Result<LdmAutoencoderConfig> fromJson(const nlohmann::json& j, const std::string& where);
};

class LdmResnetBlockImpl : public torch::nn::Module {
public:
  LdmResnetBlockImpl(std::int64_t in, std::int64_t out, std::int64_t groups);
  at::Tensor forward(const at::Tensor& x);

private:
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};
};
TORCH_MODULE(LdmResnetBlock);

/// Single-head self-attention over all positions (AttnBlock), 1×1 convolutions.
class LdmAttnBlockImpl : public torch::nn::Module {
public:
  LdmAttnBlockImpl(std::int64_t channels, std::int64_t groups);
  at::Tensor forward(const at::Tensor& x);

private:
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(LdmAttnBlock);

class LdmEncoderImpl : public torch::nn::Module {
public:
  explicit LdmEncoderImpl(const LdmAutoencoderConfig& c);
  at::Tensor forward(const at::Tensor& x);

private:
  LdmAutoencoderConfig m_config;
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down{nullptr};
  std::shared_ptr<torch::nn::Module> mid;
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(LdmEncoder);

class LdmDecoderImpl : public torch::nn::Module {
public:
  explicit LdmDecoderImpl(const LdmAutoencoderConfig& c);
  at::Tensor forward(const at::Tensor& z);

private:
  LdmAutoencoderConfig m_config;
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList up{nullptr};
  std::shared_ptr<torch::nn::Module> mid;
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(LdmDecoder);

class LdmAutoencoderImpl final : public AutoencoderImpl {
public:
  explicit LdmAutoencoderImpl(const LdmAutoencoderConfig& config);

  Encoded encode(const at::Tensor& x) override;
  at::Tensor decode(const at::Tensor& z, bool quantize = true) override;
  at::Tensor latentOf(const Encoded& encoded, at::Generator* generator = nullptr) const override;
  std::string kind() const override { return m_config.kind; }
  std::int64_t latentChannels() const override { return m_config.embedDim; }
  std::int64_t imageChannels() const override { return m_config.inChannels; }
  std::int64_t downsampling() const override { return m_config.downsampling(); }
  const LdmAutoencoderConfig& config() const { return m_config; }

  /// VectorQuantizer2: each position's nearest codebook vector by squared distance
  /// (‖z‖² + ‖e‖² − 2 z·e, the first minimum), as (quant, indices (N, h, w)).
  std::pair<at::Tensor, at::Tensor> quantize(const at::Tensor& h) const;

private:
  LdmAutoencoderConfig m_config;
  LdmEncoder encoder{nullptr};
  LdmDecoder decoder{nullptr};
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
  std::shared_ptr<torch::nn::Module> m_quantize;  ///< "quantize" with "embedding" (VQ only)
  torch::nn::Embedding m_codebook{nullptr};
};

/// CompVis names of a state dict in diffusers' AutoencoderKL/VQModel layout (levels of the
/// decoder reversed, Linear attention weights made 1×1 convolutions, the deprecated
/// query/key/value/proj_attn names too). Fails naming a key it cannot place.
Result<NamedTensors> ldmFromDiffusers(const NamedTensors& tensors);

/// Whether `shapes` are an LDM autoencoder in CompVis or diffusers layout.
bool looksLikeLdmAutoencoder(const TensorShapes& shapes);

/// Configuration from the shapes of a CompVis-layout state dict, checked tensor by tensor.
Result<ImportedAutoencoder> importLdmAutoencoder(const NamedTensors& stateDict);

}  // namespace tessera
