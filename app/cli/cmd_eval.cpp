// SPDX-License-Identifier: Apache-2.0
// tessera-cli eval --model MODEL [-n N] [--sampler S] [--steps N] [--cfg S] [--seed N] [--record]
// tessera-cli eval --real [-n N]                    # real images in place of samples: the floor check
// tessera-cli eval --train-evaluator OUT [--epochs N]
//
// One JSON document on stdout: class accuracy, FD against the Fashion-MNIST test split,
// the floor (the same FD for as many real training images), precision and recall.
#include "app/cli/command.h"
#include "app/cli/model_argument.h"
#include "core/data/fashion_mnist.h"
#include "core/data/fashion_native.h"
#include "core/eval/evaluator.h"
#include "core/formats/safetensors.h"
#include "core/system/resources.h"
#include "core/util/progress.h"
#include "engine/generation.h"
#include "engine/model_file.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <iostream>

namespace tessera::cli {
namespace {

struct EvalOptions {
  std::string model, evaluator, trainEvaluator, sampler = "auto", dataDir, device = "cpu";
  std::int64_t perClass = 100, steps = 50, batch = 64, epochs = 6;
  double cfg = 1.0;
  CLI::Option* cfgOption = nullptr;
  std::uint64_t seed = 0;
  bool real = false, record = false, recordDefaults = false, native = false;
  double nativeScale = 1.0;
  std::string size, extrapolation, cfgInterval;
  bool decouple = false;
  std::string clip = "auto";
};

/// `perClass` real training images of each class, drawn with a fixed seed.
at::Tensor realImages(const FashionMnistSplit& train, std::int64_t perClass, std::uint64_t seed,
                      at::Tensor* labelsOut) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + 1234567);
  const at::Tensor perm = at::randperm(train.labels.size(0), gen, at::kLong);
  std::vector<std::int64_t> count(10, 0), chosen, labels;
  const auto* lab = train.labels.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < perm.size(0); ++i) {
    const std::int64_t idx = perm[i].item<std::int64_t>();
    if (count[static_cast<std::size_t>(lab[idx])] >= perClass) continue;
    ++count[static_cast<std::size_t>(lab[idx])];
    chosen.push_back(idx);
    labels.push_back(lab[idx]);
  }
  if (labelsOut) *labelsOut = at::tensor(labels, at::kLong);
  return train.images.index_select(0, at::tensor(chosen, at::kLong)).unsqueeze(1).to(at::kFloat).div(127.5).sub(1.0);
}

/// Puts an image of any size into the evaluator's 28×28 frame: scaled down (area
/// averaging) so that its longer side fits, then centred on the background (−1) — how
/// a fashion-native crop sits in its Fashion-MNIST frame.
at::Tensor toEvaluatorFrame(const at::Tensor& chw, std::int64_t side = 28) {
  at::Tensor img = chw.to(at::kFloat);
  const std::int64_t H = img.size(1), W = img.size(2);
  if (H == side && W == side) return img;
  if (std::max(H, W) > side) {
    const double s = static_cast<double>(side) / static_cast<double>(std::max(H, W));
    const std::int64_t h = std::max<std::int64_t>(1, std::llround(H * s)), w = std::max<std::int64_t>(1, std::llround(W * s));
    img = at::adaptive_avg_pool2d(img.unsqueeze(0), {h, w})[0];
  }
  const std::int64_t h = img.size(1), w = img.size(2), top = (side - h) / 2, left = (side - w) / 2;
  at::Tensor frame = at::full({img.size(0), side, side}, -1.0f);
  frame.narrow(1, top, h).narrow(2, left, w).copy_(img);
  return frame;
}

/// Per image, the size of a random fashion-native test crop of its class, times
/// `scale`, rounded to multiples of `multiple`.
Result<std::vector<std::pair<std::int64_t, std::int64_t>>> nativeSizes(const std::vector<std::int64_t>& classes, double scale,
                                                                       std::int64_t multiple, std::uint64_t seed,
                                                                       const std::string& dir) {
  auto set = loadFashionNative("test", dir.empty() ? kFashionMnistDir : dir);
  if (!set) return fail(set.error());
  std::vector<std::vector<std::pair<std::int64_t, std::int64_t>>> byClass(10);
  for (std::size_t i = 0; i < set->images.size(); ++i)
    byClass[static_cast<std::size_t>(set->labels[static_cast<std::int64_t>(i)].item<std::int64_t>())].emplace_back(
        set->images[i].size(0), set->images[i].size(1));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + 777);
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  auto round = [&](std::int64_t v) {
    return std::max(multiple, static_cast<std::int64_t>(std::llround(static_cast<double>(v) * scale / static_cast<double>(multiple))) * multiple);
  };
  for (std::int64_t k : classes) {
    const auto& pool = byClass.at(static_cast<std::size_t>(k));
    const std::int64_t j = at::randint(static_cast<std::int64_t>(pool.size()), {1}, gen, at::kLong).item<std::int64_t>();
    out.emplace_back(round(pool[static_cast<std::size_t>(j)].first), round(pool[static_cast<std::size_t>(j)].second));
  }
  return out;
}

