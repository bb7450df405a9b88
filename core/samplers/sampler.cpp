// SPDX-License-Identifier: Apache-2.0
#include "core/samplers/sampler.h"

#include "core/samplers/time_grid.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <cmath>

namespace tessera {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

const std::vector<std::string> kDiffusionForms = {"constant", "SBDM", "sigma", "linear", "decreasing", "increasing-decreasing"};
const std::vector<std::string> kLastSteps = {"Mean", "Tweedie", "Euler", "none"};

}  // namespace

// ---- Denoiser --------------------------------------------------------------------------

Denoiser::Denoiser(const SamplingSpace& space, ModelFn model, at::Tensor labels, at::Tensor nullLabels, GuidanceConfig guidance)
    : m_space(space), m_model(std::move(model)), m_labels(std::move(labels)), m_nullLabels(std::move(nullLabels)),
      m_guidance(guidance) {
  if (m_guidance.scale != 1.0) {
    TORCH_CHECK(m_nullLabels.defined() && m_nullLabels.sizes() == m_labels.sizes(),
                "guidance: the model has no null class, so it cannot be guided (use --cfg 1)");
    m_bothLabels = at::cat({m_labels, m_nullLabels}, 0);
  }
}

Denoised Denoiser::operator()(const at::Tensor& x, double tau) {
  at::Tensor out, condOut, uncondOut;
  const std::int64_t B = x.size(0);
  if (m_guidance.activeAt(tau)) {
    const at::Tensor both = at::cat({x, x}, 0);  // one batched forward: [cond; uncond]
    const at::Tensor raw = m_model(both, m_space.modelTimes(tau, both), m_bothLabels);
    const auto halves = raw.chunk(2, 0);
    const std::int64_t C = x.size(1);
    const std::int64_t guided = m_guidance.channels > 0 ? std::min(m_guidance.channels, C) : C;
    out = combineGuidance(halves[0], halves[1], m_guidance.scale, guided);
    if (m_keepParts) condOut = halves[0], uncondOut = halves[1];
    m_rows += 2 * B;
  } else {
    out = m_model(x, m_space.modelTimes(tau, x), m_labels);
    m_rows += B;
  }
  ++m_nfe;
  Denoised d = m_space.interpret(out, x, tau);
  if (m_clip) {
    d.x0 = d.x0.clamp(-1.0, 1.0);
    const Schedule s = m_space.schedule(tau);
    if (s.sigma > 0) d.eps = (x - s.alpha * d.x0) / s.sigma;
    d.clipped = true;
  }
  if (condOut.defined()) {
    auto partX0 = [&](const at::Tensor& o) {
      at::Tensor x0 = m_space.interpret(o, x, tau).x0;
      return m_clip ? x0.clamp(-1.0, 1.0) : x0;
    };
    d.x0Conditional = partX0(condOut);
    d.x0Unconditional = partX0(uncondOut);
  }
  return d;
}

// ---- context ---------------------------------------------------------------------------

at::Tensor SamplingContext::drawNoise(std::int64_t step, const at::Tensor& like) {
  TORCH_CHECK(noise, "this sampler is stochastic and needs a noise source");
  at::Tensor z = noise->draw(step, like);
  TORCH_CHECK(z.sizes() == like.sizes(), "step noise ", step, ": expected shape ", like.sizes(), ", got ", z.sizes());
  return z.to(like.options());
}

void SamplingContext::finishStep(double tau, double tauNext, const at::Tensor& x, const Denoised& d) {
  states.push_back(tauNext);
  ++steps;
  if (!observer) return;
  StepEvent e;
  e.index = steps - 1;
  e.tau = tau;
  e.tauNext = tauNext;
  e.time = space.modelTime(tau);
  e.timeNext = space.modelTime(tauNext);
  e.x = &x;
  e.denoised = &d;
  e.nfe = denoise.evaluations();
  observer->onStep(e);
}

nlohmann::json SamplerOptions::toJson() const {
  return {{"steps", steps}, {"grid", grid}, {"eta", eta}, {"shift", shift}, {"rho", rho}, {"atol", atol}, {"rtol", rtol},
          {"diffusion_form", diffusionForm}, {"diffusion_norm", diffusionNorm}, {"last_step", lastStep},
          {"last_step_size", lastStepSize}, {"clip_denoised", clipDenoised}};
}

// ---- registry --------------------------------------------------------------------------

Result<void> SamplerRegistry::add(SamplerEntry entry) {
  const std::string key = lower(entry.name);
  if (m_entries.count(key) || m_aliases.count(key)) return fail("sampler registry: '" + entry.name + "' is registered twice");
  if (entry.evaluationsPerStep < 0)
    return fail("sampler registry: '" + entry.name + "' has evaluationsPerStep " +
                std::to_string(entry.evaluationsPerStep) +
                " (network evaluations per step: at least 1, or 0 for an adaptive solver)");
  // Every alias is checked before any is recorded, so that a refused entry (a plugin's)
  // leaves the registry as it was.
  std::vector<std::string> aliases;
  for (const auto& alias : entry.aliases) {
    const std::string a = lower(alias);
    if (m_entries.count(a) || m_aliases.count(a) || std::find(aliases.begin(), aliases.end(), a) != aliases.end())
      return fail("sampler registry: alias '" + alias + "' of '" + entry.name + "' is taken");
    aliases.push_back(a);
  }
  for (const auto& a : aliases) m_aliases[a] = key;
  m_entries.emplace(key, std::move(entry));
  return {};
}

