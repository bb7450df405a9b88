// SPDX-License-Identifier: Apache-2.0
// The official U-Net configurations (LDM's configs/latent-diffusion/cin256-v2.yaml;
// guided-diffusion's README model flags for its class-conditional ImageNet models) and
// the registry entry, whose importer takes `--from ldm`, `--from adm` and `--from unet`.
#include "core/process/process.h"
#include "models/registry.h"
#include "models/unet/unet.h"
#include "models/unet/unet_import.h"

namespace tessera {
namespace {

/// guided-diffusion's create_model for a class-conditional ImageNet model: attention at
/// pixel sides 32, 16 and 8, learned sigma, scale-shift norm, residual resampling.
UNetConfig adm(std::int64_t imageSize, std::int64_t channels, std::int64_t resBlocks, std::vector<double> mult,
               std::int64_t heads, std::int64_t headChannels, bool newOrder) {
  UNetConfig c;
  c.imageSize = imageSize;
  c.inChannels = 3;
  c.modelChannels = channels;
  c.outChannels = 6;
  c.learnSigma = true;
  c.numResBlocks = resBlocks;
  c.attentionResolutions = {imageSize / 32, imageSize / 16, imageSize / 8};
  c.channelMult = std::move(mult);
  c.numClasses = 1000;
  c.classConditioning = "label_emb";
  c.classDropoutProb = 0;
  c.numHeads = heads;
  c.numHeadChannels = headChannels;
  c.useScaleShiftNorm = true;
  c.resblockUpdown = true;
  c.useNewAttentionOrder = newOrder;
  c.useSpatialTransformer = false;
  c.contextDim = 0;
  return c;
}

}  // namespace

std::vector<std::string> unetPresetNames() { return {"LDM-cin256-v2", "ADM-64", "ADM-128", "ADM-256", "ADM-512"}; }

Result<UNetConfig> unetPreset(const std::string& name) {
  if (name == "LDM-cin256-v2") return UNetConfig();  // the table's defaults are cin256-v2's
  if (name == "ADM-64") return adm(64, 192, 3, {1, 2, 3, 4}, 4, 64, true);
  if (name == "ADM-128") return adm(128, 256, 2, {1, 1, 2, 3, 4}, 4, -1, false);
  if (name == "ADM-256") return adm(256, 256, 2, {1, 1, 2, 2, 4, 4}, 4, 64, false);
  if (name == "ADM-512") return adm(512, 256, 2, {0.5, 1, 1, 2, 2, 4, 4}, 4, 64, false);
  std::string known;
  for (const auto& n : unetPresetNames()) known += (known.empty() ? "" : ", ") + n;
  return fail("unknown preset '" + name + "' (known: " + known + ")");
}

namespace {

/// The process each reference trains and samples a U-Net with. LDM: 1000 steps of its
/// "linear" schedule (scaled_linear here), ε, fixed variance; ADM: 1000 steps, learned
/// range with learn_sigma.
nlohmann::json processFor(const nlohmann::json& config, const UNetImportedSchedule* schedule) {
  GaussianDiffusionConfig d;
  d.learnSigma = config.value("learn_sigma", false);
  d.prediction = std::string(predictionName(*parsePrediction(config.value("prediction", std::string("eps")))));
  // LDM's class-conditional models take the class embedder's context; ADM's a label table.
  const bool ldm = config.value("class_conditioning", std::string()) == "cross_attention";
  if (schedule) {
    d.steps = schedule->steps;
    d.schedule = schedule->schedule;
    if (d.schedule == "scaled_linear") d.betaStart = schedule->betaStart, d.betaEnd = schedule->betaEnd;
  } else if (ldm) {
    d.schedule = "scaled_linear";
    d.betaStart = 0.0015;
    d.betaEnd = 0.0195;
  }
  return d.toJson();
}

}  // namespace

void registerBackbone_unet(BackboneRegistry& registry) {
  BackboneEntry e;
  e.name = "unet";
  e.description = "U-Net: LDM's and ADM's UNetModel (residual blocks, attention or spatial transformers, skips)";
  const UNetConfig defaults;
  auto read = [defaults](const Config& config) {
    return readWithPreset<UNetConfig>(UNetConfig::table(), config, defaults, unetPreset);
  };
  e.factory = factoryFromTable<UNetImpl>(read);
  e.stateShapes = [read](const Config& config) -> Result<TensorShapes> {
    auto c = read(config);
    if (!c) return fail(c.error());
    return unetStateShapes(*c);
  };
  e.presets = unetPresetNames();
  const nlohmann::json tinyConfig = {{"image_size", 8},
                                     {"in_channels", 4},
                                     {"model_channels", 32},
                                     {"num_res_blocks", 1},
                                     {"channel_mult", {1, 2}},
                                     {"attention_resolutions", {2}},
                                     {"num_classes", 10},
                                     // label_emb: with the class embedder's single-token context
                                     // (the default), the cross-attention's q and k get no gradient
                                     // (a softmax over one token), as in the reference; the parity
                                     // tests cover that path.
                                     {"class_conditioning", "label_emb"},
                                     {"class_dropout_prob", 0.0},  // ADM's table: no null row
                                     {"context_dim", 0},
                                     {"num_heads", 2}};
  e.tiny = {{"config", tinyConfig}, {"input", {{"channels", 4}, {"height", 8}, {"width", 12}, {"t_scale", 999}}}};
  e.capabilities.anyGrid = true;
  e.capabilities.learnedSigma = true;
  e.capabilities.predictions = {Prediction::Epsilon, Prediction::V, Prediction::Sample};
  e.config = UNetConfig::table().schema(defaults, read);
  // A new model trained here (the New job dialog): ADM-style; the Small size, about
  // dit-fashion's parameter count at 28×28 (1.96 M with ten classes and the null row).
  e.scratch = {{"model_channels", 32},
               {"channel_mult", {1, 2, 3}},
               {"num_res_blocks", 1},
               {"attention_resolutions", {2, 4}},
               {"norm_groups", 8},  // 4 channels per group at 32: see norm_groups' doc
               {"num_heads", 1},
               {"num_head_channels", 32},
               {"use_scale_shift_norm", true},
               {"class_conditioning", "label_emb"},
               {"use_spatial_transformer", false},
               {"context_dim", 0}};
  // Counted with guided-diffusion's UNetModel at ten classes (plus our null row of the
  // time-embedding width): 0.76 M, 1.96 M, 7.28 M.
  e.sizes = {
      {"Tiny: 32 channels × 1, 2; one block per level (≈0.76 M; minutes)",
       {{"model_channels", 32}, {"channel_mult", {1, 2}}, {"num_res_blocks", 1}, {"attention_resolutions", {2}}}},
      {"Small: 32 channels × 1, 2, 3; one block per level (1.96 M, as dit-fashion)",
       {{"model_channels", 32}, {"channel_mult", {1, 2, 3}}, {"num_res_blocks", 1}, {"attention_resolutions", {2, 4}}}},
      {"Medium: 64 channels × 1, 2, 2; two blocks per level (≈7.3 M)",
       {{"model_channels", 64},
        {"channel_mult", {1, 2, 2}},
        {"num_res_blocks", 2},
        {"attention_resolutions", {2, 4}}}}};
  e.importer.recognises = [](const TensorShapes& shapes) { return recognisesUNet(shapes); };
  e.importer.sources = {"ldm", "adm"};
  e.importer.process = [](const nlohmann::json& config) { return processFor(config, nullptr); };
  e.importer.convert = [](const NamedTensors& sd, const ImportRequest& request) -> Result<ImportedBackbone> {
    if (request.inChannels) return fail("--in-channels: a U-Net's input channels are in its weights");
    auto imported = importUNetStateDict(sd, request);
    if (!imported) return fail(imported.error());
    ImportedBackbone out;
    out.config = imported->config.toJson();
    const bool ownSchedule = imported->ldmLayout || imported->schedule.schedule != "linear";
    out.process = processFor(out.config, ownSchedule ? &imported->schedule : nullptr);
    out.numClasses = imported->config.numClasses;
    out.nullClass = imported->config.hasNullClass();
    out.weights = std::move(imported->weights);
    out.notes = std::move(imported->notes);
    out.autoencoderInCheckpoint = imported->ldmLayout && imported->hasFirstStage;
    if (imported->ldmLayout) {
      // LDM samples with its own DDIM timesteps (core/samplers/time_grid.h, "ldm").
      out.defaults = {{"sampler", "ddim"}, {"grid", "ldm"}};
      out.notes.push_back("sampling defaults: ddim on LDM's timesteps (--grid ldm), as LDM's DDIMSampler");
    }
    return out;
  };
  (void)registry.add(std::move(e));
}

}  // namespace tessera