/// Appends `result` to the model's "evaluation" list; with `setDefaults`, the evaluated
/// sampling settings become the model's defaults (what `sample` uses when not told).
CommandResult recordInModel(const std::string& path, const nlohmann::json& result, bool setDefaults) {
  auto file = SafetensorsFile::open(path);
  if (!file) return runtimeFailure(file.error().message());
  auto all = file->loadAll();
  if (!all) return runtimeFailure(all.error().message());
  nlohmann::json description = nlohmann::json::parse(file->metadata().at(kModelMetadataKey));
  nlohmann::json& evals = description["evaluation"];
  if (!evals.is_array()) evals = nlohmann::json::array();
  evals.push_back(result);
  if (setDefaults && result.contains("sampling")) {
    const nlohmann::json& s = result["sampling"];
    SamplingDefaults d;
    d.sampler = s["sampler"].get<std::string>();
    d.steps = s["steps"].get<std::int64_t>();
    d.cfg = s["guidance"]["scale"].get<double>();
    d.cfgLow = s["guidance"]["interval"][0].get<double>();
    d.cfgHigh = s["guidance"]["interval"][1].get<double>();
    d.clipX0 = s["options"].value("clip_denoised", false);
    description["defaults"] = d.toJson();
  }
  NamedTensors weights;
  for (const auto& e : file->entries()) weights.emplace_back(e.name, all->at(e.name));
  if (auto ok = writeModelFile(path, description, weights); !ok) return runtimeFailure(ok.error().message());
  return {};
}

