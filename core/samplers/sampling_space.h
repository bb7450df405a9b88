// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/process/gaussian_diffusion.h"
#include "core/process/interpolant.h"
#include "core/process/process.h"
#include "core/util/error.h"

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tessera {

/// α, σ of x_τ = α x_data + σ ε at one time, and their derivatives in τ.
struct Schedule {
  double alpha = 0, sigma = 1, dAlpha = 0, dSigma = 0;
};

/// What one model evaluation says about x at τ.
struct Denoised {
  at::Tensor output;      ///< the (guided) network output, all channels
  at::Tensor prediction;  ///< its first C channels: what the network predicts (eps, velocity, …)
  at::Tensor x0;          ///< the data estimate
  at::Tensor eps;         ///< the noise estimate, consistent with x0: x = α x0 + σ eps
  /// x0 was clamped to the data range (SamplerOptions::clipDenoised) and eps recomputed;
  /// steps then use x0 and eps rather than the raw prediction.
  bool clipped = false;
  /// With Denoiser::setKeepGuidanceParts and guidance active at this τ: the data
  /// estimates of the conditional and the unconditional half on their own (undefined otherwise).
  at::Tensor x0Conditional, x0Unconditional;
};

/// How a family of samplers uses time; it selects the default interval of the grid.
enum class SamplerFamily { Discrete, Ode, Sde };

/// Options that shape the time interval (SiT's check_interval) for SDE samplers.
struct IntervalOptions {
  bool sbdmDiffusion = false;   ///< the SDE's diffusion form is SBDM (SiT then starts at sample_eps)
  double lastStepSize = 0.04;   ///< the SDE stops this far from the data (0: no last step)
};

/// The samplers' single view of every process: a progress time τ ∈ [0, 1] running from
/// pure noise (0) to data (1), as SiT's interpolants define it, with x_τ = α x0 + σ ε.
/// Samplers are written against this class only, so any sampler drives any model:
/// - interpolants use their own t as τ (SiT's conventions, unchanged);
/// - DDPM processes map their discrete index k (T−1 … 0, and −1 for clean data) to
///   τ = 1 − (k + 1)/T, interpolating log ᾱ linearly between integer steps, so that
///   fractional steps (adaptive solvers, Karras grids) have a schedule too; the network
///   then sees the fractional timestep, which DiT's sinusoidal embedding accepts.
class SamplingSpace {
public:
  virtual ~SamplingSpace() = default;
  virtual std::string kind() const = 0;
  virtual Schedule schedule(double tau) const = 0;
  /// The time the network sees at τ, in its own convention (DDPM index, or SiT's t).
  virtual double modelTime(double tau) const = 0;
  /// The inverse of modelTime.
  virtual double tauFromModelTime(double t) const = 0;
  /// The largest τ at which the network can be evaluated (DDPM: step 0; clean data
  /// at k = −1 is never fed to the network).
  virtual double lastEvaluable() const = 0;
  /// [τ_start, τ_end] of a family's grid (the reference's check_interval for SiT).
  virtual std::pair<double, double> interval(SamplerFamily family, const IntervalOptions& options) const = 0;
  /// Reads a network output at (x, τ): the prediction in the first C = x.size(1)
  /// channels, converted to the data and noise estimates.
  virtual Denoised interpret(const at::Tensor& output, const at::Tensor& x, double tau) const = 0;
  /// dx/dτ of the probability-flow ODE: α' x0 + σ' ε (interpolants: SiT's drift).
  virtual at::Tensor velocity(const Denoised& d, const at::Tensor& x, double tau) const;
  /// ∇ log p_τ(x) = −ε/σ (interpolants: SiT's get_score).
  virtual at::Tensor score(const Denoised& d, const at::Tensor& x, double tau) const;
  /// SiT's compute_drift variance term (α'/α) σ² − σ σ' (the SBDM diffusion).
  virtual double driftVariance(double tau) const;
  /// Whether ODE solvers integrate in EDM's coordinates (y = x/α against s = σ/α, where
  /// dy/ds = ε): the variable k-diffusion uses for discrete DDPM models, in which an
  /// Euler step is exactly a DDIM step. Interpolants integrate dx/dτ = velocity in τ,
  /// exactly as SiT does.
  virtual bool odeInSigmaRatio() const { return false; }
  /// τ at which σ/α equals `ratio` (for Karras grids and EDM coordinates).
  virtual double tauFromSigmaRatio(double ratio) const;
  /// DDPM ancestral step x_{τc} → x_{τn}: mean and log variance of p(x_n | x_c). The
  /// default is the Gaussian posterior q(x_n | x_c, x0) (fixed "small" variance); DDPM
  /// processes with a learned variance override it with the reference's respaced
  /// learned-range variance.
  struct Ancestral {
    at::Tensor mean, logVariance;  ///< logVariance empty when the step is deterministic (σ_n = 0)
  };
  virtual Ancestral ancestral(const Denoised& d, const at::Tensor& x, const std::vector<double>& grid, std::size_t step) const;
  /// The network's time for `tau` as a (N,) tensor like x.
  at::Tensor modelTimes(double tau, const at::Tensor& like) const;
};

/// The sampling view of a model's process.
Result<std::shared_ptr<SamplingSpace>> makeSamplingSpace(const Process& process);

/// DDPM processes (DiT's gaussian_diffusion.py).
class DiffusionSpace final : public SamplingSpace {
public:
  explicit DiffusionSpace(GaussianDiffusion diffusion);
  std::string kind() const override { return "gaussian_diffusion"; }
  Schedule schedule(double tau) const override;
  double modelTime(double tau) const override;
  double tauFromModelTime(double t) const override;
  double lastEvaluable() const override;
  std::pair<double, double> interval(SamplerFamily family, const IntervalOptions& options) const override;
  Denoised interpret(const at::Tensor& output, const at::Tensor& x, double tau) const override;
  bool odeInSigmaRatio() const override { return true; }
  double tauFromSigmaRatio(double ratio) const override;
  Ancestral ancestral(const Denoised& d, const at::Tensor& x, const std::vector<double>& grid, std::size_t step) const override;

  const GaussianDiffusion& diffusion() const { return m_diffusion; }
  std::int64_t steps() const { return m_T; }
  /// τ of integer step k (−1 = clean data).
  double tauOfStep(std::int64_t k) const { return 1.0 - static_cast<double>(k + 1) / static_cast<double>(m_T); }

private:
  GaussianDiffusion m_diffusion;
  std::int64_t m_T;
  std::vector<double> m_logAbar;  ///< index j = k + 1 ∈ [0, T]; m_logAbar[0] = 0 (clean data)
  mutable std::vector<double> m_respacedFor;  ///< grid the cached respaced process was built for
  mutable std::optional<GaussianDiffusion> m_respaced;
};

/// SiT's stochastic interpolants (transport/).
class InterpolantSpace final : public SamplingSpace {
public:
  explicit InterpolantSpace(Interpolant interpolant) : m_interpolant(std::move(interpolant)) {}
  std::string kind() const override { return "interpolant"; }
  Schedule schedule(double tau) const override;
  double modelTime(double tau) const override { return tau; }
  double tauFromModelTime(double t) const override { return t; }
  double lastEvaluable() const override { return 1.0; }
  std::pair<double, double> interval(SamplerFamily family, const IntervalOptions& options) const override;
  Denoised interpret(const at::Tensor& output, const at::Tensor& x, double tau) const override;
  at::Tensor velocity(const Denoised& d, const at::Tensor& x, double tau) const override;
  at::Tensor score(const Denoised& d, const at::Tensor& x, double tau) const override;
  double driftVariance(double tau) const override;

  const Interpolant& interpolant() const { return m_interpolant; }

private:
  Interpolant m_interpolant;
};

}  // namespace tessera
