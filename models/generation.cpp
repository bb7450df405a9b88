// SPDX-License-Identifier: Apache-2.0
#include "models/generation.h"

#include "core/samplers/sampling_space.h"

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

/// Forwards every event to several observers.
class Fanout final : public StepObserver {
public:
  std::vector<StepObserver*> targets;
  void onStart(const at::Tensor& x, double tau, double time) override {
    for (auto* t : targets) t->onStart(x, tau, time);
  }
  void onStep(const StepEvent& e) override {
    for (auto* t : targets) t->onStep(e);
  }
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

SeededNoise::SeededNoise(std::uint64_t firstSeed, std::int64_t count, std::vector<std::int64_t> shape) : m_shape(std::move(shape)) {
  for (std::int64_t i = 0; i < count; ++i)
    m_generators.push_back(at::make_generator<at::CPUGeneratorImpl>(firstSeed + static_cast<std::uint64_t>(i)));
}

at::Tensor SeededNoise::initial() {
  std::vector<at::Tensor> rows;
  for (auto& g : m_generators) rows.push_back(at::randn(m_shape, g, at::TensorOptions(at::kFloat)));  // randn locks g
  return at::stack(rows, 0);
}

at::Tensor SeededNoise::draw(std::int64_t, const at::Tensor& like) {
  TORCH_CHECK(like.size(0) == static_cast<std::int64_t>(m_generators.size()), "seeded noise: batch of ", like.size(0),
              " for ", m_generators.size(), " generators");
  return initial().to(like.options());
}

ModelFn modelFunction(const LoadedModel& model) {
  auto backbone = model.backbone;
  return [backbone](const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) {
    BackboneInput in;
    in.x = x;
    in.t = t;
    in.y = y;
    return backbone->forward(in).prediction;
  };
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
  const std::int64_t H = request.height > 0 ? request.height : traits->trainedHeight;
  const std::int64_t W = request.width > 0 ? request.width : traits->trainedWidth;
  if (auto ok = checkSize(*traits, H, W); !ok) return fail(ok.error());
  const auto n = static_cast<std::int64_t>(request.classes.size());
  if (n < 1) return fail("generate: no images requested");
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
  if (traits->trainedHeight > 0 && traits->trainedWidth > 0)
    options.resolutionScale = static_cast<double>(H * W) / static_cast<double>(traits->trainedHeight * traits->trainedWidth);
  auto grid = samplerGrid(*entry, options, **space);
  if (!grid) return fail(grid.error());

  const std::vector<std::int64_t> imageShape{traits->channels, H, W};
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
  const ModelFn fn = modelFunction(model);

  GenerationResult result;
  std::vector<at::Tensor> samples, trajX, trajX0;
  c10::InferenceMode inference;
  for (std::int64_t begin = 0; begin < n; begin += request.batch) {
    const std::int64_t end = std::min(n, begin + request.batch), B = end - begin;
    SeededNoise seeded(request.seed + static_cast<std::uint64_t>(begin), B, imageShape);
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
    Fanout fanout;
    if (request.observer) fanout.targets.push_back(request.observer);
    if (request.recordTrajectory) fanout.targets.push_back(&recorder);
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
    samples.push_back(run->x.to(at::kCPU, at::kFloat));
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
  return result;
}

}  // namespace tessera
