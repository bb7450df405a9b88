// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/config/config.h"
#include "core/util/error.h"
#include "models/backbone.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace tessera {

/// How to build: a network about to receive checkpoint weights skips the reference
/// initialisation (seconds for an XL model).
struct BuildOptions {
  bool initialize = true;
};

/// Builds a backbone from its configuration (the "backbone.config" object of a model).
using BackboneFactory =
    std::function<Result<std::shared_ptr<BackboneImpl>>(const Config& config, const BuildOptions& options)>;

struct BackboneEntry {
  std::string name;         ///< "dit"
  std::string description;  ///< one line for listings
  BackboneFactory factory;
  std::vector<std::string> presets;  ///< "DiT-XL/2", ...
  /// A depth 1-2, width 32-64 configuration for fast tests (the conformance test
  /// builds every backbone with it) and an input that fits it: {"config", "input"}.
  nlohmann::json tiny;
};

/// Names to factories. Filled explicitly from models/backbones.def by
/// `backboneRegistry()` — no static initialisers, which static libraries drop.
class BackboneRegistry {
public:
  /// Fails when the name is taken.
  Result<void> add(BackboneEntry entry);
  const BackboneEntry* find(const std::string& name) const;
  std::vector<std::string> names() const;
  /// Builds `name`, or fails naming the known backbones.
  Result<std::shared_ptr<BackboneImpl>> create(const std::string& name, const Config& config,
                                               const BuildOptions& options = BuildOptions()) const;

private:
  std::map<std::string, BackboneEntry> m_entries;
};

/// The registry with every backbone listed in models/backbones.def, plus those plugins added.
const BackboneRegistry& backboneRegistry();

/// Adds a plugin's backbone to backboneRegistry() (engine/plugin_loader.h calls it). The
/// registry is read without locks, so this must run before any other thread builds a
/// model: at start-up. Fails, changing nothing, when the name is taken.
Result<void> addPluginBackbone(BackboneEntry entry);

}  // namespace tessera
