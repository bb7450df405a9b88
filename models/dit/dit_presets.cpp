// SPDX-License-Identifier: Apache-2.0
// The official configurations (DiT models.py `DiT_models`, SiT models.py `SiT_models`)
// and the registry entries of both names.
#include "models/dit/dit.h"
#include "models/registry.h"

#include <array>

namespace tessera {
namespace {

struct Size {
  const char* name;
  std::int64_t depth, hidden, heads;
};
constexpr std::array<Size, 4> kSizes{{{"XL", 28, 1152, 16}, {"L", 24, 1024, 16}, {"B", 12, 768, 12}, {"S", 12, 384, 6}}};
constexpr std::array<std::int64_t, 3> kPatches{2, 4, 8};

Result<std::shared_ptr<BackboneImpl>> build(const Config& config, const BuildOptions& options, const std::string& kind) {
  DiTConfig defaults;
  if (kind == "sit") {
    defaults.dropSigmaOutput = true;
    defaults.prediction = "velocity";
  }
  if (config.has("preset")) {
    auto name = config.string("preset");
    if (!name) return fail(name.error());
    auto preset = ditPreset(*name);
    if (!preset) return fail(preset.error());
    defaults = *preset;
  }
  auto c = DiTConfig::fromConfig(config, "", defaults);
  if (!c) return fail(c.error());
  auto model = std::make_shared<DiTImpl>(*c, options.initialize);
  model->setKind(kind);
  return std::shared_ptr<BackboneImpl>(model);
}

}  // namespace

std::vector<std::string> ditPresetNames() {
  std::vector<std::string> names;
  for (const char* family : {"DiT", "SiT"})
    for (const auto& s : kSizes)
      for (auto p : kPatches) names.push_back(std::string(family) + "-" + s.name + "/" + std::to_string(p));
  return names;
}

Result<DiTConfig> ditPreset(const std::string& name) {
  for (const char* family : {"DiT", "SiT"}) {
    for (const auto& s : kSizes) {
      for (auto p : kPatches) {
        if (name != std::string(family) + "-" + s.name + "/" + std::to_string(p)) continue;
        DiTConfig c;  // defaults: 256px latents (32x32x4), 1000 classes, learned sigma
        c.depth = s.depth;
        c.hiddenSize = s.hidden;
        c.numHeads = s.heads;
        c.patchSize = p;
        if (std::string(family) == "SiT") {
          c.dropSigmaOutput = true;
          c.prediction = "velocity";
        }
        return c;
      }
    }
  }
  std::string known;
  for (const auto& n : ditPresetNames()) known += (known.empty() ? "" : ", ") + n;
  return fail("unknown preset '" + name + "' (known: " + known + ")");
}

namespace {

/// One registry entry per family: the presets carrying its prefix, and a tiny model
/// with a non-square input (DiT at integer timesteps, SiT at t in [0, 1]).
void registerFamily(BackboneRegistry& registry, const std::string& kind, const std::string& prefix,
                    const std::string& description, const nlohmann::json& tinyInput) {
  std::vector<std::string> presets;
  for (const auto& n : ditPresetNames())
    if (n.rfind(prefix, 0) == 0) presets.push_back(n);
  const nlohmann::json tinyConfig = {{"input_size", 8}, {"patch_size", 2}, {"hidden_size", 32},
                                     {"depth", 2},      {"num_heads", 4},  {"num_classes", 10}};
  (void)registry.add({kind, description,
                      [kind](const Config& c, const BuildOptions& o) { return build(c, o, kind); }, presets,
                      {{"config", tinyConfig}, {"input", tinyInput}}});
}

}  // namespace

void registerBackbone_dit(BackboneRegistry& registry) {
  registerFamily(registry, "dit", "DiT", "DiT: transformer with adaLN-Zero blocks on patch tokens (DDPM, learned sigma)",
                 {{"channels", 4}, {"height", 8}, {"width", 12}, {"t_scale", 999}});
}

void registerBackbone_sit(BackboneRegistry& registry) {
  registerFamily(registry, "sit", "SiT", "SiT: the DiT network trained as a stochastic interpolant (velocity)",
                 {{"channels", 4}, {"height", 12}, {"width", 8}, {"t_scale", 1}});
}

}  // namespace tessera
