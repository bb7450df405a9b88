// SPDX-License-Identifier: Apache-2.0
// Targets for what the engine reads: a model file's description, training and job
// configurations, the gallery database, a plugin's descriptor, and autoencoders (a
// Tessera autoencoder file's description, official checkpoints' names and shapes).
#include "tests/fuzz/fuzz_support.h"

#include "core/config/config.h"
#include "core/gallery/gallery_store.h"
#include "engine/checkpoint_import.h"
#include "engine/generation.h"
#include "engine/generation_plan.h"
#include "engine/latent_cache.h"
#include "engine/model_file.h"
#include "engine/plugin_loader.h"
#include "plugins/tessera_plugin.h"
#include "engine/training.h"
#include "models/autoencoders/autoencoder.h"
#include "models/registry.h"
#include "models/state_dict.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
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

/// The weights of every autoencoder kind's tiny configuration (as tinyWeights for backbones).
const tessera::NamedTensors* tinyAutoencoderWeights(const std::string& kind) {
  static const auto weights = [] {
    std::map<std::string, tessera::NamedTensors> all;
    const auto& registry = tessera::autoencoderRegistry();
    for (const auto& name : registry.names())
      if (auto ae = registry.create(name, registry.find(name)->tiny); ae) all[name] = tessera::stateDict(**ae);
    return all;
  }();
  const auto it = weights.find(kind);
  return it == weights.end() ? nullptr : &it->second;
}

TESSERA_FUZZ_TARGET(autoencoder_description,
                    "an autoencoder file's description (tessera.autoencoder JSON): load, encode, decode, preview") {
  const std::string description(bytes);
  const auto json = nlohmann::json::parse(description, nullptr, /*allow_exceptions=*/false);
  const tessera::NamedTensors* weights = nullptr;
  if (json.is_object() && json.contains("kind") && json["kind"].is_string())
    weights = tinyAutoencoderWeights(json["kind"].get<std::string>());
  const tessera::NamedTensors none;
  auto encoded =
      tessera::serializeSafetensors(weights ? *weights : none, {{tessera::kAutoencoderMetadataKey, description}});
  if (!encoded) return;
  auto ae = tessera::loadAutoencoderFile(scratchFile("ae.safetensors", *encoded));
  if (!ae) return;
  tessera::AutoencoderImpl& net = *ae->network;
  const std::int64_t side = 4 * net.downsampling();
  if (side > 64) return;
  const at::Tensor x = at::zeros({1, net.imageChannels(), side, side});
  const at::Tensor z = ae->scaling.fromBackbone(ae->scaling.toBackbone(net.latentOf(net.encode(x))));
  (void)net.decode(z);
  if (ae->preview.defined()) (void)tessera::previewDecode(ae->preview, z);
}

namespace {

/// Zero tensors of the shapes given, one "name d0 d1 ..." a line, at most 4 dimensions each
/// and 2·10⁶ elements in all: what the import targets fuzz is the reading of names and
/// shapes, not the parsers of tensor files (the safetensors and torch_checkpoint targets
/// have those).
tessera::NamedTensors tensorsFromShapeLines(std::string_view bytes, std::size_t maxTensors) {
  tessera::NamedTensors tensors;
  std::int64_t total = 0;
  std::size_t begin = 0;
  while (begin < bytes.size() && tensors.size() < maxTensors) {
    std::size_t end = bytes.find('\n', begin);
    if (end == std::string_view::npos) end = bytes.size();
    const std::string line(bytes.substr(begin, end - begin));
    begin = end + 1;
    std::vector<std::string> words;
    std::size_t p = 0;
    while (p < line.size()) {
      const std::size_t q = std::min(line.find(' ', p), line.size());
      if (q > p) words.push_back(line.substr(p, q - p));
      p = q + 1;
    }
    if (words.empty() || words.size() > 5) continue;
    std::vector<std::int64_t> shape;
    std::int64_t n = 1;
    bool ok = true;
    for (std::size_t i = 1; i < words.size() && ok; ++i) {
      const std::string& w = words[i];
      ok = !w.empty() && w.size() <= 5 && std::all_of(w.begin(), w.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (ok) shape.push_back(std::stoll(w)), n *= std::max<std::int64_t>(1, shape.back());
    }
    if (!ok || total + n > 2'000'000) continue;
    total += n;
    tensors.emplace_back(words[0], at::zeros(shape));
  }
  return tensors;
}

}  // namespace

TESSERA_FUZZ_TARGET(autoencoder_import,
                    "an official autoencoder's tensor names and shapes (one 'name d0 d1 ...' a line): layout, "
                    "configuration, checks") {
  const tessera::NamedTensors tensors = tensorsFromShapeLines(bytes, 1000);
  (void)tessera::holdsAutoencoder(tensors);
  (void)tessera::importAutoencoder("fuzz.safetensors", tensors, {});
}

TESSERA_FUZZ_TARGET(backbone_import,
                    "an official backbone checkpoint's tensor names and shapes (one 'name d0 d1 ...' a line): "
                    "every importer's recognition, derived configuration and checks (the U-Net's LDM and ADM layouts, "
                    "DiT's)") {
  const tessera::NamedTensors tensors = tensorsFromShapeLines(bytes, 2000);
  const auto& registry = tessera::backboneRegistry();
  (void)registry.recognise(tessera::shapesOf(tessera::stripWrapperPrefixes(tensors)), "fuzz.pt");
  for (const auto& name : registry.importerNames()) {
    const tessera::BackboneEntry* entry = registry.find(name);
    for (int variant = 0; variant < 3; ++variant) {
      tessera::ImportRequest request;
      if (variant == 0) request.heads = 1;
      if (variant == 1) request.headChannels = 16, request.imageSize = 16, request.attentionResolutions = "8,4";
      (void)entry->importer.convert(tensors, request);
    }
  }
}

TESSERA_FUZZ_TARGET(latent_cache,
                    "a latent cache file (data.latents), damaged: reused only when whole and its own, else encoded "
                    "again") {
  // One tiny autoencoder and four items; the first call writes the good cache file whose
  // path every input then overwrites.
  struct Setup {
    tessera::LoadedAutoencoder ae;
    std::string sha, dir, path;
    tessera::ItemSource items;
  };
  static const Setup setup = [] {
    Setup s;
    const auto& registry = tessera::autoencoderRegistry();
    s.ae.network = *registry.create("kl", registry.find("kl")->tiny);
    s.ae.description = {{"kind", "kl"}, {"config", registry.find("kl")->tiny}};
    s.sha = tessera::autoencoderSha256(s.ae);
    s.dir = tessera::fuzz::scratchFolder() + "/latents";
    const std::int64_t c = s.ae.network->imageChannels(), side = 4 * s.ae.network->downsampling();
    s.items = [c, side](std::int64_t i) { return at::full({c, side, side}, 0.2 * static_cast<double>(i) - 0.3); };
    auto first = tessera::cachedLatents(s.ae, s.sha, s.items, 4, true, s.dir, {{"fuzz", true}});
    s.path = first ? first->path : std::string();
    return s;
  }();
  if (setup.path.empty()) return;
  std::ofstream(setup.path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  auto set = tessera::cachedLatents(setup.ae, setup.sha, setup.items, 4, true, setup.dir, {{"fuzz", true}});
  // Whatever the file held, the result is four posteriors and their mirror images' (read or encoded again).
  if (!set || set->mean.size(0) != 4 || !set->meanFlipped.defined() || set->std.sizes() != set->mean.sizes())
    std::abort();
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
