// SPDX-License-Identifier: Apache-2.0
// Targets for what the engine reads: a model file's description, training and job
// configurations, the gallery database and a plugin's descriptor.
#include "tests/fuzz/fuzz_support.h"

#include "core/config/config.h"
#include "core/gallery/gallery_store.h"
#include "engine/generation.h"
#include "engine/generation_plan.h"
#include "engine/model_file.h"
#include "engine/plugin_loader.h"
#include "plugins/tessera_plugin.h"
#include "engine/training.h"
#include "models/registry.h"
#include "models/state_dict.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

namespace {

using tessera::fuzz::scratchFile;

/// The weights of every kind's tiny configuration, so that a description naming one loads
/// and what follows the load (traits, defaults, the generation plan) is reached too.
const tessera::NamedTensors* tinyWeights(const std::string& kind) {
  static const auto weights = [] {
    std::map<std::string, tessera::NamedTensors> all;
    const auto& registry = tessera::backboneRegistry();
    for (const auto& name : registry.names()) {
      const auto* entry = registry.find(name);
      if (!entry || !entry->tiny.contains("config")) continue;
      auto backbone =
          registry.create(name, tessera::Config::fromJson(entry->tiny.at("config"), "tiny"), tessera::BuildOptions());
      if (backbone) all[name] = tessera::stateDict(**backbone);
    }
    return all;
  }();
  const auto it = weights.find(kind);
  return it == weights.end() ? nullptr : &it->second;
}

TESSERA_FUZZ_TARGET(model_description,
                    "a model file's description (tessera.model JSON): load, traits, defaults, a plan") {
  const std::string description(bytes);
  const auto json = nlohmann::json::parse(description, nullptr, /*allow_exceptions=*/false);
  const tessera::NamedTensors* weights = nullptr;
  if (json.is_object() && json.contains("backbone") && json["backbone"].is_object() &&
      json["backbone"].contains("kind") && json["backbone"]["kind"].is_string())
    weights = tinyWeights(json["backbone"]["kind"].get<std::string>());
  const tessera::NamedTensors none;
  auto encoded = tessera::serializeSafetensors(weights ? *weights : none, {{tessera::kModelMetadataKey, description}});
  if (!encoded) return;  // metadata that is not UTF-8: the writer refuses it
  auto model = tessera::loadModelFile(scratchFile("m.safetensors", *encoded));
  if (!model) return;
  (void)tessera::SamplingDefaults::of(*model);
  auto traits = tessera::modelTraits(*model);
  if (!traits) return;
  tessera::GenerationRequest request;
  request.classes = {0};
  request.options.steps = 2;
  (void)tessera::planGeneration(*model, request);
}

TESSERA_FUZZ_TARGET(training_config, "a training configuration (train --config, the studio's jobs)") {
  auto config = tessera::Config::fromString(std::string(bytes), "fuzz.json");
  if (!config) return;
  (void)tessera::checkTrainingConfig(*config);
}

TESSERA_FUZZ_TARGET(gallery, "a gallery database file, damaged: open, then read everything the studio shows") {
  const std::string path = tessera::fuzz::scratchFolder() + "/g.db";
  for (const char* suffix : {"-wal", "-shm", "-journal"}) std::filesystem::remove(path + suffix);
  auto store = tessera::GalleryStore::open(scratchFile("g.db", bytes));
  if (!store) return;
  (void)store->count();
  (void)store->count(/*trash=*/true);
  if (auto ids = store->query(tessera::GalleryFilter{}); ids)
    for (const auto id : *ids) {
      (void)store->record(id);
      (void)store->png(id);
      (void)store->thumbnail(id);
    }
  for (const char* what : {"model", "backbone", "sampler", "tag", "class"}) (void)store->distinct(what);
  tessera::GalleryFilter search;
  search.text = "dit";
  (void)store->query(search);
  if (auto comparisons = store->comparisons(); comparisons)
    for (const auto& c : *comparisons) (void)store->comparison(c.id);
  (void)store->trainingJobs();
  (void)store->integrityCheck();
}

const char* registerNothing(tessera::PluginRegistrar&) { return nullptr; }

TESSERA_FUZZ_TARGET(plugin_descriptor, "a plugin's descriptor: interface, size, LibTorch and string ABI, names") {
  // 12 bytes of numbers (abi, size, cxx11Abi), one flag byte (registration present), then
  // the strings separated by NUL: name, version, description, torchVersion, tesseraVersion.
  if (bytes.size() < 13) return;
  TesseraPluginDescriptor d{};
  std::memcpy(&d.abi, bytes.data(), 4);
  std::memcpy(&d.size, bytes.data() + 4, 4);
  std::memcpy(&d.cxx11Abi, bytes.data() + 8, 4);
  d.registerAll = (bytes[12] & 1) ? &registerNothing : nullptr;
  std::vector<std::string> strings;
  const std::string_view rest = bytes.substr(13);
  for (std::size_t begin = 0; begin <= rest.size() && strings.size() < 5;) {
    const std::size_t end = std::min(rest.find('\0', begin), rest.size());
    strings.emplace_back(rest.substr(begin, end - begin));
    begin = end + 1;
  }
  const char** fields[] = {&d.name, &d.version, &d.description, &d.torchVersion, &d.tesseraVersion};
  for (std::size_t i = 0; i < strings.size(); ++i) *fields[i] = strings[i].c_str();
  (void)tessera::checkPluginDescriptor(d, d.name ? d.name : "fuzz");
}

}  // namespace
