// SPDX-License-Identifier: Apache-2.0
#include "engine/trainer_settings.h"

#include "core/system/resources.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>

namespace tessera {
namespace {

template <typename T>
Result<void> take(Result<T> r, T& out) {
  if (!r) return tl::unexpected(r.error());
  out = *r;
  return {};
}

#define TESSERA_TRY(expr)                                  \
  do {                                                     \
    if (auto _ok = (expr); !_ok) return fail(_ok.error()); \
  } while (0)

/// A list of class names or indices (indices kept as their JSON text).
Result<std::vector<std::string>> classList(const Config& c, const char* section, const char* path) {
  std::vector<std::string> out;
  const auto& cls = c.json()[section]["classes"];
  if (!cls.is_array()) return fail(c.source() + ": field '" + path + "': expected a list of class names or indices");
  for (const auto& v : cls) out.push_back(v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

/// model.kind "autoencoder": the kind, its configuration and the loss.
Result<void> parseAutoencoderModel(const Config& c, TrainSettings& s) {
  TESSERA_TRY(c.rejectUnknown("model", {"kind", "autoencoder", "config", "loss"}));
  AutoencoderTrainSettings& a = s.autoencoder;
  TESSERA_TRY(take(c.string("model.autoencoder", std::string("kl")), a.kind));
  if (a.kind != "kl")
    return fail(c.source() + ": field 'model.autoencoder': '" + a.kind +
                "' cannot be trained here (expected kl: a VQ autoencoder needs a codebook loss this trainer lacks)");
  a.config = c.json()["model"].value("config", nlohmann::json::object());
  if (!a.config.is_object()) return fail(c.source() + ": field 'model.config': expected an object");
  TESSERA_TRY(c.rejectUnknown("model.loss", {"reconstruction", "kl_weight"}));
  TESSERA_TRY(take(c.string("model.loss.reconstruction", std::string("l1"), {"l1", "l2"}), a.reconstruction));
  TESSERA_TRY(take(c.number("model.loss.kl_weight", 1e-6, 0.0, 1.0), a.klWeight));
  s.autoencoderRun = true;
  s.model = {{"kind", "autoencoder"},
             {"autoencoder", a.kind},
             {"config", a.config},
             {"loss", {{"reconstruction", a.reconstruction}, {"kl_weight", a.klWeight}}}};
  return {};
}

Result<void> parseModel(const Config& c, TrainSettings& s) {
  if (!c.has("model") || !c.json().at("model").is_object())
    return fail(c.source() + ": field 'model': expected an object {\"backbone\", \"config\", \"process\"}");
  std::string kind;
  TESSERA_TRY(take(c.string("model.kind", std::string("backbone"), {"backbone", "autoencoder"}), kind));
  if (kind == "autoencoder") return parseAutoencoderModel(c, s);
  TESSERA_TRY(c.rejectUnknown("model", {"kind", "backbone", "config", "process", "autoencoder"}));
  std::string backbone;
  TESSERA_TRY(take(c.string("model.backbone"), backbone));
  s.model["backbone"] = backbone;
  s.model["config"] = c.json()["model"].value("config", nlohmann::json::object());
  if (!s.model["config"].is_object()) return fail(c.source() + ": field 'model.config': expected an object");
  if (!c.has("model.process"))
    return fail(c.source() + ": field 'model.process': missing (gaussian_diffusion or interpolant)");
  s.model["process"] = c.json()["model"]["process"];
  std::string given;
  TESSERA_TRY(take(c.string("model.autoencoder", std::string()), given));
  if (!given.empty()) {
    // A path, or the name of a shipped autoencoder (as --model takes a shipped model's name);
    // the configuration keeps what was written, so that it reads the same on every machine.
    s.firstStage = resolveModelArgument(given);
    std::error_code ec;
    if (!std::filesystem::is_regular_file(s.firstStage, ec))
      return fail(c.source() + ": field 'model.autoencoder': '" + given +
                  "' is neither a file nor a shipped model (expected an autoencoder file, a model file holding one, "
                  "or an official checkpoint)");
    s.model["autoencoder"] = given;
  }
  return {};
}

/// data.latents: true (the default cache folder) or a folder; only with model.autoencoder.
Result<void> parseLatents(const Config& c, TrainSettings& s) {
  if (!c.has("data.latents")) {
    if (!s.firstStage.empty()) s.latentCache = defaultLatentCacheDir();
    return {};
  }
  const nlohmann::json& v = c.json()["data"]["latents"];
  if (s.firstStage.empty())
    return fail(c.source() +
                ": field 'data.latents': latents need model.autoencoder (the autoencoder that encodes them)");
  if (v.is_boolean()) {
    if (!v.get<bool>())
      return fail(c.source() +
                  ": field 'data.latents': false, but a model with model.autoencoder trains on cached latents "
                  "(expected true or a cache folder)");
    s.latentCache = defaultLatentCacheDir();
  } else if (v.is_string() && !v.get<std::string>().empty()) {
    s.latentCache = v.get<std::string>();
  } else {
    return fail(c.source() + ": field 'data.latents': expected true or a cache folder, got " + v.dump());
  }
  if (s.data.batching.mode != BatchMode::Fixed)
    return fail(c.source() + ": field 'data.batching': latent training takes fixed batches (got " +
                batchModeName(s.data.batching.mode) + ")");
  return {};
}

Result<void> parseData(const Config& c, TrainDataSettings& d) {
  TESSERA_TRY(take(c.string("data.source", std::string("fashion-mnist")), d.spec.source));
  TESSERA_TRY(take(c.string("data.split", std::string("train"), {"train", "test"}), d.spec.split));
  TESSERA_TRY(take(c.string("data.dir", std::string()), d.spec.dir));
  if (c.has("data.classes")) TESSERA_TRY(take(classList(c, "data", "data.classes"), d.spec.classes));
  if (c.has("data")) {
    auto b = BatchingOptions::fromConfig(c, "data");
    if (!b) return fail(b.error());
    d.batching = *b;
  }
  TESSERA_TRY(take(c.integer("data.validation", 256, 0, 1 << 20), d.validationImages));
  // What training would refuse, checked here too, so that `train --check` refuses it.
  std::error_code ec;
  const bool fashion = d.spec.source == "fashion-mnist" || d.spec.source == "fashion-native";
  if (!fashion && !std::filesystem::is_directory(d.spec.source, ec))
    return fail(c.source() + ": field 'data.source': '" + d.spec.source +
                "' is not fashion-mnist, fashion-native or an existing image folder");
  if (fashion && !d.spec.dir.empty() && !std::filesystem::is_directory(d.spec.dir, ec))
    return fail(c.source() + ": field 'data.dir': '" + d.spec.dir + "' is not a folder (expected Fashion-MNIST's)");
  return {};
}

Result<void> parseSchedule(const Config& c, ScheduleSettings& s) {
  TESSERA_TRY(take(c.string("train.schedule", std::string("constant"), {"constant", "cosine", "wsd"}), s.kind));
  TESSERA_TRY(take(c.number("train.min_lr_ratio", 0.0, 0.0, 1.0), s.minLrRatio));
  if (s.kind == "wsd") {
    // Warm-up, stable, decay (Hägele et al. 2024): a fifth of the run unless told.
    TESSERA_TRY(take(c.integer("train.decay", std::max<std::int64_t>(1, s.steps / 5), 1, 1LL << 40), s.decay));
    if (s.decay > s.steps)
      return fail(c.source() + ": field 'train.decay': " + std::to_string(s.decay) +
                  " steps of decay but train.steps is " + std::to_string(s.steps) +
                  " (expected at most the run's length)");
  } else if (c.has("train.decay")) {
    return fail(c.source() + ": field 'train.decay': applies only to schedule \"wsd\" (the schedule is \"" + s.kind +
                "\")");
  }
  return {};
}

// The fields are read in the file's documented order, so the first bad one is reported.
Result<void> parseTrain(const Config& c, TrainSettings& s) {
  TESSERA_TRY(
      c.rejectUnknown("train", {"steps", "lr", "betas", "eps", "weight_decay", "warmup", "schedule", "min_lr_ratio",
                                "decay", "clip", "ema", "ema_warmup", "label_dropout", "seed", "precision", "limit"}));
  OptimiserSettings& o = s.optimiser;
  TESSERA_TRY(take(c.integer("train.steps", 1000, 1, 1LL << 40), s.schedule.steps));
  TESSERA_TRY(take(c.number("train.lr", 1e-4, 0.0, 10.0), o.lr));
  if (c.has("train.betas")) {
    const auto& b = c.json()["train"]["betas"];
    if (!b.is_array() || b.size() != 2 || !b[0].is_number() || !b[1].is_number() || b[0].get<double>() < 0 ||
        b[0].get<double>() >= 1 || b[1].get<double>() < 0 || b[1].get<double>() >= 1)
      return fail(c.source() + ": field 'train.betas': expected [beta1, beta2] in [0, 1), got " + b.dump());
    o.beta1 = b[0].get<double>();
    o.beta2 = b[1].get<double>();
  }
  TESSERA_TRY(take(c.number("train.eps", 1e-8, 0.0, 1.0), o.eps));
  TESSERA_TRY(take(c.number("train.weight_decay", 0.0, 0.0, 10.0), o.weightDecay));
  TESSERA_TRY(take(c.integer("train.warmup", 0, 0, 1LL << 40), s.schedule.warmup));
  TESSERA_TRY(parseSchedule(c, s.schedule));
  TESSERA_TRY(take(c.number("train.clip", 1.0, 0.0, 1e9), o.clip));
  TESSERA_TRY(take(c.number("train.ema", 0.9999, 0.0, 1.0), o.ema));
  TESSERA_TRY(take(c.boolean("train.ema_warmup", true), o.emaWarmup));
  TESSERA_TRY(take(c.number("train.label_dropout", 0.1, 0.0, 0.999), s.labelDropout));
  std::int64_t seed = 0;
  TESSERA_TRY(take(c.integer("train.seed", 0, 0, INT64_MAX), seed));
  s.seed = static_cast<std::uint64_t>(seed);
  s.data.batching.seed = s.seed;
  TESSERA_TRY(take(c.string("train.precision", std::string("fp32"), {"fp32", "bf16"}), s.precision));
  TESSERA_TRY(take(c.integer("train.limit", 0, 0, INT64_MAX), s.data.limit));
  return {};
}

Result<void> parseCadence(const Config& c, TrainSettings& s) {
  TESSERA_TRY(c.rejectUnknown("log", {"every"}));
  TESSERA_TRY(take(c.integer("log.every", 10, 1, 1LL << 40), s.logEvery));
  TESSERA_TRY(c.rejectUnknown("checkpoint", {"every", "keep", "model_dtype"}));
  TESSERA_TRY(take(c.integer("checkpoint.every", 1000, 1, 1LL << 40), s.checkpoint.every));
  TESSERA_TRY(take(c.integer("checkpoint.keep", 2, 1, 1000), s.checkpoint.keep));
  TESSERA_TRY(take(c.string("checkpoint.model_dtype", std::string("float32"), {"float32", "float16", "bfloat16"}),
                   s.checkpoint.modelDtype));
  TESSERA_TRY(c.rejectUnknown("validation", {"every", "timesteps"}));
  TESSERA_TRY(take(c.integer("validation.every", 500, 0, 1LL << 40), s.validation.every));
  TESSERA_TRY(take(c.integer("validation.timesteps", 4, 1, 1000), s.validation.timesteps));
  return {};
}

Result<void> parseSamples(const Config& c, SampleGridSettings& g) {
  TESSERA_TRY(
      c.rejectUnknown("samples", {"every", "classes", "per_class", "steps", "sampler", "cfg", "seed", "clip_x0"}));
  TESSERA_TRY(take(c.boolean("samples.clip_x0", false), g.clipX0));
  TESSERA_TRY(take(c.integer("samples.every", 1000, 0, 1LL << 40), g.every));
  TESSERA_TRY(take(c.integer("samples.per_class", 1, 1, 64), g.perClass));
  TESSERA_TRY(take(c.integer("samples.steps", 50, 1, 10000), g.steps));
  TESSERA_TRY(take(c.string("samples.sampler", std::string()), g.sampler));
  TESSERA_TRY(take(c.number("samples.cfg", 4.0, 1.0, 100.0), g.cfg));
  std::int64_t seed = 0;
  TESSERA_TRY(take(c.integer("samples.seed", 0, 0, INT64_MAX), seed));
  g.seed = static_cast<std::uint64_t>(seed);
  if (c.has("samples.classes")) TESSERA_TRY(take(classList(c, "samples", "samples.classes"), g.classes));
  return {};
}

nlohmann::json resolvedData(const TrainDataSettings& data) {
  nlohmann::json d = data.batching.toJson();
  d.erase("seed");
  d.erase("multiple");
  d["source"] = data.spec.source;
  d["split"] = data.spec.split;
  if (!data.spec.dir.empty()) d["dir"] = data.spec.dir;
  if (!data.spec.classes.empty()) d["classes"] = data.spec.classes;
  d["validation"] = data.validationImages;
  return d;
}

nlohmann::json resolvedConfig(const TrainSettings& s) {
  const OptimiserSettings& o = s.optimiser;
  const ScheduleSettings& sc = s.schedule;
  const SampleGridSettings& g = s.samples;
  nlohmann::json r = {
      {"model", s.model},
      {"data", resolvedData(s.data)},
      {"train",
       {{"steps", sc.steps},
        {"lr", o.lr},
        {"betas", {o.beta1, o.beta2}},
        {"eps", o.eps},
        {"weight_decay", o.weightDecay},
        {"warmup", sc.warmup},
        {"schedule", sc.kind},
        {"min_lr_ratio", sc.minLrRatio},
        {"clip", o.clip},
        {"ema", o.ema},
        {"ema_warmup", o.emaWarmup},
        {"label_dropout", s.labelDropout},
        {"seed", s.seed},
        {"precision", s.precision},
        {"limit", s.data.limit}}},
      {"log", {{"every", s.logEvery}}},
      {"checkpoint",
       {{"every", s.checkpoint.every}, {"keep", s.checkpoint.keep}, {"model_dtype", s.checkpoint.modelDtype}}},
      {"validation", {{"every", s.validation.every}, {"timesteps", s.validation.timesteps}}},
      {"samples",
       {{"every", g.every},
        {"per_class", g.perClass},
        {"steps", g.steps},
        {"sampler", g.sampler},
        {"cfg", g.cfg},
        {"seed", g.seed},
        {"classes", g.classes},
        {"clip_x0", g.clipX0}}}};
  if (sc.kind == "wsd") r["train"]["decay"] = sc.decay;
  return r;
}

}  // namespace

std::string defaultLatentCacheDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::filesystem::path base =
      xdg && *xdg ? std::filesystem::path(xdg) : std::filesystem::path(home && *home ? home : "/tmp") / ".cache";
  return (base / "tessera" / "latents").string();
}

Result<TrainSettings> parseTrainSettings(const Config& c) {
  TrainSettings s;
  TESSERA_TRY(c.rejectUnknown("", {"model", "data", "train", "checkpoint", "validation", "samples", "log"}));
  TESSERA_TRY(parseModel(c, s));
  TESSERA_TRY(parseData(c, s.data));
  TESSERA_TRY(parseLatents(c, s));
  if (s.autoencoderRun && s.data.batching.mode == BatchMode::Packed)
    return fail(c.source() + ": field 'data.batching': an autoencoder trains on fixed or buckets batches (got packed)");
  TESSERA_TRY(parseTrain(c, s));
  TESSERA_TRY(parseCadence(c, s));
  TESSERA_TRY(parseSamples(c, s.samples));
  s.resolved = resolvedConfig(s);
  // As written (true, or a folder): the default folder differs from machine to machine.
  if (!s.latentCache.empty())
    s.resolved["data"]["latents"] = c.has("data.latents") ? c.json()["data"]["latents"] : nlohmann::json(true);
  return s;
}

Result<TrainSettings> trainSettingsForInit(const Config& config, const nlohmann::json& d, const std::string& initPath) {
  nlohmann::json j = config.json();
  nlohmann::json& model = j["model"];
  if (!model.is_object()) model = nlohmann::json::object();
  if (model.value("kind", std::string()) == "autoencoder")
    return fail("--init: fine-tuning an autoencoder is not supported (--init takes a backbone model file)");
  // A latent model's autoencoder comes along: the fine-tune learns the same latents.
  if (!model.contains("autoencoder") && d.contains("autoencoder") && !initPath.empty()) model["autoencoder"] = initPath;
  if (!model.contains("backbone")) model["backbone"] = d["backbone"]["kind"];
  if (!model.contains("config")) model["config"] = nlohmann::json::object();
  if (!model.contains("process") && d.contains("process")) model["process"] = d["process"];
  auto filled = Config::fromString(j.dump(), config.source());
  if (!filled) return fail(filled.error());
  auto settingsOr = parseTrainSettings(*filled);
  if (!settingsOr) return fail(settingsOr.error());
  TrainSettings s = std::move(*settingsOr);
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

double learningRateAt(const nlohmann::json& train, std::int64_t step) {
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
    const double progress =
        std::clamp(static_cast<double>(step - (steps - decay) + 1) / static_cast<double>(decay), 0.0, 1.0);
    lr = base * (1 - (1 - minRatio) * progress);
  }
  if (warmup > 0 && step < warmup) lr *= static_cast<double>(step + 1) / static_cast<double>(warmup);
  return lr;
}

// What a resumed run may change: how long it runs, how often it reports, and the
// learning-rate schedule of the steps still to come (to add a cool-down to a run trained
// at a constant rate, say). The rate of every step already trained must stay as it was,
// except that a run may be lengthened as before, which stretches a cosine schedule.
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
    return fail(
        "--resume: the 'train' section differs from the run's (only 'steps' and the schedule of the steps "
        "still to come may change): was " +
        a.dump() + ", now " + b.dump());
  nlohmann::json scheduleBefore = trainBefore, scheduleNow = trainNow;
  scheduleBefore.erase("steps");
  scheduleNow.erase("steps");
  if (scheduleBefore == scheduleNow) return {};
  for (std::int64_t step = 0; step < trainedSteps; ++step) {
    const double was = learningRateAt(trainBefore, step), is = learningRateAt(trainNow, step);
    if (std::abs(was - is) > 1e-12 * std::max(std::abs(was), 1e-30)) {
      std::ostringstream m;
      m << "--resume: the new learning-rate schedule changes step " << step << " (was " << was << ", now " << is
        << "), which the run has already trained; a resumed run may change only the steps from " << trainedSteps
        << " on (for a cool-down: schedule \"wsd\" with train.steps - train.decay >= " << trainedSteps << ")";
      return fail(m.str());
    }
  }
  return {};
}

}  // namespace tessera
