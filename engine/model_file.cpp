// SPDX-License-Identifier: Apache-2.0
#include "engine/model_file.h"

#include "core/config/config.h"
#include "models/registry.h"
#include "models/state_dict.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <algorithm>
#include <iomanip>
#include <sstream>

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
  if (j.contains("grid") && j["grid"].is_string()) d.grid = j["grid"].get<std::string>();
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
  if (grid != "default") j["grid"] = grid;
  return j;
}

namespace {

/// A description is not trusted to size the network it asks for: a 4 KB file claiming
/// width 8192 and depth 28 once had about 90 GB built before any shape was compared. A
/// transformer block holds at least (4 + 2·mlp_ratio)·D² weights (attention, MLP; adaLN
/// adds more), so a configuration whose blocks alone need over twice the parameters the
/// file holds is refused before anything is built. Kinds without these fields pass.
Result<void> checkConfigFitsTheFile(const nlohmann::json& config, const SafetensorsFile& file,
                                    const std::string& path) {
  const double width = backboneConfigNumber(config, "hidden_size"), depth = backboneConfigNumber(config, "depth"),
               ratio = backboneConfigNumber(config, "mlp_ratio", 4.0);
  if (width <= 0 || depth <= 0) return {};
  const double claimed = depth * (4.0 + 2.0 * std::max(0.0, ratio)) * width * width;
  double held = 0;
  for (const auto& e : file.entries()) {
    double n = 1;
    for (const auto d : e.shape) n *= static_cast<double>(d);
    held += n;
  }
  if (claimed <= 2.0 * held + 1e6) return {};
  std::ostringstream message;
  message << path << ": backbone.config (hidden_size " << width << ", depth " << depth << ") describes at least "
          << std::setprecision(3) << claimed / 1e6 << " M weights, but the file holds " << held / 1e6
          << " M; refusing to build it (a damaged or hostile description)";
  return fail(message.str());
}

}  // namespace

double backboneConfigNumber(const nlohmann::json& config, const char* key, double otherwise) {
  const auto it = config.find(key);
  return it != config.end() && it->is_number() ? it->get<double>() : otherwise;
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
  // Checked with every field the build would use: an empty config means the defaults (DiT's
  // are XL/2, 675 M weights), which a 100-byte file once had built.
  nlohmann::json completed = backboneConfig.json();
  if (const BackboneEntry* entry = backboneRegistry().find(*kind); entry && entry->config.complete) {
    auto full = entry->config.complete(backboneConfig);
    if (!full) return fail(full.error().withContext(path));
    completed = std::move(*full);
  }
  if (auto ok = checkConfigFitsTheFile(completed, *file, path); !ok) return fail(ok.error());
  if (const BackboneEntry* entry = backboneRegistry().find(*kind); entry && entry->stateShapes) {
    // The exact tensors, before a network the description might make enormous is built.
    auto expected = entry->stateShapes(backboneConfig);
    if (!expected) return fail(expected.error().withContext(path));
    TensorShapes held;
    for (const auto& e : file->entries())
      if (e.name.rfind(kAutoencoderTensorPrefix, 0) != 0) held.emplace_back(e.name, e.shape);
    if (auto ok = checkStateDictShapes(*expected, held); !ok) return fail(ok.error().withContext(path));
  }
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
  const std::string aePrefix = kAutoencoderTensorPrefix;
  for (const auto& e : file->entries())
    if (e.name.rfind(aePrefix, 0) != 0) present.emplace_back(e.name, e.shape);
  if (auto ok = checkStateDictShapes(shapesOf(targets), present); !ok) return fail(ok.error().withContext(path));
  {
    torch::NoGradGuard noGrad;
    for (auto& [name, target] : targets)
      if (auto ok = file->readInto(name, target); !ok) return fail(ok.error());
  }
  (*backbone)->eval();
  LoadedModel out{path, cfg.json(), *backbone, std::move(process), std::nullopt};
  if (cfg.json().contains("autoencoder")) {
    auto ae = loadAutoencoder(*file, cfg.json().at("autoencoder"), aePrefix, path + " [autoencoder]");
    if (!ae) return fail(ae.error());
    const std::int64_t latent = ae->network->latentChannels(), channels = (*backbone)->capabilities().inChannels;
    if (latent != channels)
      return fail(path + ": the autoencoder makes " + std::to_string(latent) +
                  "-channel latents, but the backbone takes " + std::to_string(channels) + " channels");
    out.autoencoder = std::move(*ae);
  }
  return out;
}

}  // namespace tessera