const SamplerEntry* SamplerRegistry::find(const std::string& name) const {
  std::string key = lower(name);
  if (auto a = m_aliases.find(key); a != m_aliases.end()) key = a->second;
  auto it = m_entries.find(key);
  return it == m_entries.end() ? nullptr : &it->second;
}

std::vector<std::string> SamplerRegistry::names() const {
  std::vector<std::string> names;
  for (const auto& [key, entry] : m_entries) names.push_back(entry.name);
  return names;
}

#define TESSERA_SAMPLER(name) void registerSampler_##name(SamplerRegistry& registry);
#include "core/samplers/samplers.def"
#undef TESSERA_SAMPLER

namespace {

// Mutable only through addPluginSampler, at start-up; everything else sees it const.
SamplerRegistry& registryInstance() {
  static SamplerRegistry registry = [] {
    SamplerRegistry r;
#define TESSERA_SAMPLER(name) registerSampler_##name(r);
#include "core/samplers/samplers.def"
#undef TESSERA_SAMPLER
    return r;
  }();
  return registry;
}

}  // namespace

const SamplerRegistry& samplerRegistry() { return registryInstance(); }

Result<void> addPluginSampler(SamplerEntry entry) {
  if (entry.name.empty()) return fail("a sampler needs a name");
  if (!entry.make) return fail("sampler '" + entry.name + "' has no factory");
  return registryInstance().add(std::move(entry));
}

// ---- running ---------------------------------------------------------------------------

Result<std::vector<double>> samplerGrid(const SamplerEntry& entry, const SamplerOptions& o, const SamplingSpace& space) {
  const std::string who = entry.name + ": ";
  if (o.steps < 1) return fail(who + "steps must be at least 1, got " + std::to_string(o.steps));
  if (o.steps > 100000) return fail(who + "steps must be at most 100000, got " + std::to_string(o.steps));
  if (!std::isfinite(o.eta) || o.eta < 0) return fail(who + "eta must be a finite number >= 0, got " + std::to_string(o.eta));
  if (!(o.atol > 0) || !(o.rtol > 0)) return fail(who + "atol and rtol must be positive");
  if (!(o.rho > 0)) return fail(who + "rho must be positive");
  if (std::find(kDiffusionForms.begin(), kDiffusionForms.end(), o.diffusionForm) == kDiffusionForms.end())
    return fail(who + "unknown diffusion form '" + o.diffusionForm + "' (expected one of: " + joined(kDiffusionForms) + ")");
  if (std::find(kLastSteps.begin(), kLastSteps.end(), o.lastStep) == kLastSteps.end())
    return fail(who + "unknown last step '" + o.lastStep + "' (expected one of: " + joined(kLastSteps) + ")");
  if (!(o.lastStepSize >= 0 && o.lastStepSize < 0.5)) return fail(who + "last step size must lie in [0, 0.5)");
  if (!std::isfinite(o.diffusionNorm) || o.diffusionNorm < 0) return fail(who + "diffusion norm must be >= 0");

  IntervalOptions io;
  io.sbdmDiffusion = o.diffusionForm == "SBDM";
  io.lastStepSize = (entry.family == SamplerFamily::Sde && o.lastStep != "none") ? o.lastStepSize : 0.0;
  const auto [start, end] = space.interval(entry.family, io);

  std::string name = o.grid;
  GridRequest r;
  r.steps = o.steps;
  r.start = start;
  r.end = end;
  r.shift = o.shift;
  r.resolutionScale = o.resolutionScale;
  r.rho = o.rho;
  r.respacing = entry.diffusionGrid == "respaced-ddpm" ? "ddpm" : "ddim";
  if (name == "default")
    name = (dynamic_cast<const DiffusionSpace*>(&space) && entry.diffusionGrid != "uniform") ? "respaced" : "uniform";
  const TimeGrid* grid = findTimeGrid(name);
  if (!grid) return fail(who + "unknown grid '" + o.grid + "' (expected default, " + joined(timeGridNames()) + ")");
  auto g = grid->make(space, r);
  if (!g) return fail(who + g.error().message());
  for (std::size_t i = 1; i < g->size(); ++i)
    if (!((*g)[i] > (*g)[i - 1]))
      return fail(who + "the " + name + " grid is not strictly increasing at step " + std::to_string(i) + " (too many steps for it?)");
  return g;
}

Result<SampleResult> runSampling(const std::string& name, const SamplerOptions& options, Denoiser& denoiser, at::Tensor x,
                                 NoiseSource* noise, StepObserver* observer, const CancelToken* cancel) {
  const SamplerEntry* entry = samplerRegistry().find(name);
  if (!entry) return fail("unknown sampler '" + name + "' (expected one of: " + joined(samplerRegistry().names()) + ")");
  const SamplingSpace& space = denoiser.space();
  auto grid = samplerGrid(*entry, options, space);
  if (!grid) return fail(grid.error());
  if (entry->stochastic && !noise) return fail(entry->name + ": a stochastic sampler needs a noise source");
  SamplingContext ctx{space, denoiser, *grid, options, noise, observer, cancel, {}, 0, false};
  ctx.states.push_back(grid->front());
  SampleResult result;
  try {
    if (observer) observer->onStart(x, grid->front(), space.modelTime(grid->front()));
    result.x = entry->make()->run(ctx, std::move(x));
  } catch (const c10::Error& e) {
    return fail(entry->name + ": " + e.what_without_backtrace());
  }
  result.states = ctx.states;
  for (double tau : ctx.states) result.times.push_back(space.modelTime(tau));
  result.steps = ctx.steps;
  result.nfe = denoiser.evaluations();
  result.cancelled = ctx.stopped;
  return result;
}

}  // namespace tessera
