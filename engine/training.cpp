// SPDX-License-Identifier: Apache-2.0
#include "engine/training.h"

#include "models/common/packing.h"

#include "core/data/batching.h"
#include "core/formats/png.h"
#include "core/formats/safetensors.h"
#include "core/process/process.h"
#include "core/train/distributed.h"
#include "core/util/atomic_file.h"
#include "core/util/progress.h"
#include "engine/generation.h"
#include "engine/model_file.h"
#include "models/registry.h"
#include "models/state_dict.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <algorithm>
#include <map>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iomanip>
#include <iostream>
#include <regex>
#include <sstream>

namespace tessera {
namespace fs = std::filesystem;

namespace {

constexpr const char* kTrainMetadataKey = "tessera.train";
constexpr int kCheckpointFormat = 1;

// ---------------------------------------------------------------------------------------
// Settings

struct Settings {
  nlohmann::json model;   ///< {"backbone", "config", "process"}
  DataSpec data;
  BatchingOptions batching;
  std::int64_t validationImages = 256;
  std::int64_t limit = 0;
  // train
  std::int64_t steps = 1000;
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.0;
  std::int64_t warmup = 0;
  std::string schedule = "constant";
  double minLrRatio = 0.0;
  std::int64_t decay = 0;  ///< wsd: the final steps over which the rate falls
  double clip = 1.0;
  double ema = 0.9999;
  bool emaWarmup = true;
  double labelDropout = 0.1;
  std::uint64_t seed = 0;
  std::string precision = "fp32";
  // cadence
  std::int64_t logEvery = 10;
  std::int64_t checkpointEvery = 1000, keep = 2;
  std::string modelDtype = "float32";
  std::int64_t validationEvery = 500, validationTimesteps = 4;
  std::int64_t samplesEvery = 1000, samplesPerClass = 1, samplesSteps = 50;
  std::vector<std::string> sampleClasses;
  std::string samplesSampler;
  double samplesCfg = 4.0;
  bool samplesClip = false;
  std::uint64_t samplesSeed = 0;
  nlohmann::json resolved;  ///< the whole configuration with defaults
};

template <typename T>
Result<void> take(Result<T> r, T& out) {
  if (!r) return tl::unexpected(r.error());
  out = *r;
  return {};
}

#define TESSERA_TRY(expr)                            \
  do {                                               \
    if (auto _ok = (expr); !_ok) return fail(_ok.error()); \
  } while (0)

Result<Settings> parseSettings(const Config& c) {
  Settings s;
  TESSERA_TRY(c.rejectUnknown("", {"model", "data", "train", "checkpoint", "validation", "samples", "log"}));
  // model
  if (!c.has("model") || !c.json().at("model").is_object())
    return fail(c.source() + ": field 'model': expected an object {\"backbone\", \"config\", \"process\"}");
  TESSERA_TRY(c.rejectUnknown("model", {"backbone", "config", "process"}));
  std::string backbone;
  TESSERA_TRY(take(c.string("model.backbone"), backbone));
  s.model["backbone"] = backbone;
  s.model["config"] = c.json()["model"].value("config", nlohmann::json::object());
  if (!s.model["config"].is_object()) return fail(c.source() + ": field 'model.config': expected an object");
  if (!c.has("model.process")) return fail(c.source() + ": field 'model.process': missing (gaussian_diffusion or interpolant)");
  s.model["process"] = c.json()["model"]["process"];
  // data
  TESSERA_TRY(take(c.string("data.source", std::string("fashion-mnist")), s.data.source));
  TESSERA_TRY(take(c.string("data.split", std::string("train"), {"train", "test"}), s.data.split));
  TESSERA_TRY(take(c.string("data.dir", std::string()), s.data.dir));
  if (c.has("data.classes")) {
    const auto& cls = c.json()["data"]["classes"];
    if (!cls.is_array()) return fail(c.source() + ": field 'data.classes': expected a list of class names or indices");
    for (const auto& v : cls) s.data.classes.push_back(v.is_string() ? v.get<std::string>() : v.dump());
  }
  if (c.has("data")) {
    auto b = BatchingOptions::fromConfig(c, "data");
    if (!b) return fail(b.error());
    s.batching = *b;
  }
  TESSERA_TRY(take(c.integer("data.validation", 256, 0, 1 << 20), s.validationImages));
  // train
  TESSERA_TRY(c.rejectUnknown("train", {"steps", "lr", "betas", "eps", "weight_decay", "warmup", "schedule",
                                        "min_lr_ratio", "decay", "clip", "ema", "ema_warmup", "label_dropout", "seed",
                                        "precision", "limit"}));
  TESSERA_TRY(take(c.integer("train.steps", 1000, 1, 1LL << 40), s.steps));
  TESSERA_TRY(take(c.number("train.lr", 1e-4, 0.0, 10.0), s.lr));
  if (c.has("train.betas")) {
    const auto& b = c.json()["train"]["betas"];
    if (!b.is_array() || b.size() != 2 || !b[0].is_number() || !b[1].is_number() || b[0].get<double>() < 0 ||
        b[0].get<double>() >= 1 || b[1].get<double>() < 0 || b[1].get<double>() >= 1)
      return fail(c.source() + ": field 'train.betas': expected [beta1, beta2] in [0, 1), got " + b.dump());
    s.beta1 = b[0].get<double>();
    s.beta2 = b[1].get<double>();
  }
  TESSERA_TRY(take(c.number("train.eps", 1e-8, 0.0, 1.0), s.eps));
  TESSERA_TRY(take(c.number("train.weight_decay", 0.0, 0.0, 10.0), s.weightDecay));
  TESSERA_TRY(take(c.integer("train.warmup", 0, 0, 1LL << 40), s.warmup));
  TESSERA_TRY(take(c.string("train.schedule", std::string("constant"), {"constant", "cosine", "wsd"}), s.schedule));
  TESSERA_TRY(take(c.number("train.min_lr_ratio", 0.0, 0.0, 1.0), s.minLrRatio));
  if (s.schedule == "wsd") {
    // Warm-up, stable, decay (Hägele et al. 2024): a fifth of the run unless told.
    TESSERA_TRY(take(c.integer("train.decay", std::max<std::int64_t>(1, s.steps / 5), 1, 1LL << 40), s.decay));
    if (s.decay > s.steps)
      return fail(c.source() + ": field 'train.decay': " + std::to_string(s.decay) + " steps of decay but train.steps is " +
                  std::to_string(s.steps) + " (expected at most the run's length)");
  } else if (c.has("train.decay")) {
    return fail(c.source() + ": field 'train.decay': applies only to schedule \"wsd\" (the schedule is \"" + s.schedule +
                "\")");
  }
  TESSERA_TRY(take(c.number("train.clip", 1.0, 0.0, 1e9), s.clip));
  TESSERA_TRY(take(c.number("train.ema", 0.9999, 0.0, 1.0), s.ema));
  TESSERA_TRY(take(c.boolean("train.ema_warmup", true), s.emaWarmup));
  TESSERA_TRY(take(c.number("train.label_dropout", 0.1, 0.0, 0.999), s.labelDropout));
  std::int64_t seed = 0;
  TESSERA_TRY(take(c.integer("train.seed", 0, 0, INT64_MAX), seed));
  s.seed = static_cast<std::uint64_t>(seed);
  s.batching.seed = s.seed;
  TESSERA_TRY(take(c.string("train.precision", std::string("fp32"), {"fp32", "bf16"}), s.precision));
  TESSERA_TRY(take(c.integer("train.limit", 0, 0, INT64_MAX), s.limit));
  // cadence
  TESSERA_TRY(c.rejectUnknown("log", {"every"}));
  TESSERA_TRY(take(c.integer("log.every", 10, 1, 1LL << 40), s.logEvery));
  TESSERA_TRY(c.rejectUnknown("checkpoint", {"every", "keep", "model_dtype"}));
  TESSERA_TRY(take(c.integer("checkpoint.every", 1000, 1, 1LL << 40), s.checkpointEvery));
  TESSERA_TRY(take(c.integer("checkpoint.keep", 2, 1, 1000), s.keep));
  TESSERA_TRY(take(c.string("checkpoint.model_dtype", std::string("float32"), {"float32", "float16", "bfloat16"}),
                   s.modelDtype));
  TESSERA_TRY(c.rejectUnknown("validation", {"every", "timesteps"}));
  TESSERA_TRY(take(c.integer("validation.every", 500, 0, 1LL << 40), s.validationEvery));
  TESSERA_TRY(take(c.integer("validation.timesteps", 4, 1, 1000), s.validationTimesteps));
  TESSERA_TRY(c.rejectUnknown("samples", {"every", "classes", "per_class", "steps", "sampler", "cfg", "seed", "clip_x0"}));
  TESSERA_TRY(take(c.boolean("samples.clip_x0", false), s.samplesClip));
  TESSERA_TRY(take(c.integer("samples.every", 1000, 0, 1LL << 40), s.samplesEvery));
  TESSERA_TRY(take(c.integer("samples.per_class", 1, 1, 64), s.samplesPerClass));
  TESSERA_TRY(take(c.integer("samples.steps", 50, 1, 10000), s.samplesSteps));
  TESSERA_TRY(take(c.string("samples.sampler", std::string()), s.samplesSampler));
  TESSERA_TRY(take(c.number("samples.cfg", 4.0, 1.0, 100.0), s.samplesCfg));
  std::int64_t sseed = 0;
  TESSERA_TRY(take(c.integer("samples.seed", 0, 0, INT64_MAX), sseed));
  s.samplesSeed = static_cast<std::uint64_t>(sseed);
  if (c.has("samples.classes")) {
    const auto& cls = c.json()["samples"]["classes"];
    if (!cls.is_array()) return fail(c.source() + ": field 'samples.classes': expected a list of class names or indices");
    for (const auto& v : cls) s.sampleClasses.push_back(v.is_string() ? v.get<std::string>() : v.dump());
  }
  s.resolved = {
      {"model", s.model},
      {"data",
       [&] {
         nlohmann::json d = s.batching.toJson();
         d.erase("seed");
         d.erase("multiple");
         d["source"] = s.data.source;
         d["split"] = s.data.split;
         if (!s.data.dir.empty()) d["dir"] = s.data.dir;
         if (!s.data.classes.empty()) d["classes"] = s.data.classes;
         d["validation"] = s.validationImages;
         return d;
       }()},
      {"train",
       {{"steps", s.steps}, {"lr", s.lr}, {"betas", {s.beta1, s.beta2}}, {"eps", s.eps},
        {"weight_decay", s.weightDecay}, {"warmup", s.warmup}, {"schedule", s.schedule},
        {"min_lr_ratio", s.minLrRatio}, {"clip", s.clip}, {"ema", s.ema}, {"ema_warmup", s.emaWarmup},
        {"label_dropout", s.labelDropout}, {"seed", s.seed}, {"precision", s.precision}, {"limit", s.limit}}},
      {"log", {{"every", s.logEvery}}},
      {"checkpoint", {{"every", s.checkpointEvery}, {"keep", s.keep}, {"model_dtype", s.modelDtype}}},
      {"validation", {{"every", s.validationEvery}, {"timesteps", s.validationTimesteps}}},
      {"samples",
       {{"every", s.samplesEvery}, {"per_class", s.samplesPerClass}, {"steps", s.samplesSteps},
        {"sampler", s.samplesSampler}, {"cfg", s.samplesCfg}, {"seed", s.samplesSeed}, {"classes", s.sampleClasses},
        {"clip_x0", s.samplesClip}}}};
  if (s.schedule == "wsd") s.resolved["train"]["decay"] = s.decay;
  return s;
}

/// The learning rate of a step, from a resolved 'train' section: linear warm-up, then
/// constant, cosine down to min_lr_ratio over the rest of the run, or wsd (constant, then
/// linear down to min_lr_ratio over the last 'decay' steps; the last step reaches it).
double learningRate(const nlohmann::json& train, std::int64_t step) {
  const double base = train.value("lr", 1e-4), minRatio = train.value("min_lr_ratio", 0.0);
  const std::int64_t steps = train.value("steps", std::int64_t{1}), warmup = train.value("warmup", std::int64_t{0});
  const std::string schedule = train.value("schedule", std::string("constant"));
  double lr = base;
  if (schedule == "cosine" && steps > warmup) {
    const double progress =
        std::clamp(static_cast<double>(step - warmup) / static_cast<double>(steps - warmup), 0.0, 1.0);
    lr = base * (minRatio + (1 - minRatio) * 0.5 * (1 + std::cos(M_PI * progress)));
  } else if (schedule == "wsd") {
    const std::int64_t decay = std::max<std::int64_t>(1, train.value("decay", std::int64_t{1}));
    const double progress = std::clamp(static_cast<double>(step - (steps - decay) + 1) / static_cast<double>(decay), 0.0, 1.0);
    lr = base * (1 - (1 - minRatio) * progress);
  }
  if (warmup > 0 && step < warmup) lr *= static_cast<double>(step + 1) / static_cast<double>(warmup);
  return lr;
}

/// What a resumed run may change: how long it runs, how often it reports, and the
/// learning-rate schedule of the steps still to come (to add a cool-down to a run trained
/// at a constant rate, say). The rate of every step already trained must stay as it was,
/// except that a run may be lengthened as before, which stretches a cosine schedule.
Result<void> checkResumable(const nlohmann::json& before, const nlohmann::json& now, std::int64_t trainedSteps) {
  for (const char* section : {"model", "data"})
    if (before.value(section, nlohmann::json()) != now.value(section, nlohmann::json()))
      return fail(std::string("--resume: the configuration's '") + section +
                  "' section differs from the run's; a resumed run must train the same model on the same data");
  const nlohmann::json trainBefore = before.value("train", nlohmann::json::object()),
                       trainNow = now.value("train", nlohmann::json::object());
  nlohmann::json a = trainBefore, b = trainNow;
  for (const char* key : {"steps", "schedule", "min_lr_ratio", "decay"}) {
    a.erase(key);
    b.erase(key);
  }
  if (a != b)
    return fail("--resume: the 'train' section differs from the run's (only 'steps' and the schedule of the steps "
                "still to come may change): was " + a.dump() + ", now " + b.dump());
  nlohmann::json scheduleBefore = trainBefore, scheduleNow = trainNow;
  scheduleBefore.erase("steps");
  scheduleNow.erase("steps");
  if (scheduleBefore == scheduleNow) return {};
  for (std::int64_t step = 0; step < trainedSteps; ++step) {
    const double was = learningRate(trainBefore, step), is = learningRate(trainNow, step);
    if (std::abs(was - is) > 1e-12 * std::max(std::abs(was), 1e-30)) {
      std::ostringstream m;
      m << "--resume: the new learning-rate schedule changes step " << step << " (was " << was << ", now " << is
        << "), which the run has already trained; a resumed run may change only the steps from "
        << trainedSteps << " on (for a cool-down: schedule \"wsd\" with train.steps - train.decay >= "
        << trainedSteps << ")";
      return fail(m.str());
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------
// Model construction

/// The backbone configuration with the fields the data decides filled in: channels,
/// classes, grid and the label dropout. A value the user gave that contradicts the
/// data is an error.
Result<nlohmann::json> completeBackboneConfig(nlohmann::json config, const LabelledImages& data,
                                              const BatchingOptions& batching, double labelDropout) {
  const auto setOrCheck = [&](const char* key, const nlohmann::json& value) -> Result<void> {
    if (config.contains(key) && config[key] != value)
      return fail(std::string("model.config.") + key + " is " + config[key].dump() + " but the data needs " +
                  value.dump() + " (leave it out and the trainer sets it)");
    config[key] = value;
    return {};
  };
  TESSERA_TRY(setOrCheck("in_channels", data.channels));
  TESSERA_TRY(setOrCheck("num_classes", static_cast<std::int64_t>(data.classNames.size())));
  if (!config.contains("input_size")) config["input_size"] = batching.height;
  // Our own models guide every channel; the reference's three-channel rule is a quirk
  // kept only for imported checkpoints.
  if (!config.contains("cfg_channels")) config["cfg_channels"] = data.channels;
  if (config.contains("class_dropout_prob") && config["class_dropout_prob"].get<double>() != labelDropout &&
      !(labelDropout > 0 && config["class_dropout_prob"].get<double>() > 0))
    return fail("model.config.class_dropout_prob and train.label_dropout disagree about guidance (one is 0)");
  config["class_dropout_prob"] = labelDropout;
  return config;
}

struct Built {
  std::shared_ptr<BackboneImpl> net;
  Process process;
  nlohmann::json backboneConfig;
};

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
      return fail(std::string("model.process.learn_sigma is ") + (learned ? "true" : "false") +
                  " but the backbone " + (caps.learnedSigma ? "predicts" : "does not predict") +
                  " a variance (model.config.learn_sigma); they must agree");
    if (caps.prediction == Prediction::Velocity)
      return fail("model.process is gaussian_diffusion but the backbone predicts a velocity; use an interpolant process");
  } else if (caps.prediction == Prediction::Epsilon || caps.prediction == Prediction::EpsilonAndSigma) {
    if (process->interpolant->config().prediction != "noise")
      return fail("model.process is an interpolant predicting '" + process->interpolant->config().prediction +
                  "' but the backbone's prediction is eps; set model.config.prediction to match");
  }
  return Built{*net, std::move(*process), backboneConfig};
}

// ---------------------------------------------------------------------------------------
// bf16 autocast on CUDA for the forward pass (no loss scaling needed, unlike fp16).

class CudaBf16Autocast {
public:
  explicit CudaBf16Autocast(bool enable) : m_on(enable) {
    if (!m_on) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
    at::autocast::increment_nesting();
  }
  ~CudaBf16Autocast() {
    if (!m_on) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
  }
  CudaBf16Autocast(const CudaBf16Autocast&) = delete;
  CudaBf16Autocast& operator=(const CudaBf16Autocast&) = delete;

private:
  bool m_on;
};

// ---------------------------------------------------------------------------------------
// Optimiser state in safetensors

using AdamWState = torch::optim::AdamWParamState;

/// The optimiser's per-parameter state map is keyed by the parameter's TensorImpl, as a
/// string in LibTorch 1.x and as a pointer in 2.x.
template <typename Map>
auto stateKey(const at::Tensor& p) {
  using Key = typename std::decay_t<Map>::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    return c10::guts::to_string(p.unsafeGetTensorImpl());
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

AdamWState* adamState(torch::optim::AdamW& opt, const at::Tensor& p) {
  auto& map = opt.state();
  auto it = map.find(stateKey<decltype(map)>(p));
  if (it == map.end()) return nullptr;
  return static_cast<AdamWState*>(it->second.get());
}

void setAdamState(torch::optim::AdamW& opt, const at::Tensor& p, std::int64_t step, at::Tensor expAvg,
                  at::Tensor expAvgSq) {
  auto state = std::make_unique<AdamWState>();
  state->step(step);
  state->exp_avg(std::move(expAvg));
  state->exp_avg_sq(std::move(expAvgSq));
  auto& map = opt.state();
  map[stateKey<decltype(map)>(p)] = std::move(state);
}

// ---------------------------------------------------------------------------------------
// Events

class Events {
public:
  Events(std::ostream* out, bool enabled) : m_out(out), m_enabled(enabled && out) {}
  void emit(nlohmann::json j) {
    if (!m_enabled) return;
    (*m_out) << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    m_out->flush();
  }

private:
  std::ostream* m_out;
  bool m_enabled;
};

std::string checkpointName(std::int64_t step) {
  std::ostringstream s;
  s << "step_" << std::setw(8) << std::setfill('0') << step << ".safetensors";
  return s.str();
}

std::int64_t stepOfCheckpoint(const std::string& name) {
  static const std::regex pattern(R"(^step_(\d+)\.safetensors$)");
  std::smatch m;
  if (!std::regex_match(name, m, pattern)) return -1;
  return std::stoll(m[1].str());
}

double nowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Image8 gridImage(const at::Tensor& samples, std::int64_t columns) {
  // samples (n, C, H, W) in [-1, 1]; column-major by class
  const std::int64_t n = samples.size(0), c = samples.size(1), h = samples.size(2), w = samples.size(3);
  const std::int64_t rows = (n + columns - 1) / columns, pad = 2;
  Image8 img;
  img.channels = c;
  img.width = columns * (w + pad) + pad;
  img.height = rows * (h + pad) + pad;
  img.pixels.assign(static_cast<std::size_t>(img.width * img.height * c), 40);
  const at::Tensor u8 =
      samples.clamp(-1, 1).add(1).mul(127.5).round().to(at::kByte).permute({0, 2, 3, 1}).contiguous();
  const std::uint8_t* src = u8.data_ptr<std::uint8_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t gx = (i % columns) * (w + pad) + pad, gy = (i / columns) * (h + pad) + pad;
    for (std::int64_t y = 0; y < h; ++y)
      std::copy_n(src + ((i * h + y) * w) * c, w * c,
                  img.pixels.begin() + static_cast<std::ptrdiff_t>(((gy + y) * img.width + gx) * c));
  }
  return img;
}

at::ScalarType dtypeNamed(const std::string& name) {
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  return at::kFloat;
}

// ---------------------------------------------------------------------------------------
// --init: weights from an existing model, class tables remapped by name

Result<nlohmann::json> initFrom(BackboneImpl& net, const LoadedModel& loaded, const std::vector<std::string>& newNames) {
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
    if (it == byName.end()) return fail("--init " + path + ": the model has no tensor '" + name + "' (different architecture)");
    const at::Tensor& src = it->second;
    if (src.sizes() == target.sizes()) {
      target.copy_(src);
      ++copied;
      continue;
    }
    // A class table: one row per class (plus the null class), the other dims equal.
    const bool classTable = src.dim() == target.dim() && src.dim() >= 1 &&
                            (src.size(0) == oldClasses || src.size(0) == oldClasses + 1) &&
                            (target.size(0) == newClasses || target.size(0) == newClasses + 1) &&
                            src.sizes().slice(1) == target.sizes().slice(1);
    if (!classTable)
      return fail("--init " + path + ": tensor '" + name + "' has shape " + c10::str(src.sizes()) + " there and " +
                  c10::str(target.sizes()) + " here (different architecture)");
    std::int64_t matched = 0;
    for (std::int64_t k = 0; k < newClasses; ++k) {
      std::int64_t old = -1;
      for (std::size_t j = 0; j < oldNames.size(); ++j)
        if (oldNames[j] == newNames[static_cast<std::size_t>(k)]) old = static_cast<std::int64_t>(j);
      if (old >= 0) {
        target[k].copy_(src[old]);
        ++matched;
      }  // else: keeps the fresh initialisation
    }
    if (target.size(0) == newClasses + 1 && src.size(0) == oldClasses + 1) target[newClasses].copy_(src[oldClasses]);
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

/// --init takes the architecture and process from the model being fine-tuned, so its
/// configuration may leave out the model section, or give only the backbone's name: the
/// settings of a configuration fine-tuning the model described by `d`.
Result<Settings> settingsForInit(const Config& config, const nlohmann::json& d) {
  nlohmann::json j = config.json();
  nlohmann::json& model = j["model"];
  if (!model.is_object()) model = nlohmann::json::object();
  if (!model.contains("backbone")) model["backbone"] = d["backbone"]["kind"];
  if (!model.contains("config")) model["config"] = nlohmann::json::object();
  if (!model.contains("process") && d.contains("process")) model["process"] = d["process"];
  auto filled = Config::fromString(j.dump(), config.source());
  if (!filled) return fail(filled.error());
  auto settingsOr = parseSettings(*filled);
  if (!settingsOr) return fail(settingsOr.error());
  Settings s = std::move(*settingsOr);
  if (s.model.value("backbone", std::string()) != d["backbone"]["kind"].get<std::string>())
    return fail("--init: the model is a '" + d["backbone"]["kind"].get<std::string>() + "' but model.backbone is '" +
                s.model.value("backbone", std::string()) + "'");
  nlohmann::json cfg = d["backbone"]["config"];
  for (auto& [k, v] : s.model["config"].items()) cfg[k] = v;  // the config may override (e.g. nothing)
  cfg.erase("num_classes");
  cfg.erase("class_dropout_prob");
  s.model["config"] = cfg;
  if (d.contains("process")) s.model["process"] = d["process"];
  s.resolved["model"] = s.model;
  return s;
}

}  // namespace

nlohmann::json TrainSummary::json() const {
  return {{"steps", steps},         {"start_step", startStep}, {"stopped", stopped},
          {"seconds", seconds},     {"last_loss", lastLoss},   {"model", modelPath},
          {"checkpoint", checkpointPath}};
}

Result<nlohmann::json> checkTrainingConfig(const Config& config, const std::string& initModel) {
  if (initModel.empty()) {
    auto s = parseSettings(config);
    if (!s) return fail(s.error());
    return s->resolved;
  }
  auto m = loadModelFile(initModel);
  if (!m) return fail(m.error().withContext("--init"));
  auto s = settingsForInit(config, m->description);
  if (!s) return fail(s.error());
  return s->resolved;
}

std::string newestCheckpoint(const std::string& runDir, std::string* warnings) {
  const fs::path dir = fs::path(runDir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  std::vector<std::pair<std::int64_t, std::string>> found;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::int64_t step = stepOfCheckpoint(e.path().filename().string());
    if (step >= 0) found.emplace_back(step, e.path().string());
  }
  std::sort(found.rbegin(), found.rend());
  for (const auto& [step, path] : found) {
    auto file = SafetensorsFile::open(path);
    if (file && file->metadata().count(kTrainMetadataKey)) return path;
    if (warnings)
      *warnings += path + " is not a loadable checkpoint (" +
                   (file ? std::string("no training state") : file.error().message()) + "); ";
  }
  return {};
}

Result<TrainSummary> runTraining(const TrainRequest& request) {
  const double startTime = nowSeconds();
  auto envDist = distributedEnvFromEnvironment();
  if (!envDist) return fail(envDist.error());
  const bool leader = envDist->rank == 0;
  Events events(request.events, leader);
  const fs::path runDir(request.outDir);
  if (request.outDir.empty()) return fail("--out: a run directory is required");

  // 1. Configuration: given, or the run's own when resuming.
  std::optional<Config> config;
  const fs::path savedConfig = runDir / "config.json";
  std::string resumeFrom;
  nlohmann::json resumeMeta;
  if (request.resume) {
    std::string warnings;
    resumeFrom = newestCheckpoint(request.outDir, &warnings);
    if (!warnings.empty() && leader) events.emit({{"event", "warning"}, {"message", warnings}});
    if (resumeFrom.empty())
      return fail("--resume: no loadable checkpoint in " + (runDir / "checkpoints").string() +
                  (warnings.empty() ? "" : " (" + warnings + ")"));
  }
  if (!request.configPath.empty()) {
    auto c = Config::fromFile(request.configPath);
    if (!c) return fail(c.error());
    config = std::move(*c);
  } else if (request.resume) {
    auto c = Config::fromFile(savedConfig.string());
    if (!c) return fail(c.error().withContext("--resume"));
    config = std::move(*c);
  } else if (request.initModel.empty()) {
    return fail("--config: a training configuration is required");
  } else {
    return fail("--config: a training configuration is required (with --init too: it names the data and the schedule)");
  }
  std::optional<LoadedModel> initModel;
  if (!request.initModel.empty()) {
    auto m = loadModelFile(request.initModel);
    if (!m) return fail(m.error().withContext("--init"));
    initModel = std::move(*m);
  }
  auto settingsOr = initModel ? settingsForInit(*config, initModel->description) : parseSettings(*config);
  if (!settingsOr) return fail(settingsOr.error());
  Settings s = std::move(*settingsOr);
  nlohmann::json initReport;

  // 2. Data.
  auto data = loadLabelledImages(s.data);
  if (!data) return fail(data.error());
  if (s.limit > 0 && data->size() > s.limit) {
    data->images.resize(static_cast<std::size_t>(s.limit));
    data->labels.resize(static_cast<std::size_t>(s.limit));
    data->summary["images"] = s.limit;
  }
  LabelledImages validation;
  if (s.validationImages > 0) {
    if ((s.data.source == "fashion-mnist" || s.data.source == "fashion-native") && s.data.split == "train") {
      DataSpec v = s.data;
      v.split = "test";
      auto test = loadLabelledImages(v);
      if (!test) return fail(test.error());
      validation = std::move(*test);
      validation.images.resize(std::min<std::size_t>(validation.images.size(), static_cast<std::size_t>(s.validationImages)));
      validation.labels.resize(validation.images.size());
    } else {
      auto [kept, held] = holdOut(*data, std::min<std::int64_t>(s.validationImages, data->size() / 5), s.seed);
      *data = std::move(kept);
      validation = std::move(held);
    }
  }

  // 3. Model, EMA copy, process.
  auto backboneConfig = completeBackboneConfig(s.model["config"], *data, s.batching, s.labelDropout);
  if (!backboneConfig) return fail(backboneConfig.error());
  s.resolved["model"]["config"] = *backboneConfig;
  at::manual_seed(s.seed);  // the reference initialisation draws from the global generator
  auto built = buildModel(s.model, *backboneConfig);
  if (!built) return fail(built.error());
  auto emaBuilt = buildModel(s.model, *backboneConfig);
  if (!emaBuilt) return fail(emaBuilt.error());
  std::shared_ptr<BackboneImpl> net = built->net, ema = emaBuilt->net;
  const Process& process = built->process;
  const Capabilities caps = net->capabilities();
  if (s.batching.mode == BatchMode::Packed && !caps.packed)
    return fail("data.batching is packed but the '" + s.model["backbone"].get<std::string>() +
                "' backbone takes no packed sequences; use fixed or buckets");
  if (s.batching.mode == BatchMode::Buckets && !caps.anyGrid)
    return fail("data.batching is buckets but this backbone has a fixed grid; use fixed");
  s.batching.multiple = std::max<std::int64_t>(1, caps.sizeMultiple);
  auto batcher = Batcher::create(*data, s.batching);
  if (!batcher) return fail(batcher.error());
  std::optional<Batcher> valBatcher;
  if (validation.size() > 0) {
    BatchingOptions vo = s.batching;
    vo.flip = false;
    vo.seed = mixSeed(s.seed, 0x7A1);
    auto vb = Batcher::create(validation, vo);
    if (!vb) return fail(vb.error());
    valBatcher.emplace(std::move(*vb));
  }

  if (initModel) {
    auto report = initFrom(*net, *initModel, data->classNames);  // the model loaded above, not read again
    if (!report) return fail(report.error());
    initReport = *report;
    initModel.reset();
  }

  const std::string device = request.device.empty() ? "cpu" : request.device;
  at::Device dev(at::kCPU);
  try {
    dev = at::Device(device);
  } catch (const std::exception&) {
    return fail("--device '" + device + "': expected cpu, cuda or cuda:N");
  }
  if (dev.is_cuda() && !torch::cuda::is_available()) return fail("--device " + device + ": no CUDA device here");
  if (s.precision == "bf16" && !dev.is_cuda()) return fail("train.precision bf16 needs --device cuda (this CPU has no bf16)");
  net->to(dev);
  ema->to(dev);
  {
    torch::NoGradGuard g;
    auto src = stateDict(*net);
    auto dst = stateDict(*ema);
    for (std::size_t i = 0; i < src.size(); ++i) dst[i].second.copy_(src[i].second);
  }
  // Label dropout is drawn by the trainer (see the header), so the network never drops
  // labels itself: it runs with is_training() off. None of our backbones has dropout
  // or batch norm, which is all train() would switch.
  net->eval();
  ema->eval();
  for (auto& p : ema->parameters()) p.set_requires_grad(false);

  std::vector<at::Tensor> params;
  std::vector<std::string> paramNames;
  for (const auto& item : net->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    params.push_back(item.value());
    paramNames.push_back(item.key());
  }
  std::vector<at::Tensor> emaParams;
  {
    auto emaNamed = ema->named_parameters();
    for (const auto& n : paramNames) emaParams.push_back(emaNamed[n]);
  }
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(s.lr)
                                            .betas(std::make_tuple(s.beta1, s.beta2))
                                            .eps(s.eps)
                                            .weight_decay(s.weightDecay));

  if (!request.resume && !newestCheckpoint(request.outDir).empty())
    return fail("--out " + runDir.string() + " already holds checkpoints; use --resume to continue it or choose another directory");
  auto dp = DataParallel::join(*envDist);
  if (!dp) return fail(dp.error());
  const int world = (*dp)->worldSize(), rank = (*dp)->rank();
  const bool packedBatches = s.batching.mode == BatchMode::Packed;
  if (packedBatches && world > 1)
    return fail("data.batching packed runs in one process so far (the pack is not split across " + std::to_string(world) + " ranks)");

  // 4. Run directory, resume.
  std::error_code ec;
  if (leader) {
    fs::create_directories(runDir / "checkpoints", ec);
    if (ec) return fail("--out " + runDir.string() + ": cannot create it: " + ec.message());
    fs::create_directories(runDir / "samples", ec);
    // Temporary files a killed save left behind.
    for (const auto& e : fs::directory_iterator(runDir / "checkpoints", ec))
      if (e.path().filename().string().find(".tmp-") != std::string::npos) fs::remove(e.path(), ec);
  }
  std::int64_t startStep = 0;
  double elapsedBefore = 0;
  if (request.resume) {
    auto file = SafetensorsFile::open(resumeFrom);
    if (!file) return fail(file.error());
    auto meta = Config::fromString(file->metadata().at(kTrainMetadataKey), resumeFrom);
    if (!meta) return fail(meta.error());
    resumeMeta = meta->json();
    startStep = resumeMeta.value("step", std::int64_t{0});
    if (auto ok = checkResumable(resumeMeta.value("config", nlohmann::json()), s.resolved, startStep); !ok)
      return fail(ok.error());
    elapsedBefore = resumeMeta.value("elapsed_s", 0.0);
    const std::int64_t adamStep = resumeMeta.value("adam_step", std::int64_t{0});
    torch::NoGradGuard g;
    auto netState = stateDict(*net);
    auto emaState = stateDict(*ema);
    for (auto& [name, t] : netState)
      if (auto ok = file->readInto("model/" + name, t); !ok) return fail(ok.error().withContext("--resume"));
    for (auto& [name, t] : emaState)
      if (auto ok = file->readInto("ema/" + name, t); !ok) return fail(ok.error().withContext("--resume"));
    if (adamStep > 0) {
      for (std::size_t i = 0; i < params.size(); ++i) {
        at::Tensor m1 = at::zeros_like(params[i]), m2 = at::zeros_like(params[i]);
        if (auto ok = file->readInto("adam/exp_avg/" + paramNames[i], m1); !ok) return fail(ok.error().withContext("--resume"));
        if (auto ok = file->readInto("adam/exp_avg_sq/" + paramNames[i], m2); !ok) return fail(ok.error().withContext("--resume"));
        setAdamState(optimizer, params[i], adamStep, m1, m2);
      }
    }
  }
  if (leader) {
    if (auto ok = writeFileAtomically(savedConfig.string(), s.resolved.dump(2) + "\n"); !ok) return fail(ok.error());
  }
  // Ranks start identical: rank 0's weights (they already are, from the seed; this makes it a fact).
  {
    torch::NoGradGuard g;
    std::vector<at::Tensor> all;
    for (auto& [n, t] : stateDict(*net)) all.push_back(t);
    (*dp)->broadcastFromRankZero(all);
    std::vector<at::Tensor> allEma;
    for (auto& [n, t] : stateDict(*ema)) allEma.push_back(t);
    (*dp)->broadcastFromRankZero(allEma);
  }

  // 5. The model description written with every checkpoint.
  std::string samplerName = s.samplesSampler;
  if (samplerName.empty()) samplerName = process.diffusion ? "ddim" : "euler";
  SamplingDefaults trainedDefaults;  // what the preview grids used: the model's first defaults
  trainedDefaults.sampler = samplerName;
  trainedDefaults.steps = s.samplesSteps;
  trainedDefaults.cfg = caps.nullClass ? s.samplesCfg : 1.0;
  trainedDefaults.clipX0 = s.samplesClip;
  nlohmann::json description = {
      {"backbone", {{"kind", s.model["backbone"]}, {"config", *backboneConfig}}},
      {"process", process.toJson()},
      {"classes",
       {{"count", static_cast<std::int64_t>(data->classNames.size())},
        {"null_class", caps.nullClass},
        {"names", data->classNames}}},
      {"data", {{"kind", "image"}, {"channels", data->channels}, {"size", {s.batching.height, s.batching.width}}}},
      {"defaults", trainedDefaults.toJson()},
      {"source", {{"trained_by", "tessera-cli train"}, {"data", data->summary}}},
  };
  description["process"]["kind"] = process.kind();
  {
    // The sizes the model saw in training, for the studio's resolution picker.
    std::map<std::pair<std::int64_t, std::int64_t>, std::int64_t> seen;
    for (std::int64_t i = 0; i < batcher->itemCount(); ++i) ++seen[batcher->itemSize(i)];
    nlohmann::json sizes = nlohmann::json::array();
    for (const auto& [hw, count] : seen) sizes.push_back({{"height", hw.first}, {"width", hw.second}, {"count", count}});
    description["data"]["trained_sizes"] = sizes;
  }

  auto lrAt = [&](std::int64_t step) { return learningRate(s.resolved["train"], step); };

  std::string lastCheckpoint = resumeFrom;
  auto writeCheckpoint = [&](std::int64_t step, double elapsed, double loss) -> Result<void> {
    if (!leader) return {};
    NamedTensors tensors;
    for (auto& [n, t] : stateDict(*net)) tensors.emplace_back("model/" + n, t.detach().to(at::kCPU));
    for (auto& [n, t] : stateDict(*ema)) tensors.emplace_back("ema/" + n, t.detach().to(at::kCPU));
    std::int64_t adamStep = 0;
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (AdamWState* st = adamState(optimizer, params[i])) {
        adamStep = st->step();
        tensors.emplace_back("adam/exp_avg/" + paramNames[i], st->exp_avg().to(at::kCPU));
        tensors.emplace_back("adam/exp_avg_sq/" + paramNames[i], st->exp_avg_sq().to(at::kCPU));
      }
    }
    nlohmann::json meta = {{"format", kCheckpointFormat}, {"step", step},     {"adam_step", adamStep},
                           {"elapsed_s", elapsed},        {"loss", loss},     {"world_size", world},
                           {"config", s.resolved},        {"init", initReport}};
    const std::string path = (runDir / "checkpoints" / checkpointName(step)).string();
    if (auto ok = writeSafetensors(path, tensors, {{kTrainMetadataKey, meta.dump()}}); !ok) return ok;
    // The model file: EMA weights, usable by sample and eval while training goes on.
    nlohmann::json d = description;
    d["source"]["training"] = {{"step", step}, {"elapsed_s", elapsed}, {"config", s.resolved}, {"init", initReport}};
    NamedTensors weights;
    for (auto& [n, t] : stateDict(*ema)) weights.emplace_back(n, t.detach().to(at::kCPU).to(dtypeNamed(s.modelDtype)));
    if (auto ok = writeModelFile((runDir / "model.safetensors").string(), d, weights); !ok) return ok;
    lastCheckpoint = path;
    // Keep the newest `keep` checkpoints.
    std::vector<std::pair<std::int64_t, fs::path>> all;
    std::error_code e2;
    for (const auto& e : fs::directory_iterator(runDir / "checkpoints", e2)) {
      const std::int64_t st = stepOfCheckpoint(e.path().filename().string());
      if (st >= 0) all.emplace_back(st, e.path());
    }
    std::sort(all.rbegin(), all.rend());
    for (std::size_t i = static_cast<std::size_t>(s.keep); i < all.size(); ++i) fs::remove(all[i].second, e2);
    events.emit({{"event", "checkpoint"}, {"step", step}, {"path", path}, {"model", (runDir / "model.safetensors").string()}});
    return {};
  };

