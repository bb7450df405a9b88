// SPDX-License-Identifier: Apache-2.0
#include "engine/generation.h"

#include "core/samplers/observer_fanout.h"
#include "core/samplers/sampling_space.h"
#include "models/common/packing.h"
#include "models/dit/dit.h"
#include "models/fit/fit.h"
#include "models/nit/nit.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <mutex>

namespace tessera {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string shapeText(at::IntArrayRef sizes) {
  std::string s = "(";
  for (std::size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + ")";
}

/// Keeps host copies of every state and x0 estimate.
class TrajectoryRecorder final : public StepObserver {
public:
  void onStart(const at::Tensor& x, double, double) override { states.push_back(x.to(at::kCPU, at::kFloat, false, true)); }
  void onStep(const StepEvent& e) override {
    states.push_back(e.x->to(at::kCPU, at::kFloat, false, true));
    x0.push_back(e.denoised->x0.to(at::kCPU, at::kFloat, false, true));
  }
  std::vector<at::Tensor> states, x0;
};

/// Which probe, if any, the next network evaluation carries: set around the first
/// evaluation of each probed step by ProbedModel, read by the model functions.
struct ProbeSlot {
  Probe* probe = nullptr;                       ///< the request's probe
  std::function<bool(std::int64_t)> wanted;     ///< which steps (empty: all)
  Probe* active = nullptr;                      ///< the probe for the evaluation under way
  std::int64_t step = 0, lastProbed = -1;
};

/// Counts steps for the probe slot; runs after the caller's observers.
class StepCounter final : public StepObserver {
public:
  explicit StepCounter(std::shared_ptr<ProbeSlot> slot) : m_slot(std::move(slot)) {}
  void onStart(const at::Tensor&, double, double) override {
    m_slot->step = 0;
    m_slot->lastProbed = -1;
  }
  void onStep(const StepEvent& e) override { m_slot->step = e.index + 1; }

private:
  std::shared_ptr<ProbeSlot> m_slot;
};

/// Rows [begin, end) of a given (steps, n, C, H, W) noise tensor.
class GivenStepNoise final : public NoiseSource {
public:
  GivenStepNoise(at::Tensor noise, std::int64_t begin, std::int64_t end) : m_noise(std::move(noise)), m_begin(begin), m_end(end) {}
  at::Tensor draw(std::int64_t step, const at::Tensor& like) override {
    TORCH_CHECK(step < m_noise.size(0), "--step-noise holds ", m_noise.size(0), " steps; step ", step, " needs one more");
    return m_noise.select(0, step).slice(0, m_begin, m_end).to(like.options());
  }

private:
  at::Tensor m_noise;
  std::int64_t m_begin, m_end;
};

}  // namespace

SeededNoise::SeededNoise(std::uint64_t firstSeed, std::int64_t count, std::vector<std::int64_t> shape) {
  for (std::int64_t i = 0; i < count; ++i) {
    m_generators.push_back(at::make_generator<at::CPUGeneratorImpl>(firstSeed + static_cast<std::uint64_t>(i)));
    m_shapes.push_back(shape);
  }
}

SeededNoise::SeededNoise(const std::vector<std::uint64_t>& seeds, std::vector<std::vector<std::int64_t>> shapes, std::int64_t packPatch)
    : m_shapes(std::move(shapes)), m_packPatch(packPatch) {
  TORCH_CHECK(seeds.size() == m_shapes.size(), "seeded noise: ", seeds.size(), " seeds for ", m_shapes.size(), " shapes");
  for (std::uint64_t seed : seeds) m_generators.push_back(at::make_generator<at::CPUGeneratorImpl>(seed));
}

at::Tensor SeededNoise::initial() {
  std::vector<at::Tensor> rows;
  for (std::size_t i = 0; i < m_generators.size(); ++i)
    rows.push_back(at::randn(m_shapes[i], m_generators[i], at::TensorOptions(at::kFloat)));  // randn locks g
  if (m_packPatch > 0) return packImages(rows, m_packPatch);
  return at::stack(rows, 0);
}

at::Tensor SeededNoise::draw(std::int64_t, const at::Tensor& like) {
  at::Tensor z = initial();
  TORCH_CHECK(z.sizes() == like.sizes(), "seeded noise: drew ", z.sizes(), " for a state of shape ", like.sizes());
  return z.to(like.options());
}

namespace {

ModelFn probedModelFunction(const LoadedModel& model, std::shared_ptr<ProbeSlot> slot) {
  auto backbone = model.backbone;
  std::optional<Interpolant> interpolant = model.process ? model.process->interpolant : std::nullopt;
  return [backbone, interpolant, slot](const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) {
    BackboneInput in;
    in.x = x;
    in.t = interpolant ? interpolant->toModelTime(t) : t;
    in.y = y;
    if (slot) in.probe = slot->active;
    const at::Tensor out = backbone->forward(in).prediction;
    return interpolant ? interpolant->fromModelOutput(out) : out;
  };
}

/// Attaches the slot's probe to the first evaluation of each wanted step.
ModelFn withProbe(ModelFn inner, std::shared_ptr<ProbeSlot> slot) {
  return [inner = std::move(inner), slot](const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) {
    const bool attach = slot->lastProbed != slot->step && (!slot->wanted || slot->wanted(slot->step));
    if (!attach) return inner(x, t, y);
    slot->lastProbed = slot->step;
    slot->active = slot->probe;
    struct Reset {
      ProbeSlot& s;
      ~Reset() { s.active = nullptr; }
    } reset{*slot};
    return inner(x, t, y);
  };
}

}  // namespace

ModelFn modelFunction(const LoadedModel& model) { return probedModelFunction(model, nullptr); }

Result<void> setExtrapolation(LoadedModel& model, const std::string& method, bool decouple) {
  if (auto* dit = dynamic_cast<DiTImpl*>(model.backbone.get())) {
    if (method != "none" && method != "interpolate")
      return fail("the " + dit->kind() + " backbone has sin-cos positions: expected none or interpolate, got '" + method + "'");
    if (decouple) return fail("decoupled scales apply to RoPE backbones only");
    dit->setPositionInterpolation(method == "interpolate");
    return {};
  }
  RopeExtrapolation e;
  e.method = method;
  e.decouple = decouple;
  if (auto ok = e.validate(); !ok) return fail(ok.error());
  if (auto* fit = dynamic_cast<FiTImpl*>(model.backbone.get())) {
    fit->setExtrapolation(e);
    return {};
  }
  if (auto* nit = dynamic_cast<NiTImpl*>(model.backbone.get())) {
    nit->setExtrapolation(e);
    return {};
  }
  return fail("the " + model.backbone->kind() + " backbone has no extrapolation setting");
}

Result<void> moveModel(LoadedModel& model, const std::string& device) {
  std::optional<at::Device> d;
  try {
    d.emplace(device);
  } catch (const c10::Error&) {
    return fail("device '" + device + "' is not a device name (expected cpu, cuda or cuda:N)");
  }
  if (d->is_cuda() && !torch::cuda::is_available())
    return fail("device '" + device + "': no CUDA device is available to this LibTorch (" TORCH_VERSION ")");
  if (!d->is_cpu() && !d->is_cuda()) return fail("device '" + device + "': only cpu and cuda are supported");
  if (d->is_cuda() && d->has_index() && d->index() >= static_cast<int>(torch::cuda::device_count()))
    return fail("device '" + device + "': there are " + std::to_string(torch::cuda::device_count()) + " CUDA devices");
  // cuDNN convolutions default to TF32 on Ampere and later; the only convolution here is
  // the patch embedding, so full precision costs nothing and keeps CPU and GPU alike.
  if (d->is_cuda()) at::globalContext().setAllowTF32CuDNN(false);
  model.backbone->to(*d);
  return {};
}

Result<ModelTraits> modelTraits(const LoadedModel& model) {
  if (!model.backbone) return fail(model.path + ": no backbone loaded");
  const Capabilities caps = model.backbone->capabilities();
  ModelTraits t;
  t.channels = caps.inChannels;
  t.sizeMultiple = std::max<std::int64_t>(1, caps.sizeMultiple);
  t.trainedHeight = caps.trainedHeight;
  t.trainedWidth = caps.trainedWidth;
  t.numClasses = caps.numClasses;
  t.nullClass = caps.nullClass;
  t.guidedChannels = caps.guidedChannels;
  const auto& d = model.description;
  try {
    if (d.contains("classes") && d["classes"].contains("names")) {
      t.classNames = d["classes"]["names"].get<std::vector<std::string>>();
      if (static_cast<std::int64_t>(t.classNames.size()) != t.numClasses)
        return fail(model.path + ": classes.names lists " + std::to_string(t.classNames.size()) + " names for " +
                    std::to_string(t.numClasses) + " classes");
    }
    if (d.contains("data")) {
      t.dataKind = d["data"].value("kind", std::string("latent"));
      if (t.dataKind != "image" && t.dataKind != "latent")
        return fail(model.path + ": data.kind '" + t.dataKind + "' (expected image or latent)");
      if (d["data"].contains("size")) {
        const auto size = d["data"]["size"].get<std::vector<std::int64_t>>();
        if (size.size() == 2) t.trainedHeight = size[0], t.trainedWidth = size[1];
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return fail(model.path + ": malformed model description: " + e.what());
  }
  if (!model.process) return fail(model.path + ": the model names no process, so it cannot be sampled");
  return t;
}

Result<std::int64_t> resolveClass(const ModelTraits& traits, const std::string& token) {
  const bool numeric = !token.empty() && std::all_of(token.begin(), token.end(), [](unsigned char c) { return std::isdigit(c) || c == '-'; });
  if (numeric) {
    std::int64_t k = 0;
    try {
      k = std::stoll(token);
    } catch (...) {
      return fail("class '" + token + "' is not a number");
    }
    if (k < 0 || k >= traits.numClasses)
      return fail("class " + token + " is out of range: this model has classes 0 to " + std::to_string(traits.numClasses - 1));
    return k;
  }
  for (std::size_t i = 0; i < traits.classNames.size(); ++i)
    if (lower(traits.classNames[i]) == lower(token)) return static_cast<std::int64_t>(i);
  if (traits.classNames.empty())
    return fail("class '" + token + "': this model has no class names; give an index from 0 to " + std::to_string(traits.numClasses - 1));
  std::string names;
  for (const auto& n : traits.classNames) names += (names.empty() ? "" : ", ") + n;
  return fail("class '" + token + "' is not one of this model's classes: " + names);
}

Result<void> checkSize(const ModelTraits& traits, std::int64_t height, std::int64_t width) {
  const std::int64_t m = traits.sizeMultiple;
  if (height > 0 && width > 0 && height % m == 0 && width % m == 0 && height <= 16384 && width <= 16384) return {};
  auto near = [m](std::int64_t v) {
    const std::int64_t down = std::max(m, v / m * m), up = std::max(m, (v + m - 1) / m * m);
    return std::make_pair(down, up);
  };
  const auto [h0, h1] = near(std::max<std::int64_t>(1, height));
  const auto [w0, w1] = near(std::max<std::int64_t>(1, width));
  std::string nearest = std::to_string(w0) + "x" + std::to_string(h0);
  if (w1 != w0 || h1 != h0) nearest += ", " + std::to_string(w1) + "x" + std::to_string(h1);
  return fail("size " + std::to_string(width) + "x" + std::to_string(height) +
              " (WxH) does not fit this model: width and height must be positive multiples of " + std::to_string(m) +
              " up to 16384; nearest valid sizes: " + nearest);
}

Result<GenerationResult> generate(const LoadedModel& model, const GenerationRequest& request) {
  const auto start = std::chrono::steady_clock::now();
  auto traits = modelTraits(model);
  if (!traits) return fail(traits.error());
  const auto n = static_cast<std::int64_t>(request.classes.size());
  if (n < 1) return fail("generate: no images requested");
  // Per-image sizes and seeds.
  std::vector<std::pair<std::int64_t, std::int64_t>> sizeOf;
  for (std::int64_t i = 0; i < n; ++i) {
    if (!request.sizes.empty()) {
      sizeOf.push_back(request.sizes[static_cast<std::size_t>(i) % request.sizes.size()]);
    } else {
      sizeOf.emplace_back(request.height > 0 ? request.height : traits->trainedHeight,
                          request.width > 0 ? request.width : traits->trainedWidth);
    }
    if (auto ok = checkSize(*traits, sizeOf.back().first, sizeOf.back().second); !ok) return fail(ok.error());
  }
  if (!request.seeds.empty() && static_cast<std::int64_t>(request.seeds.size()) != n)
    return fail("generate: " + std::to_string(request.seeds.size()) + " seeds for " + std::to_string(n) + " images");
  std::vector<std::uint64_t> seedOf;
  for (std::int64_t i = 0; i < n; ++i)
    seedOf.push_back(request.seeds.empty() ? request.seed + static_cast<std::uint64_t>(i) : request.seeds[static_cast<std::size_t>(i)]);
  const bool mixed = std::any_of(sizeOf.begin(), sizeOf.end(), [&](const auto& s) { return s != sizeOf.front(); });
  const std::int64_t H = sizeOf.front().first, W = sizeOf.front().second;
  const bool packed = mixed && model.backbone->capabilities().packed;
  if (mixed && (request.noise || request.stepNoise || request.recordTrajectory))
    return fail("generate: given noise and recorded trajectories need images of one size (this request mixes sizes)");
  if (mixed && !packed) {
    // One run per size, in order of first appearance; the images go back to their places.
    GenerationResult result;
    result.images.resize(static_cast<std::size_t>(n));
    std::vector<std::pair<std::int64_t, std::int64_t>> order;
    for (const auto& sz : sizeOf)
      if (std::find(order.begin(), order.end(), sz) == order.end()) order.push_back(sz);
    std::int64_t done = 0;
    for (const auto& sz : order) {
      GenerationRequest sub = request;
      sub.sizes.clear();
      sub.height = sz.first, sub.width = sz.second;
      sub.classes.clear();
      sub.seeds.clear();
      std::vector<std::int64_t> where;
      for (std::int64_t i = 0; i < n; ++i)
        if (sizeOf[static_cast<std::size_t>(i)] == sz) {
          where.push_back(i);
          sub.classes.push_back(request.classes[static_cast<std::size_t>(i)]);
          sub.seeds.push_back(seedOf[static_cast<std::size_t>(i)]);
        }
      const std::int64_t before = done;
      sub.onImages = [&, before](std::int64_t k, std::int64_t) {
        if (request.onImages) request.onImages(before + k, n);
      };
      auto part = generate(model, sub);
      if (!part) return fail(part.error());
      for (std::size_t j = 0; j < part->images.size(); ++j) result.images[static_cast<std::size_t>(where[j])] = part->images[j];
      result.nfe += part->nfe;
      result.forwardRows += part->forwardRows;
      result.steps = part->steps;
      result.times = part->times;
      result.taus = part->taus;
      result.completed += part->completed;
      result.settings = part->settings;
      done += static_cast<std::int64_t>(where.size());
      if (part->cancelled) {
        result.cancelled = true;
        break;
      }
    }
    if (result.cancelled) {
      std::vector<at::Tensor> kept;
      for (auto& img : result.images)
        if (img.defined()) kept.push_back(img);
      result.images = kept;
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    nlohmann::json sizes = nlohmann::json::array();
    for (const auto& [h, w] : sizeOf) sizes.push_back({{"width", w}, {"height", h}});
    result.settings["sizes"] = sizes;
    result.settings["size_batching"] = "one run per size";
    result.settings["classes"] = request.classes;
    result.settings["seed"] = request.seed;
    if (!request.seeds.empty()) result.settings["seeds"] = request.seeds;
    result.settings["nfe"] = result.nfe;
    return result;
  }
  for (std::int64_t k : request.classes)
    if (k < 0 || k >= traits->numClasses)
      return fail("class " + std::to_string(k) + " is out of range: this model has classes 0 to " + std::to_string(traits->numClasses - 1));
  if (request.batch < 1) return fail("batch size must be at least 1, got " + std::to_string(request.batch));

  GuidanceConfig guidance = request.guidance;
  if (request.referenceGuidanceRule && guidance.channels == 0) guidance.channels = traits->guidedChannels;
  if (auto ok = guidance.validate(); !ok) return fail(ok.error());
  if (guidance.scale != 1.0 && !traits->nullClass)
    return fail("guidance scale " + std::to_string(guidance.scale) + ": this model has no null class, so it can only sample with --cfg 1");

  auto space = makeSamplingSpace(*model.process);
  if (!space) return fail(space.error());
  const SamplerEntry* entry = samplerRegistry().find(request.sampler);
  if (!entry) {
    std::string names;
    for (const auto& s : samplerRegistry().names()) names += (names.empty() ? "" : ", ") + s;
    return fail("unknown sampler '" + request.sampler + "' (expected one of: " + names + ")");
  }
  SamplerOptions options = request.options;
  if (mixed && options.grid == "shifted" && options.shift == 0)
    return fail("the shifted grid's default shift depends on the size; a request of mixed sizes needs an explicit --shift");
  if (traits->trainedHeight > 0 && traits->trainedWidth > 0)
    options.resolutionScale = static_cast<double>(H * W) / static_cast<double>(traits->trainedHeight * traits->trainedWidth);
  auto grid = samplerGrid(*entry, options, **space);
  if (!grid) return fail(grid.error());

  auto expectShape = [&](const at::Tensor& t, std::vector<std::int64_t> shape, const std::string& what) -> Result<void> {
    if (t.sizes().vec() != shape || !at::isFloatingType(t.scalar_type()))
      return fail(what + ": expected floats of shape " + shapeText(shape) + ", got " + shapeText(t.sizes()));
    return {};
  };
  if (request.noise) {
    auto ok = expectShape(*request.noise, {n, traits->channels, H, W}, "--noise tensor 'z'");
    if (!ok) return fail(ok.error());
  }
  const auto gridSteps = static_cast<std::int64_t>(grid->size()) - 1;
  if (request.stepNoise) {
    const at::Tensor& s = *request.stepNoise;
    auto ok = expectShape(s, {s.dim() == 5 ? s.size(0) : gridSteps, n, traits->channels, H, W}, "--step-noise tensor 'noise'");
    if (!ok) return fail(ok.error());
    if (entry->stochastic && s.size(0) < gridSteps)
      return fail("--step-noise tensor 'noise': holds " + std::to_string(s.size(0)) + " steps, the " + entry->name +
                  " sampler takes " + std::to_string(gridSteps));
  }

  at::Device device = at::kCPU;
  for (const auto& p : model.backbone->parameters()) {
    device = p.device();
    break;
  }
  std::shared_ptr<ProbeSlot> slot;
  if (request.probe) {
    slot = std::make_shared<ProbeSlot>();
    slot->probe = request.probe;
    slot->wanted = request.probeStep;
  }
  const ModelFn plainFn = probedModelFunction(model, slot);
  const std::int64_t patch = traits->sizeMultiple;

  GenerationResult result;
  std::vector<at::Tensor> samples, trajX, trajX0;
  c10::InferenceMode inference;
  for (std::int64_t begin = 0; begin < n; begin += request.batch) {
    const std::int64_t end = std::min(n, begin + request.batch), B = end - begin;
    const std::vector<std::uint64_t> batchSeeds(seedOf.begin() + begin, seedOf.begin() + end);
    std::vector<std::vector<std::int64_t>> shapes;
    GridSizes grids;
    std::vector<std::int64_t> pixelSizes;
    for (std::int64_t i = begin; i < end; ++i) {
      const auto [h, w] = sizeOf[static_cast<std::size_t>(i)];
      shapes.push_back({traits->channels, h, w});
      grids.emplace_back(h / patch, w / patch);
      pixelSizes.push_back(h);
      pixelSizes.push_back(w);
    }
    SeededNoise seeded(batchSeeds, shapes, packed ? patch : 0);
    ModelFn fn = plainFn;
    if (packed) {
      // The sampler's state is the pack (L, C, p, p); the network gets it with the
      // images' sizes, doubled when guidance stacks [cond; uncond].
      const at::Tensor sizes = at::tensor(pixelSizes, at::kLong).reshape({B, 2});
      const std::int64_t L = totalTokens(grids);
      auto backbone = model.backbone;
      std::optional<Interpolant> interpolant = model.process->interpolant;
      fn = [=](const at::Tensor& xs, const at::Tensor& t, const at::Tensor& y) {
        const std::int64_t copies = xs.size(0) / L;
        TORCH_CHECK(copies * L == xs.size(0), "packed state of ", xs.size(0), " rows for ", L, " tokens");
        BackboneInput in;
        in.x = xs;
        in.sizes = copies == 1 ? sizes : sizes.repeat({copies, 1});
        const at::Tensor tImages = t.slice(0, 0, copies * B);  // one time per step: every entry is the same
        in.t = interpolant ? interpolant->toModelTime(tImages) : tImages;
        in.y = y;
        if (slot) in.probe = slot->active;
        const at::Tensor out = backbone->forward(in).prediction;
        return interpolant ? interpolant->fromModelOutput(out) : out;
      };
    }
    if (slot) fn = withProbe(fn, slot);
    at::Tensor x = request.noise ? request.noise->slice(0, begin, end).to(at::kFloat) : seeded.initial();
    x = x.to(device);
    std::optional<GivenStepNoise> given;
    if (request.stepNoise) given.emplace(request.stepNoise->to(at::kFloat), begin, end);
    NoiseSource* noise = given ? static_cast<NoiseSource*>(&*given) : &seeded;

    const at::Tensor labels = at::tensor(std::vector<std::int64_t>(request.classes.begin() + begin, request.classes.begin() + end),
                                         at::TensorOptions(at::kLong)).to(device);
    const at::Tensor nulls = traits->nullClass ? at::full({B}, traits->numClasses, labels.options()) : at::Tensor();
    Denoiser denoiser(**space, fn, labels, nulls, guidance);
    denoiser.setClipDenoised(options.clipDenoised);
    denoiser.setKeepGuidanceParts(request.guidanceParts);
    TrajectoryRecorder recorder;
    ObserverFanout fanout;
    if (request.observer) fanout.targets.push_back(request.observer);
    if (request.recordTrajectory) fanout.targets.push_back(&recorder);
    std::optional<StepCounter> counter;
    if (slot) fanout.targets.push_back(&counter.emplace(slot));  // last: the step's observers see its probe first
    auto run = runSampling(entry->name, options, denoiser, x, noise, fanout.targets.empty() ? nullptr : &fanout, request.cancel);
    if (!run) return fail(run.error());
    result.nfe += run->nfe;
    result.forwardRows += denoiser.forwardRows();
    result.steps = run->steps;
    result.times = run->times;
    result.taus = run->states;
    if (run->cancelled) {
      result.cancelled = true;
      break;
    }
    const at::Tensor finished = run->x.to(at::kCPU, at::kFloat);
    if (packed) {
      for (auto& img : unpackImages(finished, grids)) result.images.push_back(img);
    } else {
      samples.push_back(finished);
      for (std::int64_t i = 0; i < B; ++i) result.images.push_back(finished[i]);
    }
    result.completed = end;
    if (request.recordTrajectory) {
      trajX.push_back(at::stack(recorder.states, 0));
      trajX0.push_back(at::stack(recorder.x0, 0));
    }
    if (request.onImages) request.onImages(end, n);
  }
  if (!samples.empty()) result.samples = at::cat(samples, 0);
  if (!trajX.empty()) {
    result.trajectoryX = at::cat(trajX, 1);
    result.trajectoryX0 = at::cat(trajX0, 1);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  nlohmann::json seeds = nlohmann::json::array();
  for (std::int64_t i = 0; i < n; ++i) seeds.push_back(request.seed + static_cast<std::uint64_t>(i));
  nlohmann::json opts = options.toJson();
  opts.erase("steps");
  result.settings = {{"sampler", entry->name},
                     {"steps", options.steps},
                     {"options", opts},
                     {"guidance", guidance.toJson()},
                     {"size", {{"width", W}, {"height", H}}},
                     {"classes", request.classes},
                     {"seed", request.seed},
                     {"noise", request.noise ? "given" : "seeded"},
                     {"step_noise", request.stepNoise ? "given" : "seeded"},
                     {"process", model.process->kind()},
                     {"nfe", result.nfe}};
  if (!request.seeds.empty()) result.settings["seeds"] = request.seeds;
  if (mixed) {
    nlohmann::json sizes = nlohmann::json::array();
    for (const auto& [h, w] : sizeOf) sizes.push_back({{"width", w}, {"height", h}});
    result.settings["sizes"] = sizes;
    result.settings["size_batching"] = "packed";
    result.settings.erase("size");
  }
  return result;
}

}  // namespace tessera
