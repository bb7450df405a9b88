// SPDX-License-Identifier: Apache-2.0
// Test helpers: a registry backbone at its tiny configuration, alone or as a loaded model.
#pragma once

#include "core/config/config.h"
#include "core/process/process.h"
#include "engine/model_file.h"
#include "models/registry.h"

#include <QtGlobal>
#include <torch/utils.h>

#include <cstdint>
#include <memory>
#include <string>

namespace tessera::test {

/// Backbone `kind` at its registry's tiny configuration with `overrides` applied; its
/// zero-initialised output layers (final layer, adaLN) get small random weights drawn
/// after torch::manual_seed(seed), so that its prediction is smooth but not trivial. In
/// eval mode. `config`, when given, receives the configuration used.
inline std::shared_ptr<BackboneImpl> tinyBackbone(const std::string& kind, const nlohmann::json& overrides, std::uint64_t seed,
                                                  nlohmann::json* config = nullptr) {
  const auto* entry = backboneRegistry().find(kind);
  if (!entry) qFatal("no backbone %s", kind.c_str());
  nlohmann::json c = entry->tiny["config"];
  c.update(overrides);
  auto built = entry->factory(Config::fromJson(c, "tiny"), BuildOptions());
  if (!built) qFatal("%s", built.error().message().c_str());
  std::shared_ptr<BackboneImpl> backbone = *built;
  torch::manual_seed(seed);
  {
    torch::NoGradGuard guard;
    for (auto& p : backbone->named_parameters())
      if (p.key().find("final_layer") != std::string::npos || p.key().find("adaLN") != std::string::npos ||
          // the U-Net's zero_module layers
          p.key().find("out_layers.3") != std::string::npos || p.key().find("proj_out") != std::string::npos ||
          p.key().rfind("out.2.", 0) == 0)
        p.value().normal_(0, 0.05);
  }
  backbone->eval();
  if (config) *config = c;
  return backbone;
}

/// tinyBackbone(kind) predicting velocity on one channel (DiT with its CFG channel) as a
/// LoadedModel on SiT's linear interpolant, described as a model file would describe it.
inline LoadedModel tinyVelocityModel(const std::string& kind, std::uint64_t seed) {
  nlohmann::json config;
  LoadedModel m;
  m.backbone = tinyBackbone(
      kind,
      {{"in_channels", 1}, {"learn_sigma", false}, {"prediction", "velocity"}, {"cfg_channels", kind == "dit" ? 1 : 0}},
      seed, &config);
  Process process;
  process.interpolant = *Interpolant::create(InterpolantConfig::defaultsFor("linear", "velocity"));
  m.process = process;
  m.description = {{"data", {{"kind", "image"}}}, {"backbone", {{"kind", kind}, {"config", config}}}};
  m.path = "tiny-" + kind;
  return m;
}

}  // namespace tessera::test
