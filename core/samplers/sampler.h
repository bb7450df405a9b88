// SPDX-License-Identifier: Apache-2.0
// Samplers see a denoiser, a time grid and a noise source; they know nothing of
// backbones. One file per sampler, one line per sampler in samplers.def.
#pragma once

#include "core/guidance/guidance.h"
#include "core/samplers/sampling_space.h"
#include "core/util/error.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace tessera {

/// The network as samplers see it: (x, t in the model's own convention, labels) → output.
using ModelFn = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y)>;

/// Wraps the network with classifier-free guidance and reads its output through the
/// sampling space. Counts function evaluations (NFE): one per call, whether or not the
/// call ran the conditional and unconditional halves in its one batched forward.
class Denoiser {
public:
  /// `nullLabels` (the null class per image) is needed when guidance is on.
  Denoiser(const SamplingSpace& space, ModelFn model, at::Tensor labels, at::Tensor nullLabels, GuidanceConfig guidance);
  Denoised operator()(const at::Tensor& x, double tau);
  /// SamplerOptions::clipDenoised.
  void setClipDenoised(bool clip) { m_clip = clip; }
  /// Also report each guided step's conditional-only and unconditional-only x0 (for
  /// observers such as the studio's timeline; costs two reads of the outputs, no forward).
  void setKeepGuidanceParts(bool keep) { m_keepParts = keep; }

  const SamplingSpace& space() const { return m_space; }
  const GuidanceConfig& guidance() const { return m_guidance; }
  std::int64_t evaluations() const { return m_nfe; }
  /// Images pushed through the network (2 per image and evaluation while guiding).
  std::int64_t forwardRows() const { return m_rows; }

private:
  const SamplingSpace& m_space;
  ModelFn m_model;
  at::Tensor m_labels, m_nullLabels, m_bothLabels;
  GuidanceConfig m_guidance;
  std::int64_t m_nfe = 0, m_rows = 0;
  bool m_clip = false;
  bool m_keepParts = false;
};

/// One finished step, as observers see it. Tensors live on the sampling device; an
/// observer that needs host copies makes them (and pays for them), others cost nothing.
struct StepEvent {
  std::int64_t index = 0;           ///< 0-based step
  double tau = 0, tauNext = 0;      ///< progress before and after the step (0 noise, 1 data)
  double time = 0, timeNext = 0;    ///< the same in the model's own convention
  const at::Tensor* x = nullptr;    ///< the state after the step
  const Denoised* denoised = nullptr;  ///< the evaluation at `tau` the step was built on
  std::int64_t nfe = 0;             ///< evaluations so far
};

class StepObserver {
public:
  virtual ~StepObserver() = default;
  /// The initial state (pure noise at the grid's first time).
  virtual void onStart(const at::Tensor& /*x*/, double /*tau*/, double /*time*/) {}
  virtual void onStep(const StepEvent& event) = 0;
};

/// Set from any thread; samplers check it before every step (and every attempted step
/// of adaptive solvers) and return what they have, marked cancelled.
class CancelToken {
public:
  void cancel() { m_cancelled.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return m_cancelled.load(std::memory_order_relaxed); }

private:
  std::atomic<bool> m_cancelled{false};
};

/// The noise stochastic samplers draw at each step.
class NoiseSource {
public:
  virtual ~NoiseSource() = default;
  /// Noise shaped like `like` for step `step` (each step draws at most once).
  virtual at::Tensor draw(std::int64_t step, const at::Tensor& like) = 0;
};

struct SamplerOptions {
  std::int64_t steps = 50;        ///< sampler steps: intervals of the time grid
  std::string grid = "default";   ///< see timeGridNames(); "default" lets the sampler choose
  double eta = 0.0;               ///< ddim: 0 deterministic, 1 = DDPM's posterior variance
  double shift = 0.0;             ///< shifted grid; 0 = resolution-dependent sqrt(area ratio)
  double resolutionScale = 1.0;   ///< (H·W) / (trained H·W), for the resolution-dependent shift
  double rho = 7.0;               ///< karras grid
  double atol = 1e-6, rtol = 1e-3;  ///< dopri5 (SiT's defaults)
  std::string diffusionForm = "sigma";  ///< SDE: constant, SBDM, sigma, linear, decreasing, increasing-decreasing
  double diffusionNorm = 1.0;
  std::string lastStep = "Mean";  ///< SDE: Mean, Tweedie, Euler or none
  double lastStepSize = 0.04;
  /// Clamp every data estimate to [−1, 1] (pixel models; DDPM's clip_denoised) and
  /// recompute the noise estimate from it. Off for latent models, whose data is unbounded.
  bool clipDenoised = false;
  nlohmann::json toJson() const;
};

