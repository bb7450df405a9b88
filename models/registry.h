// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/config/config.h"
#include "core/formats/safetensors.h"
#include "core/process/prediction.h"
#include "core/util/error.h"
#include "models/backbone.h"
#include "models/config_table.h"
#include "models/state_dict.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
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

/// What a kind can do whatever its configuration, known before one is built (a built
/// network's Capabilities say what that configuration does).
struct KindCapabilities {
  bool anyGrid = false;       ///< any grid whose sides are multiples of the patch size
  bool packed = false;        ///< packed variable-size sequences
  bool learnedSigma = false;  ///< can predict a variance (its configuration says whether it does)
  /// What its outputs can mean; the first is what they mean by default.
  std::vector<Prediction> predictions{Prediction::Epsilon};

  nlohmann::json toJson() const;
};

/// The shape of tensor `key` in `shapes`, or null (for importers' recognises).
const std::vector<std::int64_t>* findShape(const TensorShapes& shapes, const std::string& key);

/// Options of `tessera-cli import` for what a checkpoint's shapes cannot tell.
struct ImportRequest {
  std::optional<std::string> preset;  ///< supplies the heads and settings, checked against the shapes
  std::optional<std::int64_t> heads;
  std::optional<std::int64_t> numClasses;  ///< classes without the null row (default: rows − 1)
  std::optional<std::int64_t> inChannels;  ///< where the shapes give only p²·C
  /// The name `--from` gave: the kind, one of its importer's `sources`, or "auto".
  std::string source;
  // U-Net (LDM, ADM) options, named as the reference scripts name them.
  std::optional<std::int64_t> headChannels;   ///< num_head_channels
  std::optional<std::int64_t> headsUpsample;  ///< num_heads_upsample
  std::optional<bool> newAttentionOrder;      ///< use_new_attention_order
  std::optional<std::int64_t> imageSize;      ///< image_size (pixels, or latent cells for LDM)
  /// attention_resolutions as guided-diffusion's scripts take them: pixel sides
  /// ("32,16,8"), checked against where the weights have attention.
  std::optional<std::string> attentionResolutions;
};

/// An official checkpoint converted: everything a Tessera model file holds.
struct ImportedBackbone {
  nlohmann::json config;   ///< the backbone configuration, every field written
  nlohmann::json process;  ///< the process the reference trains and samples it with
  std::int64_t numClasses = 0;
  bool nullClass = false;          ///< label numClasses is the null class
  NamedTensors weights;            ///< float32, keys as the network names them
  std::vector<std::string> notes;  ///< what was inferred, for the user
  /// The checkpoint holds the model's first-stage autoencoder too (LDM's
  /// first_stage_model.*): the import converts it from the same file.
  bool autoencoderInCheckpoint = false;
  /// Sampling defaults the reference uses, recorded in the model file ("defaults").
  nlohmann::json defaults = nlohmann::json::object();
};

/// How a kind reads the reference implementation's checkpoints. Empty for a kind without one.
struct BackboneImporter {
  /// Whether tensors with these names and shapes (wrapper prefixes stripped) are a state
  /// dict of this kind's reference. Kinds sharing one network recognise the same ones.
  std::function<bool(const TensorShapes& shapes)> recognises;
  /// Derives the configuration from the shapes (and `request`) and checks every tensor.
  std::function<Result<ImportedBackbone>(const NamedTensors& stateDict, const ImportRequest& request)> convert;
  /// The process the reference trains and samples a network of this configuration (in
  /// its written form) with.
  std::function<nlohmann::json(const nlohmann::json& config)> process;
  /// Other names `--from` takes for this importer ("ldm", "adm" for the U-Net), passed
  /// on in ImportRequest::source.
  std::vector<std::string> sources;

  explicit operator bool() const { return recognises && convert; }
};

/// The entry's view of a family's converted checkpoint: `imported` has `config` (with
/// toJson(), numClasses and classDropoutProb), `weights` and `notes`; `process` is the
/// importer's process hook.
template <typename Imported>
ImportedBackbone toImportedBackbone(Imported imported,
                                    const std::function<nlohmann::json(const nlohmann::json&)>& process) {
  ImportedBackbone out;
  out.config = imported.config.toJson();
  out.process = process(out.config);
  out.numClasses = imported.config.numClasses;
  out.nullClass = imported.config.classDropoutProb > 0;
  out.weights = std::move(imported.weights);
  out.notes = std::move(imported.notes);
  return out;
}

