// SPDX-License-Identifier: Apache-2.0
// tessera-cli inspect --model MODEL [--class K] [--size WxH] [--sampler S] [--steps N] [--cfg S]
//                     [--seed N] [--capture-steps all|I,J,…] [--blocks all|I,J,…] [--no-attention]
//                     [--estimate] --out CAPTURE.safetensors
// The studio's attention capture, headless: one image generated with the attention taps
// on at the chosen steps and blocks, its guidance map at every guided step, written as
// safetensors (attention (steps, blocks, heads, T, T), guidance (steps, H, W), image).
#include "app/cli/command.h"
#include "app/cli/model_argument.h"
#include "core/samplers/sampler.h"
#include "core/system/resources.h"
#include "engine/generation.h"
#include "engine/inspection.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <regex>
#include <sstream>

namespace tessera::cli {
namespace {

struct InspectOptions {
  std::string model, classToken = "0", size, sampler = "auto", captureSteps = "all", blocks = "all", out;
  int steps = 0;
  double cfg = -1;
  std::uint64_t seed = 0;
  bool noAttention = false, estimateOnly = false;
};

/// "all" → empty; "1,4,9" → the numbers; anything else → an error naming the flag.
Result<std::vector<std::int64_t>> numberList(const std::string& flag, const std::string& text) {
  std::vector<std::int64_t> out;
  if (text == "all") return out;
  std::stringstream in(text);
  std::string token;
  while (std::getline(in, token, ',')) {
    if (!std::regex_match(token, std::regex(R"(\d{1,6})"))) return fail(flag + ": expected 'all' or numbers separated by commas, got '" + text + "'");
    out.push_back(std::stoll(token));
  }
  if (out.empty()) return fail(flag + ": empty list");
  return out;
}

CommandResult runInspect(const InspectOptions& o, const GlobalOptions& global) {
  const auto t0 = std::chrono::steady_clock::now();
  auto loaded = loadModelArgument(o.model);
  if (!loaded) return badInput(loaded.error().message());
  if (auto ok = refuseOverwritingInputs({{"--out", o.out}}, {{"the model", loaded->path}}); !ok) return ok;
  auto traits = modelTraits(*loaded);
  if (!traits) return badInput(traits.error().message());
  const SamplingDefaults defaults = SamplingDefaults::of(*loaded);

  InspectionRequest r;
  auto k = resolveClass(*traits, o.classToken);
  if (!k) return badInput("--class: " + k.error().message());
  r.generation.classes = {*k};
  if (!o.size.empty()) {
    std::smatch m;
    if (!std::regex_match(o.size, m, std::regex(R"((\d{1,6})[xX](\d{1,6}))"))) return badInput("--size: expected WxH, got '" + o.size + "'");
    r.generation.width = std::stoll(m[1]);
    r.generation.height = std::stoll(m[2]);
  }
  r.generation.sampler = o.sampler == "auto" ? defaults.sampler : o.sampler;
  if (!samplerRegistry().find(r.generation.sampler)) return badInput("--sampler: unknown sampler '" + r.generation.sampler + "'");
  r.generation.options.steps = o.steps > 0 ? o.steps : defaults.steps;
  r.generation.options.grid = defaults.gridFor(r.generation.sampler, r.generation.options.grid);
  r.generation.options.clipDenoised = defaults.clipX0;
  r.generation.guidance.scale = o.cfg >= 0 ? o.cfg : defaults.cfg;
  r.generation.guidance.low = defaults.cfgLow, r.generation.guidance.high = defaults.cfgHigh;
  r.generation.seed = o.seed;
  r.attention = !o.noAttention;
  auto steps = numberList("--capture-steps", o.captureSteps);
  if (!steps) return badInput(steps.error().message());
  r.steps = *steps;
  auto blocks = numberList("--blocks", o.blocks);
  if (!blocks) return badInput(blocks.error().message());
  for (auto b : *blocks) r.layers.insert(static_cast<int>(b));

  auto estimate = estimateInspection(*loaded, r);
  if (!estimate) return badInput(estimate.error().message());
  nlohmann::ordered_json out;
  out["model"] = o.model;
  out["tokens"] = estimate->tokens;
  out["blocks"] = estimate->layers;
  out["heads"] = estimate->heads;
  out["steps_captured"] = estimate->steps;
  out["steps"] = estimate->totalSteps;
  out["estimated_bytes"] = estimate->bytes;
  if (o.estimateOnly) {
    std::cout << out.dump(global.json ? -1 : 2) << std::endl;
    return {};
  }
  if (o.out.empty()) return badInput("--out: give the capture's file (or --estimate)");
  auto capture = captureInspection(*loaded, r);
  if (!capture) return badInput(capture.error().message());
  if (auto ok = writeInspection(o.out, *capture); !ok) return runtimeFailure(ok.error().message());
  out["grid"] = {capture->gridH, capture->gridW};
  out["captured_steps"] = capture->steps;
  out["guided_steps"] = capture->guidanceSteps.size();
  if (!capture->layerAttention.empty()) {
    auto h = headEntropy(*capture, static_cast<std::int64_t>(capture->steps.size()) - 1);
    if (h) {
      const at::Tensor present = h->masked_select(~h->isnan());  // layers with fewer heads leave NaN
      out["entropy_last_step"] = {{"min", present.min().item<double>()},
                                  {"max", present.max().item<double>()},
                                  {"uniform", std::log(static_cast<double>(estimate->tokens))}};
    }
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (const auto& info : capture->layerInfo)
      layers.push_back({{"name", info.name}, {"heads", info.heads}, {"grid", {info.gridH, info.gridW}}});
    out["layers"] = layers;
  }
  out["out"] = o.out;
  out["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << out.dump(global.json ? -1 : 2) << std::endl;
  return {};
}

}  // namespace

Command addInspectCommand(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<InspectOptions>();
  CLI::App* sub = app.add_subcommand("inspect", "Capture one image's attention maps and guidance map (safetensors)");
  sub->add_option("--model", o->model, "Tessera model file, or a shipped model's name")->required();
  sub->add_option("--class", o->classToken, "Class index or name")->capture_default_str();
  sub->add_option("--size", o->size, "WxH (default: the trained size)");
  sub->add_option("--sampler", o->sampler, "Sampler (default: the model's)");
  sub->add_option("--steps", o->steps, "Steps (default: the model's)");
  sub->add_option("--cfg", o->cfg, "Guidance scale (default: the model's)");
  sub->add_option("--seed", o->seed, "The image's seed")->capture_default_str();
  sub->add_option("--capture-steps", o->captureSteps, "Steps whose attention is kept: all, or 0-based indexes I,J,…")->capture_default_str();
  sub->add_option("--blocks", o->blocks, "Blocks whose attention is kept: all, or I,J,…")->capture_default_str();
  sub->add_flag("--no-attention", o->noAttention, "Only the guidance map");
  sub->add_flag("--estimate", o->estimateOnly, "Print what the capture would hold and stop");
  sub->add_option("--out", o->out, "The capture (safetensors)");
  return {sub, [o, &global] { return runInspect(*o, global); }};
}

}  // namespace tessera::cli
