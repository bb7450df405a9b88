// SPDX-License-Identifier: Apache-2.0
// DPM-Solver++(2M) (Lu et al. 2022), data prediction, multistep, on any process: with
// λ = log(α/σ) and h = λ_n − λ_c, x_n = (σ_n/σ_c) x_c + α_n (1 − e^{−h}) D where D is
// the data estimate, corrected with the previous one, D = (1 + 1/2r) x0_c − (1/2r) x0_p,
// r = h_p / h. First order on the first step, on a step from pure noise (α = 0) and on
// the step into the data (σ = 0), as k-diffusion does.
#include "core/samplers/steps.h"

#include <cmath>
#include <limits>

namespace tessera {
namespace {

class DPMPP2M final : public Sampler {
public:
  at::Tensor run(SamplingContext& ctx, at::Tensor x) const override {
    const auto& g = ctx.grid;
    at::Tensor previous;
    double hPrevious = 0;
    auto lambda = [](const Schedule& s) {
      if (s.alpha <= 0) return -std::numeric_limits<double>::infinity();
      if (s.sigma <= 0) return std::numeric_limits<double>::infinity();
      return std::log(s.alpha / s.sigma);
    };
    for (std::size_t i = 0; i + 1 < g.size(); ++i) {
      if (ctx.stop()) break;
      const Denoised d = ctx.denoise(x, g[i]);
      const Schedule c = ctx.space.schedule(g[i]), n = ctx.space.schedule(g[i + 1]);
      const double h = lambda(n) - lambda(c);
      // α_n (1 − e^{−h}) = α_n − σ_n α_c / σ_c, finite at both ends.
      const double dataScale = n.alpha - n.sigma * c.alpha / c.sigma;
      at::Tensor D = d.x0;
      const bool final = i + 2 == g.size();  // into the data: first order (k-diffusion, DPM-Solver's lower_order_final)
      if (previous.defined() && !final && std::isfinite(h) && std::isfinite(hPrevious)) {
        const double r = hPrevious / h;
        D = (1 + 1 / (2 * r)) * d.x0 - (1 / (2 * r)) * previous;
      }
      x = (n.sigma / c.sigma) * x + dataScale * D;
      previous = d.x0;
      hPrevious = h;
      ctx.finishStep(g[i], g[i + 1], x, d);
    }
    return x;
  }
};

}  // namespace

void registerSampler_dpmpp_2m(SamplerRegistry& registry) {
  SamplerEntry e;
  e.name = "dpmpp-2m";
  e.aliases = {"dpm++2m", "dpmpp2m", "dpm-solver++"};
  e.description = "DPM-Solver++(2M), data prediction, multistep (1 NFE per step)";
  e.family = SamplerFamily::Discrete;
  e.diffusionGrid = "respaced-ddim";
  e.evaluationsPerStep = 1;
  e.make = [] { return std::make_unique<DPMPP2M>(); };
  (void)registry.add(std::move(e));
}

}  // namespace tessera