/// A factory that builds Impl(configuration, options.initialize) from what `read` (a
/// config table's reader: Config → Result<configuration struct>) returns.
template <typename Impl, typename Read>
BackboneFactory factoryFromTable(Read read) {
  return [read](const Config& config, const BuildOptions& options) -> Result<std::shared_ptr<BackboneImpl>> {
    auto c = read(config);
    if (!c) return fail(c.error());
    return std::shared_ptr<BackboneImpl>(std::make_shared<Impl>(*c, options.initialize));
  };
}

/// Everything other code asks about a kind: how to build it, what it can do, its
/// configuration fields, presets, a tiny configuration and how to import checkpoints.
/// Plugins register entries of this shape (plugins/tessera_plugin.h).
struct BackboneEntry {
  std::string name;         ///< "dit"
  std::string description;  ///< one line for listings
  BackboneFactory factory;
  /// Names a "preset" key of the configuration takes ("DiT-XL/2", ...); the schema's
  /// complete({"preset": NAME}) gives one's every field.
  std::vector<std::string> presets;
  /// A depth 1-2, width 32-64 configuration for fast tests (the conformance test
  /// builds every backbone with it) and an input that fits it: {"config", "input"}.
  nlohmann::json tiny;
  KindCapabilities capabilities{};  ///< before building
  ConfigSchema config{};            ///< its fields (empty for a kind without a table)
  BackboneImporter importer{};      ///< official checkpoints (empty: none)
  /// What a new model of this kind trained here sets beyond the table's defaults (the
  /// New job dialog; e.g. FiTv2's q/k LayerNorm).
  nlohmann::json scratch = nlohmann::json::object();
  /// The network sizes the New job dialog offers for a new model of this kind: a label and
  /// the configuration keys it sets (over `scratch`). Empty: the dialog's transformer sizes
  /// (patch, width, depth, heads) where the table has those keys.
  std::vector<std::pair<std::string, nlohmann::json>> sizes;
  /// The names and shapes of the state dict a configuration builds, computed without
  /// building it, so that a model file is checked before anything is allocated (empty:
  /// only the coarse size check applies).
  std::function<Result<TensorShapes>(const Config& config)> stateShapes;

  /// Name, description, capabilities, presets, fields and whether it imports.
  nlohmann::json toJson() const;
};

/// Names to entries. Filled explicitly from models/backbones.def by
/// `backboneRegistry()` — no static initialisers, which static libraries drop.
class BackboneRegistry {
public:
  /// Fails when the name is taken.
  Result<void> add(BackboneEntry entry);
  const BackboneEntry* find(const std::string& name) const;
  /// Sorted.
  std::vector<std::string> names() const;
  /// In the order of registration: models/backbones.def's, then plugins'.
  const std::vector<std::string>& registrationOrder() const { return m_order; }
  /// Builds `name`, or fails naming the known backbones.
  Result<std::shared_ptr<BackboneImpl>> create(const std::string& name, const Config& config,
                                               const BuildOptions& options = BuildOptions()) const;

  /// The entry listing preset `preset`, or null.
  const BackboneEntry* findPreset(const std::string& preset) const;
  /// Every preset of every entry, sorted.
  std::vector<std::string> presetNames() const;
  /// The kinds with an importer, sorted.
  std::vector<std::string> importerNames() const;
  /// What `--from` takes: every kind with an importer and its importer's other names.
  std::vector<std::string> importSourceNames() const;
  /// The kind whose importer answers to `source` (its name or one of its sources), or null.
  const BackboneEntry* findImportSource(const std::string& source) const;
  /// The kinds whose importer recognises `shapes`. Kinds sharing a network (DiT and SiT)
  /// recognise the same tensors; among several, those whose name is a word of
  /// `fileName` ("SiT-XL-2-256x256.pt": sit) are kept when that leaves exactly one.
  /// More than one name returned: the weights cannot tell.
  std::vector<std::string> recognise(const TensorShapes& shapes, const std::string& fileName = "") const;

private:
  std::map<std::string, BackboneEntry> m_entries;
  std::vector<std::string> m_order;
};

/// The registry with every backbone listed in models/backbones.def, plus those plugins added.
const BackboneRegistry& backboneRegistry();

/// Adds a plugin's backbone to backboneRegistry() (engine/plugin_loader.h calls it). The
/// registry is read without locks, so this must run before any other thread builds a
/// model: at start-up. Fails, changing nothing, when the name is taken.
Result<void> addPluginBackbone(BackboneEntry entry);

/// The listing `tessera-cli info --backbones` prints: each kind's description,
/// capabilities, presets and fields with their defaults and docs.
std::string backboneHelp(const BackboneRegistry& registry);

}  // namespace tessera
