// SPDX-License-Identifier: Apache-2.0
// Example sampler plugin "lms": a variable-step linear multistep method (Adams–Bashforth)
// on the probability-flow ODE, in the coordinates the built-in ODE solvers use
// (samplers::OdeView), as k-diffusion's sample_lms does. Each step integrates the
// polynomial through the last k derivatives over the step; the order k grows 1, 2, 3
// as the history fills. One network evaluation per step; the step into clean data of
// a DDPM model needs none, because only past derivatives are used.
#include "plugins/tessera_plugin.h"

#include <array>
#include <deque>
#include <vector>

namespace {

using namespace tessera;

constexpr std::size_t kMaxOrder = 3;

/// ∫ₐᵇ ℓⱼ(s) ds for the Lagrange basis polynomial ℓⱼ of `nodes` (1 at node j, 0 at the
/// others), by 3-point Gauss–Legendre, which is exact up to degree 5: order 3 needs
/// degree 2. Signed: b < a (DDPM models integrate towards smaller σ/α) works as it is.
double lagrangeIntegral(const std::vector<double>& nodes, std::size_t j, double a, double b) {
  static constexpr std::array<double, 3> kPoints{-0.7745966692414834, 0.0, 0.7745966692414834};  // ±√(3/5), 0
  static constexpr std::array<double, 3> kWeights{5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0};
  const double half = 0.5 * (b - a), mid = 0.5 * (a + b);
  double sum = 0;
  for (std::size_t q = 0; q < kPoints.size(); ++q) {
    const double s = mid + half * kPoints[q];
    double basis = 1;
    for (std::size_t m = 0; m < nodes.size(); ++m)
      if (m != j) basis *= (s - nodes[m]) / (nodes[j] - nodes[m]);
    sum += kWeights[q] * basis;
  }
  return half * sum;
}

class LinearMultistep final : public Sampler {
public:
  at::Tensor run(SamplingContext& ctx, at::Tensor x) const override {
    const samplers::OdeView ode(ctx.space);
    const auto& g = ctx.grid;
    std::deque<double> nodes;            // coordinates of the kept derivatives, newest first
    std::deque<at::Tensor> derivatives;  // dy/ds there
    for (std::size_t i = 0; i + 1 < g.size(); ++i) {
      if (ctx.stop()) break;
      const Denoised d = ctx.denoise(x, g[i]);
      const double s = ode.coordinate(g[i]), sNext = ode.coordinate(g[i + 1]);
      nodes.push_front(s);
      derivatives.push_front(ode.derivative(d, x, g[i]));
      if (nodes.size() > kMaxOrder) {
        nodes.pop_back();
        derivatives.pop_back();
      }
      const std::vector<double> points(nodes.begin(), nodes.end());
      at::Tensor y = ode.toState(x, g[i]);
      for (std::size_t j = 0; j < points.size(); ++j) y = y + lagrangeIntegral(points, j, s, sNext) * derivatives[j];
      x = ode.fromState(y, g[i + 1]);
      ctx.finishStep(g[i], g[i + 1], x, d);
    }
    return x;
  }
};

Result<void> registerLms(PluginRegistrar& registrar) {
  SamplerEntry e;
  e.name = "lms";
  e.aliases = {"adams-bashforth"};
  e.description = "Linear multistep (Adams–Bashforth, order up to 3) on the probability-flow ODE (1 NFE per step; plugin)";
  e.family = SamplerFamily::Ode;
  e.diffusionGrid = "respaced-ddim";
  e.evaluationsPerStep = 1;  // one new derivative per step; the older ones are reused
  e.make = [] { return std::make_unique<LinearMultistep>(); };
  return registrar.addSampler(std::move(e));
}

}  // namespace

TESSERA_PLUGIN("lms-sampler", "1.0.0", "Example sampler: linear multistep (Adams–Bashforth up to order 3)", registerLms)
