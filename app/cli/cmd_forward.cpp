// SPDX-License-Identifier: Apache-2.0
// tessera-cli forward --model MODEL --inputs IN.safetensors --out OUT.safetensors [--cfg S]
#include "app/cli/command.h"
#include "models/dit/dit.h"
#include "models/model_file.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <sstream>

namespace tessera::cli {
namespace {

struct ForwardOptions {
  std::string model, inputs, out;
  double cfg = std::nan("");
};

std::string shape(const at::Tensor& t) {
  std::ostringstream o;
  o << t.sizes();
  return o.str();
}

CommandResult runForward(const ForwardOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&start] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  auto loaded = loadModelFile(o.model);
  if (!loaded) return badInput(loaded.error().message());
  auto* dit = dynamic_cast<DiTImpl*>(loaded->backbone.get());
  if (!dit) return badInput(o.model + ": forward supports the dit and sit backbones so far");
  const DiTConfig& c = dit->config();

  auto in = SafetensorsFile::open(o.inputs);
  if (!in) return badInput(in.error().message());
  for (const char* name : {"x", "t", "y"})
    if (!in->contains(name)) return badInput(o.inputs + ": tensor '" + name + "' is missing (expected x, t and y)");
  const at::Tensor x = *in->load("x"), t = *in->load("t"), y = *in->load("y");
  const std::string where = o.inputs + ": ";
  if (x.dim() != 4 || !at::isFloatingType(x.scalar_type()))
    return badInput(where + "tensor 'x': expected floats of shape (B, C, H, W), got " + shape(x));
  const auto B = x.size(0);
  if (x.size(1) != c.inChannels) return badInput(where + "tensor 'x': expected " + std::to_string(c.inChannels) + " channels, got " + std::to_string(x.size(1)));
  if (x.size(2) % c.patchSize || x.size(3) % c.patchSize || x.size(2) == 0 || x.size(3) == 0)
    return badInput(where + "tensor 'x': height and width " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                    " must be positive multiples of the patch size " + std::to_string(c.patchSize));
  if (t.dim() != 1 || t.size(0) != B) return badInput(where + "tensor 't': expected shape (" + std::to_string(B) + "), got " + shape(t));
  if (y.dim() != 1 || y.size(0) != B || at::isFloatingType(y.scalar_type()))
    return badInput(where + "tensor 'y': expected integers of shape (" + std::to_string(B) + "), got " + shape(y));
  const std::int64_t maxLabel = c.classDropoutProb > 0 ? c.numClasses : c.numClasses - 1;
  if (B && (y.min().item<std::int64_t>() < 0 || y.max().item<std::int64_t>() > maxLabel))
    return badInput(where + "tensor 'y': labels must lie in [0, " + std::to_string(maxLabel) + "]" +
                    (c.classDropoutProb > 0 ? " (" + std::to_string(c.numClasses) + " is the null class)" : std::string()));
  const bool withCfg = !std::isnan(o.cfg);
  if (withCfg && (!std::isfinite(o.cfg) || B % 2)) return badInput("--cfg needs a finite scale and an even batch ([cond; uncond])");

  spdlog::debug("model loaded in {:.2f} s", seconds());
  NamedTensors outputs;
  {
    c10::InferenceMode inference;
    const at::Tensor xf = x.to(at::kFloat);
    outputs.emplace_back("output", dit->forwardTensors(xf, t, y.to(at::kLong)).contiguous());
    if (withCfg) outputs.emplace_back("output_cfg", dit->forwardWithCfg(xf, t, y.to(at::kLong), o.cfg).contiguous());
  }
  spdlog::debug("forward done at {:.2f} s", seconds());
  if (auto ok = writeSafetensors(o.out, outputs); !ok) return runtimeFailure(ok.error().message());
  return {};
}

}  // namespace

Command addForwardCommand(CLI::App& app, const GlobalOptions&) {
  auto* sub = app.add_subcommand("forward", "One forward pass of a model on given tensors (x, t, y)");
  auto o = std::make_shared<ForwardOptions>();
  sub->add_option("--model", o->model, "Tessera model file")->required();
  sub->add_option("--inputs", o->inputs, "safetensors with x (B,C,H,W), t (B), y (B)")->required();
  sub->add_option("--out", o->out, "safetensors to write: output (and output_cfg with --cfg)")->required();
  sub->add_option("--cfg", o->cfg, "Also write output_cfg: the reference forward_with_cfg at this scale");
  return {sub, [o]() { return runForward(*o); }};
}

}  // namespace tessera::cli