  // One global batch's random draws, from the step's own generator, sliced for this rank.
  // Packed batches: x0 and noise are packs (L, C, p, p); t and labels per image, and
  // the token → image index and per-image sizes for the backbone.
  struct Draws {
    at::Tensor x0, labels, t, noise;
    at::Tensor sizes, tokenImage, tokenCounts;
  };
  const std::int64_t patch = std::max<std::int64_t>(1, caps.sizeMultiple);
  auto drawsFor = [&](const Batch& b, std::uint64_t genSeed, bool training) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(genSeed);
    const std::int64_t n = b.size();
    Draws d;
    if (!b.images.empty()) {
      GridSizes grids;
      std::vector<std::int64_t> sizes, counts;
      for (const auto& img : b.images) {
        grids.emplace_back(img.size(1) / patch, img.size(2) / patch);
        sizes.push_back(img.size(1));
        sizes.push_back(img.size(2));
        counts.push_back(grids.back().first * grids.back().second);
      }
      d.x0 = packImages(b.images, patch);
      d.sizes = at::tensor(sizes, at::kLong).reshape({n, 2});
      d.tokenImage = tokenImageIndex(grids);
      d.tokenCounts = at::tensor(counts, at::kFloat);
    } else {
      d.x0 = b.x;
    }
    d.labels = b.labels.clone();
    if (process.diffusion) {
      d.t = at::randint(0, process.diffusion->numSteps(), {n}, gen, at::kLong);
    } else {
      d.t = process.interpolant->drawTrainingTimes(n, gen);
    }
    d.noise = at::randn(d.x0.sizes(), gen, at::kFloat);
    if (training && s.labelDropout > 0 && caps.nullClass) {
      const at::Tensor drop = at::rand({n}, gen, at::kFloat) < s.labelDropout;
      d.labels.masked_fill_(drop, caps.numClasses);
    }
    return d;
  };
  auto sliceFor = [&](Draws d, std::int64_t n) {
    if (d.sizes.defined()) return d;  // packed: one process (checked above)
    const std::int64_t begin = n * rank / world, end = n * (rank + 1) / world;
    d.x0 = d.x0.slice(0, begin, end);
    d.labels = d.labels.slice(0, begin, end);
    d.t = d.t.slice(0, begin, end);
    d.noise = d.noise.slice(0, begin, end);
    return d;
  };
  // Per-sample losses of one batch (local rows).
  const bool autocastBf16 = s.precision == "bf16";
  auto lossOf = [&](BackboneImpl& model, const Draws& d) -> at::Tensor {
    CudaBf16Autocast autocast(autocastBf16);
    const at::Tensor x0 = d.x0.to(dev), noise = d.noise.to(dev), t = d.t.to(dev), y = d.labels.to(dev);
    if (d.sizes.defined()) {
      // Every token is a sample of the process at its image's time; an image's loss is the
      // mean over its tokens (= over its pixels, as for a whole image).
      const at::Tensor tokenImage = d.tokenImage.to(dev);
      const at::Tensor tt = t.index_select(0, tokenImage);
      BackboneInput in;
      in.y = y, in.sizes = d.sizes;
      at::Tensor perToken;
      if (process.diffusion) {
        in.x = process.diffusion->qSample(x0, tt, noise), in.t = t;
        const at::Tensor out = model.forward(in).prediction;
        perToken = process.diffusion->trainingLoss(out.to(at::kFloat), x0, noise, tt).loss;
      } else {
        in.x = process.interpolant->xt(noise, x0, tt), in.t = process.interpolant->toModelTime(t);
        const at::Tensor out = process.interpolant->fromModelOutput(model.forward(in).prediction);
        perToken = process.interpolant->trainingLoss(out.to(at::kFloat), noise, x0, tt);
      }
      const at::Tensor sums = at::zeros({t.size(0)}, perToken.options()).index_add(0, tokenImage, perToken);
      return sums / d.tokenCounts.to(sums.device());
    }
    if (process.diffusion) {
      const at::Tensor xt = process.diffusion->qSample(x0, t, noise);
      BackboneInput in;
      in.x = xt, in.t = t, in.y = y;
      const at::Tensor out = model.forward(in).prediction;
      return process.diffusion->trainingLoss(out.to(at::kFloat), x0, noise, t).loss;
    }
    const at::Tensor xt = process.interpolant->xt(noise, x0, t);
    BackboneInput in;
    in.x = xt, in.t = process.interpolant->toModelTime(t), in.y = y;
    const at::Tensor out = process.interpolant->fromModelOutput(model.forward(in).prediction);
    return process.interpolant->trainingLoss(out.to(at::kFloat), noise, x0, t);
  };

