// SPDX-License-Identifier: Apache-2.0
// Every registered backbone, on its registry entry's tiny configuration, through the
// whole engine: import detection and conversion, a forward pass, sampling from a model
// file, one training step and an attention capture. Every registered sampler samples the
// first backbone's tiny model. The rows come from the registries, so a backbone or a
// sampler is covered the day it is registered.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/config/config.h"
#include "core/formats/png.h"
#include "core/process/process.h"
#include "core/samplers/sampler.h"
#include "engine/generation.h"
#include "engine/inspection.h"
#include "engine/model_file.h"
#include "engine/trainer.h"
#include "models/registry.h"
#include "models/state_dict.h"

#include <ATen/ATen.h>
#include <QTemporaryDir>
#include "tests/models/tiny_backbone.h"
#include "tests/support/test_main.h"

#include <torch/utils.h>
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>
#endif

using namespace tessera;

namespace {

const BackboneEntry& entryOf(const QString& kind) {
  const BackboneEntry* entry = backboneRegistry().find(kind.toStdString());
  if (!entry) qFatal("no backbone %s", qPrintable(kind));
  return *entry;
}

std::map<std::string, std::vector<std::int64_t>> shapeMap(const torch::nn::Module& module) {
  std::map<std::string, std::vector<std::int64_t>> out;
  for (const auto& [name, t] : stateDict(module)) out[name] = t.sizes().vec();
  return out;
}

bool allFinite(const at::Tensor& t) { return t.defined() && at::isfinite(t).all().item<bool>(); }

/// The process a tiny network of this kind is trained and sampled with: its importer's
/// reference process, else one its capabilities agree with.
nlohmann::json processFor(const BackboneEntry& entry, const nlohmann::json& config, const Capabilities& caps) {
  if (entry.importer.process) return entry.importer.process(config);
  if (caps.prediction == Prediction::Epsilon) {
    GaussianDiffusionConfig d;
    d.learnSigma = caps.learnedSigma;
    return d.toJson();
  }
  return InterpolantConfig::defaultsFor("linear", predictionName(caps.prediction)).toJson();
}

/// The kind's tiny network (output layers randomised so that samples are not trivial),
/// written as a model file in `dir` with its process and loaded back.
LoadedModel tinyModelFile(const BackboneEntry& entry, const QTemporaryDir& dir) {
  nlohmann::json config;
  const auto net = test::tinyBackbone(entry.name, nlohmann::json::object(), 5, &config);
  const Capabilities caps = net->capabilities();
  const nlohmann::json& input = entry.tiny.at("input");
  const nlohmann::json description{
      {"backbone", {{"kind", entry.name}, {"config", config}}},
      {"process", processFor(entry, config, caps)},
      {"classes", {{"count", caps.numClasses}, {"null_class", caps.nullClass}}},
      {"data", {{"kind", "latent"}, {"channels", caps.inChannels}, {"size", {input.at("height"), input.at("width")}}}}};
  const std::string path =
      dir.filePath(QStringLiteral("%1.safetensors").arg(QString::fromStdString(entry.name))).toStdString();
  if (auto ok = writeModelFile(path, description, stateDict(*net)); !ok) qFatal("%s", ok.error().message().c_str());
  auto loaded = loadModelFile(path);
  if (!loaded) qFatal("%s", loaded.error().message().c_str());
  return std::move(*loaded);
}

/// Whether inspection can tap the attention of a model of this configuration (what
/// engine/inspection.cpp reads: the blocks and heads its configuration names).
bool hasAttentionTaps(const nlohmann::json& config) {
  return config.value("depth", std::int64_t(0)) >= 1 && config.value("num_heads", std::int64_t(0)) >= 1;
}

/// Two classes of four grey 8×8 noise images, as an image folder.
std::string writeImageFolder(const QTemporaryDir& dir) {
  const std::string root = dir.filePath(QStringLiteral("images")).toStdString();
  at::manual_seed(9);
  for (const char* cls : {"circles", "squares"}) {
    std::filesystem::create_directories(root + "/" + cls);
    for (int i = 0; i < 4; ++i) {
      Image8 img;
      img.width = img.height = 8;
      img.channels = 1;
      const at::Tensor px = at::randint(0, 256, {64}, at::kLong);
      for (std::int64_t k = 0; k < 64; ++k) img.pixels.push_back(static_cast<std::uint8_t>(px[k].item<std::int64_t>()));
      const std::string file = root + "/" + cls + "/" + std::to_string(i) + ".png";
      if (!writePng(file, img)) qFatal("cannot write %s", file.c_str());
    }
  }
  return root;
}

GenerationRequest tinyRequest(const BackboneEntry& entry, const LoadedModel& model, std::vector<std::int64_t> classes) {
  GenerationRequest r;
  r.classes = std::move(classes);
  r.height = entry.tiny.at("input").at("height").get<std::int64_t>();
  r.width = entry.tiny.at("input").at("width").get<std::int64_t>();
  r.sampler = SamplingDefaults::of(model).sampler;
  r.options.steps = 3;
  r.seed = 21;
  r.guidance.scale = model.backbone->capabilities().nullClass ? 2.0 : 1.0;
  return r;
}

}  // namespace

