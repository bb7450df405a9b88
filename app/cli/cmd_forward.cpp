// SPDX-License-Identifier: Apache-2.0
// tessera-cli forward --model MODEL --inputs IN.safetensors --out OUT.safetensors [--cfg S]
// Inputs: x (B, C, H, W), t, y; or x.0, x.1, … (C, H_i, W_i) with t and y one entry per image.
#include "app/cli/command.h"
#include "engine/model_file.h"
#include "models/common/packing.h"
#include "models/dit/dit.h"

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

/// Checks labels against the backbone's classes.
std::string badLabels(const at::Tensor& y, const Capabilities& caps) {
  const std::int64_t maxLabel = caps.nullClass ? caps.numClasses : caps.numClasses - 1;
  if (y.numel() && (y.min().item<std::int64_t>() < 0 || y.max().item<std::int64_t>() > maxLabel))
    return "labels must lie in [0, " + std::to_string(maxLabel) + "]" +
           (caps.nullClass ? " (" + std::to_string(caps.numClasses) + " is the null class)" : std::string());
  return {};
}

/// Several images of their own sizes: x.0, x.1, … (C, H_i, W_i), t and y with one entry
/// each. Backbones that take packs get one packed forward; the others one per image.
CommandResult runForwardList(const ForwardOptions& o, const LoadedModel& loaded, SafetensorsFile& in) {
  const Capabilities caps = loaded.backbone->capabilities();
  const std::string where = o.inputs + ": ";
  std::vector<at::Tensor> images;
  for (std::int64_t i = 0; in.contains("x." + std::to_string(i)); ++i) images.push_back(*in.load("x." + std::to_string(i)));
  const auto B = static_cast<std::int64_t>(images.size());
  for (const char* name : {"t", "y"})
    if (!in.contains(name)) return badInput(where + "tensor '" + name + "' is missing (expected x.0 … x." + std::to_string(B - 1) + ", t and y)");
  const at::Tensor t = *in.load("t"), y = *in.load("y");
  std::vector<std::int64_t> sizes;
  for (std::int64_t i = 0; i < B; ++i) {
    const at::Tensor& x = images[static_cast<std::size_t>(i)];
    const std::string name = "tensor 'x." + std::to_string(i) + "': ";
    if (x.dim() != 3 || !at::isFloatingType(x.scalar_type()))
      return badInput(where + name + "expected floats of shape (C, H, W), got " + shape(x));
    if (x.size(0) != caps.inChannels)
      return badInput(where + name + "expected " + std::to_string(caps.inChannels) + " channels, got " + std::to_string(x.size(0)));
    const std::int64_t m = caps.sizeMultiple;
    if (x.size(1) % m || x.size(2) % m || x.size(1) == 0 || x.size(2) == 0)
      return badInput(where + name + "height and width " + std::to_string(x.size(1)) + "x" + std::to_string(x.size(2)) +
                      " must be positive multiples of the patch size " + std::to_string(m));
    sizes.push_back(x.size(1));
    sizes.push_back(x.size(2));
  }
  if (t.dim() != 1 || t.size(0) != B) return badInput(where + "tensor 't': expected one entry per image, shape (" + std::to_string(B) + "), got " + shape(t));
  if (y.dim() != 1 || y.size(0) != B || at::isFloatingType(y.scalar_type()))
    return badInput(where + "tensor 'y': expected integers, one per image, shape (" + std::to_string(B) + "), got " + shape(y));
  if (auto bad = badLabels(y, caps); !bad.empty()) return badInput(where + "tensor 'y': " + bad);
  NamedTensors outputs;
  {
    c10::InferenceMode inference;
    std::vector<at::Tensor> outs;
    if (caps.packed) {
      BackboneInput input;
      std::vector<at::Tensor> floats;
      for (const auto& x : images) floats.push_back(x.to(at::kFloat));
      input.x = packImages(floats, caps.sizeMultiple);
      input.sizes = at::tensor(sizes, at::kLong).reshape({B, 2});
      input.t = t, input.y = y.to(at::kLong);
      GridSizes grids;
      for (std::int64_t i = 0; i < B; ++i) grids.emplace_back(sizes[2 * i] / caps.sizeMultiple, sizes[2 * i + 1] / caps.sizeMultiple);
      outs = unpackImages(loaded.backbone->forward(input).prediction, grids);
    } else {
      for (std::int64_t i = 0; i < B; ++i) {
        BackboneInput input;
        input.x = images[static_cast<std::size_t>(i)].to(at::kFloat).unsqueeze(0);
        input.t = t.narrow(0, i, 1), input.y = y.narrow(0, i, 1).to(at::kLong);
        outs.push_back(loaded.backbone->forward(input).prediction[0]);
      }
    }
    for (std::int64_t i = 0; i < B; ++i) outputs.emplace_back("output." + std::to_string(i), outs[static_cast<std::size_t>(i)].contiguous());
  }
  if (auto ok = writeSafetensors(o.out, outputs); !ok) return runtimeFailure(ok.error().message());
  return {};
}

