// SPDX-License-Identifier: Apache-2.0
// tessera-cli info MODEL | info --system | info --backbones | info --data fashion-native [--split train]
#include "app/cli/command.h"
#include "core/data/fashion_native.h"
#include "core/data/image_folder.h"
#include "core/formats/safetensors.h"
#include "core/formats/tensor_file.h"
#include "core/formats/torch_checkpoint.h"
#include "core/system/system_info.h"
#include "engine/generation_plan.h"
#include "engine/inspection.h"
#include "engine/model_file.h"
#include "engine/plugin_loader.h"
#include "models/registry.h"

#include <nlohmann/json.hpp>

#include <filesystem>

#include <spdlog/spdlog.h>
#include <iostream>

namespace tessera::cli {
namespace {

using ojson = nlohmann::ordered_json;

ojson tensorJson(const std::string& name, const at::Tensor& t) {
  auto dtype = fromScalarType(t.scalar_type());
  return ojson{{"name", name},
               {"dtype", dtype ? std::string(dtypeName(*dtype)) : std::string(c10::toString(t.scalar_type()))},
               {"shape", t.sizes().vec()}};
}

CommandResult infoSafetensors(const std::string& path, ojson& out) {
  auto file = SafetensorsFile::open(path);
  if (!file) return badInput(file.error().message());
  out["format"] = "safetensors";
  out["tensor_count"] = file->entries().size();
  out["parameters"] = file->parameterCount();
  ojson meta = ojson::object();
  for (const auto& [k, v] : file->metadata()) {
    // Our own files keep their pipeline config as JSON text; show it as JSON.
    auto parsed = ojson::parse(v, nullptr, false);
    meta[k] = (!parsed.is_discarded() && (parsed.is_object() || parsed.is_array())) ? parsed : ojson(v);
  }
  out["metadata"] = meta;
  // A Tessera model: the summary DESIGN.md promises (architecture, config, classes) on top.
  if (meta.contains(kModelMetadataKey) && meta[kModelMetadataKey].is_object()) {
    const ojson& m = meta[kModelMetadataKey];
    ojson model;
    if (m.contains("backbone")) {
      model["backbone"] = m["backbone"].value("kind", "");
      model["config"] = m["backbone"].value("config", ojson::object());
    }
    if (m.contains("process")) model["process"] = m["process"];
    if (m.contains("classes")) model["classes"] = m["classes"];
    // What one forward pass of one image costs at the trained size (the comparisons' unit).
    if (auto loaded = loadModelFile(path); loaded) {
      std::int64_t backbone = 0;
      for (const auto& p : loaded->backbone->parameters()) backbone += p.numel();
      model["backbone_parameters"] = backbone;
      if (auto traits = modelTraits(*loaded); traits && traits->trainedHeight > 0 && traits->trainedWidth > 0) {
        model["trained_size"] = {traits->trainedHeight, traits->trainedWidth};
        model["forward_gflops"] = forwardGflops(*loaded, traits->trainedHeight, traits->trainedWidth);
      }
    } else {
      model["load_error"] = loaded.error().message();
    }
    out["model"] = model;
  }
  ojson tensors = ojson::array();
  for (const auto& e : file->entries())
    tensors.push_back(ojson{{"name", e.name}, {"dtype", std::string(dtypeName(e.dtype))}, {"shape", e.shape}});
  out["tensors"] = tensors;
  return {};
}

CommandResult infoTorch(const std::string& path, ojson& out) {
  auto ckpt = readTorchCheckpoint(path);
  if (!ckpt) return badInput(ckpt.error().message());
  out["format"] = "torch.save";
  std::int64_t params = 0;
  ojson tensors = ojson::array();
  for (const auto& e : ckpt->tensors) {
    params += e.tensor.numel();
    tensors.push_back(tensorJson(e.fullName(), e.tensor));
  }
  out["tensor_count"] = ckpt->tensors.size();
  out["parameters"] = params;
  ojson dicts = ojson::array();
  for (const auto& p : ckpt->stateDictPaths) dicts.push_back(p);
  out["state_dicts"] = dicts;
  if (auto chosen = chooseStateDict(*ckpt)) out["import_uses"] = *chosen;
  out["metadata"] = ckpt->scalars;
  out["tensors"] = tensors;
  return {};
}

}  // namespace

Command addInfoCommand(CLI::App& app, const GlobalOptions& global) {
  auto* sub = app.add_subcommand("info", "Describe a model or checkpoint file (JSON), or this system");
  auto path = std::make_shared<std::string>();
  auto system = std::make_shared<bool>(false);
  sub->add_option("MODEL", *path, "A .safetensors model or a torch.save checkpoint (.pt/.pth)");
  sub->add_flag("--system", *system, "Describe this machine: LibTorch, threads, device, BLAS kernel and its GFLOP/s, loaded plugins");
  auto backbones = std::make_shared<bool>(false);
  sub->add_flag("--backbones", *backbones,
                "List the backbones (plugins' included): what each can do, its presets, and its configuration fields "
                "with their defaults and docs (JSON with --json)");
  auto data = std::make_shared<std::string>();
  auto split = std::make_shared<std::string>("train");
  sub->add_option("--data", *data, "Describe a data set: fashion-native (widths and heights of the crops) or an image folder (classes, counts, unreadable files)");
  sub->add_option("--split", *split, "train or test")->capture_default_str();
  return {sub, [path, system, backbones, data, split, &global]() -> CommandResult {
            if (*backbones) {
              if (!path->empty() || *system || !data->empty()) return badInput("give --backbones alone");
              if (!global.json) {
                std::cout << backboneHelp(backboneRegistry());
                return {};
              }
              nlohmann::json out = nlohmann::json::array();
              for (const auto& name : backboneRegistry().names())
                out.push_back(backboneRegistry().find(name)->toJson());
              std::cout << out.dump(-1) << std::endl;
              return {};
            }
            const int indent = global.json ? -1 : 2;
            if (!data->empty()) {
              std::error_code dirError;
              if (std::filesystem::is_directory(*data, dirError)) {  // an image folder
                auto folder = loadImageFolder(*data);
                if (!folder) return badInput("--data: " + folder.error().message());
                for (const auto& s : folder->skipped) spdlog::warn("skipped {}: {}", s.path, s.reason);
                nlohmann::json out = folder->summary();
                out["data"] = *data;
                std::cout << out.dump(indent) << std::endl;
                return {};
              }
              if (*data != "fashion-native")
                return badInput("--data: unknown data set '" + *data + "' (expected fashion-native or an image folder)");
              auto set = loadFashionNative(*split);
              if (!set) return badInput("--data fashion-native: " + set.error().message());
              nlohmann::json out = sizeDistribution(*set);
              out["data"] = *data;
              out["split"] = *split;
              out["crop"] = {{"threshold", NativeCropOptions().threshold}, {"margin", NativeCropOptions().margin}};
              std::cout << out.dump(indent) << std::endl;
              return {};
            }
            if (*system) {
              if (!path->empty()) return badInput("give either MODEL or --system, not both");
              ojson out = ojson::parse(systemInfoJson(querySystemInfo(/*measureGemm=*/true), -1));
              // Plugins are a models matter, so core's system facts do not know them.
              ojson plugins = ojson::array(), refused = ojson::array();
              for (const auto& p : loadedPlugins()) plugins.push_back(ojson(p.toJson()));
              for (const auto& r : pluginLoadReport())
                if (!r.plugin) refused.push_back(ojson{{"path", r.path}, {"error", r.plugin.error().message()}});
              out["plugins"] = plugins;
              out["plugins_refused"] = refused;
              out["plugin_search_path"] = pluginSearchPath();
              std::cout << out.dump(indent) << std::endl;
              return {};
            }
            if (path->empty()) return badInput("info: MODEL is required (or --system)");
            std::error_code ec;
            if (!std::filesystem::exists(*path, ec)) return badInput(*path + ": no such file");
            if (std::filesystem::is_directory(*path, ec))
              return badInput(*path + ": is a directory, expected a model file");
            ojson out;
            out["file"] = *path;
            out["size_bytes"] = std::filesystem::file_size(*path, ec);
            CommandResult r;
            switch (detectTensorFileFormat(*path)) {
              case TensorFileFormat::Safetensors:
                r = infoSafetensors(*path, out);
                break;
              case TensorFileFormat::TorchZip:
              case TensorFileFormat::LegacyTorch:
                r = infoTorch(*path, out);
                break;  // names legacy files precisely
              case TensorFileFormat::Unknown:
                return badInput(*path + ": neither a safetensors file nor a torch.save archive");
            }
            if (!r) return r;
            std::cout << out.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
            return {};
          }};
}

}  // namespace tessera::cli
