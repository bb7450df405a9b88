// SPDX-License-Identifier: Apache-2.0
// The trainer on tiny models: the loss falls on an overfit batch for both processes, a
// resumed run reproduces the uninterrupted run's losses exactly, a non-finite loss stops
// the run and keeps the last good checkpoint, a wsd cool-down can be added on resume
// without changing a trained step, --init remaps the class table by name and records the
// starting model's lineage, the configurations beside the shipped models are the ones
// recorded in them, and bad configurations are refused naming the field.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/config/config.h"
#include "core/formats/safetensors.h"
#include "engine/generation.h"
#include "engine/model_file.h"
#include "engine/training.h"
#include "tests/support/test_main.h"
#include "tests/support/training_run.h"

#include <ATen/ATen.h>
#include <QTemporaryDir>
#include <QtTest>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>
#endif

using namespace tessera;

namespace {

nlohmann::json tinyConfig(const std::string& process) {
  nlohmann::json p = process == "ddpm"
                         ? nlohmann::json{{"kind", "gaussian_diffusion"}, {"learn_sigma", true}}
                         : nlohmann::json{{"kind", "interpolant"}, {"path", "linear"}, {"prediction", "velocity"}};
  nlohmann::json cfg = {{"patch_size", 4}, {"hidden_size", 64}, {"depth", 2}, {"num_heads", 4}};
  if (process != "ddpm") cfg["learn_sigma"] = false;
  return {{"model", {{"backbone", process == "ddpm" ? "dit" : "sit"}, {"config", cfg}, {"process", p}}},
          {"data", {{"source", "fashion-mnist"}, {"batch", 16}, {"size", {28, 28}}, {"validation", 32}}},
          {"train", {{"steps", 6}, {"lr", 1e-3}, {"warmup", 2}, {"ema", 0.9}, {"limit", 400}}},
          {"log", {{"every", 1}}},
          {"checkpoint", {{"every", 3}}},
          {"validation", {{"every", 3}, {"timesteps", 2}}},
          {"samples", {{"every", 0}}}};
}

using Run = tessera::test::TrainingRun;
using tessera::test::trainRun;
using tessera::test::writeJsonFile;

double mean(const std::vector<double>& v, std::size_t from, std::size_t to) {
  double s = 0;
  for (std::size_t i = from; i < to; ++i) s += v[i];
  return s / static_cast<double>(to - from);
}

}  // namespace