  auto validate = [&](BackboneImpl& model) -> double {
    if (!valBatcher) return std::nan("");
    torch::NoGradGuard g;
    double sum = 0;
    std::int64_t count = 0;
    const std::int64_t total = valBatcher->itemCount();
    for (std::int64_t k = 0; k < s.validationTimesteps; ++k) {
      std::int64_t seen = 0;
      for (std::int64_t b = 0; seen < total; ++b) {
        Batch batch = valBatcher->batch(b);
        const std::int64_t take = std::min<std::int64_t>(batch.size(), total - seen);
        if (take < batch.size()) {
          if (batch.x.defined()) batch.x = batch.x.slice(0, 0, take);
          if (!batch.images.empty()) batch.images.resize(static_cast<std::size_t>(take));
          batch.labels = batch.labels.slice(0, 0, take);
        }
        seen += take;
        Draws d = drawsFor(batch, mixSeed(mixSeed(s.seed, 0x7A11D), static_cast<std::uint64_t>(b)), false);
        // The timestep is fixed: the k-th of `validationTimesteps` evenly spaced ones.
        const double frac = (static_cast<double>(k) + 0.5) / static_cast<double>(s.validationTimesteps);
        if (process.diffusion) {
          d.t = at::full({take}, static_cast<std::int64_t>(frac * static_cast<double>(process.diffusion->numSteps())), at::kLong);
        } else {
          const auto [t0, t1] = process.interpolant->trainInterval();
          d.t = at::full({take}, t0 + frac * (t1 - t0), at::kFloat);
        }
        // Each rank takes its share; the sums are combined below.
        Draws mine = sliceFor(d, take);
        if (mine.labels.size(0) > 0) {
          sum += lossOf(model, mine).sum().item<double>();
          count += mine.labels.size(0);
        }
      }
    }
    at::Tensor agg = at::tensor({sum, static_cast<double>(count)}, at::kDouble);
    (*dp)->allReduceSum({agg});
    return agg[0].item<double>() / std::max(1.0, agg[1].item<double>());
  };

