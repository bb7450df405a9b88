// SPDX-License-Identifier: Apache-2.0
// DDPM ancestral sampling (Ho et al. 2020; DiT's p_sample_loop): x_n ~ p(x_n | x_c) with
// the model's learned-range variance on DDPM processes, the posterior variance elsewhere.
#include "core/samplers/steps.h"

namespace tessera {
namespace {

class DDPM final : public Sampler {
public:
  at::Tensor run(SamplingContext& ctx, at::Tensor x) const override {
    const auto& g = ctx.grid;
    for (std::size_t i = 0; i + 1 < g.size(); ++i) {
      if (ctx.stop()) break;
      const Denoised d = ctx.denoise(x, g[i]);
      const auto step = ctx.space.ancestral(d, x, g, i);
      x = step.mean;
      if (step.logVariance.defined())
        x = x + at::exp(0.5 * step.logVariance) * ctx.drawNoise(static_cast<std::int64_t>(i), x);
      ctx.finishStep(g[i], g[i + 1], x, d);
    }
    return x;
  }
};

}  // namespace

void registerSampler_ddpm(SamplerRegistry& registry) {
  SamplerEntry e;
  e.name = "ddpm";
  e.aliases = {"ancestral", "p_sample"};
  e.description = "DDPM ancestral sampling (learned or fixed variance); stochastic";
  e.family = SamplerFamily::Discrete;
  e.stochastic = true;
  e.diffusionGrid = "respaced-ddpm";
  e.evaluationsPerStep = 1;
  e.make = [] { return std::make_unique<DDPM>(); };
  (void)registry.add(std::move(e));
}

}  // namespace tessera
