// SPDX-License-Identifier: Apache-2.0
// The U-Net of LDM (Rombach et al., CVPR 2022; CompVis/latent-diffusion
// ldm/modules/diffusionmodules/openaimodel.py) and of ADM (Dhariwal & Nichol, NeurIPS 2021;
// openai/guided-diffusion guided_diffusion/unet.py), which is the same UNetModel without
// the SpatialTransformer. Sub-module names are the reference state-dict keys
// (`input_blocks.1.0.in_layers.0.weight`, …), so importing is a name lookup.
#pragma once

#include "core/config/config.h"
#include "core/util/error.h"
#include "models/backbone.h"
#include "models/config_table.h"

#include <nlohmann/json.hpp>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <string>
#include <utility>
#include <vector>

namespace tessera {

class Probe;

/// A U-Net's configuration; its fields are listed in models/unet/unet_config.def.
struct UNetConfig {
#define TESSERA_FIELD(type, member, value, key, constraint, doc) type member = value;
#include "models/unet/unet_config.def"
#undef TESSERA_FIELD

  std::int64_t levels() const { return static_cast<std::int64_t>(channelMult.size()); }
  /// out_channels, or the channels it is derived as where it is 0.
  std::int64_t outputChannels() const { return outChannels > 0 ? outChannels : (learnSigma ? 2 : 1) * inChannels; }
  /// Height and width must be multiples of this: 2^(levels − 1).
  std::int64_t sizeMultiple() const { return std::int64_t{1} << (levels() - 1); }
  /// Channels of level `level`: int(channel_mult[level] · model_channels), as ADM computes them.
  std::int64_t levelChannels(std::int64_t level) const;
  std::int64_t timeEmbedDim() const { return 4 * modelChannels; }
  bool hasNullClass() const { return classConditioning != "none" && classDropoutProb > 0; }
  /// Rows of the class table (label_emb or the class embedder): classes plus the null class.
  std::int64_t classRows() const { return numClasses + (hasNullClass() ? 1 : 0); }
  /// Checks a configuration however it was made.
  Result<void> validate() const;
  nlohmann::json toJson() const;
  static Result<UNetConfig> fromConfig(const Config& config, const std::string& path, const UNetConfig& defaults);
  static const ConfigTable<UNetConfig>& table();
};

/// Official configurations: "LDM-cin256-v2" and guided-diffusion's class-conditional
/// ImageNet models "ADM-64", "ADM-128", "ADM-256", "ADM-512".
Result<UNetConfig> unetPreset(const std::string& name);
std::vector<std::string> unetPresetNames();

/// What one attention layer of a U-Net looks like (for inspection and timings).
struct UNetAttentionSite {
  std::string block;    ///< "input_blocks.1.1", "middle_block.1", "output_blocks.3.1"
  std::string stage;    ///< "input", "middle" or "output"
  std::int64_t factor;  ///< down-sampling factor of its grid (1, 2, 4, …)
  std::int64_t heads;
};

/// Names and shapes of the state dict a U-Net of this configuration has, computed from the
/// configuration alone (checked against the module in the tests).
std::vector<std::pair<std::string, std::vector<std::int64_t>>> unetStateShapes(const UNetConfig& config);

/// GroupNorm computed in float32 and cast back (the reference's GroupNorm32).
class GroupNorm32Impl : public torch::nn::GroupNormImpl {
public:
  GroupNorm32Impl(std::int64_t channels, double eps, std::int64_t groups = 32)
      : GroupNormImpl(torch::nn::GroupNormOptions(groups, channels).eps(eps)) {}
  at::Tensor forward(const at::Tensor& x);
};
TORCH_MODULE(GroupNorm32);

/// A module whose children are named "0", "1", … like an nn.Sequential's, for the
/// reference's Sequentials whose parameter-free members (SiLU, Dropout) leave gaps.
class SlotsImpl : public torch::nn::Module {
public:
  template <typename M>
  M set(int index, M module) {
    return register_module(std::to_string(index), std::move(module));
  }
};
TORCH_MODULE(Slots);

/// One layer of an input, middle or output block (TimestepEmbedSequential's children).
class UNetLayer : public torch::nn::Module {
public:
  /// x (N, C, H, W); emb (N, 4·model_channels); context (N, S, context_dim) or undefined.
  virtual at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& context, Probe* probe) = 0;
};