class TestRegistryWalk : public QObject {
  Q_OBJECT

  void kinds() {
    QTest::addColumn<QString>("kind");
    for (const auto& n : backboneRegistry().registrationOrder()) QTest::newRow(n.c_str()) << QString::fromStdString(n);
  }

private Q_SLOTS:
  void initTestCase() {
    QVERIFY(!backboneRegistry().registrationOrder().empty());
    QVERIFY(!samplerRegistry().names().empty());
    for (const auto& n : backboneRegistry().registrationOrder()) {
      const BackboneEntry& e = *backboneRegistry().find(n);
      QVERIFY2(e.tiny.contains("config") && e.tiny.contains("input"), (n + ": no tiny configuration").c_str());
    }
  }

  void importDetect_data() { kinds(); }
  void importDetect() {
    QFETCH(QString, kind);
    const BackboneEntry& entry = entryOf(kind);
    const std::string name = entry.name;
    const nlohmann::json tiny = entry.tiny.at("config");
    torch::manual_seed(1);
    auto built = backboneRegistry().create(name, Config::fromJson(tiny, "tiny"));
    QVERIFY2(built, built ? "" : built.error().message().c_str());
    const auto original = *built;
    if (!entry.importer) {
      qInfo("%s has no importer: import detection not applicable", name.c_str());
      return;
    }
    NamedTensors sd = stateDict(*original);
    for (auto& [key, t] : sd) t = t.detach().clone();
    const TensorShapes shapes = shapesOf(sd);
    QVERIFY2(entry.importer.recognises(shapes), name.c_str());
    const auto anyName = backboneRegistry().recognise(shapes);
    QVERIFY2(std::find(anyName.begin(), anyName.end(), name) != anyName.end(),
             "the registry does not recognise its own tiny model");
    QCOMPARE(backboneRegistry().recognise(shapes, "tiny-" + name + "-256.pt"), std::vector<std::string>{name});

    ImportRequest request;
    request.heads = tiny.at("num_heads").get<std::int64_t>();
    auto imported = entry.importer.convert(sd, request);
    QVERIFY2(imported, imported ? "" : imported.error().message().c_str());
    auto rebuilt = backboneRegistry().create(name, Config::fromJson(imported->config, "imported"));
    QVERIFY2(rebuilt, rebuilt ? "" : rebuilt.error().message().c_str());
    QVERIFY2(shapeMap(**rebuilt) == shapeMap(*original), "the derived configuration builds other parameters");
    QCOMPARE(imported->weights.size(), sd.size());
    QCOMPARE(imported->numClasses, tiny.at("num_classes").get<std::int64_t>());
    // The derived configuration says what the tiny one says, field for field, but for
    // what no shape tells: the prediction, and the trained grid of a backbone without a
    // position table (where there is one, the shapes above checked the grid).
    for (const auto& [key, value] : tiny.items())
      if (key != "prediction" && key != "input_size" && key != "image_size" && imported->config.contains(key))
        QVERIFY2(imported->config[key] == value,
                 (name + "." + key + ": derived " + imported->config[key].dump() + ", tiny " + value.dump()).c_str());
  }