/// What a sampler works with.
struct SamplingContext {
  const SamplingSpace& space;
  Denoiser& denoise;
  std::vector<double> grid;  ///< τ of each state, first = noise, ascending
  SamplerOptions options;
  NoiseSource* noise = nullptr;
  StepObserver* observer = nullptr;
  const CancelToken* cancel = nullptr;

  // Filled while sampling:
  std::vector<double> states;  ///< τ of every state reached (initial first)
  std::int64_t steps = 0;
  bool stopped = false;        ///< a sampler saw the cancel token and returned early

  bool cancelled() const { return cancel && cancel->cancelled(); }
  /// Checked before every step: true (and remembered) once cancelled.
  bool stop() { return stopped = stopped || cancelled(); }
  at::Tensor drawNoise(std::int64_t step, const at::Tensor& like);
  /// Records a finished step and tells the observer.
  void finishStep(double tau, double tauNext, const at::Tensor& x, const Denoised& d);
};

struct SampleResult {
  at::Tensor x;               ///< the final state (or the last one reached when cancelled)
  std::vector<double> states; ///< τ of every state, initial first
  std::vector<double> times;  ///< the same in the model's own convention
  std::int64_t steps = 0, nfe = 0;
  bool cancelled = false;
};

class Sampler {
public:
  virtual ~Sampler() = default;
  /// Runs from x (the state at ctx.grid.front()); tensor contract violations throw
  /// c10::Error, which runSampling turns into an error.
  virtual at::Tensor run(SamplingContext& ctx, at::Tensor x) const = 0;
};

struct SamplerEntry {
  std::string name;                  ///< "ddim"
  std::vector<std::string> aliases;  ///< other accepted spellings
  std::string description;
  SamplerFamily family = SamplerFamily::Discrete;
  bool stochastic = false;           ///< draws noise during sampling
  /// Grid used when --grid is "default" on a DDPM model: "respaced-ddpm" (the
  /// reference's evenly spaced "N"), "respaced-ddim" (strided "ddimN") or "uniform".
  std::string diffusionGrid = "uniform";
  /// Network evaluations (Denoiser calls) per step, which matched-compute comparisons
  /// count: 1 for Euler-type steps, 2 for Heun-type ones. 0 = adaptive: the solver
  /// chooses its own steps between the grid's points (dopri5), so no count is fixed.
  /// Nominal: a Heun step ending at a DDPM model's clean data makes one, and an SDE
  /// sampler's final denoising step adds one.
  int evaluationsPerStep = 1;
  std::function<std::unique_ptr<Sampler>()> make;

  /// No fixed number of evaluations per step (see evaluationsPerStep).
  bool adaptive() const { return evaluationsPerStep == 0; }
};

class SamplerRegistry {
public:
  Result<void> add(SamplerEntry entry);
  /// By name or alias (case-insensitive).
  const SamplerEntry* find(const std::string& name) const;
  std::vector<std::string> names() const;

private:
  std::map<std::string, SamplerEntry> m_entries;
  std::map<std::string, std::string> m_aliases;
};

/// Every sampler listed in core/samplers/samplers.def, plus those plugins added.
const SamplerRegistry& samplerRegistry();

/// Adds a plugin's sampler to samplerRegistry() (engine/plugin_loader.h calls it). The
/// registry is read without locks, so this must run before any other thread samples:
/// at start-up. Fails, changing nothing, when the name or an alias is taken.
Result<void> addPluginSampler(SamplerEntry entry);

/// Builds the grid and runs a sampler from x (unit noise). Errors name what is wrong:
/// an unknown sampler (with the list), steps < 1, a grid the process cannot take.
Result<SampleResult> runSampling(const std::string& sampler, const SamplerOptions& options, Denoiser& denoiser,
                                 at::Tensor x, NoiseSource* noise = nullptr, StepObserver* observer = nullptr,
                                 const CancelToken* cancel = nullptr);

/// DDIM inversion (Song et al. 2021): deterministic DDIM run from the data back to the
/// noise along `grid` (a sampler's grid, first = noise). A DDPM model, which cannot be
/// evaluated at clean data, is evaluated at its step 0 for the first inversion step,
/// as the reference's ddim_reverse_sample does.
Result<at::Tensor> invertDDIM(Denoiser& denoiser, at::Tensor data, const std::vector<double>& grid);

/// Validates options and returns the grid a sampler would use (for display and export).
Result<std::vector<double>> samplerGrid(const SamplerEntry& entry, const SamplerOptions& options, const SamplingSpace& space);

}  // namespace tessera