class UNetResBlock : public UNetLayer {
public:
  enum class Resample { None, Up, Down };
  UNetResBlock(std::int64_t channels, std::int64_t embChannels, double dropout, std::int64_t outChannels,
               bool useScaleShiftNorm, Resample resample, std::int64_t groups = 32);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& context, Probe* probe) override;

  GroupNorm32 inNorm{nullptr}, outNorm{nullptr};
  torch::nn::Conv2d inConv{nullptr}, outConv{nullptr}, skip{nullptr};
  torch::nn::Linear embLinear{nullptr};
  double dropout;
  bool scaleShift;
  Resample resample;
};

/// The reference AttentionBlock: GroupNorm, a 1×1 qkv projection, attention over all
/// positions, a 1×1 output projection, residual.
class UNetAttentionBlock : public UNetLayer {
public:
  UNetAttentionBlock(std::int64_t channels, std::int64_t heads, bool newOrder, int layer, std::int64_t groups = 32);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& context, Probe* probe) override;

  GroupNorm32 norm{nullptr};
  torch::nn::Conv1d qkv{nullptr}, proj_out{nullptr};
  std::int64_t heads;
  bool newOrder;
  int layer;  ///< index among the network's self-attention layers (Probe)
};

class CrossAttentionImpl : public torch::nn::Module {
public:
  CrossAttentionImpl(std::int64_t queryDim, std::int64_t contextDim, std::int64_t heads, std::int64_t headDim);
  /// x (N, T, D); context (N, S, Dc) or undefined (self-attention). A layer ≥ 0 with a
  /// probe that asks for it records the probabilities.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context, Probe* probe, int layer);
  torch::nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, to_out{nullptr};
  std::int64_t heads;
};
TORCH_MODULE(CrossAttention);

class UNetTransformerBlockImpl : public torch::nn::Module {
public:
  UNetTransformerBlockImpl(std::int64_t dim, std::int64_t heads, std::int64_t headDim, std::int64_t contextDim);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context, Probe* probe, int layer);
  CrossAttention attn1{nullptr}, attn2{nullptr};
  torch::nn::Linear ffIn{nullptr}, ffOut{nullptr};  ///< ff.net.0.proj (GEGLU), ff.net.2
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
};
TORCH_MODULE(UNetTransformerBlock);

/// LDM's SpatialTransformer: GroupNorm (eps 1e-6), 1×1 projection to tokens, transformer
/// blocks (self-attention, cross-attention to the context, GEGLU feed-forward), back.
class UNetSpatialTransformer : public UNetLayer {
public:
  UNetSpatialTransformer(std::int64_t channels, std::int64_t heads, std::int64_t headDim, std::int64_t depth,
                         std::int64_t contextDim, int firstLayer, std::int64_t groups = 32);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& context, Probe* probe) override;

  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d proj_in{nullptr}, proj_out{nullptr};
  torch::nn::ModuleList transformer_blocks{nullptr};
  int firstLayer;  ///< Probe index of the first block's self-attention
};

/// Down-sampling by a stride-2 convolution, or by 2×2 average pooling.
class UNetDownsample : public UNetLayer {
public:
  UNetDownsample(std::int64_t channels, bool useConv);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& context, Probe* probe) override;
  torch::nn::Conv2d op{nullptr};
};

/// Nearest ×2 up-sampling, then a 3×3 convolution when useConv.
class UNetUpsample : public UNetLayer {
public:
  UNetUpsample(std::int64_t channels, bool useConv);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& context, Probe* probe) override;
  torch::nn::Conv2d conv{nullptr};
};

