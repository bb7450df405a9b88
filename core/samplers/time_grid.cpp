// SPDX-License-Identifier: Apache-2.0
#include "core/samplers/time_grid.h"

#include <cmath>

namespace tessera {
namespace {

/// Evenly spaced in τ.
class UniformGrid final : public TimeGrid {
public:
  std::string name() const override { return "uniform"; }
  std::string description() const override { return "evenly spaced in time"; }
  Result<std::vector<double>> make(const SamplingSpace&, const GridRequest& r) const override {
    std::vector<double> g(static_cast<std::size_t>(r.steps + 1));
    for (std::int64_t i = 0; i <= r.steps; ++i)
      g[static_cast<std::size_t>(i)] = r.start + (r.end - r.start) * static_cast<double>(i) / static_cast<double>(r.steps);
    g.back() = r.end;
    return g;
  }
};

/// Steps shrinking quadratically towards the data (DDIM's "quad" discretisation).
class QuadraticGrid final : public TimeGrid {
public:
  std::string name() const override { return "quadratic"; }
  std::string description() const override { return "steps shrinking quadratically towards the data"; }
  Result<std::vector<double>> make(const SamplingSpace&, const GridRequest& r) const override {
    std::vector<double> g(static_cast<std::size_t>(r.steps + 1));
    for (std::int64_t i = 0; i <= r.steps; ++i) {
      const double u = 1.0 - static_cast<double>(i) / static_cast<double>(r.steps);
      g[static_cast<std::size_t>(i)] = r.end - (r.end - r.start) * u * u;
    }
    return g;
  }
};

/// The time shift of flow-matching models (SD3, Esser et al. 2024): a noise level n =
/// 1 − u becomes s n / (1 + (s − 1) n), spending more steps at high noise; the
/// resolution-dependent shift is s = sqrt(pixels / trained pixels).
class ShiftedGrid final : public TimeGrid {
public:
  std::string name() const override { return "shifted"; }
  std::string description() const override { return "flow-matching time shift (default sqrt of the area ratio to the trained size)"; }
  Result<std::vector<double>> make(const SamplingSpace&, const GridRequest& r) const override {
    const double s = r.shift > 0 ? r.shift : std::sqrt(r.resolutionScale);
    if (!(s > 0) || !std::isfinite(s)) return fail("shifted grid: the shift must be positive, got " + std::to_string(s));
    std::vector<double> g(static_cast<std::size_t>(r.steps + 1));
    for (std::int64_t i = 0; i <= r.steps; ++i) {
      const double n = 1.0 - static_cast<double>(i) / static_cast<double>(r.steps);
      const double shifted = s * n / (1.0 + (s - 1.0) * n);
      g[static_cast<std::size_t>(i)] = r.end - (r.end - r.start) * shifted;
    }
    return g;
  }
};

/// Karras et al. (2022): σ/α spaced as (σmax^(1/ρ) + i/(N−1) (σmin^(1/ρ) − σmax^(1/ρ)))^ρ
/// from the grid's start to the last time the network can be evaluated, then the data.
class KarrasGrid final : public TimeGrid {
public:
  std::string name() const override { return "karras"; }
  std::string description() const override { return "Karras et al. sigmas (rho = 7)"; }
  Result<std::vector<double>> make(const SamplingSpace& space, const GridRequest& r) const override {
    const double lastTau = std::min(r.end, space.lastEvaluable());
    const Schedule first = space.schedule(r.start), last = space.schedule(lastTau);
    double smax = first.sigma / first.alpha, smin = last.sigma / last.alpha;
    if (!std::isfinite(smax)) smax = 80.0;  // pure noise (α = 0): EDM's σ_max
    if (!(smin > 0)) return fail("karras grid: the interval ends at σ = 0; it needs a last noise level above 0");
    const std::int64_t points = r.end > lastTau ? r.steps : r.steps + 1;  // + the data when it cannot be evaluated
    if (points < 2) return fail("karras grid: needs at least " + std::to_string(r.end > lastTau ? 2 : 1) + " steps");
    std::vector<double> g;
    const double a = std::pow(smax, 1.0 / r.rho), b = std::pow(smin, 1.0 / r.rho);
    for (std::int64_t i = 0; i < points; ++i) {
      const double ratio = std::pow(a + static_cast<double>(i) / static_cast<double>(points - 1) * (b - a), r.rho);
      g.push_back(i == 0 && first.alpha > 0 ? r.start : i == points - 1 ? lastTau : space.tauFromSigmaRatio(ratio));
    }
    if (r.end > lastTau) g.push_back(r.end);
    return g;
  }
};

/// The DDPM reference's respacing (space_timesteps): "N" evenly spaced with rounding for
/// its p_sample_loop, "ddimN" a fixed integer stride for its ddim_sample_loop; then the
/// data (k = −1).
class RespacedGrid final : public TimeGrid {
public:
  std::string name() const override { return "respaced"; }
  std::string description() const override { return "DDPM reference timesteps: \"N\" (ddpm) or \"ddimN\" (others)"; }
  Result<std::vector<double>> make(const SamplingSpace& space, const GridRequest& r) const override {
    const auto* d = dynamic_cast<const DiffusionSpace*>(&space);
    if (!d) return fail("respaced grid: only for DDPM-process models (this model uses " + space.kind() + ")");
    if (r.start != 0.0 || r.end != 1.0) return fail("respaced grid: covers the whole process; not for SDE samplers with a last step");
    std::string spec = (r.respacing == "ddpm" ? "" : "ddim") + std::to_string(r.steps);
    auto kept = GaussianDiffusion::spaceTimesteps(d->steps(), spec);
    if (!kept && r.respacing != "ddpm") {  // no integer stride gives exactly N steps: evenly spaced instead
      spec = std::to_string(r.steps);
      kept = GaussianDiffusion::spaceTimesteps(d->steps(), spec);
    }
    if (!kept) return fail("respaced grid: " + kept.error().message());
    if (static_cast<std::int64_t>(kept->size()) != r.steps)
      return fail("respaced grid: \"" + spec + "\" keeps " + std::to_string(kept->size()) + " timesteps, not " + std::to_string(r.steps));
    std::vector<double> g;
    for (auto it = kept->rbegin(); it != kept->rend(); ++it) g.push_back(d->tauOfStep(*it));
    g.push_back(1.0);
    return g;
  }
};

/// LDM's DDIM timesteps (ldm/modules/diffusionmodules/util.py make_ddim_timesteps,
/// "uniform"): every c = T / N steps from 0, each plus one (k = 1, c + 1, …), which LDM
/// adds "to get the final alpha values right"; its make_ddim_sampling_parameters then
/// takes ᾱ of step 0 as the last step's target, so sampling ends at k = 0 (α² = ᾱ₀, a
/// trace of noise) and never at the data. When c does not divide T the reference makes
/// ⌈T / c⌉ steps, not N; so does this grid.
class LdmGrid final : public TimeGrid {
public:
  std::string name() const override { return "ldm"; }
  std::string description() const override {
    return "LDM's DDIM timesteps: stride T/N plus one, ending at step 0 (latent-diffusion's make_ddim_timesteps)";
  }
  Result<std::vector<double>> make(const SamplingSpace& space, const GridRequest& r) const override {
    const auto* d = dynamic_cast<const DiffusionSpace*>(&space);
    if (!d) return fail("ldm grid: only for DDPM-process models (this model uses " + space.kind() + ")");
    if (r.start != 0.0 || r.end != 1.0)
      return fail("ldm grid: covers the whole process; not for SDE samplers with a last step");
    const std::int64_t T = d->steps(), c = r.steps > 0 ? T / r.steps : 0;
    if (c < 2)
      return fail("ldm grid: at most " + std::to_string(T / 2) + " steps on a " + std::to_string(T) +
                  "-step process (the reference's last timestep would be " + std::to_string(T) + ", past its end)");
    const std::int64_t top = (T - 1) / c * c + 1;
    if (top > T - 1)
      return fail("ldm grid: " + std::to_string(r.steps) + " steps make the reference's last timestep " +
                  std::to_string(top) + ", past the process's end (" + std::to_string(T - 1) +
                  "): choose another count");
    std::vector<double> g;
    for (std::int64_t k = top - 1; k >= 0; k -= c) g.push_back(d->tauOfStep(k + 1));
    g.push_back(d->tauOfStep(0));
    return g;
  }
};

const std::vector<std::unique_ptr<TimeGrid>>& grids() {
  static const std::vector<std::unique_ptr<TimeGrid>> all = [] {
    std::vector<std::unique_ptr<TimeGrid>> v;
    v.push_back(std::make_unique<UniformGrid>());
    v.push_back(std::make_unique<QuadraticGrid>());
    v.push_back(std::make_unique<ShiftedGrid>());
    v.push_back(std::make_unique<KarrasGrid>());
    v.push_back(std::make_unique<RespacedGrid>());
    v.push_back(std::make_unique<LdmGrid>());
    return v;
  }();
  return all;
}

}  // namespace

const TimeGrid* findTimeGrid(const std::string& name) {
  for (const auto& g : grids())
    if (g->name() == name) return g.get();
  return nullptr;
}

std::vector<std::string> timeGridNames() {
  std::vector<std::string> names;
  for (const auto& g : grids()) names.push_back(g->name());
  return names;
}

}  // namespace tessera
