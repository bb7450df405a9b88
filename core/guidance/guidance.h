// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>

namespace tessera {

/// Classifier-free guidance: u + s (c − u), computed from one batched forward of
/// [conditional; unconditional] inputs.
struct GuidanceConfig {
  double scale = 1.0;  ///< 1 = no guidance: one forward of the conditional batch only
  /// Guidance applies only while the progress τ (0 = pure noise, 1 = data; see
  /// SamplingSpace) lies in [low, high]; outside it the step costs one forward.
  double low = 0.0, high = 1.0;
  /// Guide only the first `channels` prediction channels (0 = all of them). The official
  /// DiT and SiT `forward_with_cfg` guide the first three channels of their four-channel
  /// latent and pass the fourth (and the variance channels) through from the
  /// conditional half — a quirk of those repositories (backbones.md §12), kept as a
  /// named option so that their samples can be reproduced. Models imported from them
  /// set 3; models we train set 0.
  std::int64_t channels = 0;

  /// Whether a step at τ needs the unconditional half.
  bool activeAt(double tau) const { return scale != 1.0 && tau >= low && tau <= high; }
  Result<void> validate() const;
  nlohmann::json toJson() const;
};

/// Combines a conditional and an unconditional output (N, K, …): the first `guided`
/// channels become u + s (c − u); every other channel (the rest of the prediction under
/// the DiT quirk, and learned-variance channels) is taken from the conditional output.
at::Tensor combineGuidance(const at::Tensor& cond, const at::Tensor& uncond, double scale, std::int64_t guided);

}  // namespace tessera
