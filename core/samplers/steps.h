// SPDX-License-Identifier: Apache-2.0
// Pieces shared by several samplers (internal to core/samplers).
#pragma once

#include "core/samplers/sampler.h"

#include <ATen/ATen.h>

#include <cmath>

namespace tessera::samplers {

/// The coordinates ODE solvers integrate in: y against s with dy/ds = f. Interpolants:
/// y = x, s = τ, f = the velocity (SiT's ODE, unchanged). DDPM models: EDM's y = x/α,
/// s = σ/α, f = ε (k-diffusion's choice; an Euler step there is a DDIM step).
class OdeView {
public:
  explicit OdeView(const SamplingSpace& space) : m_space(space), m_ratio(space.odeInSigmaRatio()) {}
  double coordinate(double tau) const {
    if (!m_ratio) return tau;
    const Schedule s = m_space.schedule(tau);
    return s.sigma / s.alpha;
  }
  double tauAt(double coordinate) const { return m_ratio ? m_space.tauFromSigmaRatio(coordinate) : coordinate; }
  at::Tensor toState(const at::Tensor& x, double tau) const { return m_ratio ? x / m_space.schedule(tau).alpha : x; }
  at::Tensor fromState(const at::Tensor& y, double tau) const { return m_ratio ? y * m_space.schedule(tau).alpha : y; }
  at::Tensor derivative(const Denoised& d, const at::Tensor& x, double tau) const {
    return m_ratio ? d.eps : m_space.velocity(d, x, tau);
  }

private:
  const SamplingSpace& m_space;
  bool m_ratio;
};

/// SiT's diffusion coefficient w(τ) of the SDE dx = [v + w ∇log p] dτ + sqrt(2w) dW
/// (transport/path.py compute_diffusion; "increasing-decreasing" is spelled
/// "inccreasing-decreasing" there).
inline double diffusionCoefficient(const SamplingSpace& space, const SamplerOptions& o, double tau) {
  const double pi = std::acos(-1.0), n = o.diffusionNorm;
  if (o.diffusionForm == "constant") return n;
  if (o.diffusionForm == "SBDM") return n * space.driftVariance(tau);
  if (o.diffusionForm == "sigma") return n * space.schedule(tau).sigma;
  if (o.diffusionForm == "linear") return n * (1.0 - tau);
  if (o.diffusionForm == "decreasing") return 0.25 * std::pow(n * std::cos(pi * tau) + 1.0, 2);
  return n * std::pow(std::sin(pi * tau), 2);  // increasing-decreasing
}

/// The SDE drift v + w ∇log p from one evaluation.
inline at::Tensor sdeDrift(const SamplingSpace& space, const SamplerOptions& o, const Denoised& d, const at::Tensor& x, double tau) {
  return space.velocity(d, x, tau) + diffusionCoefficient(space, o, tau) * space.score(d, x, tau);
}

}  // namespace tessera::samplers
