// SPDX-License-Identifier: Apache-2.0
#include "engine/checkpoint_import.h"

#include "core/config/config.h"
#include "core/formats/tensor_file.h"
#include "core/formats/torch_checkpoint.h"
#include "engine/model_file.h"
#include "models/registry.h"
#include "models/state_dict.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

namespace tessera {

Result<CheckpointStateDict> readCheckpointStateDict(const std::string& path, const std::string& key) {
  const TensorFileFormat format = detectTensorFileFormat(path);
  if (format == TensorFileFormat::TorchZip || format == TensorFileFormat::LegacyTorch) {
    auto ckpt = readTorchCheckpoint(path);
    if (!ckpt) return fail(ckpt.error());
    auto container = chooseStateDict(*ckpt, key);
    if (!container) return fail(container.error());
    auto sd = extractStateDict(*ckpt, *container);
    if (!sd) return fail(sd.error());
    return CheckpointStateDict{std::move(*sd), *container};
  }
  auto file = SafetensorsFile::open(path);
  if (!file) return fail(file.error());
  auto all = file->loadAll();
  if (!all) return fail(all.error());
  return CheckpointStateDict{NamedTensors(all->begin(), all->end()), std::string()};
}

bool holdsAutoencoder(const NamedTensors& tensors) {
  return !autoencoderRegistry().recognise(shapesOf(autoencoderTensors(tensors))).empty();
}

namespace {

/// diffusers writes config.json beside diffusion_pytorch_model.safetensors.
std::optional<nlohmann::json> diffusersConfigBeside(const std::string& path) {
  const auto config = std::filesystem::path(path).parent_path() / "config.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config, ec) || std::filesystem::file_size(config, ec) > (1 << 20))
    return std::nullopt;
  std::ifstream in(config);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  const std::string cls = j.value("_class_name", std::string());
  if (cls.find("Autoencoder") == std::string::npos && cls.find("VQModel") == std::string::npos) return std::nullopt;
  return j;
}

Result<void> checkFactor(double v, const char* what) {
  if (!std::isfinite(v) || (std::string(what) == "scale factor" && (v <= 0 || v > 1e6)) || std::abs(v) > 1e6)
    return fail(std::string("the ") + what + " " + std::to_string(v) + " is not usable (expected a finite " +
                (std::string(what) == "scale factor" ? "positive number" : "number") + ")");
  return {};
}

}  // namespace

Result<AutoencoderContents> importAutoencoder(const std::string& path, const NamedTensors& raw,
                                              const AutoencoderImportOptions& options) {
  std::int64_t dropped = 0;
  const NamedTensors tensors = autoencoderTensors(raw, &dropped);
  const auto fits = autoencoderRegistry().recognise(shapesOf(tensors));
  if (fits.empty())
    return fail(path +
                ": no autoencoder recognises these tensors (expected an LDM/Stable Diffusion autoencoder: "
                "encoder.down.N.block.M… in CompVis layout or encoder.down_blocks.N.resnets.M… in diffusers layout, "
                "alone or under first_stage_model.; or a DC-AE: encoder.stages.N.op_list.M… or diffusers' "
                "encoder.down_blocks.N.M…)");
  auto imported = fits.front()->importer.convert(tensors);
  if (!imported) return fail(imported.error().withContext(path));
  AutoencoderContents out;
  out.notes = imported->notes;
  if (dropped > 0)
    out.notes.push_back("took the autoencoder (first_stage_model.*) out of a checkpoint holding " +
                        std::to_string(dropped) + " other tensors");

  double scale = 1.0, shift = 0.0;
  std::string scaleFrom;
  if (options.scaleFactor) {
    scale = *options.scaleFactor;
    scaleFrom = "--scale-factor";
  } else if (auto config = diffusersConfigBeside(path)) {
    if (config->contains("scaling_factor") && (*config)["scaling_factor"].is_number()) {
      scale = (*config)["scaling_factor"].get<double>();
      scaleFrom = "config.json beside the file";
    }
    if (config->contains("shift_factor") && (*config)["shift_factor"].is_number())
      shift = (*config)["shift_factor"].get<double>();
  }
  if (scaleFrom.empty()) {
    for (const auto& [name, t] : stripWrapperPrefixes(raw))
      if (name == "scale_factor" && t.numel() == 1) {
        scale = t.to(at::kDouble).item<double>();
        scaleFrom = "the checkpoint's scale_factor";
      }
  }
  const nlohmann::json& c = imported->config;
  if (scaleFrom.empty()) {
    const bool sdVae =
        imported->kind == "kl" && c.value("embed_dim", 0) == 4 && c.value("ch_mult", nlohmann::json()).size() == 4;
    // DC-AE f32c32 with stride-2 down-sampling is the sana-1.0/1.1 design, which NiT samples in.
    const bool sanaDc = imported->kind == "dc" && c.value("latent_channels", 0) == 32 && c.contains("encoder") &&
                        c["encoder"].value("downsample_block_type", "") == "Conv" &&
                        c["encoder"].value("width_list", nlohmann::json()).size() == 6;
    scale = sdVae ? 0.18215 : sanaDc ? 0.41407 : 1.0;
    scaleFrom =
        sdVae    ? "Stable Diffusion 1/2's value for its 4-channel f8 VAE, which DiT, SiT and FiT use (SDXL's VAE has "
                   "the same shapes and 0.13025: give --scale-factor)"
        : sanaDc ? "dc-ae-f32c32-sana-1.0's value, which NiT uses with sana-1.1 too"
        : imported->kind == "dc" && c.value("latent_channels", 0) == 32
            ? "the default: the file does not say; dc-ae-f32c32-in-1.0 uses 0.3189 and mix-1.0 0.4552 (give "
              "--scale-factor)"
            : "the default: the file does not say; give --scale-factor if its latents were scaled";
  }
  if (options.shiftFactor) shift = *options.shiftFactor;
  if (auto ok = checkFactor(scale, "scale factor"); !ok) return fail(ok.error());
  if (auto ok = checkFactor(shift, "shift factor"); !ok) return fail(ok.error());
  out.notes.push_back("scale factor " + std::to_string(scale) + " (" + scaleFrom + ")" +
                      (shift != 0 ? ", shift " + std::to_string(shift) : ""));
  out.description = {{"kind", imported->kind},
                     {"config", imported->config},
                     {"scale_factor", scale},
                     {"shift_factor", shift},
                     {"source",
                      {{"file", std::filesystem::path(path).filename().string()},
                       {"layout", imported->layout},
                       {"notes", out.notes}}}};
  out.weights = std::move(imported->weights);
  auto built = buildAutoencoder(out);
  if (!built) return fail(built.error());
  out.latentChannels = built->network->latentChannels();
  out.downsampling = built->network->downsampling();
  out.description["preview"] = previewMapJson(fitPreviewMap(*built->network));
  return out;
}

Result<AutoencoderContents> readAutoencoder(const std::string& path, const AutoencoderImportOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return fail(path + ": no such file");
  if (detectTensorFileFormat(path) == TensorFileFormat::Safetensors) {
    auto file = SafetensorsFile::open(path);
    if (!file) return fail(file.error());
    auto meta = file->metadata().find(kAutoencoderMetadataKey);
    if (meta != file->metadata().end()) {
      AutoencoderContents out;
      out.description = nlohmann::json::parse(meta->second, nullptr, false);
      if (out.description.is_discarded() || !out.description.is_object())
        return fail(path + ": the '" + std::string(kAutoencoderMetadataKey) + "' metadata is not a JSON object");
      out.description.erase("format");
      if (options.scaleFactor) out.description["scale_factor"] = *options.scaleFactor;
      if (options.shiftFactor) out.description["shift_factor"] = *options.shiftFactor;
      auto all = file->loadAll();
      if (!all) return fail(all.error());
      out.weights.assign(all->begin(), all->end());
      auto built = buildAutoencoder(out);  // checks every tensor
      if (!built) return fail(built.error().withContext(path));
      out.latentChannels = built->network->latentChannels();
      out.downsampling = built->network->downsampling();
      return out;
    }
  }
  auto sd = readCheckpointStateDict(path, options.key);
  if (!sd) return fail(sd.error());
  return importAutoencoder(path, sd->tensors, options);
}

Result<LoadedAutoencoder> buildAutoencoder(const AutoencoderContents& contents) {
  const Config d = Config::fromJson(contents.description, "autoencoder");
  auto kind = d.string("kind");
  if (!kind) return fail(kind.error());
  auto network = autoencoderRegistry().create(*kind, contents.description.value("config", nlohmann::json::object()));
  if (!network) return fail(network.error());
  if (auto ok = loadStateDict(**network, contents.weights); !ok) return fail(ok.error());
  (*network)->eval();
  LoadedAutoencoder out;
  out.network = *network;
  out.scaling = {contents.description.value("scale_factor", 1.0), contents.description.value("shift_factor", 0.0)};
  out.description = contents.description;
  return out;
}

Result<LoadedAutoencoder> loadAnyAutoencoder(const std::string& path, std::vector<std::string>* notes) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return fail(path + ": no such file");
  if (detectTensorFileFormat(path) == TensorFileFormat::Safetensors) {
    auto file = SafetensorsFile::open(path);
    if (!file) return fail(file.error());
    if (file->metadata().count(kAutoencoderMetadataKey)) return loadAutoencoderFile(path);
    if (file->metadata().count(kModelMetadataKey)) {
      auto model = loadModelFile(path);
      if (!model) return fail(model.error());
      if (!model->autoencoder)
        return fail(
            path +
            ": this model has no autoencoder (a pixel-space model, or a latent one imported without --autoencoder)");
      return *model->autoencoder;
    }
  }
  auto contents = readAutoencoder(path, {});
  if (!contents) return fail(contents.error());
  if (notes) *notes = contents->notes;
  auto built = buildAutoencoder(*contents);
  if (!built) return fail(built.error());
  if (auto it = contents->description.find("preview"); it != contents->description.end())
    built->description["preview"] = *it;
  return built;
}