  auto writeSamples = [&](std::int64_t step) -> Result<void> {
    if (!leader) return {};
    LoadedModel m{"", description, ema, process};
    auto traits = modelTraits(m);
    if (!traits) return fail(traits.error());
    std::vector<std::int64_t> classes;
    std::vector<std::int64_t> columns;
    if (s.sampleClasses.empty())
      for (std::int64_t k = 0; k < traits->numClasses; ++k) columns.push_back(k);
    for (const auto& token : s.sampleClasses) {
      auto k = resolveClass(*traits, token);
      if (!k) return fail(k.error().withContext("samples.classes"));
      columns.push_back(*k);
    }
    for (std::int64_t r = 0; r < s.samplesPerClass; ++r)
      for (std::int64_t k : columns) classes.push_back(k);
    GenerationRequest g;
    g.classes = classes;
    g.sampler = samplerName;
    g.options.steps = s.samplesSteps;
    g.options.clipDenoised = s.samplesClip;
    g.guidance.scale = caps.nullClass ? s.samplesCfg : 1.0;
    g.seed = s.samplesSeed;
    g.batch = 64;
    auto result = generate(m, g);
    if (!result) return fail(result.error().withContext("sample grid"));
    std::ostringstream name;
    name << "step_" << std::setw(8) << std::setfill('0') << step << ".png";
    const std::string path = (runDir / "samples" / name.str()).string();
    nlohmann::json meta = result->settings;
    meta["step"] = step;
    if (auto ok = writePng(path, gridImage(result->samples, static_cast<std::int64_t>(columns.size())),
                           {{"tessera", meta.dump()}});
        !ok)
      return ok;
    events.emit({{"event", "samples"}, {"step", step}, {"path", path}, {"classes", columns}, {"seconds", result->seconds}});
    return {};
  };

