// SPDX-License-Identifier: Apache-2.0
#include "core/guidance/guidance.h"

#include <ATen/ATen.h>

#include <cmath>

namespace tessera {

Result<void> GuidanceConfig::validate() const {
  if (!std::isfinite(scale)) return fail("guidance: the scale must be a finite number, got " + std::to_string(scale));
  if (!(low >= 0.0 && high <= 1.0 && low <= high))
    return fail("guidance: the interval must satisfy 0 <= low <= high <= 1 (progress from noise to data), got [" +
                std::to_string(low) + ", " + std::to_string(high) + "]");
  if (channels < 0) return fail("guidance: channels must be 0 (all) or a positive count, got " + std::to_string(channels));
  return {};
}

nlohmann::json GuidanceConfig::toJson() const {
  return {{"scale", scale}, {"interval", {low, high}}, {"channels", channels == 0 ? nlohmann::json("all") : nlohmann::json(channels)}};
}

at::Tensor combineGuidance(const at::Tensor& cond, const at::Tensor& uncond, double scale, std::int64_t guided) {
  TORCH_CHECK(cond.sizes() == uncond.sizes(), "guidance: conditional ", cond.sizes(), " and unconditional ", uncond.sizes(),
              " outputs differ in shape");
  TORCH_CHECK(guided > 0 && guided <= cond.size(1), "guidance: cannot guide ", guided, " of ", cond.size(1), " channels");
  const at::Tensor c = cond.narrow(1, 0, guided), u = uncond.narrow(1, 0, guided);
  const at::Tensor mixed = u + scale * (c - u);
  if (guided == cond.size(1)) return mixed;
  return at::cat({mixed, cond.narrow(1, guided, cond.size(1) - guided)}, 1);
}

}  // namespace tessera
