// SPDX-License-Identifier: Apache-2.0
#include "engine/model_file.h"

#include "core/config/config.h"
#include "models/registry.h"
#include "models/state_dict.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

namespace tessera {

Result<void> writeModelFile(const std::string& path, const nlohmann::json& description, const NamedTensors& weights) {
  nlohmann::json d = description;
  d["format"] = kModelFormatVersion;
  return writeSafetensors(path, weights, {{kModelMetadataKey, d.dump()}});
}

SamplingDefaults SamplingDefaults::of(const LoadedModel& model) {
  SamplingDefaults d;
  d.sampler = model.process && model.process->diffusion ? "ddim" : "euler";
  const auto it = model.description.find("defaults");
  if (it == model.description.end() || !it->is_object()) return d;
  const nlohmann::json& j = *it;
  // A value of the wrong type is ignored: the defaults are advice, never a reason to refuse a model.
  if (j.contains("sampler") && j["sampler"].is_string()) d.sampler = j["sampler"].get<std::string>();
  if (j.contains("steps") && j["steps"].is_number_integer() && j["steps"].get<std::int64_t>() >= 1) d.steps = j["steps"].get<std::int64_t>();
  if (j.contains("cfg") && j["cfg"].is_number()) d.cfg = j["cfg"].get<double>();
  if (j.contains("clip_x0") && j["clip_x0"].is_boolean()) d.clipX0 = j["clip_x0"].get<bool>();
  if (j.contains("cfg_interval") && j["cfg_interval"].is_array() && j["cfg_interval"].size() == 2 &&
      j["cfg_interval"][0].is_number() && j["cfg_interval"][1].is_number()) {
    const double lo = j["cfg_interval"][0].get<double>(), hi = j["cfg_interval"][1].get<double>();
    if (0.0 <= lo && lo <= hi && hi <= 1.0) d.cfgLow = lo, d.cfgHigh = hi;
  }
  return d;
}

nlohmann::json SamplingDefaults::toJson() const {
  nlohmann::json j = {{"sampler", sampler}, {"steps", steps}, {"cfg", cfg}, {"clip_x0", clipX0}};
  if (cfgLow != 0.0 || cfgHigh != 1.0) j["cfg_interval"] = {cfgLow, cfgHigh};
  return j;
}

Result<LoadedModel> loadModelFile(const std::string& path) {
  auto file = SafetensorsFile::open(path);
  if (!file) return fail(file.error());
  auto meta = file->metadata().find(kModelMetadataKey);
  if (meta == file->metadata().end())
    return fail(path + ": not a Tessera model (no '" + kModelMetadataKey +
                "' metadata); convert reference checkpoints with 'tessera-cli import'");
  auto described = Config::fromString(meta->second, path + " [" + kModelMetadataKey + "]");
  if (!described) return fail(described.error());
  const Config& cfg = *described;
  auto format = cfg.integer("format", std::nullopt, 1, 1000);
  if (!format) return fail(format.error());
  if (*format > kModelFormatVersion)
    return fail(path + ": model format " + std::to_string(*format) + " is newer than this Tessera reads (" +
                std::to_string(kModelFormatVersion) + ")");
  auto kind = cfg.string("backbone.kind");
  if (!kind) return fail(kind.error());
  if (!cfg.json().at("backbone").contains("config") || !cfg.json().at("backbone").at("config").is_object())
    return fail(cfg.source() + ": field 'backbone.config': expected an object");
  const Config backboneConfig = Config::fromJson(cfg.json().at("backbone").at("config"), cfg.source() + " backbone.config");
  BuildOptions build;
  build.initialize = false;  // every weight comes from the file
  auto backbone = backboneRegistry().create(*kind, backboneConfig, build);
  if (!backbone) return fail(backbone.error().withContext(path));
  std::optional<Process> process;
  if (cfg.has("process")) {
    auto p = processFromConfig(cfg, "process");
    if (!p) return fail(p.error());
    process = std::move(*p);
  }
  // Check names and shapes first, then read each tensor straight into its parameter:
  // the weights are never held twice.
  NamedTensors targets = stateDict(**backbone);
  TensorShapes present;
  for (const auto& e : file->entries()) present.emplace_back(e.name, e.shape);
  if (auto ok = checkStateDictShapes(shapesOf(targets), present); !ok) return fail(ok.error().withContext(path));
  {
    torch::NoGradGuard noGrad;
    for (auto& [name, target] : targets)
      if (auto ok = file->readInto(name, target); !ok) return fail(ok.error());
  }
  (*backbone)->eval();
  return LoadedModel{path, cfg.json(), *backbone, std::move(process)};
}

}  // namespace tessera
