// SPDX-License-Identifier: Apache-2.0
#include "engine/generation_plan.h"

#include "core/samplers/sampling_space.h"
#include "core/system/system_info.h"
#include "engine/generation.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <iomanip>
#include <sstream>
#include <utility>

namespace tessera {
namespace {

using Size = std::pair<std::int64_t, std::int64_t>;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string shapeText(at::IntArrayRef sizes) {
  std::string s = "(";
  for (std::size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + ")";
}

Size sizeOf(const PlannedImage& image) { return {image.height, image.width}; }

/// Every image's size, seed and class, in the request's order.
Result<void> planImages(GenerationPlan& plan, const GenerationRequest& request) {
  const ModelTraits& traits = plan.traits;
  const auto n = static_cast<std::int64_t>(request.classes.size());
  if (n < 1) return fail("generate: no images requested");
  for (std::int64_t i = 0; i < n; ++i) {
    PlannedImage image;
    image.classLabel = request.classes[static_cast<std::size_t>(i)];
    if (!request.sizes.empty()) {
      std::tie(image.height, image.width) = request.sizes[static_cast<std::size_t>(i) % request.sizes.size()];
    } else {
      image.height = request.height > 0 ? request.height : traits.trainedHeight;
      image.width = request.width > 0 ? request.width : traits.trainedWidth;
    }
    if (auto ok = checkSize(traits, image.height, image.width); !ok) return fail(ok.error());
    plan.images.push_back(image);
  }
  if (!request.seeds.empty() && static_cast<std::int64_t>(request.seeds.size()) != n)
    return fail("generate: " + std::to_string(request.seeds.size()) + " seeds for " + std::to_string(n) + " images");
  for (std::int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    plan.images[k].seed = request.seeds.empty() ? request.seed + static_cast<std::uint64_t>(i) : request.seeds[k];
  }
  return {};
}

/// Which images run together: all of them (one size, or packed), or each size's in
/// order of first appearance; then batches of `batch` in order.
std::vector<PlannedGroup> groupImages(const GenerationPlan& plan, std::int64_t batch) {
  std::vector<Size> order;
  for (const auto& image : plan.images) {
    const bool perSize = plan.sizeBatching == SizeBatching::OneRunPerSize;
    if (order.empty() || (perSize && std::find(order.begin(), order.end(), sizeOf(image)) == order.end()))
      order.push_back(sizeOf(image));
  }
  std::vector<PlannedGroup> groups;
  for (const Size& size : order) {
    PlannedGroup group;
    std::tie(group.height, group.width) = size;
    std::vector<std::int64_t> members;
    for (std::size_t i = 0; i < plan.images.size(); ++i)
      if (plan.sizeBatching != SizeBatching::OneRunPerSize || sizeOf(plan.images[i]) == size)
        members.push_back(static_cast<std::int64_t>(i));
    const auto count = static_cast<std::int64_t>(members.size());
    for (std::int64_t begin = 0; begin < count; begin += batch) {
      const std::int64_t end = std::min(count, begin + batch);
      group.batches.push_back({std::vector<std::int64_t>(members.begin() + begin, members.begin() + end)});
    }
    groups.push_back(std::move(group));
  }
  return groups;
}

/// Classes, batch size and guidance: what the network will be asked.
Result<void> planConditioning(GenerationPlan& plan, const GenerationRequest& request) {
  const ModelTraits& traits = plan.traits;
  for (std::int64_t k : request.classes)
    if (k < 0 || k >= traits.numClasses)
      return fail("class " + std::to_string(k) + " is out of range: this model has classes 0 to " +
                  std::to_string(traits.numClasses - 1));
  if (request.batch < 1) return fail("batch size must be at least 1, got " + std::to_string(request.batch));
  plan.guidance = request.guidance;
  if (request.referenceGuidanceRule && plan.guidance.channels == 0) plan.guidance.channels = traits.guidedChannels;
  if (auto ok = plan.guidance.validate(); !ok) return fail(ok.error());
  if (plan.guidance.scale != 1.0 && !traits.nullClass)
    return fail("guidance scale " + std::to_string(plan.guidance.scale) +
                ": this model has no null class, so it can only sample with --cfg 1");
  return {};
}

/// The sampler and every group's options and time grid.
Result<void> planSampling(GenerationPlan& plan, const LoadedModel& model, const GenerationRequest& request) {
  auto space = makeSamplingSpace(*model.process);
  if (!space) return fail(space.error());
  const SamplerEntry* entry = samplerRegistry().find(request.sampler);
  if (!entry) {
    std::string names;
    for (const auto& s : samplerRegistry().names()) names += (names.empty() ? "" : ", ") + s;
    return fail("unknown sampler '" + request.sampler + "' (expected one of: " + names + ")");
  }
  plan.sampler = entry->name;
  plan.stochastic = entry->stochastic;
  const ModelTraits& traits = plan.traits;
  for (PlannedGroup& group : plan.groups) {
    group.options = request.options;
    // A group of one size has a size to derive the shift from; a pack has not.
    if (plan.sizeBatching == SizeBatching::Packed && group.options.grid == "shifted" && group.options.shift == 0)
      return fail(
          "the shifted grid's default shift depends on the size; a request of mixed sizes needs an explicit --shift");
    if (traits.trainedHeight > 0 && traits.trainedWidth > 0)
      group.options.resolutionScale = static_cast<double>(group.height * group.width) /
                                      static_cast<double>(traits.trainedHeight * traits.trainedWidth);
    auto grid = samplerGrid(*entry, group.options, **space);
    if (!grid) return fail(grid.error());
    group.grid = std::move(*grid);
  }
  return {};
}

/// Given noise tensors must match the images (one size only) and the grid.
Result<void> planNoise(GenerationPlan& plan, const GenerationRequest& request) {
  plan.givenNoise = request.noise.has_value();
  plan.givenStepNoise = request.stepNoise.has_value();
  if (!plan.givenNoise && !plan.givenStepNoise) return {};
  const auto n = static_cast<std::int64_t>(plan.images.size());
  const PlannedGroup& group = plan.groups.front();  // given noise implies one size: one group
  const std::int64_t C = plan.traits.channels, H = group.height, W = group.width;
  auto expectShape = [](const at::Tensor& t, std::vector<std::int64_t> shape, const std::string& what) -> Result<void> {
    if (t.sizes().vec() != shape || !at::isFloatingType(t.scalar_type()))
      return fail(what + ": expected floats of shape " + shapeText(shape) + ", got " + shapeText(t.sizes()));
    return {};
  };
  if (request.noise) {
    auto ok = expectShape(*request.noise, {n, C, H, W}, "--noise tensor 'z'");
    if (!ok) return fail(ok.error());
  }
  if (request.stepNoise) {
    const at::Tensor& s = *request.stepNoise;
    const std::int64_t steps = group.steps();
    auto ok = expectShape(s, {s.dim() == 5 ? s.size(0) : steps, n, C, H, W}, "--step-noise tensor 'noise'");
    if (!ok) return fail(ok.error());
    if (plan.stochastic && s.size(0) < steps)
      return fail("--step-noise tensor 'noise': holds " + std::to_string(s.size(0)) + " steps, the " + plan.sampler +
                  " sampler takes " + std::to_string(steps));
  }
  return {};
}

const char* batchingName(SizeBatching b) {
  switch (b) {
    case SizeBatching::OneSize:
      return "one size";
    case SizeBatching::Packed:
      return "packed";
    case SizeBatching::OneRunPerSize:
      return "one run per size";
  }
  return "";
}

}  // namespace

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
  if (model.autoencoder) {
    t.decodes = true;
    t.imageChannels = model.autoencoder->network->imageChannels();
    t.pixelFactor = model.autoencoder->network->downsampling();
  }
  if (!model.process) return fail(model.path + ": the model names no process, so it cannot be sampled");
  return t;
}

Result<std::int64_t> resolveClass(const ModelTraits& traits, const std::string& token) {
  const bool numeric = !token.empty() && std::all_of(token.begin(), token.end(),
                                                     [](unsigned char c) { return std::isdigit(c) || c == '-'; });
  if (numeric) {
    std::int64_t k = 0;
    try {
      k = std::stoll(token);
    } catch (...) {
      return fail("class '" + token + "' is not a number");
    }
    if (k < 0 || k >= traits.numClasses)
      return fail("class " + token + " is out of range: this model has classes 0 to " +
                  std::to_string(traits.numClasses - 1));
    return k;
  }
  for (std::size_t i = 0; i < traits.classNames.size(); ++i)
    if (lower(traits.classNames[i]) == lower(token)) return static_cast<std::int64_t>(i);
  if (traits.classNames.empty())
    return fail("class '" + token + "': this model has no class names; give an index from 0 to " +
                std::to_string(traits.numClasses - 1));
  std::string names;
  for (const auto& n : traits.classNames) names += (names.empty() ? "" : ", ") + n;
  return fail("class '" + token + "' is not one of this model's classes: " + names);
}

Result<void> checkSize(const ModelTraits& traits, std::int64_t height, std::int64_t width) {
  const std::int64_t m = traits.sizeMultiple;
  if (height > 0 && width > 0 && height % m == 0 && width % m == 0 && height <= 16384 && width <= 16384) return {};
  const std::int64_t top = 16384 / m * m;  // the largest valid side
  auto near = [m, top](std::int64_t v) {
    const std::int64_t down = std::min(top, std::max(m, v / m * m)),
                       up = std::min(top, std::max(m, (v + m - 1) / m * m));
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

double estimateGenerationBytes(const LoadedModel& model, const ModelTraits& traits, std::int64_t count,
                               std::int64_t batch, std::int64_t height, std::int64_t width) {
  constexpr double kFloat = 4.0;
  const double pixels = static_cast<double>(std::max<std::int64_t>(1, traits.channels)) * static_cast<double>(height) *
                        static_cast<double>(width);
  const double results = static_cast<double>(count) * pixels * kFloat;
  const double samples =
      2.0 * static_cast<double>(std::max<std::int64_t>(1, std::min(batch, count)));  // guidance doubles
  // A model built in memory (bench sample --preset) has no description: its backbone's
  // configuration is then unknown here (this threw on the null description).
  const nlohmann::json backbone = model.description.is_object()
                                      ? model.description.value("backbone", nlohmann::json::object())
                                      : nlohmann::json::object();
  const nlohmann::json config =
      backbone.is_object() ? backbone.value("config", nlohmann::json::object()) : nlohmann::json::object();
  auto field = [&](const char* key) { return backboneConfigNumber(config, key); };
  const double patch = std::max(1.0, static_cast<double>(traits.sizeMultiple));
  const double tokens = (static_cast<double>(height) / patch) * (static_cast<double>(width) / patch);
  double attention = field("num_heads") * tokens * tokens * kFloat * 2.0;  // scores and their softmax
  if (model.backbone)  // a backbone whose attention layers have their own grids (the U-Net): the largest
    for (const auto& layer : model.backbone->attentionLayers(height, width)) {
      const double t = static_cast<double>(layer.gridH) * static_cast<double>(layer.gridW);
      attention = std::max(attention, static_cast<double>(layer.heads) * t * t * kFloat * 2.0);
    }
  // q, k, v, MLP, residuals of a transformer; the backbone's own count where it has one (the U-Net's skips).
  std::optional<double> own = model.backbone ? model.backbone->activationValues(height, width) : std::nullopt;
  const double activations = (own ? *own : 16.0 * field("hidden_size") * tokens) * kFloat;
  const double sampler = 8.0 * pixels * kFloat;  // x, predictions, history
  return results + samples * (attention + activations + sampler);
}

Result<void> checkGenerationMemory(const LoadedModel& model, const ModelTraits& traits, std::int64_t count,
                                   std::int64_t batch, std::int64_t height, std::int64_t width) {
  const double need = estimateGenerationBytes(model, traits, count, batch, height, width);
  const auto available = static_cast<double>(availableMemoryBytes());
  if (available <= 0 || need <= available) return {};
  auto gb = [](double bytes) {
    std::ostringstream out;
    out << std::setprecision(3) << bytes / 1e9 << " GB";
    return out.str();
  };
  return fail("generate: " + std::to_string(count) + " images of " + std::to_string(width) + "x" +
              std::to_string(height) + " in batches of " + std::to_string(batch) + " need about " + gb(need) +
              " of memory, and " + gb(available) +
              " is available; ask for fewer images (-n), a smaller batch (--batch) or a smaller size");
}

Result<GenerationPlan> planGeneration(const LoadedModel& model, const GenerationRequest& request) {
  auto traits = modelTraits(model);
  if (!traits) return fail(traits.error());
  GenerationPlan plan;
  plan.traits = *traits;
  // The memory the request needs, before any image is planned.
  std::int64_t height = request.height > 0 ? request.height : traits->trainedHeight;
  std::int64_t width = request.width > 0 ? request.width : traits->trainedWidth;
  if (!request.sizes.empty()) height = width = 0;
  for (const auto& [h, w] : request.sizes) height = std::max(height, h), width = std::max(width, w);
  const auto count = static_cast<std::int64_t>(request.classes.size());
  if (auto ok = checkGenerationMemory(model, *traits, count, request.batch, height, width); !ok)
    return fail(ok.error());
  if (auto ok = planImages(plan, request); !ok) return fail(ok.error());
  const Size first = sizeOf(plan.images.front());
  const bool mixed =
      std::any_of(plan.images.begin(), plan.images.end(), [&](const auto& i) { return sizeOf(i) != first; });
  if (mixed && (request.noise || request.stepNoise || request.recordTrajectory))
    return fail("generate: given noise and recorded trajectories need images of one size (this request mixes sizes)");
  if (mixed)
    plan.sizeBatching = model.backbone->capabilities().packed ? SizeBatching::Packed : SizeBatching::OneRunPerSize;
  if (auto ok = planConditioning(plan, request); !ok) return fail(ok.error());
  plan.groups = groupImages(plan, request.batch);
  if (auto ok = planSampling(plan, model, request); !ok) return fail(ok.error());
  if (auto ok = planNoise(plan, request); !ok) return fail(ok.error());
  return plan;
}

std::int64_t GenerationPlan::batchCount() const {
  std::int64_t count = 0;
  for (const auto& group : groups) count += static_cast<std::int64_t>(group.batches.size());
  return count;
}

nlohmann::json GenerationPlan::toJson() const {
  nlohmann::json imageList = nlohmann::json::array(), groupList = nlohmann::json::array();
  for (const auto& i : images)
    imageList.push_back({{"class", i.classLabel}, {"seed", i.seed}, {"width", i.width}, {"height", i.height}});
  for (const auto& g : groups) {
    nlohmann::json batches = nlohmann::json::array();
    for (const auto& b : g.batches) batches.push_back(b.images);
    groupList.push_back(
        {{"width", g.width}, {"height", g.height}, {"steps", g.steps()}, {"grid", g.grid}, {"batches", batches}});
  }
  return {{"sampler", sampler},
          {"stochastic", stochastic},
          {"guidance", guidance.toJson()},
          {"size_batching", batchingName(sizeBatching)},
          {"noise", givenNoise ? "given" : "seeded"},
          {"step_noise", givenStepNoise ? "given" : "seeded"},
          {"images", imageList},
          {"groups", groupList}};
}

}  // namespace tessera
