// SPDX-License-Identifier: Apache-2.0
#include "engine/generated_image.h"

#include <ATen/ATen.h>

#include <filesystem>

namespace tessera {

Image8 toImage8(const at::Tensor& chw) {
  const at::Tensor u8 =
      ((chw.to(at::kCPU, at::kFloat).clamp(-1, 1) + 1.0) * 127.5).round().to(at::kByte).permute({1, 2, 0}).contiguous();
  Image8 img;
  img.height = chw.size(1);
  img.width = chw.size(2);
  img.channels = chw.size(0);
  img.pixels.assign(u8.data_ptr<std::uint8_t>(), u8.data_ptr<std::uint8_t>() + u8.numel());
  return img;
}

Result<GeneratedImage> describeGeneratedImage(const LoadedModel& model, const ModelTraits& traits,
                                              const GenerationResult& result, const std::vector<std::int64_t>& classes,
                                              std::uint64_t firstSeed, std::int64_t index, const std::string& modelPath,
                                              const std::string& modelHash) {
  if (index < 0 || index >= result.completed)
    return fail("image " + std::to_string(index) + " of a generation that finished " + std::to_string(result.completed));
  if (!traits.makesPictures() || (traits.outputChannels() != 1 && traits.outputChannels() != 3))
    return fail(modelPath + ": its output is a " + std::to_string(traits.outputChannels()) + "-channel " +
                traits.dataKind + ", not an image that can be written as PNG");
  GeneratedImage out;
  const at::Tensor chw = static_cast<std::size_t>(index) < result.images.size() ? result.images[static_cast<std::size_t>(index)]
                                                                                : result.samples[index];
  out.image = toImage8(chw);
  const std::uint64_t seed = firstSeed + static_cast<std::uint64_t>(index);
  const std::int64_t k = classes.at(static_cast<std::size_t>(index));
  const std::string className = traits.classNames.empty() ? std::to_string(k) : traits.classNames.at(static_cast<std::size_t>(k));
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(modelPath, ec);
  const std::string backbone = model.description["backbone"].value("kind", "");
  nlohmann::json meta = result.settings;
  meta.erase("classes");
  if (meta.contains("sizes")) {  // a request of mixed sizes: this image's own
    meta["size"] = meta["sizes"].at(static_cast<std::size_t>(index));
    meta.erase("sizes");
  }
  if (meta.contains("seeds")) meta.erase("seeds");
  meta["image"] = {{"index", index}, {"seed", seed}, {"class", k}, {"class_name", className}};
  meta["model"] = {{"file", std::filesystem::path(modelPath).filename().string()},
                   {"path", modelPath},
                   {"sha256", modelHash},
                   {"backbone", backbone},
                   {"size_bytes", ec ? 0 : bytes}};
  meta["software"] = std::string("tessera ") + TESSERA_VERSION_STRING;
  auto png = encodePng(out.image, {{"tessera", meta.dump()}});
  if (!png) return fail(png.error());
  out.png = std::move(*png);

  // Thumbnail: area-averaged down to kThumbnailSide; small images are their own thumbnail.
  const std::int64_t H = chw.size(1), W = chw.size(2);
  if (std::max(H, W) <= kThumbnailSide) {
    out.thumbnail = encodePng(out.image).value_or(out.png);
  } else {
    const double s = static_cast<double>(kThumbnailSide) / static_cast<double>(std::max(H, W));
    const std::int64_t th = std::max<std::int64_t>(1, static_cast<std::int64_t>(H * s + 0.5));
    const std::int64_t tw = std::max<std::int64_t>(1, static_cast<std::int64_t>(W * s + 0.5));
    const at::Tensor small = at::adaptive_avg_pool2d(chw.to(at::kCPU, at::kFloat).unsqueeze(0), {th, tw})[0];
    auto t = encodePng(toImage8(small));
    if (!t) return fail(t.error());
    out.thumbnail = std::move(*t);
  }
  out.metadata = meta;

  GalleryRecord& r = out.record;
  r.modelName = meta["model"]["file"];
  r.modelPath = modelPath;
  r.modelHash = modelHash;
  r.backbone = backbone;
  r.process = result.settings.value("process", "");
  r.sampler = result.settings.value("sampler", "");
  r.steps = result.settings.value("steps", std::int64_t{0});
  const auto& g = result.settings["guidance"];
  r.cfg = g.value("scale", 1.0);
  if (g.contains("interval") && g["interval"].is_array() && g["interval"].size() == 2) {
    r.cfgLow = g["interval"][0].get<double>();
    r.cfgHigh = g["interval"][1].get<double>();
  }
  r.seed = seed;
  r.classIndex = k;
  r.className = className;
  r.width = W;
  r.height = H;
  r.settings = meta.dump();
  r.software = meta["software"];
  r.seconds = result.seconds;
  return out;
}

Result<GenerationRequest> requestFromMetadata(const nlohmann::json& m) {
  GenerationRequest r;
  try {
    r.sampler = m.at("sampler").get<std::string>();
    r.options.steps = m.at("steps").get<std::int64_t>();
    const auto& o = m.at("options");
    r.options.grid = o.value("grid", r.options.grid);
    r.options.eta = o.value("eta", r.options.eta);
    r.options.shift = o.value("shift", r.options.shift);
    r.options.rho = o.value("rho", r.options.rho);
    r.options.atol = o.value("atol", r.options.atol);
    r.options.rtol = o.value("rtol", r.options.rtol);
    r.options.diffusionForm = o.value("diffusion_form", r.options.diffusionForm);
    r.options.diffusionNorm = o.value("diffusion_norm", r.options.diffusionNorm);
    r.options.lastStep = o.value("last_step", r.options.lastStep);
    r.options.lastStepSize = o.value("last_step_size", r.options.lastStepSize);
    r.options.clipDenoised = o.value("clip_denoised", false);
    const auto& g = m.at("guidance");
    r.guidance.scale = g.at("scale").get<double>();
    if (g.contains("interval")) {
      r.guidance.low = g["interval"].at(0).get<double>();
      r.guidance.high = g["interval"].at(1).get<double>();
    }
    const auto& channels = g.value("channels", nlohmann::json("all"));
    r.guidance.channels = channels.is_string() ? 0 : channels.get<std::int64_t>();
    r.referenceGuidanceRule = false;  // the recorded channel count is what ran
    r.width = m.at("size").at("width").get<std::int64_t>();
    r.height = m.at("size").at("height").get<std::int64_t>();
    const auto& image = m.at("image");
    r.seed = image.at("seed").get<std::uint64_t>();
    r.classes = {image.at("class").get<std::int64_t>()};
    r.batch = 1;
  } catch (const nlohmann::json::exception& e) {
    return fail(std::string("image metadata: ") + e.what() + " (expected the \"tessera\" settings a Tessera PNG carries)");
  }
  if (m.value("noise", "seeded") != "seeded" || m.value("step_noise", "seeded") != "seeded")
    return fail("image metadata: this image was generated from given noise tensors, which the PNG does not carry");
  return r;
}

}  // namespace tessera