  events.emit({{"event", "start"},
               {"step", startStep},
               {"steps", s.steps},
               {"resumed_from", resumeFrom},
               {"world_size", world},
               {"parameters", [&] {
                  std::int64_t n = 0;
                  for (const auto& p : params) n += p.numel();
                  return n;
                }()},
               {"data", data->summary},
               {"batching", batcher->describe()},
               {"validation_images", validation.size()},
               {"init", initReport},
               {"config", s.resolved}});

  // 6. The loop.
  Progress::Mode barMode = request.progressBar && leader ? Progress::Mode::Bar : Progress::Mode::Silent;
  Progress bar("train", s.steps, barMode, std::cerr);
  const char* faultEnv = std::getenv("TESSERA_TRAIN_FAULT_NAN_STEP");  // test hook: poison one step's loss
  const std::int64_t faultStep = faultEnv ? std::atoll(faultEnv) : -1;
  TrainSummary summary;
  summary.startStep = startStep;
  summary.modelPath = (runDir / "model.safetensors").string();
  double windowStart = nowSeconds(), windowWait = 0, lossSum = 0, lastLoss = 0, lastNorm = 0;
  std::int64_t windowSteps = 0, windowImages = 0, windowTokens = 0, windowRealTokens = 0;
  const double runStart = nowSeconds();
  std::future<Batch> next = std::async(std::launch::async, [&, st = startStep] { return batcher->batch(st); });
  std::int64_t step = startStep;
  bool stopped = false;
  while (step < s.steps) {
    if (world == 1 && request.stop && request.stop->load()) {
      stopped = true;
      break;
    }
    const double waitStart = nowSeconds();
    Batch batch = next.get();
    windowWait += nowSeconds() - waitStart;
    if (step + 1 < s.steps)
      next = std::async(std::launch::async, [&, st = step + 1] { return batcher->batch(st); });
    const double lr = lrAt(step);
    for (auto& group : optimizer.param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

    Draws d = sliceFor(drawsFor(batch, mixSeed(s.seed, static_cast<std::uint64_t>(step) + 0x5EED0000ull), true), batch.size());
    {
      // Tokens the network computes against the tokens the images' own pixels need (at
      // the scale they are shown): the padding and resizing waste of the batching mode.
      std::int64_t computed = 0, real = 0, longest = 0;
      for (std::size_t i = 0; i < batch.indices.size(); ++i) {
        const at::Tensor& src = data->images[static_cast<std::size_t>(batch.indices[i])];
        double H = static_cast<double>(src.size(1)), W = static_cast<double>(src.size(2));
        std::int64_t shown = 0;
        if (batch.x.defined()) {
          shown = (batch.x.size(2) / patch) * (batch.x.size(3) / patch);
          if (s.batching.mode == BatchMode::Fixed && s.batching.fit == "pad") {
            const double sc = std::min(static_cast<double>(batch.x.size(2)) / H, static_cast<double>(batch.x.size(3)) / W);
            H *= sc, W *= sc;
          }
        } else {
          const at::Tensor& img = batch.images[i];
          shown = (img.size(1) / patch) * (img.size(2) / patch);
          H = static_cast<double>(img.size(1)), W = static_cast<double>(img.size(2));
        }
        const auto need = static_cast<std::int64_t>(std::ceil(H / static_cast<double>(patch) - 1e-9) *
                                                    std::ceil(W / static_cast<double>(patch) - 1e-9));
        real += std::min(need, shown);
        computed += shown;
        longest = std::max(longest, shown);
      }
      if (!batch.x.defined() && caps.padsPacks) computed = longest * static_cast<std::int64_t>(batch.indices.size());
      windowImages += batch.size();
      windowTokens += computed;
      windowRealTokens += real;
    }
    optimizer.zero_grad();
    at::Tensor local = lossOf(*net, d);
    at::Tensor lossSumLocal = local.sum();
    (lossSumLocal / static_cast<double>(batch.size())).backward();
    std::vector<at::Tensor> grads;
    for (auto& p : params) {
      if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
      grads.push_back(p.grad());
    }
    // [loss sum, stop requests]: ranks decide to stop together, after the same step.
    at::Tensor lossBuf = at::zeros({2}, at::kDouble);
    lossBuf[0] = lossSumLocal.detach().to(at::kDouble).to(at::kCPU).item<double>();
    lossBuf[1] = request.stop && request.stop->load() ? 1.0 : 0.0;
    if (step == faultStep) lossBuf[0] = std::nan("");
    if (world > 1) {
      (*dp)->allReduceSum(grads);
      (*dp)->allReduceSum({lossBuf});
    }
    const double loss = lossBuf[0].item<double>() / static_cast<double>(batch.size());
    const bool stopAfterThisStep = world > 1 && lossBuf[1].item<double>() > 0;
    if (!std::isfinite(loss)) {
      const std::string where = lastCheckpoint.empty() ? "no checkpoint was written yet"
                                                       : "the last good checkpoint is " + lastCheckpoint;
      events.emit({{"event", "error"}, {"step", step}, {"reason", "non-finite loss"}, {"loss", std::to_string(loss)},
                   {"checkpoint", lastCheckpoint}});
      bar.finish();
      return fail("training stopped: the loss became " + std::string(std::isnan(loss) ? "NaN" : "infinite") +
                  " at step " + std::to_string(step) + "; " + where +
                  " (lower train.lr, raise train.warmup, or check the data)");
    }
    double norm = 0;
    if (s.clip > 0) norm = torch::nn::utils::clip_grad_norm_(params, s.clip);
    else {
      torch::NoGradGuard g;
      double sq = 0;
      for (auto& p : params) sq += p.grad().pow(2).sum().item<double>();
      norm = std::sqrt(sq);
    }
    optimizer.step();
    {
      torch::NoGradGuard g;
      double decay = s.ema;
      if (s.emaWarmup) decay = std::min(decay, (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step)));
      for (std::size_t i = 0; i < params.size(); ++i) emaParams[i].mul_(decay).add_(params[i].detach(), 1.0 - decay);
    }
    ++step;
    ++windowSteps;
    lossSum += loss;
    lastLoss = loss;
    lastNorm = norm;

    const bool last = step == s.steps;
    if (step % s.logEvery == 0 || last) {
      const double now = nowSeconds();
      const double elapsed = now - windowStart;
      const double perStep = elapsed / static_cast<double>(std::max<std::int64_t>(1, windowSteps));
      events.emit({{"event", "step"},
                   {"step", step},
                   {"epoch", batch.epoch},
                   {"loss", lossSum / static_cast<double>(windowSteps)},
                   {"last_loss", loss},
                   {"lr", lr},
                   {"grad_norm", lastNorm},
                   {"images_per_s", static_cast<double>(windowImages) / (perStep * static_cast<double>(windowSteps))},
                   {"images", windowImages},
                   {"tokens_computed", windowTokens},
                   {"real_token_fraction", windowTokens > 0 ? static_cast<double>(windowRealTokens) / static_cast<double>(windowTokens) : 1.0},
                   {"eta_s", perStep * static_cast<double>(s.steps - step)},
                   {"data_wait_fraction", elapsed > 0 ? windowWait / elapsed : 0.0}});
      std::ostringstream note;
      note << "loss " << std::setprecision(4) << lossSum / static_cast<double>(windowSteps);
      bar.update(step, note.str());
      windowStart = now;
      windowWait = 0;
      lossSum = 0;
      windowSteps = 0, windowImages = 0, windowTokens = 0, windowRealTokens = 0;
    } else {
      bar.update(step);
    }
    if (s.validationEvery > 0 && (step % s.validationEvery == 0 || last) && valBatcher) {
      const double v = validate(*net), ve = validate(*ema);
      events.emit({{"event", "validation"}, {"step", step}, {"loss", v}, {"loss_ema", ve},
                   {"images", valBatcher->itemCount()}, {"timesteps", s.validationTimesteps}});
    }
    const double elapsedTotal = elapsedBefore + (nowSeconds() - runStart);
    if (step % s.checkpointEvery == 0 || last) {
      if (auto ok = writeCheckpoint(step, elapsedTotal, loss); !ok) return fail(ok.error());
    }
    const bool asked = request.sampleNow && request.sampleNow->exchange(false);
    if (asked || (s.samplesEvery > 0 && (step % s.samplesEvery == 0 || last))) {
      if (auto ok = writeSamples(step); !ok) return fail(ok.error());
    }
    if (stopAfterThisStep && !last) {
      stopped = true;
      break;
    }
  }
  if (next.valid()) next.wait();
  if (stopped && step > startStep && step % s.checkpointEvery != 0) {
    if (auto ok = writeCheckpoint(step, elapsedBefore + (nowSeconds() - runStart), lastLoss); !ok) return fail(ok.error());
  }
  // Data-parallel ranks must hold the same weights: compare each with the ranks' mean.
  double rankDifference = 0;
  if (world > 1) {
    torch::NoGradGuard g;
    std::vector<at::Tensor> flat;
    for (const auto& p : params) flat.push_back(p.detach().reshape({-1}).to(at::kDouble).to(at::kCPU));
    const at::Tensor mine = at::cat(flat);
    at::Tensor mean = mine.clone();
    (*dp)->allReduceSum({mean});
    at::Tensor diff = (mean / static_cast<double>(world) - mine).abs().max().reshape({1});
    (*dp)->allReduceSum({diff});
    rankDifference = diff.item<double>();
  }
  (*dp)->barrier();
  bar.finish();
  summary.steps = step;
  summary.stopped = stopped;
  summary.seconds = nowSeconds() - startTime;
  summary.lastLoss = lastLoss;
  summary.checkpointPath = lastCheckpoint;
  nlohmann::json done = summary.json();
  done["event"] = stopped ? "stopped" : "done";
  done["world_size"] = world;
  if (world > 1) done["rank_max_difference"] = rankDifference;
  events.emit(done);
  return summary;
}

}  // namespace tessera