  void forward_data() { kinds(); }
  void forward() {
    QFETCH(QString, kind);
    const BackboneEntry& entry = entryOf(kind);
    const auto net = test::tinyBackbone(entry.name, nlohmann::json::object(), 7);
    const nlohmann::json& spec = entry.tiny.at("input");
    const std::int64_t c = spec.at("channels").get<std::int64_t>(), h = spec.at("height").get<std::int64_t>(),
                       w = spec.at("width").get<std::int64_t>();
    at::manual_seed(3);
    BackboneInput in;
    in.x = at::randn({2, c, h, w});
    in.t = at::rand({2}) * spec.at("t_scale").get<double>();
    in.y = at::tensor({1, 3}, at::kLong);
    torch::NoGradGuard guard;
    const at::Tensor out = net->forward(in).prediction;
    const Capabilities caps = net->capabilities();
    const std::vector<std::int64_t> expected{2, caps.learnedSigma ? 2 * c : c, h, w};
    QCOMPARE(out.sizes().vec(), expected);
    QVERIFY2(allFinite(out), "non-finite output");
    QVERIFY2(out.abs().max().item<double>() > 0, "the output is all zeros");
  }

  void sample_data() { kinds(); }
  void sample() {
    QFETCH(QString, kind);
    const BackboneEntry& entry = entryOf(kind);
    QTemporaryDir dir;
    const LoadedModel model = tinyModelFile(entry, dir);
    const GenerationRequest r = tinyRequest(entry, model, {1, 4});
    if (r.guidance.scale <= 1.0)
      qInfo("%s: the tiny model has no null class; sampled without guidance", entry.name.c_str());
    auto a = generate(model, r);
    QVERIFY2(a, a ? "" : a.error().message().c_str());
    const std::vector<std::int64_t> expected{2, model.backbone->capabilities().inChannels, r.height, r.width};
    QCOMPARE(a->samples.sizes().vec(), expected);
    QVERIFY2(allFinite(a->samples), "non-finite samples");
    QCOMPARE(a->steps, std::int64_t(3));
    auto b = generate(model, r);
    QVERIFY(b);
    QVERIFY2(at::equal(a->samples, b->samples), "the same seed gave other samples");
    GenerationRequest other = r;
    other.seed = 22;
    auto c = generate(model, other);
    QVERIFY(c);
    QVERIFY2(!at::equal(c->samples, a->samples), "another seed gave the same samples");
  }

  void trainOneStep_data() { kinds(); }
  void trainOneStep() {
    QFETCH(QString, kind);
    const BackboneEntry& entry = entryOf(kind);
    QTemporaryDir dir;
    nlohmann::json config = entry.tiny.at("config");
    // The trainer derives these from the data.
    for (const char* key :
         {"in_channels", "num_classes", "input_size", "image_size", "cfg_channels", "class_dropout_prob"})
      config.erase(key);
    const auto probe = test::tinyBackbone(entry.name, nlohmann::json::object(), 1);
    const nlohmann::json process = processFor(entry, entry.tiny.at("config"), probe->capabilities());
    const nlohmann::json settings = {
        {"model", {{"backbone", entry.name}, {"config", config}, {"process", process}}},
        {"data", {{"source", writeImageFolder(dir)}, {"batch", 4}, {"size", {8, 8}}, {"validation", 0}}},
        {"train", {{"steps", 2}, {"lr", 1e-3}, {"warmup", 0}, {"ema", 0.9}}},
        {"log", {{"every", 1}}},
        {"checkpoint", {{"every", 1000}}},
        {"validation", {{"every", 0}}},
        {"samples", {{"every", 0}}}};
    std::ostringstream events;
    TrainRequest request;
    request.outDir = dir.filePath(QStringLiteral("run")).toStdString();
    request.events = &events;
    auto trainer = Trainer::create(Config::fromJson(settings, "walk"), request);
    QVERIFY2(trainer, trainer ? "" : trainer.error().message().c_str());
    Trainer& t = **trainer;
    std::vector<at::Tensor> before;
    for (const auto& p : t.network().parameters()) before.push_back(p.detach().clone());
    auto done = t.step();
    QVERIFY2(done, done ? "" : done.error().message().c_str());
    QCOMPARE(done->step, std::int64_t(1));
    QCOMPARE(t.currentStep(), std::int64_t(1));
    QVERIFY2(std::isfinite(done->loss) && done->loss > 0, qPrintable(QString::number(done->loss)));
    const auto after = t.network().parameters();
    QCOMPARE(after.size(), before.size());
    std::size_t changed = 0;
    for (std::size_t i = 0; i < after.size(); ++i) {
      QVERIFY(allFinite(after[i]));
      if (!at::equal(after[i].detach(), before[i])) ++changed;
    }
    QVERIFY2(changed > 0, "no parameter changed");
  }

