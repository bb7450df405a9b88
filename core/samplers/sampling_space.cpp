// SPDX-License-Identifier: Apache-2.0
#include "core/samplers/sampling_space.h"

#include "core/util/math.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace tessera {
namespace {

at::Tensor firstChannels(const at::Tensor& output, const at::Tensor& x) {
  const std::int64_t C = x.size(1);
  TORCH_CHECK(output.dim() == x.dim() && output.size(0) == x.size(0) && (output.size(1) == C || output.size(1) == 2 * C),
              "sampler: model output ", output.sizes(), " does not match the state ", x.sizes(),
              " (expected C or 2C channels)");
  return output.size(1) == C ? output : output.narrow(1, 0, C);
}

}  // namespace

// ---- SamplingSpace defaults -------------------------------------------------------------

at::Tensor SamplingSpace::velocity(const Denoised& d, const at::Tensor&, double tau) const {
  const Schedule s = schedule(tau);
  return s.dAlpha * d.x0 + s.dSigma * d.eps;
}

at::Tensor SamplingSpace::score(const Denoised& d, const at::Tensor&, double tau) const {
  return d.eps / -schedule(tau).sigma;
}

double SamplingSpace::driftVariance(double tau) const {
  const Schedule s = schedule(tau);
  return s.dAlpha / s.alpha * s.sigma * s.sigma - s.sigma * s.dSigma;
}

