// SPDX-License-Identifier: Apache-2.0
// tessera-cli import [--from auto|KIND|autoencoder] --in FILE --out MODEL [--preset NAME | --heads N]
//                    [--autoencoder AE] [--scale-factor S] [--shift-factor S]
// Which backbones and autoencoders import, how each recognises its checkpoints and what
// it derives from them are the registries' (models/registry.h, BackboneImporter;
// models/autoencoders/autoencoder.h): this file names none.
#include "app/cli/command.h"
#include "engine/checkpoint_import.h"
#include "engine/model_file.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>

namespace tessera::cli {
namespace {

constexpr const char* kAuto = "auto";
constexpr const char* kAutoencoder = "autoencoder";

struct ImportOptions {
  std::string from = kAuto, in, out, preset, key, autoencoder;
  std::int64_t heads = 0, numClasses = 0, inChannels = 0;
  std::int64_t headChannels = 0, headsUpsample = 0, imageSize = 0;
  bool newAttentionOrder = false;
  std::string attentionResolutions;
  CLI::Option* newOrderOption = nullptr;
  double scaleFactor = 0, shiftFactor = 0;
  CLI::Option* scaleOption = nullptr;
  CLI::Option* shiftOption = nullptr;
};

std::string joined(const std::vector<std::string>& words, const std::string& separator = ", ") {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : separator) + w;
  return out;
}

std::string knownSources() { return joined(importSources()); }

CommandResult runImport(const ImportOptions& o, const GlobalOptions& global) {
  std::error_code ec;
  if (!std::filesystem::exists(o.in, ec)) return badInput(o.in + ": no such file");
  if (auto ok = refuseOverwritingInputs({{"--out", o.out}}, {{"--in", o.in}, {"--autoencoder", o.autoencoder}}); !ok)
    return ok;
  ModelImportRequest r;
  r.in = o.in;
  r.from = o.from;
  r.key = o.key;
  r.preset = o.preset;
  r.heads = o.heads;
  r.numClasses = o.numClasses;
  r.inChannels = o.inChannels;
  if (o.headChannels > 0) r.headChannels = o.headChannels;
  if (o.headsUpsample > 0) r.headsUpsample = o.headsUpsample;
  if (o.imageSize > 0) r.imageSize = o.imageSize;
  if (o.newOrderOption && *o.newOrderOption) r.newAttentionOrder = o.newAttentionOrder;
  if (!o.attentionResolutions.empty()) r.attentionResolutions = o.attentionResolutions;
  r.autoencoder = o.autoencoder;
  if (o.scaleOption && *o.scaleOption) r.scaleFactor = o.scaleFactor;
  if (o.shiftOption && *o.shiftOption) r.shiftFactor = o.shiftFactor;
  auto imported = importModel(r);
  if (!imported) return badInput(imported.error().message());
  if (!imported->recognisedAs.empty())
    spdlog::info(
        "{}: recognised as {} (--from {})", std::filesystem::path(o.in).filename().string(),
        imported->recognisedAs == kAutoencoder ? "an autoencoder" : "a " + imported->recognisedAs + " checkpoint",
        imported->recognisedAs);
  for (const auto& note : imported->notes) spdlog::info("{}", note);
  if (auto ok = writeImport(o.out, *imported); !ok) return runtimeFailure(ok.error().message());
  nlohmann::json summary = imported->summary();
  summary["out"] = o.out;
  std::cout << summary.dump(global.json ? -1 : 2) << std::endl;
  return {};
}

}  // namespace

Command addImportCommand(CLI::App& app, const GlobalOptions& global) {
  auto* sub = app.add_subcommand("import", "Convert an official checkpoint into a Tessera model file");
  auto o = std::make_shared<ImportOptions>();
  sub->add_option("--from", o->from,
                  "Which reference the checkpoint comes from: " + knownSources() +
                      " (auto: recognised by its tensors; kinds sharing one network by their name in the file name)")
      ->capture_default_str();
  sub->add_option("--in", o->in, "Checkpoint: torch.save (.pt/.pth) or .safetensors")->required();
  sub->add_option("--out", o->out, "Model file to write (.safetensors)")->required();
  sub->add_option("--preset", o->preset,
                  "Named configuration for what shapes cannot tell (the presets: tessera-cli info --backbones)");
  sub->add_option("--heads,--num-heads", o->heads, "Attention heads (instead of --preset)")->check(CLI::Range(1, 1024));
  // The U-Net's (LDM, ADM): guided-diffusion's script flags, with dashes.
  sub->add_option("--num-head-channels", o->headChannels, "U-Net: channels per attention head (instead of --heads)")
      ->check(CLI::Range(1, 1 << 14));
  sub->add_option("--num-heads-upsample", o->headsUpsample,
                  "U-Net: heads of the decoder's attention (default: --heads)")
      ->check(CLI::Range(1, 1024));
  o->newOrderOption = sub->add_option("--use-new-attention-order", o->newAttentionOrder,
                                      "U-Net: q, k, v split before the heads (true/false; ADM-64 uses it)");
  sub->add_option("--image-size", o->imageSize, "U-Net: the side it was trained at (pixels; latent cells for LDM)")
      ->check(CLI::Range(1, 1 << 16));
  sub->add_option("--attention-resolutions", o->attentionResolutions,
                  "U-Net: where it has attention, as guided-diffusion's scripts say it (pixel sides, \"32,16,8\"); "
                  "checked against the weights");
  sub->add_option("--num-classes", o->numClasses, "Classes without the null class (default: table rows - 1)")
      ->check(CLI::Range(1, 1 << 24));
  sub->add_option("--in-channels", o->inChannels,
                  "Latent channels, for a backbone whose weights give only the token width p²·C (default 4)")
      ->check(CLI::Range(1, 1024));
  sub->add_option("--key", o->key, "State dict inside the checkpoint (default: top level, else ema, model, …)");
  sub->add_option(
      "--autoencoder", o->autoencoder,
      "A latent backbone's autoencoder, stored in the model file: a Tessera autoencoder file or an official one "
      "(LDM/Stable Diffusion .ckpt, diffusers .safetensors)");
  o->scaleOption =
      sub->add_option("--scale-factor", o->scaleFactor,
                      "The autoencoder's latent scale (backbone latent = (z - shift) * scale; default: from the "
                      "checkpoint or config.json beside it, 0.18215 for Stable Diffusion's VAE)");
  o->shiftOption = sub->add_option("--shift-factor", o->shiftFactor, "The autoencoder's latent shift (default 0)");
  return {sub, [o, &global]() { return runImport(*o, global); }};
}

}  // namespace tessera::cli
