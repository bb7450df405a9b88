// SPDX-License-Identifier: Apache-2.0
// tessera-cli sample --model MODEL [--class K|NAME[,…]] [--size WxH] [--sampler NAME] [--steps N]
//                    [--cfg S] [--seed N] [-n N] [--batch B] [--noise Z] [--step-noise N] [--trajectory T] --out DIR
#include "app/cli/command.h"
#include "app/cli/model_argument.h"
#include "core/formats/png.h"
#include "core/formats/safetensors.h"
#include "core/gallery/gallery_store.h"
#include "core/samplers/time_grid.h"
#include "core/system/resources.h"
#include "core/util/atomic_file.h"
#include "core/util/progress.h"
#include "engine/generated_image.h"
#include "engine/generation.h"

#include <ATen/ATen.h>

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <regex>
#include <sstream>

namespace tessera::cli {
namespace {

struct SampleOptions {
  std::string model, classes, size, sampler = "auto", out, noise, stepNoise, trajectory, cfgInterval, cfgChannels = "reference";
  std::int64_t count = 1, batch = 8;
  std::uint64_t seed = 0;
  double cfg = 1.0;
  CLI::Option* cfgOption = nullptr;  ///< given or not: the model's default otherwise
  std::string clip = "auto";         ///< clamp data estimates: on, off, auto (the model's default)
  CLI::Option* stepsOption = nullptr;
  CLI::Option* countOption = nullptr;
  std::string extrapolation;
  bool decouple = false;  ///< given or not: the model's default otherwise
  SamplerOptions sampling;
  std::string gallery;
  std::string device = "cpu";
  bool keepLatents = false;
  std::int64_t decodeTile = 96;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);) parts.push_back(part);
  return parts;
}

Result<at::Tensor> loadTensor(const std::string& path, const std::string& name, const std::string& flag) {
  auto file = SafetensorsFile::open(path);
  if (!file) return fail(flag + ": " + file.error().message());
  if (!file->contains(name)) return fail(flag + ": " + path + " has no tensor '" + name + "'");
  auto t = file->load(name);
  if (!t) return fail(flag + ": " + t.error().message());
  return *t;
}

/// Steps of every batch on one bar.
class ProgressObserver final : public StepObserver {
public:
  explicit ProgressObserver(Progress& progress) : m_progress(progress) {}
  void onStart(const at::Tensor&, double, double) override { m_base = m_done; }
  void onStep(const StepEvent& e) override {
    m_done = m_base + e.index + 1;
    m_progress.update(m_done, "nfe " + std::to_string(e.nfe));
  }

private:
  Progress& m_progress;
  std::int64_t m_done = 0, m_base = 0;
};

