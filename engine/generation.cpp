// SPDX-License-Identifier: Apache-2.0
#include "engine/generation.h"

#include "core/samplers/observer_fanout.h"
#include "core/samplers/sampling_space.h"
#include "models/common/packing.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>

namespace tessera {
namespace {

/// Keeps host copies of every state and x0 estimate.
class TrajectoryRecorder final : public StepObserver {
public:
  void onStart(const at::Tensor& x, double, double) override {
    states.push_back(x.to(at::kCPU, at::kFloat, false, true));
  }
  void onStep(const StepEvent& e) override {
    states.push_back(e.x->to(at::kCPU, at::kFloat, false, true));
    x0.push_back(e.denoised->x0.to(at::kCPU, at::kFloat, false, true));
  }
  std::vector<at::Tensor> states, x0;
};

/// Which probe, if any, the next network evaluation carries: set around the first
/// evaluation of each probed step by ProbedModel, read by the model functions.
struct ProbeSlot {
  Probe* probe = nullptr;                    ///< the request's probe
  std::function<bool(std::int64_t)> wanted;  ///< which steps (empty: all)
  Probe* active = nullptr;                   ///< the probe for the evaluation under way
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
  GivenStepNoise(at::Tensor noise, std::int64_t begin, std::int64_t end)
      : m_noise(std::move(noise)), m_begin(begin), m_end(end) {}
  at::Tensor draw(std::int64_t step, const at::Tensor& like) override {
    TORCH_CHECK(step < m_noise.size(0), "--step-noise holds ", m_noise.size(0), " steps; step ", step,
                " needs one more");
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

SeededNoise::SeededNoise(const std::vector<std::uint64_t>& seeds, std::vector<std::vector<std::int64_t>> shapes,
                         std::int64_t packPatch)
    : m_shapes(std::move(shapes)), m_packPatch(packPatch) {
  TORCH_CHECK(seeds.size() == m_shapes.size(), "seeded noise: ", seeds.size(), " seeds for ", m_shapes.size(),
              " shapes");
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
  if (!model.backbone) return fail(model.path + ": no backbone loaded");
  return model.backbone->setSizeExtrapolation(method, decouple);
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
  if (model.autoencoder) model.autoencoder->network->to(*d);
  return {};
}

namespace {

/// What every batch of one generate() call shares.
struct RunContext {
  const LoadedModel& model;
  const GenerationRequest& request;
  const GenerationPlan& plan;
  const SamplingSpace& space;
  at::Device device;
  std::shared_ptr<ProbeSlot> slot;  ///< null without a probe
  ModelFn plainFn;                  ///< the network for batches of one size
};

/// One batch's images as the tensors want them.
struct BatchLayout {
  std::vector<std::uint64_t> seeds;
  std::vector<std::int64_t> classes;
  std::vector<std::vector<std::int64_t>> shapes;  ///< (C, H_i, W_i)
  GridSizes grids;                                ///< each image's token grid
  std::vector<std::int64_t> pixelSizes;           ///< H_0, W_0, H_1, W_1, …
};

BatchLayout layoutOf(const GenerationPlan& plan, const PlannedBatch& batch) {
  const std::int64_t patch = plan.traits.sizeMultiple;
  BatchLayout layout;
  for (std::int64_t index : batch.images) {
    const PlannedImage& image = plan.images[static_cast<std::size_t>(index)];
    layout.seeds.push_back(image.seed);
    layout.classes.push_back(image.classLabel);
    layout.shapes.push_back({plan.traits.channels, image.height, image.width});
    layout.grids.emplace_back(image.height / patch, image.width / patch);
    layout.pixelSizes.push_back(image.height);
    layout.pixelSizes.push_back(image.width);
  }
  return layout;
}

/// The network on a pack: the sampler's state is the pack (L, C, p, p); the network gets
/// it with the images' sizes, doubled when guidance stacks [cond; uncond].
ModelFn packedModelFunction(const RunContext& ctx, const BatchLayout& layout) {
  const auto B = static_cast<std::int64_t>(layout.grids.size());
  const at::Tensor sizes = at::tensor(layout.pixelSizes, at::kLong).reshape({B, 2});
  const std::int64_t L = totalTokens(layout.grids);
  auto backbone = ctx.model.backbone;
  std::optional<Interpolant> interpolant = ctx.model.process->interpolant;
  std::shared_ptr<ProbeSlot> slot = ctx.slot;
  return [=](const at::Tensor& xs, const at::Tensor& t, const at::Tensor& y) {
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

/// What one batch leaves behind.
struct BatchOutcome {
  SampleResult run;
  std::int64_t forwardRows = 0;
  std::vector<at::Tensor> images;        ///< (C, H_i, W_i) in the batch's order, unless cancelled
  at::Tensor samples;                    ///< (B, C, H, W) for a batch of one size
  at::Tensor trajectoryX, trajectoryX0;  ///< when recorded
  std::vector<at::Tensor> latents;       ///< before decoding (a latent model with an autoencoder)
  at::Tensor latentSamples;
};

/// A latent model's batch decoded to pixels (its latents kept): the backbone's latents
/// mapped back to the autoencoder's, decoded tile by tile on the model's device.
void decodeBatch(BatchOutcome& out, const LoadedAutoencoder& ae, at::Device device, const GenerationRequest& request) {
  out.latents = out.images;
  out.latentSamples = out.samples;
  auto decode = [&](const at::Tensor& latent) {
    const at::Tensor z = ae.scaling.fromBackbone(latent.to(device));
    return decodeTiled(*ae.network, z, request.decodeTile, request.decodeOverlap).to(at::kCPU, at::kFloat);
  };
  if (out.samples.defined()) {
    out.samples = decode(out.samples);
    for (std::int64_t i = 0; i < out.samples.size(0); ++i) out.images[static_cast<std::size_t>(i)] = out.samples[i];
  } else {
    for (auto& image : out.images) image = decode(image.unsqueeze(0))[0];
  }
}

/// Host copies of a finished batch's images and trajectory.
void collectBatch(BatchOutcome& out, bool packed, const BatchLayout& layout, const TrajectoryRecorder* recorder) {
  const at::Tensor finished = out.run.x.to(at::kCPU, at::kFloat);
  if (packed) {
    out.images = unpackImages(finished, layout.grids);
  } else {
    out.samples = finished;
    for (std::int64_t i = 0; i < finished.size(0); ++i) out.images.push_back(finished[i]);
  }
  if (recorder) {
    out.trajectoryX = at::stack(recorder->states, 0);
    out.trajectoryX0 = at::stack(recorder->x0, 0);
  }
}

/// Runs one planned batch: its noise, its network, guidance, observers, cancellation.
Result<BatchOutcome> runBatch(const RunContext& ctx, const PlannedGroup& group, const PlannedBatch& batch) {
  const GenerationRequest& request = ctx.request;
  const ModelTraits& traits = ctx.plan.traits;
  const bool packed = ctx.plan.sizeBatching == SizeBatching::Packed;
  const BatchLayout layout = layoutOf(ctx.plan, batch);
  const auto B = static_cast<std::int64_t>(batch.images.size());
  // Given noise comes with images of one size, whose batches are consecutive rows.
  const std::int64_t begin = batch.images.front(), end = begin + B;
  SeededNoise seeded(layout.seeds, layout.shapes, packed ? traits.sizeMultiple : 0);
  ModelFn fn = packed ? packedModelFunction(ctx, layout) : ctx.plainFn;
  if (ctx.slot) fn = withProbe(fn, ctx.slot);
  at::Tensor x = request.noise ? request.noise->slice(0, begin, end).to(at::kFloat) : seeded.initial();
  x = x.to(ctx.device);
  std::optional<GivenStepNoise> given;
  if (request.stepNoise) given.emplace(request.stepNoise->to(at::kFloat), begin, end);
  NoiseSource* noise = given ? static_cast<NoiseSource*>(&*given) : &seeded;

  const at::Tensor labels = at::tensor(layout.classes, at::TensorOptions(at::kLong)).to(ctx.device);
  const at::Tensor nulls = traits.nullClass ? at::full({B}, traits.numClasses, labels.options()) : at::Tensor();
  Denoiser denoiser(ctx.space, fn, labels, nulls, ctx.plan.guidance);
  denoiser.setClipDenoised(group.options.clipDenoised);
  denoiser.setKeepGuidanceParts(request.guidanceParts);
  TrajectoryRecorder recorder;
  ObserverFanout fanout;
  if (request.observer) fanout.targets.push_back(request.observer);
  if (request.recordTrajectory) fanout.targets.push_back(&recorder);
  std::optional<StepCounter> counter;
  if (ctx.slot) fanout.targets.push_back(&counter.emplace(ctx.slot));  // last: the step's observers see its probe first
  auto run = runSampling(ctx.plan.sampler, group.options, denoiser, x, noise,
                         fanout.targets.empty() ? nullptr : &fanout, request.cancel);
  if (!run) return fail(run.error());
  BatchOutcome out;
  out.run = std::move(*run);
  out.forwardRows = denoiser.forwardRows();
  if (!out.run.cancelled) {
    collectBatch(out, packed, layout, request.recordTrajectory ? &recorder : nullptr);
    if (ctx.model.autoencoder) decodeBatch(out, *ctx.model.autoencoder, ctx.device, request);
  }
  return out;
}

/// Runs every batch of the plan in order, stopping at a cancelled one; `lastGroup` is
/// the group that ran last.
Result<GenerationResult> runPlan(const RunContext& ctx, std::size_t& lastGroup) {
  const GenerationPlan& plan = ctx.plan;
  const auto n = static_cast<std::int64_t>(plan.images.size());
  GenerationResult result;
  std::vector<at::Tensor> placed(plan.images.size()), placedLatents(plan.images.size()), samples, latentSamples, trajX,
      trajX0;
  c10::InferenceMode inference;
  for (std::size_t g = 0; g < plan.groups.size() && !result.cancelled; ++g) {
    lastGroup = g;
    for (const PlannedBatch& batch : plan.groups[g].batches) {
      auto out = runBatch(ctx, plan.groups[g], batch);
      if (!out) return fail(out.error());
      result.nfe += out->run.nfe;
      result.forwardRows += out->forwardRows;
      result.steps = out->run.steps;
      result.times = out->run.times;
      result.taus = out->run.states;
      if (out->run.cancelled) {
        result.cancelled = true;
        break;
      }
      for (std::size_t j = 0; j < out->images.size(); ++j) {
        placed[static_cast<std::size_t>(batch.images[j])] = out->images[j];
        if (j < out->latents.size()) placedLatents[static_cast<std::size_t>(batch.images[j])] = out->latents[j];
      }
      if (out->samples.defined()) samples.push_back(out->samples);
      if (out->latentSamples.defined()) latentSamples.push_back(out->latentSamples);
      if (out->trajectoryX.defined()) {
        trajX.push_back(out->trajectoryX);
        trajX0.push_back(out->trajectoryX0);
      }
      result.completed += static_cast<std::int64_t>(batch.images.size());
      if (ctx.request.onImages) ctx.request.onImages(result.completed, n);
    }
  }
  for (const at::Tensor& image : placed)
    if (image.defined()) result.images.push_back(image);  // cancelled: the finished ones, in order
  for (const at::Tensor& latent : placedLatents)
    if (latent.defined()) result.latents.push_back(latent);
  if (!latentSamples.empty() && plan.sizeBatching == SizeBatching::OneSize)
    result.latentSamples = at::cat(latentSamples, 0);
  // One stacked tensor only when every image has one size.
  if (!samples.empty() && plan.sizeBatching == SizeBatching::OneSize) result.samples = at::cat(samples, 0);
  if (!trajX.empty()) {
    result.trajectoryX = at::cat(trajX, 1);
    result.trajectoryX0 = at::cat(trajX0, 1);
  }
  return result;
}

/// Everything needed to reproduce the run.
nlohmann::json settingsOf(const LoadedModel& model, const GenerationRequest& request, const GenerationPlan& plan,
                          std::size_t lastGroup, std::int64_t nfe) {
  const PlannedGroup& group = plan.groups[lastGroup];
  nlohmann::json opts = group.options.toJson();
  opts.erase("steps");
  nlohmann::json settings = {{"sampler", plan.sampler},
                             {"steps", group.options.steps},
                             {"options", opts},
                             {"guidance", plan.guidance.toJson()},
                             {"size", {{"width", group.width}, {"height", group.height}}},
                             {"classes", request.classes},
                             {"seed", request.seed},
                             {"noise", plan.givenNoise ? "given" : "seeded"},
                             {"step_noise", plan.givenStepNoise ? "given" : "seeded"},
                             {"process", model.process->kind()},
                             {"nfe", nfe}};
  if (!request.seeds.empty()) settings["seeds"] = request.seeds;
  if (plan.sizeBatching == SizeBatching::OneSize) return settings;
  nlohmann::json sizes = nlohmann::json::array();
  for (const PlannedImage& image : plan.images) sizes.push_back({{"width", image.width}, {"height", image.height}});
  settings["sizes"] = sizes;
  if (plan.sizeBatching == SizeBatching::Packed) {
    settings["size_batching"] = "packed";
    settings.erase("size");
    return settings;
  }
  settings["size_batching"] = "one run per size";
  // As when each size ran as a request of its own: without explicit seeds, "seeds" and
  // "size" are those of the last size that ran.
  if (request.seeds.empty()) {
    std::vector<std::uint64_t> seeds;
    for (const PlannedBatch& batch : group.batches)
      for (std::int64_t index : batch.images) seeds.push_back(plan.images[static_cast<std::size_t>(index)].seed);
    settings["seeds"] = seeds;
  }
  return settings;
}

at::Device parameterDevice(const LoadedModel& model) {
  for (const auto& p : model.backbone->parameters()) return p.device();
  return at::kCPU;
}

}  // namespace

Result<GenerationResult> generate(const LoadedModel& model, const GenerationRequest& request) {
  const auto start = std::chrono::steady_clock::now();
  auto plan = planGeneration(model, request);
  if (!plan) return fail(plan.error());
  auto space = makeSamplingSpace(*model.process);
  if (!space) return fail(space.error());
  std::shared_ptr<ProbeSlot> slot;
  if (request.probe) {
    slot = std::make_shared<ProbeSlot>();
    slot->probe = request.probe;
    slot->wanted = request.probeStep;
  }
  const RunContext ctx{model, request, *plan, **space, parameterDevice(model), slot, probedModelFunction(model, slot)};
  std::size_t lastGroup = 0;
  auto result = runPlan(ctx, lastGroup);
  if (!result) return fail(result.error());
  result->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result->settings = settingsOf(model, request, *plan, lastGroup, result->nfe);
  return result;
}

}  // namespace tessera