namespace {

std::string joinedWords(const std::vector<std::string>& words, const std::string& separator = ", ") {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : separator) + w;
  return out;
}

std::int64_t countParameters(const NamedTensors& weights) {
  std::int64_t n = 0;
  for (const auto& [name, t] : weights) n += t.numel();
  return n;
}

/// The kind request.from names, or the one the backbone registry recognises in the tensors.
Result<std::string> chooseKind(const ModelImportRequest& r, const NamedTensors& sd, std::string& recognisedAs) {
  if (r.from != "auto") return backboneRegistry().findImportSource(r.from)->name;
  const std::string file = std::filesystem::path(r.in).filename().string();
  const auto fits = backboneRegistry().recognise(shapesOf(stripWrapperPrefixes(sd)), file);
  if (fits.empty())
    return fail(r.in + ": no backbone recognises these tensors as its reference's state dict; give --from (one of " +
                joinedWords(backboneRegistry().importerNames()) + ") to see what is missing");
  if (fits.size() > 1) {
    std::vector<std::string> choices;
    for (const auto& n : fits) choices.push_back("--from " + n);
    return fail(r.in + ": the tensors fit " + joinedWords(fits, " and ") +
                " alike (one network: its weights cannot tell how it was trained, nor does the file name); give " +
                joinedWords(choices, " or "));
  }
  recognisedAs = fits.front();
  return fits.front();
}

}  // namespace