CommandResult runForward(const ForwardOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&start] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  if (auto ok = refuseOverwritingInputs({{"--out", o.out}}, {{"--model", o.model}, {"--inputs", o.inputs}}); !ok)
    return ok;
  auto loaded = loadModelFile(o.model);
  if (!loaded) return badInput(loaded.error().message());
  auto in = SafetensorsFile::open(o.inputs);
  if (!in) return badInput(in.error().message());
  if (in->contains("x.0")) {
    if (!std::isnan(o.cfg)) return badInput("--cfg applies to a batch x (B, C, H, W) of one size, not to x.0, x.1, …");
    return runForwardList(o, *loaded, *in);
  }
  for (const char* name : {"x", "t", "y"})
    if (!in->contains(name)) return badInput(o.inputs + ": tensor '" + name + "' is missing (expected x, t and y, or x.0, x.1, …, t and y)");
  const at::Tensor x = *in->load("x"), t = *in->load("t"), y = *in->load("y");
  const std::string where = o.inputs + ": ";
  const Capabilities caps = loaded->backbone->capabilities();
  if (x.dim() != 4 || !at::isFloatingType(x.scalar_type()))
    return badInput(where + "tensor 'x': expected floats of shape (B, C, H, W), got " + shape(x));
  const auto B = x.size(0);
  if (x.size(1) != caps.inChannels) return badInput(where + "tensor 'x': expected " + std::to_string(caps.inChannels) + " channels, got " + std::to_string(x.size(1)));
  const std::int64_t m = caps.sizeMultiple;
  if (x.size(2) % m || x.size(3) % m || x.size(2) == 0 || x.size(3) == 0)
    return badInput(where + "tensor 'x': height and width " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                    " must be positive multiples of the patch size " + std::to_string(m));
  if (t.dim() != 1 || t.size(0) != B) return badInput(where + "tensor 't': expected shape (" + std::to_string(B) + "), got " + shape(t));
  if (y.dim() != 1 || y.size(0) != B || at::isFloatingType(y.scalar_type()))
    return badInput(where + "tensor 'y': expected integers of shape (" + std::to_string(B) + "), got " + shape(y));
  if (auto bad = badLabels(y, caps); !bad.empty()) return badInput(where + "tensor 'y': " + bad);
  const bool withCfg = !std::isnan(o.cfg);
  auto* dit = dynamic_cast<DiTImpl*>(loaded->backbone.get());
  if (withCfg && !dit) return badInput("--cfg reproduces DiT/SiT's forward_with_cfg; this model's guidance is the sampler's");
  if (withCfg && (!std::isfinite(o.cfg) || B % 2)) return badInput("--cfg needs a finite scale and an even batch ([cond; uncond])");

  spdlog::debug("model loaded in {:.2f} s", seconds());
  NamedTensors outputs;
  {
    c10::InferenceMode inference;
    const at::Tensor xf = x.to(at::kFloat);
    BackboneInput input;
    input.x = xf, input.t = t, input.y = y.to(at::kLong);
    outputs.emplace_back("output", loaded->backbone->forward(input).prediction.contiguous());
    if (withCfg) outputs.emplace_back("output_cfg", dit->forwardWithCfg(xf, t, y.to(at::kLong), o.cfg).contiguous());
  }
  spdlog::debug("forward done at {:.2f} s", seconds());
  if (auto ok = writeSafetensors(o.out, outputs); !ok) return runtimeFailure(ok.error().message());
  return {};
}

}  // namespace

Command addForwardCommand(CLI::App& app, const GlobalOptions&) {
  auto* sub = app.add_subcommand("forward", "One forward pass of a model on given tensors (x, t, y; or x.0, x.1, …, t, y)");
  auto o = std::make_shared<ForwardOptions>();
  sub->add_option("--model", o->model, "Tessera model file")->required();
  sub->add_option("--inputs", o->inputs, "safetensors with x (B,C,H,W), t (B), y (B); or images of their own sizes x.0, x.1, … (C,H_i,W_i) with t, y (one entry each)")->required();
  sub->add_option("--out", o->out, "safetensors to write: output (and output_cfg with --cfg), or output.0, output.1, …")->required();
  sub->add_option("--cfg", o->cfg, "Also write output_cfg: the reference forward_with_cfg at this scale");
  return {sub, [o]() { return runForward(*o); }};
}

}  // namespace tessera::cli
