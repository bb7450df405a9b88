// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/process/gaussian_diffusion.h"
#include "core/process/interpolant.h"

#include <optional>

namespace tessera {

/// The process a model was trained with: exactly one of the two is set.
struct Process {
  std::optional<GaussianDiffusion> diffusion;
  std::optional<Interpolant> interpolant;

  std::string kind() const { return diffusion ? "gaussian_diffusion" : "interpolant"; }
  nlohmann::json toJson() const;
};

/// Builds the process described at `path` of `config` ({"kind": "gaussian_diffusion" |
/// "interpolant", …}), naming the bad field on failure.
Result<Process> processFromConfig(const Config& config, const std::string& path);

}  // namespace tessera
