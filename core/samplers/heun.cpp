// SPDX-License-Identifier: Apache-2.0
// Heun's second-order method on the probability-flow ODE (torchdiffeq's "heun2", which
// SiT's sample.py can select): k1 at the start, k2 at the Euler prediction, the average.
// A step ending where the network cannot be evaluated (clean data of a DDPM model) is
// an Euler step, as in EDM.
#include "core/samplers/steps.h"

namespace tessera {
namespace {

class Heun final : public Sampler {
public:
  at::Tensor run(SamplingContext& ctx, at::Tensor x) const override {
    const samplers::OdeView ode(ctx.space);
    const auto& g = ctx.grid;
    for (std::size_t i = 0; i + 1 < g.size(); ++i) {
      if (ctx.stop()) break;
      const Denoised d = ctx.denoise(x, g[i]);
      const double h = ode.coordinate(g[i + 1]) - ode.coordinate(g[i]);
      const at::Tensor y = ode.toState(x, g[i]);
      const at::Tensor k1 = ode.derivative(d, x, g[i]);
      at::Tensor next = y + h * k1;
      if (g[i + 1] <= ctx.space.lastEvaluable()) {
        const at::Tensor xp = ode.fromState(next, g[i + 1]);
        const Denoised d2 = ctx.denoise(xp, g[i + 1]);
        next = y + (0.5 * h) * (k1 + ode.derivative(d2, xp, g[i + 1]));
      }
      x = ode.fromState(next, g[i + 1]);
      ctx.finishStep(g[i], g[i + 1], x, d);
    }
    return x;
  }
};

}  // namespace

void registerSampler_heun(SamplerRegistry& registry) {
  SamplerEntry e;
  e.name = "heun";
  e.aliases = {"heun2", "ode-heun"};
  e.description = "Heun (2nd order) on the probability-flow ODE (2 NFE per step)";
  e.family = SamplerFamily::Ode;
  e.diffusionGrid = "respaced-ddim";
  e.evaluationsPerStep = 2;
  e.make = [] { return std::make_unique<Heun>(); };
  (void)registry.add(std::move(e));
}

}  // namespace tessera
