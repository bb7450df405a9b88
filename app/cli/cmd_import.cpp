// SPDX-License-Identifier: Apache-2.0
// tessera-cli import [--from auto|KIND|autoencoder] --in FILE --out MODEL [--preset NAME | --heads N]
//                    [--autoencoder AE] [--scale-factor S] [--shift-factor S]
// Which backbones and autoencoders import, how each recognises its checkpoints and what
// it derives from them are the registries' (models/registry.h, BackboneImporter;
// models/autoencoders/autoencoder.h): this file names none.
#include "app/cli/command.h"
#include "engine/checkpoint_import.h"
#include "engine/model_file.h"
#include "models/registry.h"
#include "models/state_dict.h"

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
  double scaleFactor = 0, shiftFactor = 0;
  CLI::Option* scaleOption = nullptr;
  CLI::Option* shiftOption = nullptr;
};

std::string joined(const std::vector<std::string>& words, const std::string& separator = ", ") {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : separator) + w;
  return out;
}

/// auto, every kind with an importer, then autoencoder.
std::string knownSources() {
  std::vector<std::string> names{kAuto};
  for (const auto& n : backboneRegistry().importerNames()) names.push_back(n);
  names.push_back(kAutoencoder);
  return joined(names);
}

AutoencoderImportOptions autoencoderOptions(const ImportOptions& o) {
  AutoencoderImportOptions a;
  if (o.scaleOption && *o.scaleOption) a.scaleFactor = o.scaleFactor;
  if (o.shiftOption && *o.shiftOption) a.shiftFactor = o.shiftFactor;
  a.key = o.key;
  return a;
}

/// --from autoencoder: an official autoencoder checkpoint → a Tessera autoencoder file.
CommandResult runImportAutoencoder(const ImportOptions& o, const NamedTensors& tensors, const GlobalOptions& global) {
  auto contents = importAutoencoder(o.in, tensors, autoencoderOptions(o));
  if (!contents) return badInput(contents.error().message());
  for (const auto& note : contents->notes) spdlog::info("{}", note);
  std::int64_t parameters = 0;
  for (const auto& [name, t] : contents->weights) parameters += t.numel();
  if (auto ok = writeAutoencoderFile(o.out, contents->description, contents->weights); !ok)
    return runtimeFailure(ok.error().message());
  nlohmann::json summary{{"event", "imported"},
                         {"out", o.out},
                         {"autoencoder", contents->description["kind"]},
                         {"layout", contents->description["source"]["layout"]},
                         {"parameters", parameters},
                         {"scale_factor", contents->description["scale_factor"]},
                         {"config", contents->description["config"]}};
  std::cout << summary.dump(global.json ? -1 : 2) << std::endl;
  return {};
}

/// The kind --from names, or the one the registry recognises in the tensors.
tl::expected<std::string, CommandError> chooseKind(const ImportOptions& o, const NamedTensors& sd) {
  if (o.from != kAuto) return o.from;
  const std::string file = std::filesystem::path(o.in).filename().string();
  const auto fits = backboneRegistry().recognise(shapesOf(stripWrapperPrefixes(sd)), file);
  if (fits.empty())
    return badInput(o.in +
                    ": no backbone recognises these tensors as its reference's state dict; give --from (one of " +
                    joined(backboneRegistry().importerNames()) + ") to see what is missing");
  if (fits.size() > 1) {
    std::vector<std::string> choices;
    for (const auto& n : fits) choices.push_back("--from " + n);
    return badInput(o.in + ": the tensors fit " + joined(fits, " and ") +
                    " alike (one network: its weights cannot tell how it was trained, nor does the file name); give " +
                    joined(choices, " or "));
  }
  spdlog::info("{}: recognised as a {} checkpoint (--from {})", file, fits.front(), fits.front());
  return fits.front();
}

