// SPDX-License-Identifier: Apache-2.0
// tessera-cli bench train --config CFG.json [--steps N] [--warmup W] [--repeats R]: training
// throughput of a configuration (steps/s, images/s, tokens/s, the fraction of computed
// tokens that are the images' own — padding and resizing waste — the time spent waiting
// for batches, peak memory) as JSON lines, one per repeat. The run is the real trainer in a temporary
// directory, with validation, sample grids and intermediate checkpoints switched off.
#include "app/cli/command.h"
#include "core/system/blas.h"
#include "core/system/system_info.h"
#include "engine/training.h"

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <unistd.h>

namespace tessera::cli {
namespace {

struct BenchTrainOptions {
  std::string config, init;
  std::int64_t steps = 20, warmup = 3, repeats = 1;
};


CommandResult runBenchTrain(const BenchTrainOptions& o) {
  auto config = Config::fromFile(o.config);
  if (!config) return badInput(config.error().message());
  // With --init the model section comes from the model file (the run checks it).
  nlohmann::json model;
  if (o.init.empty()) {
    auto resolved = checkTrainingConfig(*config);
    if (!resolved) return badInput(resolved.error().message());
    model = (*resolved)["model"];
  }
  nlohmann::json c = config->json();
  c["train"]["steps"] = o.warmup + o.steps;
  c["log"] = {{"every", 1}};
  c["checkpoint"] = {{"every", 1LL << 40}, {"keep", 1}};
  c["validation"] = {{"every", 0}};
  c["samples"] = {{"every", 0}};
  if (c.contains("data")) c["data"]["validation"] = 0;
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("tessera-bench-train-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string cfgPath = (dir / "config.json").string();
  std::ofstream(cfgPath) << c.dump();
  for (std::int64_t r = 0; r < o.repeats; ++r) {
    resetPeakRss();
    std::ostringstream events;
    TrainRequest req;
    req.configPath = cfgPath;
    req.outDir = (dir / ("run" + std::to_string(r))).string();
    req.events = &events;
    req.initModel = o.init;
    auto summary = runTraining(req);
    if (!summary) {
      std::error_code ec;
      fs::remove_all(dir, ec);
      return runtimeFailure("bench train: " + summary.error().message());
    }
    // Per-step events after the warm-up: images/s from their step times, and the waits.
    std::istringstream in(events.str());
    double seconds = 0, waits = 0, realTokens = 0;
    std::int64_t steps = 0, batch = 0, images = 0, tokens = 0;
    std::string batching = "fixed";
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      if (j["event"] == "start") {
        batch = j["config"]["data"]["batch"].get<std::int64_t>();
        if (model.is_null()) model = j["config"].value("model", nlohmann::json());
        batching = j["batching"].value("batching", batching);
      }
      if (j["event"] != "step" || j["step"].get<std::int64_t>() <= o.warmup) continue;
      const std::int64_t stepImages = j.value("images", batch);
      const double stepSeconds = static_cast<double>(stepImages) / j["images_per_s"].get<double>();
      seconds += stepSeconds;
      waits += j["data_wait_fraction"].get<double>() * stepSeconds;
      images += stepImages;
      const std::int64_t stepTokens = j.value("tokens_computed", std::int64_t{0});
      tokens += stepTokens;
      realTokens += j.value("real_token_fraction", 1.0) * static_cast<double>(stepTokens);
      ++steps;
    }
    nlohmann::json out = {{"bench", "train"},
                          {"impl", "tessera"},
                          {"config", o.config},
                          {"model", model},
                          {"batch", batch},
                          {"steps", steps},
                          {"seconds", seconds},
                          {"steps_per_s", static_cast<double>(steps) / seconds},
                          {"images_per_s", static_cast<double>(images) / seconds},
                          {"batching", batching},
                          {"images", images},
                          {"tokens_computed", tokens},
                          {"tokens_per_s", static_cast<double>(tokens) / seconds},
                          // Of the tokens computed, those that carry the images' own pixels
                          // (1 for packing; FiT pads to the longest image; a resize to one
                          // square grid spends tokens on stretching or letterboxing).
                          {"real_token_fraction", tokens > 0 ? realTokens / static_cast<double>(tokens) : 1.0},
                          {"data_wait_fraction", seconds > 0 ? waits / seconds : 0.0},
                          {"peak_rss_mib", peakRssMiB()},
                          {"threads", at::get_num_threads()},
                          {"blas_kernel", blas::kernelState().active},
                          {"libtorch", TORCH_VERSION}};
    std::cout << out.dump() << std::endl;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return {};
}

}  // namespace

Command addBenchTrain(CLI::App& bench, const GlobalOptions&) {
  auto o = std::make_shared<BenchTrainOptions>();
  CLI::App* sub = bench.add_subcommand("train", "Training throughput of a configuration (steps/s, images/s, data waits, memory)");
  sub->add_option("--config", o->config, "Training configuration (JSON)")->required()->check(CLI::ExistingFile);
  sub->add_option("--init", o->init, "Fine-tune from this model file (as train --init)")->check(CLI::ExistingFile);
  sub->add_option("--steps", o->steps, "Measured steps")->check(CLI::Range(1, 100000))->capture_default_str();
  sub->add_option("--warmup", o->warmup, "Steps before measuring")->check(CLI::Range(0, 1000))->capture_default_str();
  sub->add_option("--repeats", o->repeats, "Runs (one JSON line each)")->check(CLI::Range(1, 100))->capture_default_str();
  return {sub, [o]() -> CommandResult { return runBenchTrain(*o); }};
}

}  // namespace tessera::cli
