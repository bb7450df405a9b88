// SPDX-License-Identifier: Apache-2.0
// tessera-cli import --from dit|sit|fit|nit --in FILE --out MODEL [--preset NAME | --heads N]
#include "app/cli/command.h"
#include "core/formats/tensor_file.h"
#include "core/formats/torch_checkpoint.h"
#include "core/process/process.h"
#include "models/dit/dit_import.h"
#include "models/fit/fit_import.h"
#include "engine/model_file.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>

namespace tessera::cli {
namespace {

struct ImportOptions {
  std::string from, in, out, preset, key;
  std::int64_t heads = 0, numClasses = 0, inChannels = 0;
};

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

nlohmann::json processFor(const std::string& family, const DiTConfig& c) {
  if (family == "sit")  // SiT's defaults (train.py, sample.py): linear path, velocity
    return InterpolantConfig::defaultsFor("linear", "velocity").toJson();
  GaussianDiffusionConfig d;  // DiT's create_diffusion(): 1000 linear steps, eps, learned range
  d.learnSigma = c.learnSigma;
  return d.toJson();
}

/// FiT and NiT: configuration from shapes, processes as their repositories train them.
CommandResult runFlexImport(const ImportOptions& o, const GlobalOptions& global, const NamedTensors& sd, const std::string& container) {
  FlexImportOptions options;
  if (!o.preset.empty()) options.preset = o.preset;
  if (o.heads > 0) options.heads = o.heads;
  if (o.numClasses > 0) options.numClasses = o.numClasses;
  if (o.inChannels > 0) options.inChannels = o.inChannels;
  nlohmann::json config, process;
  NamedTensors weights;
  std::vector<std::string> notes;
  std::int64_t parameters = 0, numClasses = 0;
  bool nullClass = false;
  if (o.from == "fit") {
    auto imported = importFiTStateDict(sd, options);
    if (!imported) return badInput(o.in + ": " + imported.error().message());
    const FiTConfig& c = imported->config;
    config = c.toJson(), weights = imported->weights, notes = imported->notes;
    parameters = c.parameterCount(), numClasses = c.numClasses, nullClass = c.classDropoutProb > 0;
    if (c.prediction == "velocity") {  // FiTv2: SiT's transport, linear path, logit-normal training times
      InterpolantConfig i = InterpolantConfig::defaultsFor("linear", "velocity");
      i.trainTime = "logit-normal";
      process = i.toJson();
    } else {  // FiT v1: DiT's diffusion (improved-diffusion copy), learned sigma
      GaussianDiffusionConfig d;
      d.learnSigma = c.learnSigma;
      process = d.toJson();
    }
  } else {
    auto imported = importNiTStateDict(sd, options);
    if (!imported) return badInput(o.in + ": " + imported.error().message());
    const NiTConfig& c = imported->config;
    config = c.toJson(), weights = imported->weights, notes = imported->notes;
    parameters = c.parameterCount(), numClasses = c.numClasses, nullClass = c.classDropoutProb > 0;
    InterpolantConfig i = InterpolantConfig::defaultsFor("linear", "velocity");  // NiT: t = 0 data, velocity noise − data
    i.modelTime = "data_at_0";
    i.trainTime = "logit-normal";
    process = i.toJson();
  }
  for (const auto& note : notes) spdlog::info("{}", note);
  nlohmann::json description;
  description["backbone"] = {{"kind", o.from}, {"config", config}};
  description["process"] = process;
  description["classes"] = {{"count", numClasses}, {"null_class", nullClass}};
  description["source"] = {{"imported_from", o.from},
                           {"file", std::filesystem::path(o.in).filename().string()},
                           {"state_dict", container},
                           {"preset", o.preset},
                           {"notes", notes}};
  if (auto ok = writeModelFile(o.out, description, weights); !ok) return runtimeFailure(ok.error().message());
  nlohmann::json summary{{"event", "imported"}, {"out", o.out}, {"backbone", o.from}, {"parameters", parameters}, {"config", config}};
  std::cout << summary.dump(global.json ? -1 : 2) << std::endl;
  return {};
}

CommandResult runImport(const ImportOptions& o, const GlobalOptions& global) {
  if (o.from != "dit" && o.from != "sit" && o.from != "fit" && o.from != "nit")
    return badInput("import: --from '" + o.from + "' is not supported yet (expected dit, sit, fit or nit)");
  std::error_code ec;
  if (!std::filesystem::exists(o.in, ec)) return badInput(o.in + ": no such file");
  auto sd = readStateDict(o.in, o.key);
  if (!sd) return badInput(sd.error().message());
  if (o.from == "fit" || o.from == "nit") return runFlexImport(o, global, sd->first, sd->second);
  DiTImportOptions options;
  options.family = o.from;
  if (!o.preset.empty()) options.preset = o.preset;
  if (o.heads > 0) options.heads = o.heads;
  if (o.numClasses > 0) options.numClasses = o.numClasses;
  auto imported = importDiTStateDict(sd->first, options);
  if (!imported) return badInput(o.in + ": " + imported.error().message());
  for (const auto& note : imported->notes) spdlog::info("{}", note);

  nlohmann::json description;
  description["backbone"] = {{"kind", o.from}, {"config", imported->config.toJson()}};
  description["process"] = processFor(o.from, imported->config);
  description["classes"] = {{"count", imported->config.numClasses}, {"null_class", imported->config.classDropoutProb > 0}};
  description["source"] = {{"imported_from", o.from},
                           {"file", std::filesystem::path(o.in).filename().string()},
                           {"state_dict", sd->second},
                           {"preset", o.preset},
                           {"notes", imported->notes}};
  if (auto ok = writeModelFile(o.out, description, imported->weights); !ok) return runtimeFailure(ok.error().message());
  nlohmann::json summary{{"event", "imported"}, {"out", o.out}, {"backbone", o.from},
                         {"parameters", imported->config.parameterCount()}, {"config", imported->config.toJson()}};
  std::cout << summary.dump(global.json ? -1 : 2) << std::endl;
  return {};
}

}  // namespace

Command addImportCommand(CLI::App& app, const GlobalOptions& global) {
  auto* sub = app.add_subcommand("import", "Convert an official checkpoint into a Tessera model file");
  auto o = std::make_shared<ImportOptions>();
  sub->add_option("--from", o->from, "Reference implementation: dit, sit, fit (FiT v1 and FiTv2), nit")->required();
  sub->add_option("--in", o->in, "Checkpoint: torch.save (.pt/.pth) or .safetensors")->required();
  sub->add_option("--out", o->out, "Model file to write (.safetensors)")->required();
  sub->add_option("--preset", o->preset, "Named configuration for what shapes cannot tell, e.g. DiT-XL/2");
  sub->add_option("--heads", o->heads, "Attention heads (instead of --preset)")->check(CLI::Range(1, 1024));
  sub->add_option("--num-classes", o->numClasses, "Classes without the null class (default: table rows - 1)")
      ->check(CLI::Range(1, 1 << 24));
  sub->add_option("--in-channels", o->inChannels, "FiT: latent channels (default 4; p²·C is the token width)")
      ->check(CLI::Range(1, 1024));
  sub->add_option("--key", o->key, "State dict inside the checkpoint (default: top level, else ema, model, …)");
  return {sub, [o, &global]() { return runImport(*o, global); }};
}

}  // namespace tessera::cli
