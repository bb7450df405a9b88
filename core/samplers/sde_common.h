// SPDX-License-Identifier: Apache-2.0
// SiT's SDE samplers (transport/integrators.py sde, transport.py Sampler.sample_sde):
// N stochastic steps on the grid from t0 to t1 = 1 − last_step_size, then one last
// step to the data: "Mean" x + (v + w ∇log p)·Δ, "Tweedie" x/α + σ²/α ∇log p, "Euler"
// x + v·Δ, or "none". The reference evaluates the network twice per drift (velocity and
// score separately); here one evaluation gives both, with the same result.
#pragma once

#include "core/samplers/steps.h"

namespace tessera::samplers {

template <typename Step>
at::Tensor runSde(SamplingContext& ctx, at::Tensor x, Step step) {
  const auto& g = ctx.grid;
  for (std::size_t i = 0; i + 1 < g.size(); ++i) {
    if (ctx.stop()) return x;
    Denoised d;
    x = step(ctx, x, g[i], g[i + 1] - g[i], static_cast<std::int64_t>(i), d);
    ctx.finishStep(g[i], g[i + 1], x, d);
  }
  const auto& o = ctx.options;
  if (o.lastStep == "none" || ctx.stop()) return x;
  const double t1 = g.back();
  const Denoised d = ctx.denoise(x, t1);
  if (o.lastStep == "Mean") {
    x = x + sdeDrift(ctx.space, o, d, x, t1) * o.lastStepSize;
  } else if (o.lastStep == "Tweedie") {
    const Schedule s = ctx.space.schedule(t1);
    x = x / s.alpha + (s.sigma * s.sigma / s.alpha) * ctx.space.score(d, x, t1);
  } else {
    x = x + ctx.space.velocity(d, x, t1) * o.lastStepSize;
  }
  ctx.finishStep(t1, 1.0, x, d);
  return x;
}

}  // namespace tessera::samplers
