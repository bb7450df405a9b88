// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/process/prediction.h"
#include "core/util/error.h"

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tessera {

class Probe;

/// What a backbone accepts and returns; the pipeline and samplers branch on these,
/// never on a backbone's name.
struct Capabilities {
  bool fixedGrid = true;      ///< a grid fixed at construction (DiT without re-embedding)
  bool anyGrid = false;       ///< any grid whose sides are multiples of the patch size
  bool packed = false;        ///< packed variable-size sequences (NiT, and FiT, which pads them)
  bool padsPacks = false;     ///< computes a pack as padded sequences of its longest image (FiT)
  bool learnedSigma = false;  ///< output carries a variance channel block
  bool auxLoss = false;       ///< returns an auxiliary loss (MoE load balancing)
  Prediction prediction = Prediction::Epsilon;  ///< what the first inChannels output channels mean
  std::int64_t inChannels = 0;    ///< channels of x
  std::int64_t sizeMultiple = 1;  ///< height and width must be multiples of this (the patch size)
  std::int64_t trainedHeight = 0, trainedWidth = 0;  ///< the grid the model was made for
  std::int64_t numClasses = 0;    ///< class labels 0 … numClasses − 1
  bool nullClass = false;         ///< label numClasses is the null class (classifier-free guidance)
  /// Channels the reference guidance rule guides (GuidanceConfig::channels; 0 = all).
  std::int64_t guidedChannels = 0;
};

/// One input struct for every backbone, because their signatures really differ.
struct BackboneInput {
  at::Tensor x;                        ///< (N, C, H, W), or packed tokens for `packed`
  at::Tensor t;                        ///< (N,) timesteps in the backbone's own convention
  at::Tensor y;                        ///< (N,) int64 class labels; the null class for CFG
  std::optional<at::Tensor> mask;      ///< (N, L) padding mask for flexible grids
  std::optional<at::Tensor> sizes;     ///< (N, 2) per-image (H, W) for packed input
  std::optional<at::Tensor> cuSeqlens; ///< (N+1,) cumulative sequence lengths
  Probe* probe = nullptr;              ///< inspection taps; null costs nothing
};

struct BackboneOutput {
  at::Tensor prediction;             ///< same layout as `x` (channels doubled with learned sigma)
  std::optional<at::Tensor> auxLoss; ///< scalar, when Capabilities::auxLoss
};

/// One self-attention layer as inspection sees it (Probe layer index = position in the list).
struct AttentionLayerInfo {
  std::string name;  ///< for listings: "input 16×16 (input_blocks.4)"
  std::int64_t heads = 0;
  std::int64_t gridH = 0, gridW = 0;  ///< the token grid it attends over
};

/// The interface every backbone implements; sub-module names equal the reference
/// implementation's state-dict keys.
class BackboneImpl : public torch::nn::Module {
public:
  virtual ~BackboneImpl() = default;
  virtual BackboneOutput forward(const BackboneInput& input) = 0;
  virtual Capabilities capabilities() const = 0;
  /// The registry name ("dit", "sit", ...).
  virtual std::string kind() const = 0;
  /// How grids beyond the trained one are treated, by method name (a sampling setting,
  /// not a weight). Fails naming the methods this backbone has; by default it has none.
  virtual Result<void> setSizeExtrapolation(const std::string& /*method*/, bool /*decouple*/) {
    return fail("the " + kind() + " backbone has no extrapolation setting");
  }
  /// Its self-attention layers for an H × W input, in Probe order. Empty (the default): one
  /// layer per block of `depth` × `num_heads` on the patch grid, as the DiT family has.
  virtual std::vector<AttentionLayerInfo> attentionLayers(std::int64_t /*height*/, std::int64_t /*width*/) const {
    return {};
  }
  /// Floating-point operations of one forward pass of one H × W image (multiply-adds
  /// count 2), where the backbone computes them itself; none: the token-grid formula of
  /// forwardGflops (engine/inspection.h) applies.
  virtual std::optional<double> forwardFlops(std::int64_t /*height*/, std::int64_t /*width*/) const {
    return std::nullopt;
  }
  /// The values (floats) one inference forward pass of one H × W image holds at its peak,
  /// attention scores aside, where the backbone knows them better than the token formula
  /// of estimateGenerationBytes (engine/generation_plan.h): a U-Net keeps every encoder
  /// output for its skips.
  virtual std::optional<double> activationValues(std::int64_t /*height*/, std::int64_t /*width*/) const {
    return std::nullopt;
  }
};

}  // namespace tessera
