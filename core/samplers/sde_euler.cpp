// SPDX-License-Identifier: Apache-2.0
// Euler–Maruyama on SiT's SDE dx = [v + w ∇log p] dτ + sqrt(2w) dW.
#include "core/samplers/sde_common.h"

#include <cmath>

namespace tessera {
namespace {

class SdeEuler final : public Sampler {
public:
  at::Tensor run(SamplingContext& ctx, at::Tensor x) const override {
    return samplers::runSde(ctx, std::move(x), [](SamplingContext& c, const at::Tensor& xc, double t, double dt, std::int64_t i, Denoised& d) {
      const at::Tensor w = c.drawNoise(i, xc);
      d = c.denoise(xc, t);
      const double diffusion = samplers::diffusionCoefficient(c.space, c.options, t);
      const at::Tensor mean = xc + samplers::sdeDrift(c.space, c.options, d, xc, t) * dt;
      return mean + std::sqrt(2 * diffusion) * (w * std::sqrt(dt));
    });
  }
};

}  // namespace

void registerSampler_sde_euler(SamplerRegistry& registry) {
  SamplerEntry e;
  e.name = "sde-euler";
  e.aliases = {"euler-maruyama", "sde"};
  e.description = "Euler-Maruyama on SiT's SDE (--diffusion-form, --last-step); stochastic";
  e.family = SamplerFamily::Sde;
  e.stochastic = true;
  e.evaluationsPerStep = 1;
  e.make = [] { return std::make_unique<SdeEuler>(); };
  (void)registry.add(std::move(e));
}

}  // namespace tessera