CommandResult runImport(const ImportOptions& o, const GlobalOptions& global) {
  const BackboneRegistry& registry = backboneRegistry();
  if (o.from != kAuto && o.from != kAutoencoder) {
    const BackboneEntry* named = registry.find(o.from);
    if (!named || !named->importer)
      return badInput("import: --from '" + o.from +
                      "' is not a backbone that imports checkpoints (known: " + knownSources() + ")");
  }
  std::error_code ec;
  if (!std::filesystem::exists(o.in, ec)) return badInput(o.in + ": no such file");
  if (auto ok = refuseOverwritingInputs({{"--out", o.out}}, {{"--in", o.in}}); !ok) return ok;
  if (!o.autoencoder.empty()) {
    if (auto ok = refuseOverwritingInputs({{"--out", o.out}}, {{"--autoencoder", o.autoencoder}}); !ok) return ok;
    if (o.from == kAutoencoder)
      return badInput(
          "--autoencoder goes with a backbone import (--from dit, sit, fit, nit or auto), not --from autoencoder");
  }
  auto read = readCheckpointStateDict(o.in, o.key);
  if (!read) return badInput(read.error().message());
  auto sd = std::make_optional(std::make_pair(std::move(read->tensors), read->container));
  if (o.from == kAutoencoder) return runImportAutoencoder(o, sd->first, global);
  if (o.from == kAuto && o.autoencoder.empty() &&
      backboneRegistry().recognise(shapesOf(stripWrapperPrefixes(sd->first))).empty() && holdsAutoencoder(sd->first)) {
    spdlog::info("{}: recognised as an autoencoder (--from autoencoder)",
                 std::filesystem::path(o.in).filename().string());
    return runImportAutoencoder(o, sd->first, global);
  }
  if ((o.scaleOption && *o.scaleOption) || (o.shiftOption && *o.shiftOption)) {
    if (o.autoencoder.empty())
      return badInput(
          "--scale-factor and --shift-factor belong to an autoencoder: give --autoencoder, or --from autoencoder");
  }
  auto kind = chooseKind(o, sd->first);
  if (!kind) return tl::unexpected<CommandError>(kind.error());
  const BackboneEntry& entry = *registry.find(*kind);

  ImportRequest request;
  if (!o.preset.empty()) request.preset = o.preset;
  if (o.heads > 0) request.heads = o.heads;
  if (o.numClasses > 0) request.numClasses = o.numClasses;
  if (o.inChannels > 0) request.inChannels = o.inChannels;
  auto imported = entry.importer.convert(sd->first, request);
  if (!imported) return badInput(o.in + ": " + imported.error().message());
  std::optional<AutoencoderContents> autoencoder;
  if (!o.autoencoder.empty()) {
    auto ae = readAutoencoder(o.autoencoder, autoencoderOptions(o));
    if (!ae) return badInput("--autoencoder: " + ae.error().message());
    for (const auto& note : ae->notes) spdlog::info("autoencoder: {}", note);
    const std::int64_t latent = ae->description["config"].value("embed_dim", std::int64_t{0});
    const std::int64_t channels = imported->config.value("in_channels", latent);
    if (latent != channels)
      return badInput("--autoencoder " + o.autoencoder + " makes " + std::to_string(latent) +
                      "-channel latents, but the " + *kind + " backbone of " + o.in + " takes " +
                      std::to_string(channels) + " channels");
    autoencoder = std::move(*ae);
  }
  for (const auto& note : imported->notes) spdlog::info("{}", note);
  std::int64_t parameters = 0;
  for (const auto& [name, t] : imported->weights) parameters += t.numel();

  nlohmann::json description;
  description["backbone"] = {{"kind", *kind}, {"config", imported->config}};
  description["process"] = imported->process;
  description["classes"] = {{"count", imported->numClasses}, {"null_class", imported->nullClass}};
  description["source"] = {{"imported_from", *kind},
                           {"file", std::filesystem::path(o.in).filename().string()},
                           {"state_dict", sd->second},
                           {"preset", o.preset},
                           {"notes", imported->notes}};
  NamedTensors weights = std::move(imported->weights);
  if (autoencoder) {
    // One file holds backbone and autoencoder: a model that is moved, copied or shared
    // keeps working, as a Stable Diffusion checkpoint with its VAE does.
    description["autoencoder"] = autoencoder->description;
    description["data"] = {{"kind", "latent"}, {"channels", autoencoder->description["config"].value("embed_dim", 0)}};
    for (auto& [name, t] : autoencoder->weights) weights.emplace_back(kAutoencoderTensorPrefix + name, std::move(t));
  }
  if (auto ok = writeModelFile(o.out, description, weights); !ok) return runtimeFailure(ok.error().message());
  nlohmann::json summary{{"event", "imported"},
                         {"out", o.out},
                         {"backbone", *kind},
                         {"parameters", parameters},
                         {"config", imported->config}};
  if (autoencoder)
    summary["autoencoder"] = {
        {"kind", autoencoder->description["kind"]},
        {"scale_factor", autoencoder->description["scale_factor"]},
        {"downsampling",
         std::int64_t{1} << (autoencoder->description["config"].value("ch_mult", nlohmann::json::array()).size() - 1)}};
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
  sub->add_option("--heads", o->heads, "Attention heads (instead of --preset)")->check(CLI::Range(1, 1024));
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