double SamplingSpace::tauFromSigmaRatio(double ratio) const {
  // σ/α falls monotonically with τ: bisection on [0, lastEvaluable].
  double lo = 0.0, hi = lastEvaluable();
  for (int i = 0; i < 80; ++i) {
    const double mid = 0.5 * (lo + hi);
    const Schedule s = schedule(mid);
    if (s.sigma / s.alpha > ratio) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

SamplingSpace::Ancestral SamplingSpace::ancestral(const Denoised& d, const at::Tensor& x, const std::vector<double>& grid,
                                                  std::size_t step) const {
  const Schedule c = schedule(grid[step]), n = schedule(grid[step + 1]);
  const double ratio = c.alpha / n.alpha;                                   // α_{c|n}
  const double condVar = c.sigma * c.sigma - ratio * ratio * n.sigma * n.sigma;  // σ²_{c|n}
  const double s2 = c.sigma * c.sigma;
  Ancestral a;
  a.mean = (n.alpha * condVar / s2) * d.x0 + (ratio * n.sigma * n.sigma / s2) * x;
  const double variance = n.sigma * n.sigma * condVar / s2;
  if (variance > 0) a.logVariance = at::full_like(x, std::log(variance));
  return a;
}

at::Tensor SamplingSpace::modelTimes(double tau, const at::Tensor& like) const {
  return at::full({like.size(0)}, modelTime(tau), like.options());
}

Result<std::shared_ptr<SamplingSpace>> makeSamplingSpace(const Process& process) {
  if (process.diffusion) return std::shared_ptr<SamplingSpace>(std::make_shared<DiffusionSpace>(*process.diffusion));
  if (process.interpolant) return std::shared_ptr<SamplingSpace>(std::make_shared<InterpolantSpace>(*process.interpolant));
  return fail("sampler: the model names no process");
}

// ---- DDPM ------------------------------------------------------------------------------

DiffusionSpace::DiffusionSpace(GaussianDiffusion diffusion) : m_diffusion(std::move(diffusion)) {
  const at::Tensor abar = m_diffusion.alphasCumprod().to(at::kDouble).contiguous();
  m_T = abar.size(0);
  m_logAbar.resize(static_cast<std::size_t>(m_T + 1));
  m_logAbar[0] = 0.0;
  const double* p = abar.data_ptr<double>();
  for (std::int64_t k = 0; k < m_T; ++k) m_logAbar[static_cast<std::size_t>(k + 1)] = std::log(p[k]);
}

Schedule DiffusionSpace::schedule(double tau) const {
  const double j = std::clamp((1.0 - tau) * static_cast<double>(m_T), 0.0, static_cast<double>(m_T));
  auto a = static_cast<std::int64_t>(std::floor(j));
  // At a knot, the slope of the segment on the data side (the direction samplers move).
  if (static_cast<double>(a) == j && a > 0) --a;
  a = std::min<std::int64_t>(a, m_T - 1);
  const double l0 = m_logAbar[static_cast<std::size_t>(a)], l1 = m_logAbar[static_cast<std::size_t>(a + 1)];
  const double L = l0 + (j - static_cast<double>(a)) * (l1 - l0);
  const double dL = -static_cast<double>(m_T) * (l1 - l0);  // d log ᾱ / dτ
  Schedule s;
  s.alpha = std::exp(0.5 * L);
  s.sigma = std::sqrt(std::max(0.0, -std::expm1(L)));
  s.dAlpha = 0.5 * s.alpha * dL;
  s.dSigma = s.sigma > 0 ? -std::exp(L) * dL / (2.0 * s.sigma) : 0.0;
  return s;
}

double DiffusionSpace::modelTime(double tau) const {
  const double k = (1.0 - tau) * static_cast<double>(m_T) - 1.0;
  const double r = std::round(k);
  return std::abs(k - r) < 1e-6 ? r : k;
}

double DiffusionSpace::tauFromModelTime(double t) const { return 1.0 - (t + 1.0) / static_cast<double>(m_T); }

double DiffusionSpace::lastEvaluable() const { return tauOfStep(0); }

std::pair<double, double> DiffusionSpace::interval(SamplerFamily family, const IntervalOptions& options) const {
  if (family == SamplerFamily::Sde) return {0.0, options.lastStepSize > 0 ? 1.0 - options.lastStepSize : lastEvaluable()};
  return {0.0, 1.0};
}

double DiffusionSpace::tauFromSigmaRatio(double ratio) const {
  const double target = -std::log1p(ratio * ratio);  // log ᾱ
  if (target >= 0) return 1.0;
  if (target <= m_logAbar.back()) return 0.0;
  // m_logAbar falls with j: find the segment [a, a+1] holding the target.
  const auto it = std::lower_bound(m_logAbar.begin(), m_logAbar.end(), target, [](double v, double t) { return v > t; });
  const auto b = static_cast<std::int64_t>(it - m_logAbar.begin());
  const std::int64_t a = std::max<std::int64_t>(0, b - 1);
  const double l0 = m_logAbar[static_cast<std::size_t>(a)], l1 = m_logAbar[static_cast<std::size_t>(b)];
  const double j = static_cast<double>(a) + (l0 == l1 ? 0.0 : (l0 - target) / (l0 - l1));
  return 1.0 - j / static_cast<double>(m_T);
}

Denoised DiffusionSpace::interpret(const at::Tensor& output, const at::Tensor& x, double tau) const {
  Denoised d;
  d.output = output;
  d.prediction = firstChannels(output, x);
  const Schedule s = schedule(tau);
  const Prediction p = m_diffusion.prediction();
  if (p == Prediction::Epsilon) {
    d.eps = d.prediction;
    d.x0 = (x - s.sigma * d.eps) / s.alpha;
  } else if (p == Prediction::Sample) {
    d.x0 = d.prediction;
    d.eps = (x - s.alpha * d.x0) / s.sigma;
  } else {  // v = α ε − σ x0 (VP: α² + σ² = 1)
    d.x0 = s.alpha * x - s.sigma * d.prediction;
    d.eps = s.sigma * x + s.alpha * d.prediction;
  }
  return d;
}

SamplingSpace::Ancestral DiffusionSpace::ancestral(const Denoised& d, const at::Tensor& x, const std::vector<double>& grid,
                                                   std::size_t step) const {
  // On integer steps ending at clean data, the reference's respaced process: its learned
  // range (or fixed large) variance and its posterior mean.
  if (m_respacedFor != grid) {  // once per grid, not per step
    m_respacedFor = grid;
    m_respaced.reset();
    bool integer = grid.size() >= 2 && grid.back() == 1.0;
    std::vector<std::int64_t> keep;
    for (std::size_t i = grid.size() - 1; integer && i-- > 0;) {  // ascending original steps
      const double k = modelTime(grid[i]);
      integer = k == std::round(k) && k >= 0;
      keep.push_back(static_cast<std::int64_t>(k));
    }
    if (integer) {
      auto respaced = m_diffusion.respaced(keep);
      TORCH_CHECK(respaced, "ddpm: ", respaced ? std::string() : respaced.error().message());
      m_respaced = std::move(*respaced);
    }
  }
  if (!m_respaced) {
    TORCH_CHECK(!m_diffusion.config().learnSigma, "ddpm: a model with learned variance needs a grid of integer "
                "timesteps ending at the data (the default respaced grid)");
    return SamplingSpace::ancestral(d, x, grid, step);
  }
  const auto index = static_cast<std::int64_t>(grid.size() - 2 - step);  // respaced step index
  const at::Tensor t = at::full({x.size(0)}, index, at::TensorOptions(at::kLong).device(x.device()));
  const auto p = m_respaced->interpret(d.output, x, t);
  Ancestral a;
  a.mean = d.clipped ? m_respaced->qPosterior(d.x0, x, t).mean : p.mean;
  if (index > 0) a.logVariance = p.logVariance;
  return a;
}

// ---- SiT interpolants ------------------------------------------------------------------

Schedule InterpolantSpace::schedule(double t) const {
  const auto& c = m_interpolant.config();
  Schedule s;
  if (c.path == "linear") {
    s = {t, 1.0 - t, 1.0, -1.0};
  } else if (c.path == "gvp") {
    s = {std::sin(t * kPi / 2), std::cos(t * kPi / 2), kPi / 2 * std::cos(t * kPi / 2), -kPi / 2 * std::sin(t * kPi / 2)};
    if (t == 1.0) s.sigma = s.dAlpha = 0.0;  // exactly, not cos(π/2) ≈ 6e-17
  } else {
    const double smin = c.vpSigmaMin, smax = c.vpSigmaMax;
    const double m = -0.25 * (1 - t) * (1 - t) * (smax - smin) - 0.5 * (1 - t) * smin;
    const double dm = 0.5 * (1 - t) * (smax - smin) + 0.5 * smin;
    s.alpha = std::exp(m);
    s.dAlpha = s.alpha * dm;
    s.sigma = std::sqrt(std::max(0.0, -std::expm1(2 * m)));
    s.dSigma = s.sigma > 0 ? std::exp(2 * m) * 2 * dm / (-2 * s.sigma) : 0.0;
  }
  return s;
}

std::pair<double, double> InterpolantSpace::interval(SamplerFamily family, const IntervalOptions& options) const {
  // SiT's Transport.check_interval with eval=True (sample_eps).
  const auto& c = m_interpolant.config();
  const double eps = c.sampleEps;
  const bool velocity = m_interpolant.prediction() == Prediction::Velocity;
  const bool sde = family == SamplerFamily::Sde;
  const double lss = options.lastStepSize;
  double t0 = 0.0, t1 = 1.0;
  if (c.path == "vp") {
    t1 = (!sde || lss == 0) ? 1.0 - eps : 1.0 - lss;
  } else if (!velocity || sde) {
    t0 = ((options.sbdmDiffusion && sde) || !velocity) ? eps : 0.0;
    t1 = (!sde || lss == 0) ? 1.0 - eps : 1.0 - lss;
  }
  // DDIM, DDPM and DPM-Solver++ step to the data with the data estimate itself and
  // never evaluate the network at the end point.
  if (family == SamplerFamily::Discrete) t1 = 1.0;
  return {t0, t1};
}

Denoised InterpolantSpace::interpret(const at::Tensor& output, const at::Tensor& x, double tau) const {
  Denoised d;
  d.output = output;
  d.prediction = firstChannels(output, x);
  const Schedule s = schedule(tau);
  const Prediction p = m_interpolant.prediction();
  if (p == Prediction::Velocity) {  // solve x = α x0 + σ ε, v = α' x0 + σ' ε
    const double det = s.alpha * s.dSigma - s.sigma * s.dAlpha;
    d.x0 = (s.dSigma * x - s.sigma * d.prediction) / det;
    d.eps = (s.alpha * d.prediction - s.dAlpha * x) / det;
  } else {
    d.eps = p == Prediction::Epsilon ? d.prediction : -s.sigma * d.prediction;
    d.x0 = (x - s.sigma * d.eps) / s.alpha;
  }
  return d;
}

at::Tensor InterpolantSpace::velocity(const Denoised& d, const at::Tensor& x, double tau) const {
  if (d.clipped) return SamplingSpace::velocity(d, x, tau);  // from the clamped x0 and its eps
  if (m_interpolant.prediction() == Prediction::Velocity) return d.prediction;  // SiT's velocity_ode, unchanged
  return m_interpolant.toVelocity(d.prediction, x, modelTimes(tau, x));
}

at::Tensor InterpolantSpace::score(const Denoised& d, const at::Tensor& x, double tau) const {
  if (d.clipped) return SamplingSpace::score(d, x, tau);
  const Prediction p = m_interpolant.prediction();
  if (p == Prediction::Score) return d.prediction;
  if (p == Prediction::Epsilon) return m_interpolant.scoreFromNoise(d.prediction, x, modelTimes(tau, x));
  return m_interpolant.scoreFromVelocity(d.prediction, x, modelTimes(tau, x));
}

double InterpolantSpace::driftVariance(double tau) const {
  const auto& c = m_interpolant.config();
  if (c.path == "vp") return 0.5 * (c.vpSigmaMin + (1.0 - tau) * (c.vpSigmaMax - c.vpSigmaMin));
  return SamplingSpace::driftVariance(tau);
}

}  // namespace tessera
