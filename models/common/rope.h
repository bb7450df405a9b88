// SPDX-License-Identifier: Apache-2.0
// Two-dimensional rotary position embedding (FiT's and NiT's VisionRotaryEmbedding) and
// its resolution-extrapolation variants. Each attention head of dimension d is split
// into two halves of d/2; the first half rotates with one position coordinate, the
// second with the other. Within a half, consecutive pairs (x_2i, x_2i+1) rotate by the
// angle pos · f_i, f_i = θ^(−2i/(d/2)), i < d/4 (each frequency used by one pair).
#pragma once

#include "core/util/error.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

/// How positions beyond the training grid are handled (FiT's `custom_freqs`).
struct RopeExtrapolation {
  /// none | linear | ntk (NTK-aware) | ntk-by-parts | yarn | ntk-pro1 | ntk-pro2 (NTK with
  /// FiT's attention-scaling proportions) | scale1 | scale2 (NiT: the proportions alone)
  std::string method = "none";
  /// Tokens per side the model was trained at (FiT's ori_max_pe_len); 0 = no scaling.
  double trainedLength = 0;
  /// Separate scales for the two axes (FiT's `decouple`); otherwise both use the longer side.
  bool decouple = false;

  static std::vector<std::string> methods();
  Result<void> validate() const;
  nlohmann::json toJson() const;
};

/// Per-axis frequencies and the factor that multiplies cos and sin.
struct RopeAxis {
  std::vector<double> freqs;  ///< d/4 frequencies
  double factor = 1.0;        ///< YaRN's mscale, NTK-pro's proportion (1 otherwise)
};

/// The frequencies of one axis of `axisDim` (= head_dim / 2) dimensions for a target of
/// `length` tokens on that axis (and `maxSide`, `area` of the whole grid, which the
/// YaRN / NTK-pro factors use). With method none, or no trained length, or a target not
/// longer than training: the plain θ^(−2i/axisDim).
RopeAxis ropeAxis(std::int64_t axisDim, double theta, const RopeExtrapolation& extrapolation, double length,
                  double maxSide, double area);

/// cos and sin tables (T, d) for tokens at positions (a_t, b_t): the first d/2 features
/// use `a` with `first`'s frequencies, the last d/2 use `b` with `second`'s; each
/// frequency is repeated for its pair, and each table is multiplied by the axis factor.
struct RopeTables {
  at::Tensor cos, sin;  ///< (T, d) float32
};
RopeTables ropeTables(const at::Tensor& a, const at::Tensor& b, const RopeAxis& first, const RopeAxis& second);

/// x·cos + rotate(x)·sin, rotate mapping each pair (x_2i, x_2i+1) to (−x_2i+1, x_2i).
/// x (…, T, d); cos, sin (T, d) broadcast over the leading dimensions (or (…, T, d)).
at::Tensor applyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace tessera

namespace tessera {
class Config;
/// Reads {"method", "trained_length", "decouple"} at `path`.
Result<RopeExtrapolation> ropeExtrapolationFromConfig(const Config& config, const std::string& path);
}  // namespace tessera
