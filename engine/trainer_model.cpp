// SPDX-License-Identifier: Apache-2.0
// The trainer's model: the backbone and process from the registry (by the configured
// name, never by branching on it), its EMA twin, --init's weights, the device, AdamW and
// the data-parallel ranks.
#include "engine/trainer.h"

#include "models/registry.h"
#include "models/state_dict.h"

#include <ATen/ATen.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <map>

namespace tessera {
namespace {

/// The backbone configuration with the fields the data decides filled in: channels,
/// classes, grid and the label dropout. A value the user gave that contradicts the
/// data is an error.
Result<nlohmann::json> completeBackboneConfig(const std::string& kind, nlohmann::json config, std::int64_t channels,
                                              std::int64_t classes, std::int64_t height, double labelDropout) {
  const BackboneEntry* entry = backboneRegistry().find(kind);
  if (!entry) return fail("model.backbone: unknown backbone '" + kind + "'");
  // A kind without a table (a plugin's) gets what DiT's family takes, as before there were tables.
  const auto has = [&](const std::string& key) {
    if (entry->config.fields.empty()) return key == "input_size" || key == "cfg_channels";
    return entry->config.find(key) != nullptr;
  };
  const auto setOrCheck = [&](const char* key, const nlohmann::json& value) -> Result<void> {
    if (config.contains(key) && config[key] != value)
      return fail(std::string("model.config.") + key + " is " + config[key].dump() + " but the data needs " +
                  value.dump() + " (leave it out and the trainer sets it)");
    config[key] = value;
    return {};
  };
  if (auto ok = setOrCheck("in_channels", channels); !ok) return fail(ok.error());
  if (auto ok = setOrCheck("num_classes", classes); !ok) return fail(ok.error());
  // The grid the network is made for: DiT's family calls it input_size, the U-Net image_size.
  for (const char* key : {"input_size", "image_size"})
    if (has(key) && !config.contains(key)) config[key] = height;
  // Our own models guide every channel; the reference's three-channel rule is a quirk
  // kept only for imported checkpoints.
  if (has("cfg_channels") && !config.contains("cfg_channels")) config["cfg_channels"] = channels;
  // The trainer runs networks with is_training() off (it draws label dropout itself),
  // so a dropout rate would be silently ignored.
  if (config.contains("dropout") && config["dropout"].is_number() && config["dropout"].get<double>() > 0)
    return fail("model.config.dropout is " + config["dropout"].dump() +
                ": Tessera's trainer does not apply dropout inside the network; leave it at 0");
  if (config.contains("class_dropout_prob") && config["class_dropout_prob"].get<double>() != labelDropout &&
      !(labelDropout > 0 && config["class_dropout_prob"].get<double>() > 0))
    return fail("model.config.class_dropout_prob and train.label_dropout disagree about guidance (one is 0)");
  config["class_dropout_prob"] = labelDropout;
  return config;
}

struct Built {
  std::shared_ptr<BackboneImpl> net;
  Process process;
};

/// A backbone and its process, checked against each other through the capabilities.
Result<Built> buildModel(const nlohmann::json& model, const nlohmann::json& backboneConfig) {
  const Config bc = Config::fromJson(backboneConfig, "model.config");
  auto net = backboneRegistry().create(model["backbone"].get<std::string>(), bc);
  if (!net) return fail(net.error());
  const Config pc = Config::fromJson(nlohmann::json{{"process", model["process"]}}, "configuration");
  auto process = processFromConfig(pc, "process");
  if (!process) return fail(process.error());
  const Capabilities caps = (*net)->capabilities();
  if (process->diffusion) {
    const bool learned = process->diffusion->config().learnSigma;
    if (learned != caps.learnedSigma)
      return fail(std::string("model.process.learn_sigma is ") + (learned ? "true" : "false") + " but the backbone " +
                  (caps.learnedSigma ? "predicts" : "does not predict") +
                  " a variance (model.config.learn_sigma); they must agree");
    if (caps.prediction == Prediction::Velocity)
      return fail(
          "model.process is gaussian_diffusion but the backbone predicts a velocity; use an interpolant process");
  } else if (caps.prediction == Prediction::Epsilon) {
    if (process->interpolant->prediction() != Prediction::Epsilon)
      return fail("model.process is an interpolant predicting '" + process->interpolant->config().prediction +
                  "' but the backbone's prediction is eps; set model.config.prediction to match");
  }
  return Built{*net, std::move(*process)};
}

/// Whether a tensor of `from` is a class table (one row per class, plus the null class)
/// that can become one of `to`: the other dimensions equal.
bool isClassTable(const at::Tensor& from, const at::Tensor& to, std::int64_t oldClasses, std::int64_t newClasses) {
  return from.dim() == to.dim() && from.dim() >= 1 && (from.size(0) == oldClasses || from.size(0) == oldClasses + 1) &&
         (to.size(0) == newClasses || to.size(0) == newClasses + 1) && from.sizes().slice(1) == to.sizes().slice(1);
}

/// Copies a class table's rows by class name; a class the old model lacks keeps its fresh
/// initialisation. Returns how many classes matched.
std::int64_t remapClassRows(const at::Tensor& src, at::Tensor& target, const std::vector<std::string>& oldNames,
                            const std::vector<std::string>& newNames, std::int64_t oldClasses) {
  const std::int64_t newClasses = static_cast<std::int64_t>(newNames.size());
  std::int64_t matched = 0;
  for (std::int64_t k = 0; k < newClasses; ++k) {
    std::int64_t old = -1;
    for (std::size_t j = 0; j < oldNames.size(); ++j)
      if (oldNames[j] == newNames[static_cast<std::size_t>(k)]) old = static_cast<std::int64_t>(j);
    if (old >= 0) {
      target[k].copy_(src[old]);
      ++matched;
    }
  }
  if (target.size(0) == newClasses + 1 && src.size(0) == oldClasses + 1) target[newClasses].copy_(src[oldClasses]);
  return matched;
}

/// --init: the weights of an existing model, class tables remapped by name.
Result<nlohmann::json> initFrom(BackboneImpl& net, const LoadedModel& loaded,
                                const std::vector<std::string>& newNames) {
  const std::string& path = loaded.path;
  std::vector<std::string> oldNames;
  if (loaded.description.contains("classes") && loaded.description["classes"].contains("names"))
    oldNames = loaded.description["classes"]["names"].get<std::vector<std::string>>();
  const std::int64_t oldClasses = loaded.backbone->capabilities().numClasses;
  const std::int64_t newClasses = static_cast<std::int64_t>(newNames.size());
  NamedTensors source = stateDict(*loaded.backbone);
  std::map<std::string, at::Tensor> byName(source.begin(), source.end());
  nlohmann::json report = {{"from", path}, {"copied", 0}, {"resized", nlohmann::json::array()}};
  std::int64_t copied = 0;
  torch::NoGradGuard noGrad;
  for (auto& [name, target] : stateDict(net)) {
    auto it = byName.find(name);
    if (it == byName.end())
      return fail("--init " + path + ": the model has no tensor '" + name + "' (different architecture)");
    const at::Tensor& src = it->second;
    if (src.sizes() == target.sizes()) {
      target.copy_(src);
      ++copied;
      continue;
    }
    if (!isClassTable(src, target, oldClasses, newClasses))
      return fail("--init " + path + ": tensor '" + name + "' has shape " + c10::str(src.sizes()) + " there and " +
                  c10::str(target.sizes()) + " here (different architecture)");
    const std::int64_t matched = remapClassRows(src, target, oldNames, newNames, oldClasses);
    report["resized"].push_back({{"tensor", name},
                                 {"rows_before", src.size(0)},
                                 {"rows_after", target.size(0)},
                                 {"classes_matched_by_name", matched}});
    ++copied;
  }
  report["copied"] = copied;
  // The lineage: how the starting model was made (its own training configuration and, for a
  // model that was itself fine-tuned, its own "init"), so a chain of fine-tunes stays traceable.
  if (loaded.description.contains("source")) report["source"] = loaded.description["source"];
  return report;
}

}  // namespace

torch::nn::Module& Trainer::trained() const {
  if (m_ae) return *m_ae;
  return *m_net;
}

torch::nn::Module& Trainer::averaged() const {
  if (m_aeEma) return *m_aeEma;
  return *m_ema;
}

Result<void> Trainer::buildModels() {
  if (m_s.autoencoderRun) return buildAutoencoders();
  if (auto ok = loadFirstStage(); !ok) return ok;
  // A latent backbone sees the autoencoder's channels on a grid m_pixelFactor times smaller.
  const std::int64_t channels = m_firstStage ? m_firstStage->network->latentChannels() : m_data.channels;
  auto backboneConfig = completeBackboneConfig(m_s.model["backbone"].get<std::string>(), m_s.model["config"], channels,
                                               static_cast<std::int64_t>(m_data.classNames.size()),
                                               m_s.data.batching.height / m_pixelFactor, m_s.labelDropout);
  if (!backboneConfig) return fail(backboneConfig.error());
  m_backboneConfig = *backboneConfig;
  m_s.resolved["model"]["config"] = m_backboneConfig;
  at::manual_seed(m_s.seed);  // the reference initialisation draws from the global generator
  auto built = buildModel(m_s.model, m_backboneConfig);
  if (!built) return fail(built.error());
  auto emaBuilt = buildModel(m_s.model, m_backboneConfig);
  if (!emaBuilt) return fail(emaBuilt.error());
  m_net = built->net;
  m_ema = emaBuilt->net;
  m_process = std::move(built->process);
  m_caps = m_net->capabilities();
  BatchingOptions& batching = m_s.data.batching;
  if (batching.mode == BatchMode::Packed && !m_caps.packed)
    return fail("data.batching is packed but the '" + m_s.model["backbone"].get<std::string>() +
                "' backbone takes no packed sequences; use fixed or buckets");
  if (batching.mode == BatchMode::Buckets && !m_caps.anyGrid)
    return fail("data.batching is buckets but this backbone has a fixed grid; use fixed");
  batching.multiple = std::max<std::int64_t>(1, m_caps.sizeMultiple) * m_pixelFactor;
  return {};
}

/// --init's weights into the network (the model read with the settings, not read again).
Result<void> Trainer::applyInit() {
  if (!m_initModel) return {};
  auto report = initFrom(*m_net, *m_initModel, m_data.classNames);
  if (!report) return fail(report.error());
  m_initReport = *report;
  m_initModel.reset();
  return {};
}

Result<void> Trainer::placeOnDevice() {
  const std::string device = m_request.device.empty() ? "cpu" : m_request.device;
  try {
    m_device = at::Device(device);
  } catch (const std::exception&) {
    return fail("--device '" + device + "': expected cpu, cuda or cuda:N");
  }
  if (m_device.is_cuda() && !torch::cuda::is_available()) return fail("--device " + device + ": no CUDA device here");
  if (m_s.precision == "bf16" && !m_device.is_cuda())
    return fail("train.precision bf16 needs --device cuda (this CPU has no bf16)");
  trained().to(m_device);
  averaged().to(m_device);
  if (m_firstStage) m_firstStage->network->to(m_device);
  {
    torch::NoGradGuard g;
    auto src = stateDict(trained());
    auto dst = stateDict(averaged());
    for (std::size_t i = 0; i < src.size(); ++i) dst[i].second.copy_(src[i].second);
  }
  // Label dropout is drawn by the trainer (see the header), so the network never drops
  // labels itself: it runs with is_training() off. None of our backbones has dropout
  // or batch norm, which is all train() would switch (nor do the autoencoders).
  trained().eval();
  averaged().eval();
  for (auto& p : averaged().parameters()) p.set_requires_grad(false);
  return {};
}

void Trainer::makeOptimiser() {
  for (const auto& item : trained().named_parameters()) {
    if (!item.value().requires_grad()) continue;
    m_params.push_back(item.value());
    m_paramNames.push_back(item.key());
  }
  auto emaNamed = averaged().named_parameters();
  for (const auto& n : m_paramNames) m_emaParams.push_back(emaNamed[n]);
  const OptimiserSettings& o = m_s.optimiser;
  m_optimizer = std::make_unique<torch::optim::AdamW>(
      m_params,
      torch::optim::AdamWOptions(o.lr).betas(std::make_tuple(o.beta1, o.beta2)).eps(o.eps).weight_decay(o.weightDecay));
}

/// Joins the data-parallel group (it blocks until every rank has joined).
Result<void> Trainer::joinRanks() {
  auto dp = DataParallel::join(m_env);
  if (!dp) return fail(dp.error());
  m_dp = std::move(*dp);
  m_world = m_dp->worldSize();
  m_rank = m_dp->rank();
  if (m_s.data.batching.mode == BatchMode::Packed && m_world > 1)
    return fail("data.batching packed runs in one process so far (the pack is not split across " +
                std::to_string(m_world) + " ranks)");
  return {};
}

}  // namespace tessera
