// SPDX-License-Identifier: Apache-2.0
// tessera-cli encode --model AE --inputs X.safetensors|A.png [B.png …] --out Z.safetensors
// tessera-cli decode --model AE --inputs Z.safetensors --out X.safetensors|X.png [--no-quantize]
// AE: a Tessera autoencoder file, a model file that holds one, or an official autoencoder
// checkpoint (imported on the fly, as `import --from autoencoder` would).
#include "app/cli/command.h"
#include "core/formats/png.h"
#include "core/formats/safetensors.h"
#include "engine/checkpoint_import.h"
#include "engine/generated_image.h"
#include "engine/model_file.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>

namespace tessera::cli {
namespace {

struct AutoencodeOptions {
  std::string model, out;
  std::vector<std::string> inputs;
  bool noQuantize = false;
  std::int64_t batch = 4, tile = 64, overlap = 8;
};

bool endsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// The autoencoder `--model` names (see the file comment).
Result<LoadedAutoencoder> loadAutoencoderArgument(const std::string& path) {
  std::vector<std::string> notes;
  auto ae = loadAnyAutoencoder(path, &notes);
  for (const auto& note : notes) spdlog::info("{}", note);
  return ae;
}

/// PNG → (C, H, W) in [-1, 1] with the channels the autoencoder takes (grey repeated to
/// RGB, alpha dropped; RGB to grey only for a 1-channel autoencoder).
Result<at::Tensor> readPicture(const std::string& path, std::int64_t channels) {
  auto png = readPng(path);
  if (!png) return fail(png.error());
  const Image8& img = png->image;
  at::Tensor hwc =
      at::from_blob(const_cast<std::uint8_t*>(img.pixels.data()), {img.height, img.width, img.channels}, at::kByte)
          .to(at::kFloat)
          .div(127.5)
          .sub(1.0);
  if (img.channels == 4) hwc = hwc.narrow(2, 0, 3);
  if (hwc.size(2) == 1 && channels == 3) hwc = hwc.expand({img.height, img.width, 3});
  if (hwc.size(2) == 3 && channels == 1) hwc = hwc.mean(2, true);
  if (hwc.size(2) != channels)
    return fail(path + ": " + std::to_string(hwc.size(2)) + " channels, the autoencoder takes " +
                std::to_string(channels));
  return hwc.permute({2, 0, 1}).contiguous();
}

Result<at::Tensor> readTensor(const std::string& path, const std::vector<std::string>& names, std::string& found) {
  auto file = SafetensorsFile::open(path);
  if (!file) return fail(file.error());
  std::string listed;
  for (const auto& name : names) {
    if (file->contains(name)) {
      found = name;
      auto t = file->load(name);
      if (!t) return fail(t.error());
      return t->to(at::kFloat);
    }
    listed += (listed.empty() ? "" : ", ") + name;
  }
  std::string present;
  for (const auto& e : file->entries()) present += (present.empty() ? "" : ", ") + e.name;
  return fail(path + ": no tensor " + listed + " (it holds: " + (present.empty() ? "nothing" : present) + ")");
}

CommandResult checkLayout(const at::Tensor& t, std::int64_t channels, const std::string& what,
                          const std::string& where) {
  if (t.dim() != 4 || t.size(1) != channels || t.size(0) < 1 || t.size(2) < 1 || t.size(3) < 1) {
    std::string shape;
    for (auto d : t.sizes()) shape += (shape.empty() ? "" : "x") + std::to_string(d);
    return badInput(where + ": " + what + " is " + shape + ", expected N x " + std::to_string(channels) + " x H x W");
  }
  return {};
}

CommandResult runEncode(const AutoencodeOptions& o, const GlobalOptions& global) {
  if (!endsWith(o.out, ".safetensors")) return badInput("--out " + o.out + ": encode writes a .safetensors file");
  std::vector<PathOption> inputs{{"--model", o.model}};
  for (const auto& in : o.inputs) inputs.push_back({"--inputs", in});
  if (auto ok = refuseOverwritingInputs({{"--out", o.out}}, inputs); !ok) return ok;
  auto ae = loadAutoencoderArgument(o.model);
  if (!ae) return badInput(ae.error().message());
  AutoencoderImpl& net = *ae->network;
  at::Tensor x;
  if (o.inputs.size() == 1 && endsWith(o.inputs[0], ".safetensors")) {
    std::string name;
    auto t = readTensor(o.inputs[0], {"x"}, name);
    if (!t) return badInput(t.error().message());
    x = *t;
  } else {
    std::vector<at::Tensor> pictures;
    for (const auto& path : o.inputs) {
      if (!endsWith(path, ".png"))
        return badInput("--inputs " + path + ": expected PNG files or one .safetensors file with tensor x");
      auto p = readPicture(path, net.imageChannels());
      if (!p) return badInput(p.error().message());
      if (!pictures.empty() && p->sizes() != pictures.front().sizes())
        return badInput(path + ": " + std::to_string(p->size(2)) + "x" + std::to_string(p->size(1)) + ", but " +
                        o.inputs[0] + " is " + std::to_string(pictures.front().size(2)) + "x" +
                        std::to_string(pictures.front().size(1)) + ": pictures encoded together must have one size");
      pictures.push_back(*p);
    }
    x = at::stack(pictures, 0);
  }
  if (auto ok = checkLayout(x, net.imageChannels(), "x", o.inputs[0]); !ok) return ok;
  const std::int64_t f = net.downsampling();
  if (x.size(2) % f || x.size(3) % f)
    return badInput(o.inputs[0] + ": " + std::to_string(x.size(3)) + "x" + std::to_string(x.size(2)) +
                    " is not a multiple of the autoencoder's downsampling " + std::to_string(f) +
                    " (nearest: " + std::to_string(x.size(3) / f * f) + "x" + std::to_string(x.size(2) / f * f) +
                    " or " + std::to_string((x.size(3) + f - 1) / f * f) + "x" +
                    std::to_string((x.size(2) + f - 1) / f * f) + ")");
  c10::InferenceMode inference;
  std::vector<Encoded> parts;
  for (std::int64_t s = 0; s < x.size(0); s += o.batch)
    parts.push_back(net.encode(x.narrow(0, s, std::min(o.batch, x.size(0) - s))));
  auto gather = [&](at::Tensor Encoded::*field) {
    std::vector<at::Tensor> ts;
    for (const auto& p : parts) ts.push_back(p.*field);
    return at::cat(ts, 0).contiguous();
  };
  NamedTensors tensors;
  if (net.kind() == "vq") {
    tensors = {{"h", gather(&Encoded::h)}, {"quant", gather(&Encoded::quant)}, {"indices", gather(&Encoded::indices)}};
  } else if (net.kind() == "dc") {
    tensors = {{"z", gather(&Encoded::mean)}};  // deterministic: the latent itself
  } else {
    tensors = {{"mean", gather(&Encoded::mean)}, {"std", gather(&Encoded::std)}};
  }
  const nlohmann::json meta{
      {"kind", net.kind()}, {"scale_factor", ae->scaling.scale}, {"shift_factor", ae->scaling.shift}};
  if (auto ok = writeSafetensors(o.out, tensors, {{"tessera.encoded", meta.dump()}}); !ok)
    return runtimeFailure(ok.error().message());
  nlohmann::json summary{{"event", "encoded"}, {"out", o.out}, {"images", x.size(0)}, {"kind", net.kind()}};
  nlohmann::json shapes;
  for (const auto& [name, t] : tensors) shapes[name] = t.sizes().vec();
  summary["tensors"] = shapes;
  std::cout << summary.dump(global.json ? -1 : 2) << std::endl;
  return {};
}

CommandResult runDecode(const AutoencodeOptions& o, const GlobalOptions& global) {
  const bool png = endsWith(o.out, ".png");
  if (!png && !endsWith(o.out, ".safetensors"))
    return badInput("--out " + o.out + ": decode writes a .safetensors file or .png pictures");
  if (o.inputs.size() != 1 || !endsWith(o.inputs[0], ".safetensors"))
    return badInput("--inputs: decode reads one .safetensors file with tensor z");
  if (auto ok = refuseOverwritingInputs({{"--out", o.out}}, {{"--model", o.model}, {"--inputs", o.inputs[0]}}); !ok)
    return ok;
  auto ae = loadAutoencoderArgument(o.model);
  if (!ae) return badInput(ae.error().message());
  AutoencoderImpl& net = *ae->network;
  std::string name;
  // z: the autoencoder's own latent. Also read: what encode wrote (mean, or h for VQ) and
  // what `sample --keep-latents` wrote (latents, in the backbone's scale, mapped back).
  auto z = readTensor(o.inputs[0], {"z", "mean", "h", "latents"}, name);
  if (!z) return badInput(z.error().message());
  if (name != "z")
    spdlog::info("{}: decoding tensor '{}'{}", o.inputs[0], name,
                 name == "latents" ? " (divided by the scale factor)" : "");
  at::Tensor latent = name == "latents" ? ae->scaling.fromBackbone(*z) : *z;
  if (auto ok = checkLayout(latent, net.latentChannels(), name, o.inputs[0]); !ok) return ok;
  c10::InferenceMode inference;
  std::vector<at::Tensor> parts;
  for (std::int64_t s = 0; s < latent.size(0); s += o.batch)
    parts.push_back(
        decodeTiled(net, latent.narrow(0, s, std::min(o.batch, latent.size(0) - s)), o.tile, o.overlap, !o.noQuantize));
  const at::Tensor x = at::cat(parts, 0).contiguous();
  nlohmann::json files = nlohmann::json::array();
  if (png) {
    if (x.size(1) != 1 && x.size(1) != 3)
      return badInput("--out " + o.out + ": " + std::to_string(x.size(1)) + "-channel images cannot be PNGs");
    const std::string stem = o.out.substr(0, o.out.size() - 4);
    for (std::int64_t i = 0; i < x.size(0); ++i) {
      const std::string path = x.size(0) == 1 ? o.out : stem + "_" + std::to_string(i) + ".png";
      if (auto ok = writePng(path, toImage8(x[i])); !ok) return runtimeFailure(ok.error().message());
      files.push_back(path);
    }
  } else {
    if (auto ok = writeSafetensors(o.out, {{"x", x}}); !ok) return runtimeFailure(ok.error().message());
    files.push_back(o.out);
  }
  nlohmann::json summary{
      {"event", "decoded"}, {"files", files}, {"images", x.size(0)}, {"size", {x.size(3), x.size(2)}}};
  std::cout << summary.dump(global.json ? -1 : 2) << std::endl;
  return {};
}

void addCommon(CLI::App* sub, AutoencodeOptions& o) {
  sub->add_option("--model", o.model,
                  "Autoencoder: a Tessera autoencoder file, a model file holding one, or an official checkpoint")
      ->required();
  sub->add_option("--batch", o.batch, "Images per pass")->check(CLI::Range(1, 4096))->capture_default_str();
}

}  // namespace

void addDecodeTileOptions(CLI::App* sub, std::int64_t& tile, std::int64_t& overlap) {
  sub->add_option("--tile", tile, "Decode in tiles of this many latent cells (0 = whole)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  sub->add_option("--overlap", overlap, "Tile overlap in latent cells")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
}

Command addEncodeCommand(CLI::App& app, const GlobalOptions& global) {
  auto* sub = app.add_subcommand(
      "encode", "Encode pictures with an autoencoder (KL: mean, std; VQ: h, quant, indices; DC-AE: z)");
  auto o = std::make_shared<AutoencodeOptions>();
  addCommon(sub, *o);
  sub->add_option("--inputs", o->inputs,
                  "PNG files (one size), or one .safetensors file with x (N x C x H x W in [-1, 1])")
      ->required();
  sub->add_option("--out", o->out, ".safetensors file to write")->required();
  return {sub, [o, &global]() { return runEncode(*o, global); }};
}

Command addDecodeCommand(CLI::App& app, const GlobalOptions& global) {
  auto* sub = app.add_subcommand("decode", "Decode latents with an autoencoder into pictures");
  auto o = std::make_shared<AutoencodeOptions>();
  addCommon(sub, *o);
  sub->add_option(
         "--inputs", o->inputs,
         ".safetensors with z (N x C x h x w; also read: mean or h from encode, latents from sample --keep-latents)")
      ->required();
  sub->add_option("--out", o->out, "x.safetensors (tensor x) or NAME.png (NAME_i.png for several)")->required();
  sub->add_flag("--no-quantize", o->noQuantize, "VQ: decode z as it is instead of its nearest codebook vectors");
  addDecodeTileOptions(sub, o->tile, o->overlap);
  return {sub, [o, &global]() { return runDecode(*o, global); }};
}

}  // namespace tessera::cli