  void inspect_data() { kinds(); }
  void inspect() {
    QFETCH(QString, kind);
    const BackboneEntry& entry = entryOf(kind);
    QTemporaryDir dir;
    const LoadedModel model = tinyModelFile(entry, dir);
    InspectionRequest r;
    r.generation = tinyRequest(entry, model, {2});
    r.generation.options.steps = 2;
    auto capture = captureInspection(model, r);
    // A backbone whose attention layers have their own grids (the U-Net) lists them.
    const auto own = model.backbone->attentionLayers(r.generation.height, r.generation.width);
    if (!own.empty()) {
      QVERIFY2(capture, capture ? "" : capture.error().message().c_str());
      QCOMPARE(capture->layerAttention.size(), own.size());
      for (std::size_t l = 0; l < own.size(); ++l) {
        const std::int64_t t = own[l].gridH * own[l].gridW;
        QCOMPARE(capture->layerAttention[l].sizes().vec(), (std::vector<std::int64_t>{2, own[l].heads, t, t}));
        QVERIFY(at::allclose(capture->layerAttention[l].sum(-1), at::ones({2, own[l].heads, t}), 1e-4, 1e-4));
      }
      auto plain = generate(model, r.generation);
      QVERIFY(plain);
      QVERIFY(at::allclose(capture->image, plain->images.front(), 1e-4, 1e-5));
      return;
    }
    if (!hasAttentionTaps(entry.tiny.at("config"))) {
      QVERIFY2(!capture, "a capture of a model without attention taps succeeded");
      QVERIFY2(capture.error().message().find("attention") != std::string::npos, capture.error().message().c_str());
      return;
    }
    QVERIFY2(capture, capture ? "" : capture.error().message().c_str());
    const std::int64_t depth = entry.tiny.at("config").at("depth").get<std::int64_t>();
    const std::int64_t heads = entry.tiny.at("config").at("num_heads").get<std::int64_t>();
    const std::int64_t tokens = capture->gridH * capture->gridW;
    QCOMPARE(capture->gridH * capture->patch, r.generation.height);
    QCOMPARE(capture->gridW * capture->patch, r.generation.width);
    QCOMPARE(capture->attention.sizes().vec(), (std::vector<std::int64_t>{2, depth, heads, tokens, tokens}));
    QVERIFY(allFinite(capture->attention));
    QVERIFY(at::allclose(capture->attention.sum(-1), at::ones({2, depth, heads, tokens}), 1e-4, 1e-4));
    QVERIFY(allFinite(capture->image));
    if (r.generation.guidance.scale > 1.0) QVERIFY(capture->guidance.defined() && allFinite(capture->guidance));
    // The capture is the image a plain generation makes.
    auto plain = generate(model, r.generation);
    QVERIFY(plain);
    QVERIFY(at::allclose(capture->image, plain->images.front(), 1e-4, 1e-5));
  }

  void everySampler_data() {
    QTest::addColumn<QString>("sampler");
    for (const auto& n : samplerRegistry().names()) QTest::newRow(n.c_str()) << QString::fromStdString(n);
  }
  void everySampler() {
    QFETCH(QString, sampler);
    const SamplerEntry* s = samplerRegistry().find(sampler.toStdString());
    QVERIFY(s);
    const BackboneEntry& entry = *backboneRegistry().find(backboneRegistry().registrationOrder().front());
    QTemporaryDir dir;
    const LoadedModel model = tinyModelFile(entry, dir);
    GenerationRequest r = tinyRequest(entry, model, {0, 5});
    r.sampler = s->name;
    if (s->adaptive()) {  // its own steps between the grid's points: loose tolerances keep it short
      r.options.rtol = 1e-2;
      r.options.atol = 1e-3;
    }
    auto a = generate(model, r);
    QVERIFY2(a, a ? "" : a.error().message().c_str());
    const std::vector<std::int64_t> expected{2, model.backbone->capabilities().inChannels, r.height, r.width};
    QCOMPARE(a->samples.sizes().vec(), expected);
    QVERIFY2(allFinite(a->samples), "non-finite samples");
    QVERIFY(a->nfe > 0);
    if (!s->adaptive()) QVERIFY2(a->nfe >= 3, qPrintable(QString::number(a->nfe)));
    auto b = generate(model, r);
    QVERIFY(b);
    QVERIFY2(at::equal(a->samples, b->samples), "the same seed gave other samples");
  }
};

TESSERA_TEST_MAIN(TestRegistryWalk, Appless)
#include "test_registry_walk.moc"