/// The first input block's plain 3×3 convolution.
class UNetInputConv : public UNetLayer {
public:
  UNetInputConv(std::int64_t in, std::int64_t out);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& context, Probe* probe) override;
  torch::nn::Conv2d conv{nullptr};
};

/// TimestepEmbedSequential: layers registered "0", "1", …
class UNetBlockImpl : public torch::nn::Module {
public:
  void add(std::shared_ptr<UNetLayer> layer);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& context, Probe* probe);
  std::vector<std::shared_ptr<UNetLayer>> layers;
};
TORCH_MODULE(UNetBlock);

/// LDM's ClassEmbedder (cond_stage_model): one embedding row per class, the context of
/// every cross-attention as a single token.
class ClassEmbedderImpl : public torch::nn::Module {
public:
  ClassEmbedderImpl(std::int64_t rows, std::int64_t dim);
  at::Tensor forward(const at::Tensor& labels);  // (N,) -> (N, 1, dim)
  torch::nn::Embedding embedding{nullptr};
};
TORCH_MODULE(ClassEmbedder);

/// The U-Net. Any grid whose sides are multiples of 2^(levels − 1).
class UNetImpl : public BackboneImpl {
public:
  /// `initialize` = false leaves the weights as constructed (a checkpoint fills them).
  explicit UNetImpl(UNetConfig config, bool initialize = true);

  BackboneOutput forward(const BackboneInput& input) override;
  Capabilities capabilities() const override;
  std::string kind() const override { return "unet"; }
  /// Every AttentionBlock and every SpatialTransformer block's self-attention, each on its
  /// own grid (H / factor × W / factor).
  std::vector<AttentionLayerInfo> attentionLayers(std::int64_t height, std::int64_t width) const override;
  /// Every convolution, linear layer and attention product at its own resolution.
  std::optional<double> forwardFlops(std::int64_t height, std::int64_t width) const override;
  std::optional<double> activationValues(std::int64_t height, std::int64_t width) const override;

  /// The reference forward(x, timesteps, context, y) with the class conditioning of this
  /// configuration derived from `y` (the class embedder's output, or label_emb).
  at::Tensor forwardTensors(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y, Probe* probe = nullptr);
  /// The same with the cross-attention context given (LDM's apply_model with c_crossattn).
  at::Tensor forwardWithContext(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                                const at::Tensor& y, Probe* probe = nullptr);
  /// The class embedder's context for labels y (N, 1, context_dim); with dropout in training.
  at::Tensor classContext(const at::Tensor& y);

  /// The reference initialisation: PyTorch's defaults, then zero_module on every block's
  /// last convolution, the attention output projections and the output convolution.
  void initializeWeights();
  const UNetConfig& config() const { return m_config; }
  /// Every self-attention layer in Probe order.
  const std::vector<UNetAttentionSite>& attentionSites() const { return m_sites; }

  torch::nn::Linear timeEmbed0{nullptr}, timeEmbed2{nullptr};  ///< time_embed.0, time_embed.2
  torch::nn::Embedding label_emb{nullptr};
  ClassEmbedder cond_stage_model{nullptr};
  torch::nn::ModuleList input_blocks{nullptr};
  UNetBlock middle_block{nullptr};
  torch::nn::ModuleList output_blocks{nullptr};
  GroupNorm32 outNorm{nullptr};        ///< out.0
  torch::nn::Conv2d outConv{nullptr};  ///< out.2

private:
  at::Tensor dropLabels(const at::Tensor& y);

  UNetConfig m_config;
  std::vector<UNetAttentionSite> m_sites;
  std::vector<std::int64_t> m_inputFactor, m_outputFactor;  ///< down-sampling factor after each block
};
TORCH_MODULE(UNet);

}  // namespace tessera
