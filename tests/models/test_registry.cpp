// SPDX-License-Identifier: Apache-2.0
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/process/process.h"
#include "models/registry.h"
#include "models/state_dict.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <torch/utils.h>
#include <QtTest>

#include <map>
#endif

using namespace tessera;

namespace {

class NullBackbone : public BackboneImpl {
public:
  BackboneOutput forward(const BackboneInput& input) override { return {input.x, std::nullopt}; }
  Capabilities capabilities() const override { return {}; }
  std::string kind() const override { return "null"; }
};

/// The names and shapes of a network's state dict, by name.
std::map<std::string, std::vector<std::int64_t>> shapeMap(const BackboneImpl& net) {
  std::map<std::string, std::vector<std::int64_t>> out;
  for (const auto& [name, t] : stateDict(net)) out[name] = t.sizes().vec();
  return out;
}

/// Builds `kind` from `config`; ends the test program when it cannot.
std::shared_ptr<BackboneImpl> mustCreate(const std::string& kind, const nlohmann::json& config) {
  auto made = backboneRegistry().create(kind, Config::fromJson(config, "test"));
  if (!made) qFatal("%s", made.error().message().c_str());
  return *made;
}

}  // namespace

class TestRegistry : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void addFindCreate() {
    BackboneRegistry r;
    QVERIFY(r.add({"null", "identity", [](const Config&, const BuildOptions&) -> Result<std::shared_ptr<BackboneImpl>> {
                     return std::make_shared<NullBackbone>();
                   }, {}, {}}));
    QVERIFY(r.find("null"));
    QVERIFY(!r.find("dit"));
    auto made = r.create("null", Config::fromJson({}, "test"));
    QVERIFY(made);
    QCOMPARE((*made)->kind(), std::string("null"));
  }

  void errorsNameTheProblem() {
    BackboneRegistry r;
    auto factory = [](const Config& c, const BuildOptions&) -> Result<std::shared_ptr<BackboneImpl>> {
      auto depth = c.integer("depth", std::nullopt, 1, 4);
      if (!depth) return fail(depth.error());
      return std::make_shared<NullBackbone>();
    };
    QVERIFY(r.add({"a", "", factory, {}, {}}));
    auto twice = r.add({"a", "", factory, {}, {}});
    QVERIFY(!twice);
    QVERIFY(twice.error().message().find("twice") != std::string::npos);
    QVERIFY(!r.add({"b", "", nullptr, {}, {}}));
    auto unknown = r.create("zzz", Config::fromJson({}, "cfg"));
    QVERIFY(!unknown);
    QVERIFY(unknown.error().message().find("unknown backbone 'zzz' (known: a)") != std::string::npos);
    auto badConfig = r.create("a", Config::fromJson({{"depth", 9}}, "cfg.json"));
    QVERIFY(!badConfig);
    QVERIFY2(badConfig.error().message().find("backbone 'a': cfg.json: field 'depth'") != std::string::npos,
             badConfig.error().message().c_str());
  }

  void globalRegistryMatchesDefFile() {
    // Every name in models/backbones.def is registered, and nothing else.
    QFile def(QStringLiteral(TESSERA_SOURCE_DIR "/models/backbones.def"));
    QVERIFY(def.open(QIODevice::ReadOnly));
    std::vector<std::string> listed;
    const QRegularExpression line(QStringLiteral("^TESSERA_BACKBONE\\((\\w+)\\)"), QRegularExpression::MultilineOption);
    auto it = line.globalMatch(QString::fromUtf8(def.readAll()));
    while (it.hasNext()) listed.push_back(it.next().captured(1).toStdString());
    std::sort(listed.begin(), listed.end());
    QCOMPARE(backboneRegistry().names(), listed);
  }

  void everyEntryHasATableThatRoundTrips() {
    for (const auto& name : backboneRegistry().names()) {
      const BackboneEntry& e = *backboneRegistry().find(name);
      const ConfigSchema& schema = e.config;
      QVERIFY2(!schema.fields.empty() && schema.complete, name.c_str());
      for (const auto& f : schema.fields) {
        QVERIFY2(!f.doc.empty(), (name + "." + f.key).c_str());
        QVERIFY2(f.type == "integer" || f.type == "number" || f.type == "boolean" || f.type == "string" ||
                     f.type == "object" || f.type == "integer list" || f.type == "number list",
                 (name + "." + f.key).c_str());
        QVERIFY2(schema.help().find(f.key) != std::string::npos, (name + "." + f.key).c_str());
      }
      // The defaults read and written give themselves, and so does an empty configuration.
      const nlohmann::json defaults = schema.defaults();
      auto read = schema.complete(Config::fromJson(defaults, "defaults"));
      QVERIFY2(read, read ? "" : read.error().message().c_str());
      QCOMPARE(read->dump(), defaults.dump());
      auto empty = schema.complete(Config::fromJson(nlohmann::json::object(), "empty"));
      QVERIFY2(empty, empty ? "" : empty.error().message().c_str());
      QCOMPARE(empty->dump(), defaults.dump());
      // The tiny configuration completed builds the network the tiny one does.
      const nlohmann::json tiny = e.tiny.at("config");
      auto completed = schema.complete(Config::fromJson(tiny, "tiny"));
      QVERIFY2(completed, completed ? "" : completed.error().message().c_str());
      QVERIFY(shapeMap(*mustCreate(name, *completed)) == shapeMap(*mustCreate(name, tiny)));
      auto again = schema.complete(Config::fromJson(*completed, "again"));
      QVERIFY(again && *again == *completed);
      // Every preset completes to a configuration that reads back as itself.
      for (const auto& preset : e.presets) {
        auto p = schema.complete(Config::fromJson({{"preset", preset}}, preset));
        QVERIFY2(p, p ? "" : p.error().message().c_str());
        auto back = schema.complete(Config::fromJson(*p, preset));
        QVERIFY2(back && *back == *p, preset.c_str());
        QCOMPARE(backboneRegistry().findPreset(preset), &e);
      }
      // A misspelt key is named, with the table's own key suggested.
      nlohmann::json bad = tiny;
      bad["num_classse"] = 3;
      auto refused = schema.complete(Config::fromJson(bad, "bad.json"));
      QVERIFY(!refused);
      QVERIFY2(refused.error().message().find("did you mean 'num_classes'") != std::string::npos,
               refused.error().message().c_str());
    }
    QVERIFY(!backboneRegistry().findPreset("DiT-XXL/2"));
  }

  void staticCapabilitiesMatchBuiltOnes() {
    for (const auto& name : backboneRegistry().names()) {
      const BackboneEntry& e = *backboneRegistry().find(name);
      QVERIFY2(!e.capabilities.predictions.empty(), name.c_str());
      nlohmann::json config = e.tiny.at("config");
      config.erase("prediction");  // the kind's default
      const Capabilities built = mustCreate(name, config)->capabilities();
      QCOMPARE(built.anyGrid, e.capabilities.anyGrid);
      QCOMPARE(built.packed, e.capabilities.packed);
      QVERIFY2(built.prediction == e.capabilities.predictions.front(), name.c_str());
      QVERIFY(!built.learnedSigma || e.capabilities.learnedSigma);
      // Every prediction the kind lists builds, and means what it says.
      for (Prediction p : e.capabilities.predictions) {
        config["prediction"] = predictionName(p);
        QVERIFY2(mustCreate(name, config)->capabilities().prediction == p, (name + " " + predictionName(p)).c_str());
      }
    }
  }

  void importersRecogniseTheirOwnTinyModels() {
    const auto importers = backboneRegistry().importerNames();
    QVERIFY(!importers.empty());
    for (const auto& name : importers) {
      const BackboneEntry& e = *backboneRegistry().find(name);
      const nlohmann::json tiny = e.tiny.at("config");
      torch::manual_seed(1);
      const auto original = mustCreate(name, tiny);
      NamedTensors sd = stateDict(*original);
      for (auto& [key, t] : sd) t = t.detach().clone();
      const TensorShapes shapes = shapesOf(sd);
      QVERIFY2(e.importer.recognises(shapes), name.c_str());
      // Its own name in the file name decides between kinds sharing a network.
      QCOMPARE(backboneRegistry().recognise(shapes, "tiny-" + name + "-256.pt"), std::vector<std::string>{name});
      ImportRequest request;
      request.heads = tiny.at("num_heads").get<std::int64_t>();
      auto imported = e.importer.convert(sd, request);
      QVERIFY2(imported, imported ? "" : imported.error().message().c_str());
      const auto rebuilt = mustCreate(name, imported->config);
      QVERIFY2(shapeMap(*rebuilt) == shapeMap(*original), name.c_str());
      QCOMPARE(imported->weights.size(), sd.size());
      const std::map<std::string, at::Tensor> given(sd.begin(), sd.end());
      for (const auto& [key, t] : imported->weights)
        QVERIFY2(given.count(key) && at::equal(t, given.at(key)), key.c_str());
      QCOMPARE(imported->numClasses, tiny.at("num_classes").get<std::int64_t>());
      // A null row where the tiny configuration has label dropout (DiT's family always does).
      QCOMPARE(imported->nullClass, tiny.value("class_dropout_prob", 0.1) > 0);
      // The process it names is one this Tessera builds, and the process hook agrees.
      QVERIFY(processFromConfig(Config::fromJson({{"process", imported->process}}, "import"), "process"));
      QVERIFY(e.importer.process(imported->config) == imported->process);
      // Another kind's tensors are not taken for its own, unless the network is the same.
      NamedTensors notMine = {{"foo.weight", at::zeros({2, 2})}};
      QVERIFY(!e.importer.recognises(shapesOf(notMine)));
    }
  }

  void sharedNetworksNeedAName() {
    // DiT and SiT are one network: the tensors fit both, and only a file name tells.
    const auto dit = mustCreate("dit", backboneRegistry().find("dit")->tiny.at("config"));
    const TensorShapes shapes = shapesOf(stateDict(*dit));
    QCOMPARE(backboneRegistry().recognise(shapes), (std::vector<std::string>{"dit", "sit"}));
    QCOMPARE(backboneRegistry().recognise(shapes, "checkpoint-0400000.pt"), (std::vector<std::string>{"dit", "sit"}));
    QCOMPARE(backboneRegistry().recognise(shapes, "SiT-XL-2-256x256.pt"), std::vector<std::string>{"sit"});
    QCOMPARE(backboneRegistry().recognise(shapes, "DiT-XL-2-512x512.pt"), std::vector<std::string>{"dit"});
    QCOMPARE(backboneRegistry().recognise(shapes, "dit_vs_sit.pt"), (std::vector<std::string>{"dit", "sit"}));
    QCOMPARE(backboneRegistry().recognise(shapes, "audit.pt"), (std::vector<std::string>{"dit", "sit"}));
  }

  void onePredictionVocabulary() {
    for (Prediction p :
         {Prediction::Epsilon, Prediction::Sample, Prediction::Velocity, Prediction::Score, Prediction::V})
      QVERIFY(parsePrediction(predictionName(p)) == p);
    QVERIFY(parsePrediction("noise") == Prediction::Epsilon);  // the interpolants' spelling
    QVERIFY(!parsePrediction("epsilon"));
    QCOMPARE(predictionSpellings({Prediction::Velocity, Prediction::Epsilon}),
             (std::vector<std::string>{"velocity", "eps", "noise"}));
    // The processes read the spellings their files use, and say what they mean in the enum.
    GaussianDiffusionConfig d;
    d.prediction = "v";
    QVERIFY(GaussianDiffusion::create(d)->prediction() == Prediction::V);
    d.prediction = "velocity";
    QVERIFY(!GaussianDiffusion::create(d));
    QVERIFY(Interpolant::create(InterpolantConfig::defaultsFor("linear", "noise"))->prediction() ==
            Prediction::Epsilon);
    QVERIFY(!Interpolant::create(InterpolantConfig::defaultsFor("linear", "x0")));
  }
};

TESSERA_TEST_MAIN(TestRegistry, Appless)
#include "test_registry.moc"
