// SPDX-License-Identifier: Apache-2.0
// Euler on the probability-flow ODE (SiT's ODE with torchdiffeq's "euler"; on DDPM
// models in EDM coordinates, where it equals DDIM with eta 0).
#include "core/samplers/steps.h"

namespace tessera {
namespace {

class Euler final : public Sampler {
public:
  at::Tensor run(SamplingContext& ctx, at::Tensor x) const override {
    const samplers::OdeView ode(ctx.space);
    const auto& g = ctx.grid;
    for (std::size_t i = 0; i + 1 < g.size(); ++i) {
      if (ctx.stop()) break;
      const Denoised d = ctx.denoise(x, g[i]);
      const double h = ode.coordinate(g[i + 1]) - ode.coordinate(g[i]);
      const at::Tensor y = ode.toState(x, g[i]) + h * ode.derivative(d, x, g[i]);
      x = ode.fromState(y, g[i + 1]);
      ctx.finishStep(g[i], g[i + 1], x, d);
    }
    return x;
  }
};

}  // namespace

void registerSampler_euler(SamplerRegistry& registry) {
  SamplerEntry e;
  e.name = "euler";
  e.aliases = {"ode-euler"};
  e.description = "Euler on the probability-flow ODE (1 NFE per step)";
  e.family = SamplerFamily::Ode;
  e.diffusionGrid = "respaced-ddim";
  e.evaluationsPerStep = 1;
  e.make = [] { return std::make_unique<Euler>(); };
  (void)registry.add(std::move(e));
}

}  // namespace tessera
