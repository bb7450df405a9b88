// SPDX-License-Identifier: Apache-2.0
// tessera-cli bench sample: per-step latency and images/s of a whole sampling run, with
// peak memory, as JSON lines (one per batch size).
#include "app/cli/command.h"
#include "core/process/process.h"
#include "core/system/blas.h"
#include "core/system/system_info.h"
#include "engine/generation.h"
#include "models/registry.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <regex>

namespace tessera::cli {
namespace {

/// The process the preset's family trains with (its importer knows), else the one its
/// capabilities call for: an interpolant for a velocity, DDPM otherwise.
Result<Process> benchProcess(const BackboneEntry& entry, const nlohmann::json& config, const Capabilities& caps) {
  nlohmann::json process;
  if (entry.importer.process) {
    process = entry.importer.process(config);
  } else if (caps.prediction == Prediction::Velocity) {
    process = InterpolantConfig::defaultsFor("linear", "velocity").toJson();
  } else {
    GaussianDiffusionConfig d;
    d.learnSigma = caps.learnedSigma;
    process = d.toJson();
  }
  return processFromConfig(Config::fromJson({{"process", process}}, "bench"), "process");
}

/// A model file, or a randomly initialised registry preset with `channels` input
/// channels and, where its configuration has one, a variance to predict (the
/// reference's sampling cost).
Result<LoadedModel> benchModel(const std::string& model, const std::string& preset, std::int64_t channels) {
  if (!model.empty()) return loadModelFile(model);
  const BackboneEntry* entry = backboneRegistry().findPreset(preset);
  if (!entry) {
    std::string known;
    for (const auto& n : backboneRegistry().presetNames()) known += (known.empty() ? "" : ", ") + n;
    return fail("unknown preset '" + preset + "' (known: " + known + ")");
  }
  if (!entry->config.complete)
    return fail("backbone '" + entry->name + "' does not list its configuration; give --model");
  auto config = entry->config.complete(Config::fromJson({{"preset", preset}}, preset));
  if (!config) return fail(config.error());
  nlohmann::json c = *config;
  if (c.contains("in_channels")) c["in_channels"] = channels;
  if (c.contains("cfg_channels"))
    c["cfg_channels"] = std::min<std::int64_t>(c["cfg_channels"].get<std::int64_t>(), channels);
  if (c.contains("learn_sigma")) c["learn_sigma"] = true;
  auto built = backboneRegistry().create(entry->name, Config::fromJson(c, preset));
  if (!built) return fail(built.error());
  LoadedModel m;
  m.backbone = *built;
  torch::manual_seed(0);
  {
    torch::NoGradGuard guard;  // the official init zeroes the output layers: give them weights
    for (auto& p : m.backbone->named_parameters())
      if (p.key().find("adaLN") != std::string::npos || p.key().find("final_layer") != std::string::npos) p.value().normal_(0, 0.02);
  }
  m.backbone->eval();
  auto process = benchProcess(*entry, c, m.backbone->capabilities());
  if (!process) return fail(process.error());
  m.process = std::move(*process);
  m.path = preset;
  return m;
}

}  // namespace

struct BenchSampleOptions {
  std::string model, preset = "DiT-S/2", size, sampler = "ddim";
  std::int64_t channels = 4, steps = 10, repeats = 3;
  std::vector<std::int64_t> batches{1, 8};
  double cfg = 1.0;
  std::string device = "cpu";
};

CommandResult runBenchSample(const BenchSampleOptions& o, const GlobalOptions&) {
  auto model = benchModel(o.model, o.preset, o.channels);
  if (!model) return badInput(model.error().message());
  auto traits = modelTraits(*model);
  if (!traits) return badInput(traits.error().message());
  if (auto moved = moveModel(*model, o.device); !moved) return badInput("--device: " + moved.error().message());
  const bool cuda = o.device.rfind("cuda", 0) == 0;
  GenerationRequest r;
  r.sampler = o.sampler;
  r.options.steps = o.steps;
  r.guidance.scale = o.cfg;
  if (!o.size.empty()) {
    std::smatch m;
    if (!std::regex_match(o.size, m, std::regex(R"((\d{1,6})[xX](\d{1,6}))"))) return badInput("--size: expected WxH, got '" + o.size + "'");
    r.width = std::stoll(m[1]);
    r.height = std::stoll(m[2]);
  }
  const auto& k = blas::kernelState();
  for (std::int64_t batch : o.batches) {
    if (batch < 1) return badInput("--batches: sizes must be at least 1");
    r.classes.assign(static_cast<std::size_t>(batch), 1);
    r.batch = batch;
    auto warm = generate(*model, r);  // warm-up: allocator, position-embedding cache, OpenMP pool
    if (!warm) return badInput(warm.error().message());
    resetPeakRss();
    std::vector<double> seconds;
    std::int64_t nfe = 0;
    for (std::int64_t i = 0; i < o.repeats; ++i) {
      auto run = generate(*model, r);
      if (!run) return runtimeFailure(run.error().message());
      seconds.push_back(run->seconds);
      nfe = run->nfe;
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    nlohmann::ordered_json j;
    j["bench"] = "sample";
    j["impl"] = "tessera";
    j["model"] = o.model.empty() ? o.preset : o.model;
    j["size"] = std::to_string(warm->samples.size(3)) + "x" + std::to_string(warm->samples.size(2));
    j["channels"] = traits->channels;
    j["sampler"] = o.sampler;
    j["steps"] = o.steps;
    j["cfg"] = o.cfg;
    j["batch"] = batch;
    j["nfe"] = nfe;
    j["seconds"] = median;
    j["per_step_ms"] = 1000.0 * median / static_cast<double>(nfe);
    j["images_per_s"] = static_cast<double>(batch) / median;
    // The fastest run: on a shared machine the least disturbed estimate.
    j["best_per_step_ms"] = 1000.0 * seconds.front() / static_cast<double>(nfe);
    j["best_images_per_s"] = static_cast<double>(batch) / seconds.front();
    j["peak_rss_mib"] = peakRssMiB();
    j["device"] = o.device;
    if (cuda) j["note"] = "GPU timings include the host-side noise draws and copies";
    j["threads"] = at::get_num_threads();
    j["blas_kernel"] = k.active;
    j["libtorch"] = TORCH_VERSION;
    std::cout << j.dump() << std::endl;
  }
  return {};
}

Command addBenchSample(CLI::App& bench, const GlobalOptions& global) {
  auto o = std::make_shared<BenchSampleOptions>();
  auto* cmd = bench.add_subcommand("sample", "Sampling speed: per-step latency and images/s per batch size");
  cmd->add_option("--model", o->model, "Tessera model file (default: a randomly initialised --preset)");
  cmd->add_option("--preset", o->preset,
                  "A backbone preset when no --model is given (tessera-cli info --backbones lists them)")
      ->capture_default_str();
  cmd->add_option("--channels", o->channels, "Input channels of the preset model")->capture_default_str();
  cmd->add_option("--size", o->size, "WxH (default: the model's trained size)");
  cmd->add_option("--sampler", o->sampler, "Sampler")->capture_default_str();
  cmd->add_option("--steps", o->steps, "Sampler steps")->capture_default_str();
  cmd->add_option("--cfg", o->cfg, "Guidance scale (1: one forward per step)")->capture_default_str();
  cmd->add_option("--batches", o->batches, "Batch sizes")->delimiter(',')->capture_default_str();
  cmd->add_option("--device", o->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--repeats", o->repeats, "Timed runs per batch size (the median is reported)")->capture_default_str();
  return {cmd, [o, &global]() { return runBenchSample(*o, global); }};
}

}  // namespace tessera::cli