CommandResult runEval(const EvalOptions& o, const GlobalOptions& global) {
  const auto t0 = std::chrono::steady_clock::now();
  auto event = [&](const nlohmann::json& j) {
    if (!global.quiet) std::cerr << j.dump() << std::endl;
  };
  if (auto ok = refuseOverwritingInputs({{"--train-evaluator", o.trainEvaluator}},
                                        {{"--model", o.model}, {"--evaluator", o.evaluator}});
      !ok)
    return ok;
  if (!o.trainEvaluator.empty()) {
    EvaluatorTrainOptions t;
    t.epochs = o.epochs;
    t.seed = o.seed;
    t.dataDir = o.dataDir;
    t.onEvent = event;
    auto e = trainEvaluator(t);
    if (!e) return runtimeFailure(e.error().message());
    if (auto ok = saveEvaluator(*e, o.trainEvaluator); !ok) return runtimeFailure(ok.error().message());
    nlohmann::json out = e->info;
    out["path"] = o.trainEvaluator;
    std::cout << out.dump(2) << std::endl;
    return {};
  }
  if (o.model.empty() && !o.real) return badInput("eval: give --model MODEL, --real or --train-evaluator OUT");
  if (o.perClass < 2) return badInput("-n: at least 2 samples per class are needed for the statistics");
  const std::string evaluatorPath = o.evaluator.empty() ? defaultEvaluatorPath() : o.evaluator;
  auto evaluator = loadEvaluator(evaluatorPath);
  if (!evaluator) return badInput(evaluator.error().message());
  const std::string dir = o.dataDir.empty() ? std::string(kFashionMnistDir) : o.dataDir;
  auto train = loadFashionMnist("train", dir);
  if (!train) return badInput(train.error().message());
  auto test = loadFashionMnist("test", dir);
  if (!test) return badInput(test.error().message());

  // The reference: the whole test split.
  const at::Tensor testImages = test->images.unsqueeze(1).to(at::kFloat).div(127.5).sub(1.0);
  const Evaluator::Output ref = evaluator->run(testImages);
  const FeatureStats refStats = FeatureStats::of(ref.features);

  // The floor: as many real training images, the same count per class.
  at::Tensor realLabels;
  const at::Tensor real = realImages(*train, o.perClass, o.seed, &realLabels);
  const Evaluator::Output realOut = evaluator->run(real);
  const double floor = frechetDistance(FeatureStats::of(realOut.features), refStats);
  // The literal definition too: two disjoint halves of the test split.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 99);
  const at::Tensor perm = at::randperm(ref.features.size(0), gen, at::kLong);
  const std::int64_t half = perm.size(0) / 2;
  const double floorHalves = frechetDistance(FeatureStats::of(ref.features.index_select(0, perm.slice(0, 0, half))),
                                             FeatureStats::of(ref.features.index_select(0, perm.slice(0, half))));

  nlohmann::json result;
  at::Tensor samples, labels;
  if (o.real) {
    // Real images from the train split drawn with another seed: what a perfect model scores.
    samples = realImages(*train, o.perClass, o.seed + 1, &labels);
    result["model"] = "real:fashion-mnist/train";
  } else {
    auto loaded = loadModelArgument(o.model);
    if (!loaded) return badInput(loaded.error().message());
    if (auto ok = moveModel(*loaded, o.device); !ok) return badInput(ok.error().message());
    auto traits = modelTraits(*loaded);
    if (!traits) return badInput(traits.error().message());
    if (traits->classNames != evaluator->classNames)
      return badInput(o.model + ": its classes are not the evaluator's (Fashion-MNIST's ten); eval measures Fashion-MNIST models");
    const SamplingDefaults defaults = SamplingDefaults::of(*loaded);
    GenerationRequest r;
    for (std::int64_t k = 0; k < traits->numClasses; ++k)
      for (std::int64_t i = 0; i < o.perClass; ++i) r.classes.push_back(k);
    r.sampler = o.sampler == "auto" ? defaults.sampler : o.sampler;
    r.options.steps = o.steps;
    r.options.grid = defaults.gridFor(r.sampler, r.options.grid);
    r.options.clipDenoised = o.clip == "auto" ? defaults.clipX0 : o.clip == "on";
    r.guidance.scale = o.cfgOption->count() ? o.cfg : defaults.cfg;
    if (auto ok = setGuidanceInterval(o.cfgInterval, defaults, r.guidance); !ok) return badInput(ok.error().message());
    r.seed = o.seed;
    r.batch = o.batch;
    if (!o.size.empty() && o.native) return badInput("--size and --native are alternatives");
    if (!o.size.empty()) {
      std::smatch m;
      if (!std::regex_match(o.size, m, std::regex(R"((\d{1,5})[xX](\d{1,5}))")))
        return badInput("--size: expected WxH, got '" + o.size + "'");
      r.width = std::stoll(m[1]), r.height = std::stoll(m[2]);
      if (auto ok = checkSize(*traits, r.height, r.width); !ok) return badInput("--size: " + ok.error().message());
    }
    if (!o.extrapolation.empty()) {
      if (auto ok = setExtrapolation(*loaded, o.extrapolation, o.decouple); !ok) return badInput("--extrapolation: " + ok.error().message());
      result["extrapolation"] = {{"method", o.extrapolation}, {"decouple", o.decouple}};
    }
    if (o.native) {
      auto sizes = nativeSizes(r.classes, o.nativeScale, traits->sizeMultiple, o.seed, o.dataDir);
      if (!sizes) return badInput("--native: " + sizes.error().message());
      r.sizes = *sizes;
    }
    Progress progress("eval", static_cast<std::int64_t>(r.classes.size()),
                      Progress::chooseMode(global.json, global.quiet), std::cerr);
    r.onImages = [&](std::int64_t done, std::int64_t) { progress.update(done); };
    auto generated = generate(*loaded, r);
    progress.finish();
    if (!generated) return badInput(generated.error().message());
    std::vector<at::Tensor> framed;
    for (const auto& img : generated->images) framed.push_back(toEvaluatorFrame(img));
    samples = at::stack(framed);
    labels = at::tensor(r.classes, at::kLong);
    if (o.native || !o.size.empty())
      result["size_mapping"] = "each sample scaled down (area) to fit 28x28 if larger, then centred on the black background";
    if (o.native) result["native_scale"] = o.nativeScale;
    result["model"] = o.model;
    result["sampling"] = generated->settings;
    result["sampling_seconds"] = generated->seconds;
  }
  const Evaluator::Output out = evaluator->run(samples);
  const double fd = frechetDistance(FeatureStats::of(out.features), refStats);
  const PrecisionRecall pr = precisionRecall(realOut.features, out.features);
  nlohmann::json perClass = nlohmann::json::array();
  for (std::int64_t k = 0; k < static_cast<std::int64_t>(evaluator->classNames.size()); ++k) {
    const at::Tensor mask = labels.eq(k);
    perClass.push_back(out.predicted.masked_select(mask).eq(k).to(at::kDouble).mean().item<double>());
  }
  result["samples_per_class"] = o.perClass;
  result["class_accuracy"] = out.predicted.eq(labels).to(at::kDouble).mean().item<double>();
  result["class_accuracy_per_class"] = perClass;
  result["fd"] = fd;
  result["fd_floor"] = floor;
  result["fd_ratio"] = floor > 0 ? fd / floor : 0.0;
  result["fd_floor_test_halves"] = floorHalves;
  result["precision"] = pr.precision;
  result["recall"] = pr.recall;
  result["reference"] = "fashion-mnist test (10000)";
  result["evaluator"] = {{"path", evaluatorPath}, {"test_accuracy", evaluator->info.value("test_accuracy", 0.0)}};
  result["seed"] = o.seed;
  result["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if ((o.record || o.recordDefaults) && !o.real) {
    if (auto ok = recordInModel(resolveModelArgument(o.model), result, o.recordDefaults); !ok) return ok;
  }
  std::cout << result.dump(global.json ? -1 : 2) << std::endl;
  return {};
}

}  // namespace