CommandResult runSample(SampleOptions o, const GlobalOptions& global) {
  auto loaded = loadModelArgument(o.model);
  if (!loaded) return badInput(loaded.error().message());
  const std::string modelPath = loaded->path;
  auto traits = modelTraits(*loaded);
  if (!traits) return badInput(traits.error().message());
  if (auto moved = moveModel(*loaded, o.device); !moved) return badInput("--device: " + moved.error().message());
  const SamplingDefaults defaults = SamplingDefaults::of(*loaded);

  GenerationRequest r;
  if (o.count < 1) return badInput("-n: at least one image, got " + std::to_string(o.count));
  std::int64_t count = o.count;
  if (o.batch < 1) return badInput("--batch: at least 1, got " + std::to_string(o.batch));
  // Classes: one per image, a shorter list repeats; none given cycles through the classes.
  std::vector<std::int64_t> listed;
  for (const auto& token : split(o.classes, ',')) {
    if (token.empty()) return badInput("--class: empty entry in '" + o.classes + "'");
    auto k = resolveClass(*traits, token);
    if (!k) return badInput("--class: " + k.error().message());
    listed.push_back(*k);
  }
  if (!o.size.empty()) {
    // WxH, or several: image i gets size i mod k.
    for (const auto& token : split(o.size, ',')) {
      std::smatch m;
      if (!std::regex_match(token, m, std::regex(R"((\d{1,6})[xX](\d{1,6}))")))
        return badInput("--size: expected WxH (e.g. 32x32) or a list (20x32,32x20), got '" + token + "'");
      const std::int64_t w = std::stoll(m[1]), h = std::stoll(m[2]);
      if (auto ok = checkSize(*traits, h, w); !ok) return badInput("--size: " + ok.error().message());
      r.sizes.emplace_back(h, w);
    }
    r.height = r.sizes.front().first, r.width = r.sizes.front().second;
    // One image per size unless -n says otherwise; classes repeat over them.
    if (r.sizes.size() > 1 && !o.countOption->count()) count = static_cast<std::int64_t>(r.sizes.size());
  }
  // The memory the request needs, before the class list below is built (a billion images
  // once made an 8 GB list first); generate() checks it again for its other callers.
  std::int64_t maxHeight = r.height > 0 ? r.height : traits->trainedHeight;
  std::int64_t maxWidth = r.width > 0 ? r.width : traits->trainedWidth;
  for (const auto& [h, w] : r.sizes) maxHeight = std::max(maxHeight, h), maxWidth = std::max(maxWidth, w);
  if (auto ok = checkGenerationMemory(*loaded, *traits, count, o.batch, maxHeight, maxWidth); !ok)
    return badInput(ok.error().message());
  for (std::int64_t i = 0; i < count; ++i)
    r.classes.push_back(listed.empty() ? i % traits->numClasses : listed[static_cast<std::size_t>(i) % listed.size()]);
  if (r.sizes.size() == 1) r.sizes.clear();
  if (!o.extrapolation.empty()) {
    auto ok = setExtrapolation(*loaded, o.extrapolation, o.decouple);
    if (!ok) return badInput("--extrapolation: " + ok.error().message());
  }
  r.sampler = o.sampler == "auto" ? defaults.sampler : o.sampler;
  if (!samplerRegistry().find(r.sampler)) {
    std::string names;
    for (const auto& s : samplerRegistry().names()) names += (names.empty() ? "" : ", ") + s;
    return badInput("--sampler: unknown sampler '" + r.sampler + "' (expected one of: " + names + ")");
  }
  r.options = o.sampling;
  r.options.grid = defaults.gridFor(r.sampler, r.options.grid);
  if (!o.stepsOption->count()) r.options.steps = defaults.steps;
  r.options.clipDenoised = o.clip == "auto" ? defaults.clipX0 : o.clip == "on";
  if (r.options.steps < 1) return badInput("--steps: at least 1, got " + std::to_string(r.options.steps));
  r.guidance.scale = o.cfgOption->count() ? o.cfg : defaults.cfg;
  if (!std::isfinite(r.guidance.scale)) return badInput("--cfg: expected a finite guidance scale, got " + std::to_string(r.guidance.scale));
  if (auto ok = setGuidanceInterval(o.cfgInterval, defaults, r.guidance); !ok) return badInput(ok.error().message());
  if (o.cfgChannels == "all") {
    r.referenceGuidanceRule = false;
  } else if (o.cfgChannels != "reference") {
    try {
      r.guidance.channels = std::stoll(o.cfgChannels);
      r.referenceGuidanceRule = false;
    } catch (...) {
      return badInput("--cfg-channels: expected reference, all or a channel count, got '" + o.cfgChannels + "'");
    }
    if (r.guidance.channels < 1) return badInput("--cfg-channels: a count must be at least 1");
  }
  if (auto ok = r.guidance.validate(); !ok) return badInput("--cfg: " + ok.error().message());
  r.seed = o.seed;
  r.batch = o.batch;
  r.decodeTile = o.decodeTile;
  if (!o.noise.empty()) {
    auto z = loadTensor(o.noise, "z", "--noise");
    if (!z) return badInput(z.error().message());
    r.noise = *z;
  }
  if (!o.stepNoise.empty()) {
    auto s = loadTensor(o.stepNoise, "noise", "--step-noise");
    if (!s) return badInput(s.error().message());
    r.stepNoise = *s;
  }
  r.recordTrajectory = !o.trajectory.empty();
  if (auto ok = refuseOverwritingInputs(
          {{"--trajectory", o.trajectory}},
          {{"the model", modelPath}, {"--noise", o.noise}, {"--step-noise", o.stepNoise}, {"--gallery", o.gallery}});
      !ok)
    return ok;

  std::optional<GalleryStore> gallery;  // opened first: a bad gallery fails before any work
  if (!o.gallery.empty()) {
    if (!traits->makesPictures())
      return badInput("--gallery: this model makes " + traits->dataKind +
                      " tensors and has no autoencoder to decode them, not images");
    auto store = GalleryStore::open(o.gallery);
    if (!store) return badInput("--gallery: " + store.error().message());
    gallery.emplace(std::move(*store));
  }
  std::error_code ec;
  std::filesystem::create_directories(o.out, ec);
  if (ec) return runtimeFailure(o.out + ": cannot create the output folder: " + ec.message());

  const SamplerEntry* entry = samplerRegistry().find(r.sampler);
  auto space = makeSamplingSpace(*loaded->process);
  if (!space) return badInput(space.error().message());
  auto grid = samplerGrid(*entry, r.options, **space);
  if (!grid) return badInput(grid.error().message());
  const std::int64_t batches = (o.count + o.batch - 1) / o.batch;
  const std::int64_t stepsPerBatch = static_cast<std::int64_t>(grid->size()) - 1 + (entry->family == SamplerFamily::Sde && r.options.lastStep != "none");
  Progress progress("sample", stepsPerBatch * batches, Progress::chooseMode(global.json, global.quiet), std::cerr);
  ProgressObserver observer(progress);
  r.observer = &observer;

  auto result = generate(*loaded, r);
  if (!result) return badInput(result.error().message());
  progress.finish();

  nlohmann::json model{{"file", std::filesystem::path(modelPath).filename().string()},
                       {"backbone", loaded->description["backbone"].value("kind", "")},
                       {"size_bytes", std::filesystem::file_size(modelPath, ec)}};
  nlohmann::json summary{{"event", "done"}, {"out", o.out}, {"images", result->completed}, {"nfe", result->nfe},
                         {"steps", result->steps}, {"seconds", result->seconds}, {"settings", result->settings}};
  if (traits->makesPictures() && (traits->outputChannels() == 1 || traits->outputChannels() == 3)) {
    std::string modelHash;
    auto hash = sha256File(modelPath);
    if (!hash) return runtimeFailure(hash.error().message());
    modelHash = *hash;
    nlohmann::json files = nlohmann::json::array();
    for (std::int64_t i = 0; i < result->completed; ++i) {
      auto image = describeGeneratedImage(*loaded, *traits, *result, r.classes, o.seed, i, modelPath, modelHash);
      if (!image) return runtimeFailure(image.error().message());
      const std::uint64_t seed = o.seed + static_cast<std::uint64_t>(i);
      const std::int64_t k = r.classes[static_cast<std::size_t>(i)];
      char name[96];
      std::snprintf(name, sizeof name, "%05lld_seed%llu_class%lld.png", static_cast<long long>(i),
                    static_cast<unsigned long long>(seed), static_cast<long long>(k));
      const std::string path = (std::filesystem::path(o.out) / name).string();
      if (auto ok = writeFileAtomically(path, image->png); !ok) return runtimeFailure(ok.error().message());
      files.push_back(path);
      nlohmann::json event{{"event", "image"}, {"index", i}, {"seed", seed}, {"class", k}, {"path", path}};
      if (gallery) {
        auto id = gallery->add(image->record, image->png, image->thumbnail);
        if (!id) return runtimeFailure(id.error().message());
        event["gallery_id"] = *id;
      }
      if (global.json) std::cout << event.dump() << std::endl;
    }
    summary["files"] = files;
    if (gallery) summary["gallery"] = o.gallery;
  } else if (result->completed > 0) {
    const std::string path = (std::filesystem::path(o.out) / "samples.safetensors").string();
    nlohmann::json meta = result->settings;
    meta["model"] = model;
    NamedTensors tensors;
    if (result->samples.defined()) {
      tensors.emplace_back("samples", result->samples.contiguous());
    } else {  // mixed sizes: one tensor per image
      for (std::size_t i = 0; i < result->images.size(); ++i) tensors.emplace_back("samples." + std::to_string(i), result->images[i].contiguous());
    }
    auto ok = writeSafetensors(path, tensors, {{"tessera.sample", meta.dump()}});
    if (!ok) return runtimeFailure(ok.error().message());
    summary["files"] = {path};
    summary["note"] = "no PNG written: this model's output is a " + traits->dataKind +
                      " tensor without an autoencoder to decode it; the samples are in " + path;
    spdlog::warn("{}", summary["note"].get<std::string>());
  }
  if (o.keepLatents && traits->decodes && result->completed > 0) {
    // What the backbone sampled, in its own scale (the autoencoder's latent times its scale factor).
    const std::string path = (std::filesystem::path(o.out) / "latents.safetensors").string();
    NamedTensors tensors;
    if (result->latentSamples.defined()) {
      tensors.emplace_back("latents", result->latentSamples.contiguous());
    } else {
      for (std::size_t i = 0; i < result->latents.size(); ++i)
        tensors.emplace_back("latents." + std::to_string(i), result->latents[i].contiguous());
    }
    nlohmann::json meta = result->settings;
    meta["model"] = model;
    meta["autoencoder"] = {{"scale_factor", loaded->autoencoder->scaling.scale},
                           {"shift_factor", loaded->autoencoder->scaling.shift}};
    if (auto ok = writeSafetensors(path, tensors, {{"tessera.sample", meta.dump()}}); !ok)
      return runtimeFailure(ok.error().message());
    summary["latents"] = path;
  }
  if (r.recordTrajectory && result->trajectoryX.defined()) {
    const at::Tensor t = at::tensor(result->times, at::TensorOptions(at::kDouble));
    const at::Tensor tau = at::tensor(result->taus, at::TensorOptions(at::kDouble));
    auto ok = writeSafetensors(o.trajectory, {{"x_t", result->trajectoryX.contiguous()}, {"x0", result->trajectoryX0.contiguous()},
                                              {"t", t}, {"tau", tau}}, {{"tessera.sample", result->settings.dump()}});
    if (!ok) return runtimeFailure(ok.error().message());
    summary["trajectory"] = o.trajectory;
  }
  if (result->cancelled) summary["cancelled"] = true;
  std::cout << summary.dump(global.json ? -1 : 2) << std::endl;
  return {};
}

}  // namespace

