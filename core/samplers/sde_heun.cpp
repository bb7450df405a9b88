// SPDX-License-Identifier: Apache-2.0
// SiT's stochastic Heun step: x̂ = x + sqrt(2w) dW, then Heun's average of the drift at
// (x̂, τ) and at the Euler prediction (x̂ + Δ K1, τ + Δ).
#include "core/samplers/sde_common.h"

#include <cmath>

namespace tessera {
namespace {

class SdeHeun final : public Sampler {
public:
  at::Tensor run(SamplingContext& ctx, at::Tensor x) const override {
    return samplers::runSde(ctx, std::move(x), [](SamplingContext& c, const at::Tensor& xc, double t, double dt, std::int64_t i, Denoised& d) {
      const at::Tensor w = c.drawNoise(i, xc);
      const double diffusion = samplers::diffusionCoefficient(c.space, c.options, t);
      const at::Tensor xhat = xc + std::sqrt(2 * diffusion) * (w * std::sqrt(dt));
      d = c.denoise(xhat, t);
      const at::Tensor k1 = samplers::sdeDrift(c.space, c.options, d, xhat, t);
      const at::Tensor xp = xhat + dt * k1;
      const Denoised d2 = c.denoise(xp, t + dt);
      const at::Tensor k2 = samplers::sdeDrift(c.space, c.options, d2, xp, t + dt);
      return xhat + (0.5 * dt) * (k1 + k2);
    });
  }
};

}  // namespace

void registerSampler_sde_heun(SamplerRegistry& registry) {
  SamplerEntry e;
  e.name = "sde-heun";
  e.description = "SiT's stochastic Heun (2 NFE per step); stochastic";
  e.family = SamplerFamily::Sde;
  e.stochastic = true;
  e.evaluationsPerStep = 2;
  e.make = [] { return std::make_unique<SdeHeun>(); };
  (void)registry.add(std::move(e));
}

}  // namespace tessera