Command addEvalCommand(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* sub = app.add_subcommand("eval", "Sample quality of a Fashion-MNIST model: class accuracy, FD, precision/recall");
  sub->add_option("--model", o->model, "Model file to evaluate, or a shipped model's name (dit-fashion, sit-fashion)");
  sub->add_flag("--real", o->real, "Evaluate real training images instead of samples (the floor a perfect model reaches)");
  sub->add_option("-n", o->perClass, "Samples per class (default 100)")->check(CLI::Range(2, 100000));
  sub->add_option("--sampler", o->sampler, "Sampler (default: the model's)");
  sub->add_option("--steps", o->steps, "Sampling steps (default 50)")->check(CLI::Range(1, 10000));
  o->cfgOption = sub->add_option("--cfg", o->cfg, "Guidance scale (default: the model's)");
  sub->add_option("--cfg-interval", o->cfgInterval, "LO,HI: guide only while the progress (0 noise … 1 data) lies in [LO, HI] (default: the model's, else 0,1)");
  sub->add_option("--seed", o->seed, "First seed (image i uses seed + i)");
  sub->add_option("--batch", o->batch, "Images per forward batch")->check(CLI::Range(1, 4096));
  sub->add_option("--device", o->device, "cpu, cuda or cuda:N");
  sub->add_option("--evaluator", o->evaluator, "Evaluator file (default: the shipped one)");
  sub->add_option("--data-dir", o->dataDir, "Fashion-MNIST folder (default: the Debian package's)");
  sub->add_flag("--record", o->record, "Append the results to the model file's metadata (atomically)");
  sub->add_flag("--record-defaults", o->recordDefaults, "--record, and make the evaluated sampler, steps, guidance (scale and interval) and clipping the model's defaults");
  sub->add_option("--clip-x0", o->clip, "Clamp every data estimate to [-1, 1]: on, off, auto (the model's default)")
      ->check(CLI::IsMember({"on", "off", "auto"}))->capture_default_str();
  sub->add_option("--size", o->size, "Sample at WxH (mapped into the evaluator's 28x28 frame)");
  sub->add_flag("--native", o->native,
                "Sample each image at the size of a random fashion-native test crop of its class (mixed sizes; packed for NiT/FiT)");
  sub->add_option("--native-scale", o->nativeScale, "With --native: multiply those sizes (2 = twice the native size)")
      ->check(CLI::Range(0.25, 8.0));
  sub->add_option("--extrapolation", o->extrapolation, "Sizes beyond training: as tessera-cli sample --extrapolation");
  sub->add_flag("--decouple", o->decouple, "Extrapolation scales per axis");
  sub->add_option("--train-evaluator", o->trainEvaluator, "Train the evaluator CNN and write it here");
  sub->add_option("--epochs", o->epochs, "Evaluator training epochs")->check(CLI::Range(1, 1000));
  return {sub, [o, &global]() -> CommandResult { return runEval(*o, global); }};
}

}  // namespace tessera::cli
