// SPDX-License-Identifier: Apache-2.0
// The official configurations (DiT models.py `DiT_models`, SiT models.py `SiT_models`)
// and the registry entries of both names.
#include "core/process/process.h"
#include "models/dit/dit.h"
#include "models/dit/dit_import.h"
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
          c.prediction = Prediction::Velocity;
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

/// What sets the two names apart: SiT computes the sigma channels of a learn_sigma
/// network and returns the first half, predicts a velocity, and is trained and sampled
/// as SiT's linear interpolant instead of DiT's DDPM.
struct Family {
  std::string kind, prefix, description;
  DiTConfig defaults;
  nlohmann::json tinyInput;  ///< DiT at integer timesteps, SiT at t in [0, 1]; non-square
};

Family ditFamily() {
  return {"dit",
          "DiT",
          "DiT: transformer with adaLN-Zero blocks on patch tokens (DDPM, learned sigma)",
          DiTConfig(),
          {{"channels", 4}, {"height", 8}, {"width", 12}, {"t_scale", 999}}};
}

Family sitFamily() {
  DiTConfig defaults;
  defaults.dropSigmaOutput = true;
  defaults.prediction = Prediction::Velocity;
  return {"sit",
          "SiT",
          "SiT: the DiT network trained as a stochastic interpolant (velocity)",
          defaults,
          {{"channels", 4}, {"height", 12}, {"width", 8}, {"t_scale", 1}}};
}

/// The process each reference trains with: for a velocity network SiT's train.py and
/// sample.py, a linear path; otherwise DiT's create_diffusion(), 1000 linear steps, eps,
/// the learned range when the network learns sigma.
nlohmann::json referenceProcess(const DiTConfig& defaults, const nlohmann::json& config) {
  const auto prediction = parsePrediction(config.value("prediction", std::string(predictionName(defaults.prediction))));
  if (prediction == Prediction::Velocity) return InterpolantConfig::defaultsFor("linear", "velocity").toJson();
  GaussianDiffusionConfig d;
  d.learnSigma = config.value("learn_sigma", defaults.learnSigma);
  return d.toJson();
}

/// A DiT/SiT state dict: a convolutional patch embedding and a stored position table.
bool recognisesDiT(const TensorShapes& shapes) {
  auto dims = [&](const std::string& key) -> std::size_t {
    const auto* shape = findShape(shapes, key);
    return shape ? shape->size() : 0;
  };
  return dims("x_embedder.proj.weight") == 4 && dims("pos_embed") == 3 && dims("blocks.0.mlp.fc1.weight") == 2 &&
         dims("final_layer.linear.weight") == 2;
}

void registerFamily(BackboneRegistry& registry, const Family& family) {
  const std::string kind = family.kind;
  const DiTConfig defaults = family.defaults;
  auto read = [defaults](const Config& config) {
    return readWithPreset<DiTConfig>(DiTConfig::table(), config, defaults, ditPreset);
  };
  BackboneEntry e;
  e.name = kind;
  e.description = family.description;
  e.factory = [kind, read](const Config& config, const BuildOptions& options) -> Result<std::shared_ptr<BackboneImpl>> {
    auto c = read(config);
    if (!c) return fail(c.error());
    auto model = std::make_shared<DiTImpl>(*c, options.initialize);
    model->setKind(kind);
    return std::shared_ptr<BackboneImpl>(model);
  };
  for (const auto& n : ditPresetNames())
    if (n.rfind(family.prefix, 0) == 0) e.presets.push_back(n);
  const nlohmann::json tinyConfig = {{"input_size", 8}, {"patch_size", 2}, {"hidden_size", 32},
                                     {"depth", 2},      {"num_heads", 4},  {"num_classes", 10}};
  e.tiny = {{"config", tinyConfig}, {"input", family.tinyInput}};
  e.capabilities.anyGrid = true;
  e.capabilities.learnedSigma = true;
  e.capabilities.predictions = {defaults.prediction};
  for (Prediction p : {Prediction::Epsilon, Prediction::Velocity, Prediction::Score, Prediction::Sample})
    if (p != defaults.prediction) e.capabilities.predictions.push_back(p);
  e.config = DiTConfig::table().schema(defaults, read);
  e.importer.recognises = recognisesDiT;
  e.importer.process = [defaults](const nlohmann::json& config) { return referenceProcess(defaults, config); };
  e.importer.convert = [kind, defaults](const NamedTensors& sd,
                                        const ImportRequest& request) -> Result<ImportedBackbone> {
    DiTImportOptions o;
    o.family = kind;
    o.preset = request.preset;
    o.heads = request.heads;
    o.numClasses = request.numClasses;
    auto imported = importDiTStateDict(sd, o);
    if (!imported) return fail(imported.error());
    return toImportedBackbone(std::move(*imported),
                              [&defaults](const nlohmann::json& c) { return referenceProcess(defaults, c); });
  };
  (void)registry.add(std::move(e));
}

}  // namespace

void registerBackbone_dit(BackboneRegistry& registry) { registerFamily(registry, ditFamily()); }

void registerBackbone_sit(BackboneRegistry& registry) { registerFamily(registry, sitFamily()); }

}  // namespace tessera
