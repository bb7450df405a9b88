// SPDX-License-Identifier: Apache-2.0
// DDIM (Song et al. 2021; DiT's ddim_sample_loop) on any process:
// x_n = α_n x0 + sqrt(σ_n² − c²) ε + c z with c² = η² σ_n² σ²_{c|n} / σ_c², where
// σ²_{c|n} = σ_c² − (α_c/α_n)² σ_n² is the variance of the forward step n → c.
#include "core/samplers/steps.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace tessera {
namespace {

class DDIM final : public Sampler {
public:
  at::Tensor run(SamplingContext& ctx, at::Tensor x) const override {
    const auto& g = ctx.grid;
    const double eta = ctx.options.eta;
    for (std::size_t i = 0; i + 1 < g.size(); ++i) {
      if (ctx.stop()) break;
      const Denoised d = ctx.denoise(x, g[i]);
      const Schedule c = ctx.space.schedule(g[i]), n = ctx.space.schedule(g[i + 1]);
      double noiseScale = 0.0;
      if (eta > 0) {
        const double ratio = c.alpha / n.alpha;
        const double condVar = std::max(0.0, c.sigma * c.sigma - ratio * ratio * n.sigma * n.sigma);
        noiseScale = eta * n.sigma * std::sqrt(condVar) / c.sigma;
      }
      const double epsScale = std::sqrt(std::max(0.0, n.sigma * n.sigma - noiseScale * noiseScale));
      x = n.alpha * d.x0 + epsScale * d.eps;
      if (noiseScale > 0) x = x + noiseScale * ctx.drawNoise(static_cast<std::int64_t>(i), x);
      ctx.finishStep(g[i], g[i + 1], x, d);
    }
    return x;
  }
};

}  // namespace

Result<at::Tensor> invertDDIM(Denoiser& denoiser, at::Tensor x, const std::vector<double>& grid) {
  if (grid.size() < 2) return fail("ddim inversion: the grid needs at least two times");
  const SamplingSpace& space = denoiser.space();
  try {
    for (std::size_t i = grid.size() - 1; i > 0; --i) {
      const Denoised d = denoiser(x, std::min(grid[i], space.lastEvaluable()));
      const Schedule to = space.schedule(grid[i - 1]);
      x = to.alpha * d.x0 + to.sigma * d.eps;
    }
  } catch (const c10::Error& e) {
    return fail(std::string("ddim inversion: ") + e.what_without_backtrace());
  }
  return x;
}

void registerSampler_ddim(SamplerRegistry& registry) {
  SamplerEntry e;
  e.name = "ddim";
  e.description = "DDIM; --eta 0 deterministic, > 0 stochastic";
  e.family = SamplerFamily::Discrete;
  e.stochastic = false;  // draws noise only when eta > 0
  e.diffusionGrid = "respaced-ddim";
  e.evaluationsPerStep = 1;
  e.make = [] { return std::make_unique<DDIM>(); };
  (void)registry.add(std::move(e));
}

}  // namespace tessera
