// SPDX-License-Identifier: Apache-2.0
// Adaptive Dormand–Prince 5(4) on the probability-flow ODE, with torchdiffeq's step-size
// control (SiT's default ODE solver): RMS error norm with atol + rtol·max(|y0|, |y1|),
// safety 0.9, growth within [0.2, 10], Hairer's initial step. The grid's points are
// reported as steps; the solver adapts between them and never steps over one. On DDPM
// models the last stretch to clean data, where the network cannot be evaluated, is an
// Euler step from the last evaluable time, using the evaluation already made there.
#include "core/samplers/steps.h"

#include <algorithm>
#include <cmath>

namespace tessera {
namespace {

constexpr double kC[7] = {0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1, 1};
constexpr double kA[7][6] = {
    {},
    {1.0 / 5},
    {3.0 / 40, 9.0 / 40},
    {44.0 / 45, -56.0 / 15, 32.0 / 9},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
    {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84}};
constexpr double kB5[7] = {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0};
constexpr double kB4[7] = {5179.0 / 57600, 0, 7571.0 / 16695, 393.0 / 640, -92097.0 / 339200, 187.0 / 2100, 1.0 / 40};

double rms(const at::Tensor& t) { return std::sqrt(t.pow(2).mean().item<double>()); }

class Dopri5 final : public Sampler {
public:
  at::Tensor run(SamplingContext& ctx, at::Tensor x) const override {
    const samplers::OdeView ode(ctx.space);
    const auto& g = ctx.grid;
    const double atol = ctx.options.atol, rtol = ctx.options.rtol;
    const double lastEval = ctx.space.lastEvaluable();

    double tau = g.front();
    double s = ode.coordinate(tau);
    at::Tensor y = ode.toState(x, tau);
    Denoised d = ctx.denoise(x, tau);
    at::Tensor f = ode.derivative(d, x, tau);
    auto eval = [&](const at::Tensor& state, double coord, Denoised* out) {
      const double t = ode.tauAt(coord);
      const at::Tensor xs = ode.fromState(state, t);
      Denoised e = ctx.denoise(xs, t);
      at::Tensor k = ode.derivative(e, xs, t);
      if (out) *out = std::move(e);
      return k;
    };

    // Hairer's initial step (torchdiffeq _select_initial_step, order 4).
    const double span = ode.coordinate(std::min(g.back(), lastEval)) - s;
    const double direction = span < 0 ? -1.0 : 1.0;
    double h;
    {
      const at::Tensor scale = atol + rtol * y.abs();
      const double d0 = rms(y / scale), d1 = rms(f / scale);
      double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
      h0 = std::min(h0, std::abs(span));
      const at::Tensor f1 = eval(y + direction * h0 * f, s + direction * h0, nullptr);
      const double d2 = rms((f1 - f) / scale) / h0;
      const double h1 = (d1 <= 1e-15 && d2 <= 1e-15) ? std::max(1e-6, h0 * 1e-3) : std::pow(0.01 / std::max(d1, d2), 1.0 / 5);
      h = std::min(100 * h0, h1);
    }

    for (std::size_t i = 0; i + 1 < g.size(); ++i) {
      if (ctx.stop()) break;
      const double tauStart = tau;
      const Denoised dStart = d;
      const double target = std::min(g[i + 1], lastEval);
      const double sTarget = ode.coordinate(target);
      while (direction * (sTarget - s) > 1e-12 * std::max(1.0, std::abs(sTarget))) {
        if (ctx.stop()) break;
        const bool last = h >= std::abs(sTarget - s);
        const double step = last ? sTarget - s : direction * h;
        std::vector<at::Tensor> k{f};
        for (int stage = 1; stage < 7; ++stage) {
          at::Tensor acc = y.clone();
          for (int j = 0; j < stage; ++j)
            if (kA[stage][j] != 0) acc.add_(k[static_cast<std::size_t>(j)], step * kA[stage][j]);
          if (stage < 6) k.push_back(eval(acc, s + kC[stage] * step, nullptr));
          else {
            // The 7th stage is at the 5th-order solution itself (FSAL).
            const double sNext = last ? sTarget : s + step;
            Denoised dNext;
            at::Tensor fNext = eval(acc, sNext, &dNext);
            at::Tensor err = at::zeros_like(y);
            for (int j = 0; j < 7; ++j) {
              const at::Tensor& kj = j < 6 ? k[static_cast<std::size_t>(j)] : fNext;
              if (kB5[j] - kB4[j] != 0) err.add_(kj, step * (kB5[j] - kB4[j]));
            }
            const double ratio = rms(err / (atol + rtol * at::max(y.abs(), acc.abs())));
            const double factor =
                ratio == 0 ? 10.0 : std::clamp(0.9 * std::pow(ratio, -1.0 / 5), ratio < 1 ? 1.0 : 0.2, 10.0);
            if (ratio <= 1) {
              y = acc;
              s = sNext;
              f = fNext;
              d = std::move(dNext);
              tau = last ? target : ode.tauAt(s);
            }
            h = std::abs(step) * factor;
            TORCH_CHECK(h > 1e-12 * std::max(1.0, std::abs(span)), "dopri5: the step size underflowed at t = ",
                        ctx.space.modelTime(ode.tauAt(s)), " (a non-finite or stiff model output?)");
          }
        }
      }
      if (ctx.stopped) break;
      if (g[i + 1] > lastEval) {  // clean data of a DDPM model: Euler from the last evaluable time
        y = y + (ode.coordinate(g[i + 1]) - s) * f;
        s = ode.coordinate(g[i + 1]);
        tau = g[i + 1];
      }
      x = ode.fromState(y, tau);
      ctx.finishStep(tauStart, tau, x, dStart);
    }
    return x;
  }
};

}  // namespace

void registerSampler_dopri5(SamplerRegistry& registry) {
  SamplerEntry e;
  e.name = "dopri5";
  e.aliases = {"dopri", "rk45"};
  e.description = "adaptive Dormand-Prince 5(4) ODE solver (--atol, --rtol); steps = reported grid points";
  e.family = SamplerFamily::Ode;
  e.diffusionGrid = "uniform";
  e.evaluationsPerStep = 0;  // adaptive: 6 per attempted step (FSAL), as many steps as the tolerances need
  e.make = [] { return std::make_unique<Dopri5>(); };
  (void)registry.add(std::move(e));
}

}  // namespace tessera