std::vector<std::string> importSources() {
  std::vector<std::string> names{"auto"};
  for (const auto& n : backboneRegistry().importSourceNames()) names.push_back(n);
  names.push_back("autoencoder");
  return names;
}

nlohmann::json ModelImport::summary() const {
  if (autoencoderOnly)
    return {{"event", "imported"},
            {"autoencoder", description.value("kind", std::string())},
            {"layout",
             description.contains("source") ? description["source"].value("layout", std::string()) : std::string()},
            {"parameters", parameters},
            {"scale_factor", description.value("scale_factor", 1.0)},
            {"config", description.value("config", nlohmann::json::object())}};
  nlohmann::json j{{"event", "imported"},
                   {"backbone", kind},
                   {"parameters", parameters},
                   {"config", description["backbone"]["config"]}};
  if (description.contains("autoencoder")) {
    const nlohmann::json& ae = description["autoencoder"];
    j["autoencoder"] = {{"kind", ae.value("kind", std::string())},
                        {"scale_factor", ae.value("scale_factor", 1.0)},
                        {"parameters", autoencoderParameters},
                        {"downsampling", autoencoderDownsampling}};
  }
  return j;
}

Result<ModelImport> importModel(const ModelImportRequest& r) {
  const auto sources = importSources();
  if (std::find(sources.begin(), sources.end(), r.from) == sources.end())
    return fail("--from '" + r.from + "' is not a backbone that imports checkpoints (known: " + joinedWords(sources) +
                ")");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(r.in, ec)) return fail(r.in + ": no such file");
  if (!r.autoencoder.empty() && r.from == "autoencoder")
    return fail("--autoencoder goes with a backbone import (--from auto or a backbone), not --from autoencoder");
  AutoencoderImportOptions aeOptions;
  aeOptions.scaleFactor = r.scaleFactor;
  aeOptions.shiftFactor = r.shiftFactor;
  aeOptions.key = r.key;
  auto read = readCheckpointStateDict(r.in, r.key);
  if (!read) return fail(read.error());
  ModelImport out;
  const bool autoencoderHere =
      r.from == "autoencoder" || (r.from == "auto" && r.autoencoder.empty() &&
                                  backboneRegistry().recognise(shapesOf(stripWrapperPrefixes(read->tensors))).empty() &&
                                  holdsAutoencoder(read->tensors));
  if (autoencoderHere) {
    if (r.from == "auto") out.recognisedAs = "autoencoder";
    auto contents = importAutoencoder(r.in, read->tensors, aeOptions);
    if (!contents) return fail(contents.error());
    out.autoencoderOnly = true;
    out.kind = contents->description.value("kind", std::string());
    out.description = std::move(contents->description);
    out.weights = std::move(contents->weights);
    out.notes = std::move(contents->notes);
    out.parameters = countParameters(out.weights);
    return out;
  }
  if ((r.scaleFactor || r.shiftFactor) && r.autoencoder.empty())
    return fail(
        "--scale-factor and --shift-factor belong to an autoencoder: give --autoencoder, or --from autoencoder");
  auto kind = chooseKind(r, read->tensors, out.recognisedAs);
  if (!kind) return fail(kind.error());
  const BackboneEntry& entry = *backboneRegistry().find(*kind);
  ImportRequest request;
  if (!r.preset.empty()) request.preset = r.preset;
  if (r.heads > 0) request.heads = r.heads;
  if (r.numClasses > 0) request.numClasses = r.numClasses;
  if (r.inChannels > 0) request.inChannels = r.inChannels;
  request.source = r.from;
  request.headChannels = r.headChannels;
  request.headsUpsample = r.headsUpsample;
  request.newAttentionOrder = r.newAttentionOrder;
  request.imageSize = r.imageSize;
  request.attentionResolutions = r.attentionResolutions;
  auto imported = entry.importer.convert(read->tensors, request);
  if (!imported) return fail(r.in + ": " + imported.error().message());
  out.kind = *kind;
  out.notes = imported->notes;
  out.parameters = countParameters(imported->weights);
  out.description["backbone"] = {{"kind", *kind}, {"config", imported->config}};
  out.description["process"] = imported->process;
  out.description["classes"] = {{"count", imported->numClasses}, {"null_class", imported->nullClass}};
  out.description["source"] = {{"imported_from", *kind},
                               {"file", std::filesystem::path(r.in).filename().string()},
                               {"state_dict", read->container},
                               {"preset", r.preset},
                               {"notes", imported->notes}};
  if (!imported->defaults.empty()) out.description["defaults"] = imported->defaults;
  out.weights = std::move(imported->weights);
  // LDM's checkpoints carry their first stage: converted from the same file unless
  // --autoencoder names another.
  const bool ownAutoencoder = r.autoencoder.empty() && imported->autoencoderInCheckpoint;
  if (!r.autoencoder.empty() || ownAutoencoder) {
    auto ae =
        ownAutoencoder ? importAutoencoder(r.in, read->tensors, aeOptions) : readAutoencoder(r.autoencoder, aeOptions);
    if (!ae)
      return fail(ownAutoencoder ? r.in + ": its first-stage autoencoder: " + ae.error().message()
                                 : "--autoencoder: " + ae.error().message());
    for (const auto& note : ae->notes) out.notes.push_back("autoencoder: " + note);
    const std::int64_t latent = ae->latentChannels;
    const std::int64_t channels = imported->config.value("in_channels", latent);
    if (latent != channels)
      return fail("--autoencoder " + r.autoencoder + " makes " + std::to_string(latent) + "-channel latents, but the " +
                  *kind + " backbone of " + r.in + " takes " + std::to_string(channels) + " channels");
    // One file holds backbone and autoencoder: a model that is moved, copied or shared
    // keeps working, as a Stable Diffusion checkpoint with its VAE does.
    out.description["autoencoder"] = ae->description;
    out.description["data"] = {{"kind", "latent"}, {"channels", latent}};
    out.autoencoderParameters = countParameters(ae->weights);
    out.autoencoderDownsampling = ae->downsampling;
    for (auto& [name, t] : ae->weights) out.weights.emplace_back(kAutoencoderTensorPrefix + name, std::move(t));
  }
  return out;
}

Result<void> writeImport(const std::string& path, const ModelImport& import) {
  if (import.autoencoderOnly) return writeAutoencoderFile(path, import.description, import.weights);
  return writeModelFile(path, import.description, import.weights);
}

}  // namespace tessera
