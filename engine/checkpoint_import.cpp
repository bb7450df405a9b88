// SPDX-License-Identifier: Apache-2.0
#include "engine/checkpoint_import.h"

#include "core/config/config.h"
#include "core/formats/tensor_file.h"
#include "core/formats/torch_checkpoint.h"
#include "models/state_dict.h"

#include <ATen/ATen.h>

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
                "alone or under first_stage_model.)");
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
    scale = sdVae ? 0.18215 : 1.0;
    scaleFrom =
        sdVae ? "Stable Diffusion 1/2's value for its 4-channel f8 VAE, which DiT, SiT and FiT use (SDXL's VAE has "
                "the same shapes and 0.13025: give --scale-factor)"
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
  const at::Tensor map = fitPreviewMap(*built->network);
  nlohmann::json rows = nlohmann::json::array();
  for (std::int64_t r = 0; r < map.size(0); ++r) {
    nlohmann::json row = nlohmann::json::array();
    for (std::int64_t k = 0; k < map.size(1); ++k) row.push_back(map[r][k].item<double>());
    rows.push_back(row);
  }
  out.description["preview"] = rows;
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

}  // namespace tessera