Command addSampleCommand(CLI::App& app, const GlobalOptions& global) {
  auto* sub = app.add_subcommand("sample", "Generate images (or latents) from a model");
  auto o = std::make_shared<SampleOptions>();
  auto& s = o->sampling;
  sub->add_option("--model", o->model, "Tessera model file, or a shipped model's name (dit-fashion, sit-fashion)")->required();
  sub->add_option("--class", o->classes, "Class index or name; a comma list gives one per image (default: all classes in turn)");
  sub->add_option("--size", o->size,
                  "WxH in the model's data cells (default: the trained size); several (20x32,32x20,28x28) give image i size i mod k, "
                  "one packed forward per step for NiT/FiT, one batch per size for others");
  sub->add_option("--extrapolation", o->extrapolation,
                  "Sizes beyond training: RoPE models none|linear|ntk|ntk-by-parts|yarn|ntk-pro1|ntk-pro2|scale1|scale2; "
                  "DiT/SiT none|interpolate");
  sub->add_flag("--decouple", o->decouple, "Extrapolation scales per axis (FiT's decouple)");
  sub->add_option("--sampler", o->sampler, "ddpm, ddim, euler, heun, dopri5, sde-euler, sde-heun, dpmpp-2m (default: ddim for DDPM models, euler for interpolants)");
  o->stepsOption = sub->add_option("--steps", s.steps, "Sampler steps (intervals of the time grid; default: the model's, else 50)")->capture_default_str();
  sub->add_option("--grid", s.grid,
                  "default (the model's own, else the sampler's), uniform, quadratic, shifted, karras, respaced, ldm")
      ->capture_default_str();
  o->cfgOption = sub->add_option("--cfg", o->cfg, "Classifier-free guidance scale (1 = none, one forward per step; default: the model's)");
  sub->add_option("--cfg-interval", o->cfgInterval, "LO,HI: guide only while the progress (0 noise … 1 data) lies in [LO, HI]");
  sub->add_option("--cfg-channels", o->cfgChannels, "reference (the model's rule: 3 for DiT/SiT imports), all, or a count")->capture_default_str();
  sub->add_option("--eta", s.eta, "DDIM noise (0 = deterministic)")->capture_default_str();
  sub->add_option("--clip-x0", o->clip, "Clamp every data estimate to [-1, 1] (pixel models): on, off, auto (the model's default)")
      ->check(CLI::IsMember({"on", "off", "auto"}))->capture_default_str();
  sub->add_option("--shift", s.shift, "Shifted grid: time shift (0 = sqrt of the area ratio to the trained size)");
  sub->add_option("--rho", s.rho, "Karras grid exponent")->capture_default_str();
  sub->add_option("--atol", s.atol, "dopri5 absolute tolerance")->capture_default_str();
  sub->add_option("--rtol", s.rtol, "dopri5 relative tolerance")->capture_default_str();
  sub->add_option("--diffusion-form", s.diffusionForm, "SDE: constant, SBDM, sigma, linear, decreasing, increasing-decreasing")->capture_default_str();
  sub->add_option("--diffusion-norm", s.diffusionNorm, "SDE: diffusion norm")->capture_default_str();
  sub->add_option("--last-step", s.lastStep, "SDE: Mean, Tweedie, Euler or none")->capture_default_str();
  sub->add_option("--last-step-size", s.lastStepSize, "SDE: size of the last step")->capture_default_str();
  sub->add_option("--seed", o->seed, "Seed of image 0; image i uses seed + i")->capture_default_str();
  o->countOption = sub->add_option("-n", o->count, "Number of images (default 1, or one per --size)")->capture_default_str();
  sub->add_option("--batch", o->batch, "Images per batch")->capture_default_str();
  sub->add_option("--noise", o->noise, "safetensors with z (n, C, H, W): the initial noise");
  sub->add_option("--step-noise", o->stepNoise, "safetensors with noise (steps, n, C, H, W): each stochastic step's noise");
  sub->add_option("--trajectory", o->trajectory, "Write x_t, x0, t (model time) and tau of every step to this safetensors file");
  sub->add_option("--device", o->device, "cpu, cuda or cuda:N (the noise is drawn on the CPU either way)")->capture_default_str();
  sub->add_option("--gallery", o->gallery, "Also store every image in this gallery database (created if missing; the studio's is in its data folder)");
  sub->add_option("--out", o->out, "Output folder")->required();
  sub->add_flag("--keep-latents", o->keepLatents,
                "Latent models with an autoencoder: also write what the backbone sampled (before decoding) to "
                "latents.safetensors");
  sub->add_option("--decode-tile", o->decodeTile,
                  "Latent models: decode in tiles of this many latent cells (overlapping by 8), bounding memory for "
                  "large pictures; 0 = whole")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  return {sub, [o, &global]() { return runSample(*o, global); }};
}

}  // namespace tessera::cli
