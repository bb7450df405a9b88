// SPDX-License-Identifier: Apache-2.0
// tessera-cli import [--from auto|KIND] --in FILE --out MODEL [--preset NAME | --heads N]
// Which backbones import, how each recognises its checkpoints and what it derives from
// them are the registry's (models/registry.h, BackboneImporter): this file names none.
#include "app/cli/command.h"
#include "core/formats/tensor_file.h"
#include "core/formats/torch_checkpoint.h"
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

struct ImportOptions {
  std::string from = kAuto, in, out, preset, key;
  std::int64_t heads = 0, numClasses = 0, inChannels = 0;
};

std::string joined(const std::vector<std::string>& words, const std::string& separator = ", ") {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : separator) + w;
  return out;
}

/// auto, then every kind with an importer.
std::string knownSources() {
  std::vector<std::string> names{kAuto};
  for (const auto& n : backboneRegistry().importerNames()) names.push_back(n);
  return joined(names);
}

/// Reads a reference checkpoint: torch.save archives and safetensors files alike.
Result<std::pair<NamedTensors, std::string>> readStateDict(const std::string& path, const std::string& key) {
  const TensorFileFormat format = detectTensorFileFormat(path);
  if (format == TensorFileFormat::TorchZip || format == TensorFileFormat::LegacyTorch) {
    auto ckpt = readTorchCheckpoint(path);
    if (!ckpt) return fail(ckpt.error());
    auto container = chooseStateDict(*ckpt, key);
    if (!container) return fail(container.error());
    auto sd = extractStateDict(*ckpt, *container);
    if (!sd) return fail(sd.error());
    return std::make_pair(*sd, *container);
  }
  auto file = SafetensorsFile::open(path);
  if (!file) return fail(file.error());
  auto all = file->loadAll();
  if (!all) return fail(all.error());
  return std::make_pair(NamedTensors(all->begin(), all->end()), std::string());
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
  if (o.from != kAuto) {
    const BackboneEntry* named = registry.find(o.from);
    if (!named || !named->importer)
      return badInput("import: --from '" + o.from +
                      "' is not a backbone that imports checkpoints (known: " + knownSources() + ")");
  }
  std::error_code ec;
  if (!std::filesystem::exists(o.in, ec)) return badInput(o.in + ": no such file");
  if (auto ok = refuseOverwritingInputs({{"--out", o.out}}, {{"--in", o.in}}); !ok) return ok;
  auto sd = readStateDict(o.in, o.key);
  if (!sd) return badInput(sd.error().message());
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
  if (auto ok = writeModelFile(o.out, description, imported->weights); !ok) return runtimeFailure(ok.error().message());
  nlohmann::json summary{{"event", "imported"},
                         {"out", o.out},
                         {"backbone", *kind},
                         {"parameters", parameters},
                         {"config", imported->config}};
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
  return {sub, [o, &global]() { return runImport(*o, global); }};
}

}  // namespace tessera::cli