class TestTraining : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void overfitBatchLossFalls_data() {
    QTest::addColumn<QString>("process");
    QTest::newRow("ddpm-learned-sigma") << "ddpm";
    QTest::newRow("linear-velocity") << "interpolant";
  }
  void overfitBatchLossFalls() {
    QFETCH(QString, process);
    QTemporaryDir dir;
    nlohmann::json c = tinyConfig(process.toStdString());
    c["train"]["limit"] = 16;  // one batch, seen again and again
    c["train"]["steps"] = 120;
    c["train"]["lr"] = 2e-3;
    c["validation"]["every"] = 0;
    c["checkpoint"]["every"] = 1000;
    const Run run = trainRun(writeJsonFile(dir, "c.json", c), dir.path().toStdString() + "/run");
    QVERIFY2(run.summary, run.summary ? "" : run.summary.error().message().c_str());
    const auto l = run.losses();
    QCOMPARE(l.size(), std::size_t(120));
    const double first = mean(l, 0, 20), last = mean(l, 100, 120);
    QVERIFY2(last < 0.6 * first, qPrintable(QStringLiteral("loss %1 -> %2").arg(first).arg(last)));
  }

  void packedBatchesTrainNativeBackbones_data() {
    QTest::addColumn<QString>("backbone");
    QTest::addColumn<QString>("process");
    QTest::newRow("nit-linear-velocity") << "nit" << "interpolant";
    QTest::newRow("nit-ddpm-learned-sigma") << "nit" << "ddpm";
    QTest::newRow("fit-linear-velocity (padded)") << "fit" << "interpolant";
  }
  void packedBatchesTrainNativeBackbones() {
    QFETCH(QString, backbone);
    QFETCH(QString, process);
    QTemporaryDir dir;
    nlohmann::json c = tinyConfig(process.toStdString());
    c["model"]["backbone"] = backbone.toStdString();
    c["model"]["config"]["learn_sigma"] = process == QLatin1String("ddpm");
    c["model"]["config"]["prediction"] = process == QLatin1String("ddpm") ? "eps" : "velocity";
    c["data"] = {{"source", "fashion-native"}, {"batching", "packed"}, {"token_budget", 1000}, {"batch", 16},
                 {"size", {28, 28}}, {"validation", 16}};
    c["train"]["limit"] = 16;  // all sixteen crops, every step: overfitting must work
    c["train"]["steps"] = 80;
    c["train"]["lr"] = 2e-3;
    c["validation"]["every"] = 40;
    c["checkpoint"]["every"] = 1000;
    const Run run = trainRun(writeJsonFile(dir, "c.json", c), dir.path().toStdString() + "/run");
    QVERIFY2(run.summary, run.summary ? "" : run.summary.error().message().c_str());
    const auto l = run.losses();
    QCOMPARE(l.size(), std::size_t(80));
    const double first = mean(l, 0, 15), last = mean(l, 65, 80);
    QVERIFY2(last < 0.7 * first, qPrintable(QStringLiteral("loss %1 -> %2").arg(first).arg(last)));
    QVERIFY(!run.validation().empty() && std::isfinite(run.validation().back()));
    // NiT computes only the images' own tokens; FiT pads each pack to its longest image.
    double fraction = 0;
    std::int64_t images = 0;
    for (const auto& e : run.events)
      if (e["event"] == "step") fraction = e["real_token_fraction"].get<double>(), images = e["images"].get<std::int64_t>();
    QCOMPARE(images, std::int64_t{16});
    if (backbone == QLatin1String("nit")) QCOMPARE(fraction, 1.0);
    else QVERIFY2(fraction < 1.0 && fraction > 0.3, qPrintable(QString::number(fraction)));
    // The model it wrote samples at the trained size and at a mixed list.
    auto loaded = loadModelFile(dir.path().toStdString() + "/run/model.safetensors");
    QVERIFY2(loaded, loaded ? "" : loaded.error().message().c_str());
    GenerationRequest g;
    g.classes = {0, 1};
    g.sizes = {{28, 12}, {16, 28}};
    g.options.steps = 3;
    g.sampler = process == QLatin1String("ddpm") ? "ddim" : "euler";
    auto out = generate(*loaded, g);
    QVERIFY2(out, out ? "" : out.error().message().c_str());
    QCOMPARE(out->images[0].sizes().vec(), (std::vector<std::int64_t>{1, 28, 12}));
  }

  void packedBatchesNeedAPackedBackbone() {
    QTemporaryDir dir;
    nlohmann::json c = tinyConfig("ddpm");
    c["data"] = {{"source", "fashion-native"}, {"batching", "packed"}, {"token_budget", 1000}, {"batch", 16}, {"size", {28, 28}}};
    c["train"]["limit"] = 16;
    const Run run = trainRun(writeJsonFile(dir, "c.json", c), dir.path().toStdString() + "/run");
    QVERIFY(!run.summary);
    QVERIFY2(run.summary.error().message().find("packed") != std::string::npos, run.summary.error().message().c_str());
  }

  void resumedRunReproducesTheUninterruptedOne() {
    QTemporaryDir dir;
    nlohmann::json c = tinyConfig("ddpm");
    c["data"]["flip"] = true;
    const std::string full = writeJsonFile(dir, "full.json", c);
    c["train"]["steps"] = 3;
    const std::string half = writeJsonFile(dir, "half.json", c);
    const std::string a = dir.path().toStdString() + "/a", b = dir.path().toStdString() + "/b";
    const Run straight = trainRun(full, a);
    QVERIFY2(straight.summary, straight.summary ? "" : straight.summary.error().message().c_str());
    const Run first = trainRun(half, b);
    QVERIFY(first.summary);
    const Run resumed = trainRun(full, b, /*resume=*/true);
    QVERIFY2(resumed.summary, resumed.summary ? "" : resumed.summary.error().message().c_str());
    QCOMPARE(resumed.summary->startStep, std::int64_t(3));
    const auto whole = straight.losses(), tail = resumed.losses();
    QCOMPARE(tail.size(), std::size_t(3));
    for (std::size_t i = 0; i < 3; ++i) QCOMPARE(tail[i], whole[i + 3]);  // exactly, not approximately
    QCOMPARE(resumed.validation().back(), straight.validation().back());
    // Same weights at the end.
    auto wa = SafetensorsFile::open(a + "/checkpoints/step_00000006.safetensors");
    auto wb = SafetensorsFile::open(b + "/checkpoints/step_00000006.safetensors");
    QVERIFY(wa && wb);
    for (const auto& e : wa->entries()) QVERIFY2(at::equal(*wa->load(e.name), *wb->load(e.name)), e.name.c_str());
    // Resuming with a different model is refused.
    c["train"]["steps"] = 9;
    c["model"]["config"]["depth"] = 3;
    const Run changed = trainRun(writeJsonFile(dir, "changed.json", c), b, true);
    QVERIFY(!changed.summary);
    QVERIFY2(changed.summary.error().message().find("'model' section differs") != std::string::npos,
             changed.summary.error().message().c_str());
  }

  void wsdCoolDownCanBeAddedOnResume() {
    QTemporaryDir dir;
    nlohmann::json c = tinyConfig("interpolant");
    c["train"]["warmup"] = 0;
    c["train"]["steps"] = 4;
    const std::string out = dir.path().toStdString() + "/run";
    const Run first = trainRun(writeJsonFile(dir, "constant.json", c), out);
    QVERIFY2(first.summary, first.summary ? "" : first.summary.error().message().c_str());
    const auto rates = [](const Run& r) {
      std::vector<double> l;
      for (const auto& e : r.events)
        if (e["event"] == "step") l.push_back(e["lr"].get<double>());
      return l;
    };
    for (double lr : rates(first)) QCOMPARE(lr, 1e-3);

    // A decay that would change a step already trained is refused, naming that step.
    c["train"]["steps"] = 8;
    c["train"]["schedule"] = "wsd";
    c["train"]["decay"] = 5;
    const Run early = trainRun(writeJsonFile(dir, "early.json", c), out, true);
    QVERIFY(!early.summary);
    QVERIFY2(early.summary.error().message().find("changes step 3") != std::string::npos,
             early.summary.error().message().c_str());
    // So is a cosine schedule over the same steps.
    c["train"]["schedule"] = "cosine";
    c["train"].erase("decay");
    QVERIFY(!trainRun(writeJsonFile(dir, "cosine.json", c), out, true).summary);
    // 'decay' belongs to wsd only, and cannot be longer than the run.
    c["train"]["decay"] = 4;
    const Run stray = trainRun(writeJsonFile(dir, "stray.json", c), out, true);
    QVERIFY(!stray.summary);
    QVERIFY2(stray.summary.error().message().find("train.decay") != std::string::npos, stray.summary.error().message().c_str());
    c["train"]["schedule"] = "wsd";
    c["train"]["decay"] = 9;
    QVERIFY(!trainRun(writeJsonFile(dir, "long.json", c), out, true).summary);

    // A cool-down over the steps still to come: constant until step 4, then linear to
    // min_lr_ratio, reached by the last step.
    c["train"]["decay"] = 4;
    c["train"]["min_lr_ratio"] = 0.2;
    const Run cooled = trainRun(writeJsonFile(dir, "wsd.json", c), out, true);
    QVERIFY2(cooled.summary, cooled.summary ? "" : cooled.summary.error().message().c_str());
    QCOMPARE(cooled.summary->startStep, std::int64_t(4));
    const auto lr = rates(cooled);
    QCOMPARE(lr.size(), std::size_t(4));
    const double expected[] = {0.8e-3, 0.6e-3, 0.4e-3, 0.2e-3};
    for (std::size_t i = 0; i < 4; ++i) QVERIFY2(std::abs(lr[i] - expected[i]) < 1e-12, std::to_string(lr[i]).c_str());
  }

  void nonFiniteLossStopsAndKeepsTheLastCheckpoint() {
    QTemporaryDir dir;
    nlohmann::json c = tinyConfig("interpolant");
    c["checkpoint"]["every"] = 2;
    const std::string out = dir.path().toStdString() + "/run";
    qputenv("TESSERA_TRAIN_FAULT_NAN_STEP", "3");  // the fourth step's loss becomes NaN
    const Run run = trainRun(writeJsonFile(dir, "c.json", c), out);
    qunsetenv("TESSERA_TRAIN_FAULT_NAN_STEP");
    QVERIFY(!run.summary);
    const std::string m = run.summary.error().message();
    QVERIFY2(m.find("NaN at step 3") != std::string::npos, m.c_str());
    QVERIFY2(m.find("step_00000002.safetensors") != std::string::npos, m.c_str());
    QCOMPARE(run.events.back()["event"].get<std::string>(), std::string("error"));
    QCOMPARE(QString::fromStdString(newestCheckpoint(out)), QString::fromStdString(out + "/checkpoints/step_00000002.safetensors"));
    auto model = loadModelFile(out + "/model.safetensors");
    QVERIFY2(model, model ? "" : model.error().message().c_str());
    QCOMPARE(model->description["source"]["training"]["step"].get<int>(), 2);
  }

  void initRemapsTheClassTableByName() {
    QTemporaryDir dir;
    nlohmann::json c = tinyConfig("ddpm");
    c["train"]["steps"] = 2;
    const std::string base = dir.path().toStdString() + "/base";
    QVERIFY(trainRun(writeJsonFile(dir, "base.json", c), base).summary);
    auto before = loadModelFile(base + "/model.safetensors");
    QVERIFY(before);

    c["data"]["classes"] = {"Bag", "Trouser"};
    c["train"]["lr"] = 0.0;  // keep the weights as initialised
    c["train"]["steps"] = 1;
    const std::string tuned = dir.path().toStdString() + "/tuned";
    const Run run = trainRun(writeJsonFile(dir, "tune.json", c), tuned, false, base + "/model.safetensors");
    QVERIFY2(run.summary, run.summary ? "" : run.summary.error().message().c_str());
    auto after = loadModelFile(tuned + "/model.safetensors");
    QVERIFY(after);
    QCOMPARE(after->description["classes"]["names"], nlohmann::json({"Bag", "Trouser"}));
    QCOMPARE(after->backbone->capabilities().numClasses, std::int64_t(2));
    at::Tensor oldTable, newTable;
    for (const auto& p : before->backbone->named_parameters())
      if (p.key() == "y_embedder.embedding_table.weight") oldTable = p.value();
    for (const auto& p : after->backbone->named_parameters())
      if (p.key() == "y_embedder.embedding_table.weight") newTable = p.value();
    QCOMPARE(newTable.size(0), std::int64_t(3));
    QVERIFY(at::allclose(newTable[0], oldTable[8], 1e-6, 1e-7));   // Bag (EMA of unchanged weights: equal up to rounding)
    QVERIFY(at::allclose(newTable[1], oldTable[1], 1e-6, 1e-7));   // Trouser
    QVERIFY(at::allclose(newTable[2], oldTable[10], 1e-6, 1e-7));  // the null class
    const auto& start = run.events.front();
    QCOMPARE(start["init"]["resized"][0]["classes_matched_by_name"].get<int>(), 2);
    // The tuned model remembers how the model it started from was trained.
    const auto& init = after->description["source"]["training"]["init"];
    QCOMPARE(init["from"].get<std::string>(), base + "/model.safetensors");
    QCOMPARE(init["source"]["training"]["step"].get<int>(), 2);
    QCOMPARE(init["source"]["training"]["config"]["train"]["steps"].get<int>(), 2);
  }

  // The configurations beside the shipped models are the ones they were trained with: a
  // model's recorded configuration equals its last stage's file, and each fine-tune's record
  // of the model it started from holds the stage before (NAME.json the base run, then
  // NAME-cooldown.json and NAME-rewarm.json where those stages exist; `--check --init` fills
  // in the model section the same way).
  void shippedConfigurationsAreTheModelsOwn() {
    const std::string dir = TESSERA_SOURCE_DIR "/resources/models/";
    for (const std::string name : {"dit-fashion", "sit-fashion", "nit-fashion", "fit-fashion", "latent-sit-fashion"}) {
      auto model = loadModelFile(dir + name + ".safetensors");
      QVERIFY2(model, model ? "" : model.error().message().c_str());
      std::vector<std::string> stages;
      for (const char* suffix : {"", "-cooldown", "-rewarm"})
        if (std::ifstream(dir + name + suffix + ".json").good()) stages.push_back(dir + name + suffix + ".json");
      QVERIFY2(!stages.empty() && stages.front() == dir + name + ".json", name.c_str());
      // Walk back from the model's own record: stage k's record holds stage k-1's in init.source.
      nlohmann::json source = model->description["source"];
      for (std::size_t k = stages.size(); k-- > 0;) {
        const bool tuned = k > 0;
        const std::string what = name + " stage " + stages[k];
        QVERIFY2(source.contains("training"), what.c_str());
        nlohmann::json recorded = source["training"]["config"];
        auto c = Config::fromFile(stages[k]);
        QVERIFY2(c, c ? "" : c.error().message().c_str());
        auto resolved = checkTrainingConfig(*c, tuned ? dir + name + ".safetensors" : std::string());
        QVERIFY2(resolved, resolved ? "" : resolved.error().message().c_str());
        // A run adds to the network's config what only the data tells (the class count, the
        // channels, the grid of a data set of mixed sizes, the label dropout); a check loads no data.
        for (const char* key : {"num_classes", "class_dropout_prob", "in_channels", "cfg_channels", "input_size"})
          if (!(*resolved)["model"]["config"].contains(key)) recorded["model"]["config"].erase(key);
        // Models trained before a process gained a field (train_time, model_time) record
        // only the fields of their day; those must agree, the rest are the new defaults.
        for (auto& [key, v] : recorded["model"]["process"].items())
          QVERIFY2((*resolved)["model"]["process"][key] == v, (what + ": model.process." + key).c_str());
        (*resolved)["model"]["process"] = recorded["model"]["process"];
        QVERIFY2(*resolved == recorded, (what + ": " + resolved->dump() + " vs " + recorded.dump()).c_str());
        if (!tuned) break;
        const auto& init = source["training"]["init"];
        QVERIFY2(init.contains("from"), (what + ": no init.from").c_str());
        if (!init.contains("source")) {
          // Fine-tunes made before the lineage was recorded name only their start file; what
          // can be checked is that the stage before agrees on the network and the data.
          auto b = Config::fromFile(stages[k - 1]);
          QVERIFY(b);
          auto base = checkTrainingConfig(*b, k - 1 > 0 ? dir + name + ".safetensors" : std::string());
          QVERIFY2(base, base ? "" : base.error().message().c_str());
          QCOMPARE((*base)["model"]["backbone"], recorded["model"]["backbone"]);
          QCOMPARE((*base)["model"]["process"]["kind"], recorded["model"]["process"]["kind"]);
          QCOMPARE((*base)["data"], recorded["data"]);
          break;
        }
        source = init["source"];
      }
    }
  }

  void badConfigurationsNameTheField() {
    QTemporaryDir dir;
    const std::string out = dir.path().toStdString() + "/run";
    nlohmann::json c = tinyConfig("ddpm");
    c["train"]["lerning_rate"] = 1;
    Run r = trainRun(writeJsonFile(dir, "a.json", c), out);
    QVERIFY(!r.summary);
    QVERIFY2(r.summary.error().message().find("lerning_rate") != std::string::npos, r.summary.error().message().c_str());

    c = tinyConfig("ddpm");
    c["data"]["size"] = {30, 30};  // not a multiple of the patch size 4
    r = trainRun(writeJsonFile(dir, "b.json", c), out);
    QVERIFY(!r.summary);
    QVERIFY2(r.summary.error().message().find("multiple of patch_size 4") != std::string::npos,
             r.summary.error().message().c_str());

    c = tinyConfig("ddpm");
    c["model"]["process"]["learn_sigma"] = false;  // the backbone still predicts a variance
    r = trainRun(writeJsonFile(dir, "c.json", c), out);
    QVERIFY(!r.summary);
    QVERIFY2(r.summary.error().message().find("learn_sigma") != std::string::npos, r.summary.error().message().c_str());

    c = tinyConfig("ddpm");
    c["data"]["classes"] = {"Trousers"};
    r = trainRun(writeJsonFile(dir, "d.json", c), out);
    QVERIFY(!r.summary);
    QVERIFY2(r.summary.error().message().find("no class 'Trousers'") != std::string::npos,
             r.summary.error().message().c_str());

    c = tinyConfig("ddpm");
    c["model"]["config"]["num_classes"] = 7;
    r = trainRun(writeJsonFile(dir, "e.json", c), out);
    QVERIFY(!r.summary);
    QVERIFY2(r.summary.error().message().find("num_classes") != std::string::npos, r.summary.error().message().c_str());

    // A run directory with checkpoints is not overwritten by accident.
    c = tinyConfig("ddpm");
    c["train"]["steps"] = 3;
    QVERIFY(trainRun(writeJsonFile(dir, "f.json", c), out).summary);
    r = trainRun(writeJsonFile(dir, "f.json", c), out);
    QVERIFY(!r.summary);
    QVERIFY2(r.summary.error().message().find("--resume") != std::string::npos, r.summary.error().message().c_str());
  }
};

TESSERA_TEST_MAIN(TestTraining, Guiless)
#include "test_training.moc"
