// SPDX-License-Identifier: Apache-2.0
// Real training (label `slow`, minutes): the evaluator CNN learns Fashion-MNIST in one
// epoch, and a small SiT trained on two classes makes samples the evaluator recognises
// as the classes asked for.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "cli_runner.h"
#include "core/eval/evaluator.h"
#include "core/system/resources.h"
#include "engine/generation.h"
#include "engine/model_file.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <fstream>
#endif

using namespace tessera;
using tessera::test::cli;

class TestSlowTraining : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void evaluatorLearnsInOneEpoch() {
    QTemporaryDir dir;
    const QString out = dir.filePath(QStringLiteral("evaluator.safetensors"));
    const auto r = cli({QStringLiteral("-q"), QStringLiteral("eval"), QStringLiteral("--train-evaluator"), out,
                        QStringLiteral("--epochs"), QStringLiteral("1")},
                       {}, {}, 900000);
    QVERIFY2(r.code == 0, r.err.constData());
    const auto j = nlohmann::json::parse(r.out.toStdString());
    QVERIFY2(j["test_accuracy"].get<double>() > 0.85, r.out.constData());
    auto e = loadEvaluator(out.toStdString());
    QVERIFY2(e, e ? "" : e.error().message().c_str());
  }

  void twoClassModelMakesRecognisableSamples() {
    QTemporaryDir dir;
    const nlohmann::json config = {
        {"model",
         {{"backbone", "sit"},
          {"config", {{"patch_size", 4}, {"hidden_size", 96}, {"depth", 4}, {"num_heads", 4}, {"learn_sigma", false}}},
          {"process", {{"kind", "interpolant"}, {"path", "linear"}, {"prediction", "velocity"}}}}},
        {"data", {{"source", "fashion-mnist"}, {"classes", {"Trouser", "Bag"}}, {"batch", 64}, {"size", {28, 28}}, {"validation", 128}}},
        {"train", {{"steps", 600}, {"lr", 1e-3}, {"warmup", 100}, {"ema", 0.99}, {"label_dropout", 0.1}}},
        {"log", {{"every", 50}}},
        {"checkpoint", {{"every", 600}}},
        {"validation", {{"every", 300}}},
        {"samples", {{"every", 600}, {"steps", 20}, {"sampler", "euler"}, {"cfg", 3.0}}}};
    const QString cfg = dir.filePath(QStringLiteral("c.json"));
    std::ofstream(cfg.toStdString()) << config.dump();
    const QString run = dir.filePath(QStringLiteral("run"));
    const auto r = cli({QStringLiteral("-q"), QStringLiteral("train"), QStringLiteral("--config"), cfg,
                        QStringLiteral("--out"), run},
                       {}, {}, 1800000);
    QVERIFY2(r.code == 0, r.err.constData());
    // The validation loss (fixed timesteps and noise) fell from step 300 to step 600, for
    // the trained weights and for their EMA.
    std::vector<double> val, valEma;
    for (const QByteArray& line : r.out.split('\n')) {
      if (line.isEmpty()) continue;
      const auto j = nlohmann::json::parse(line.toStdString());
      if (j["event"] == "validation") {
        val.push_back(j["loss"].get<double>());
        valEma.push_back(j["loss_ema"].get<double>());
      }
    }
    QCOMPARE(val.size(), std::size_t(2));
    const QString losses =
        QStringLiteral("validation loss %1 -> %2, EMA %3 -> %4").arg(val[0]).arg(val[1]).arg(valEma[0]).arg(valEma[1]);
    qInfo("%s", qPrintable(losses));
    QVERIFY2(val[1] < val[0] && valEma[1] < valEma[0], qPrintable(losses));
    auto model = loadModelFile(run.toStdString() + "/model.safetensors");
    QVERIFY2(model, model ? "" : model.error().message().c_str());
    GenerationRequest g;
    for (int i = 0; i < 20; ++i) g.classes.push_back(i % 2);
    g.sampler = "euler";
    g.options.steps = 30;
    g.guidance.scale = 3.0;
    g.seed = 5;
    auto samples = generate(*model, g);
    QVERIFY2(samples, samples ? "" : samples.error().message().c_str());
    auto evaluator = loadEvaluator(findResource("models/fashion-evaluator.safetensors"));
    QVERIFY2(evaluator, evaluator ? "" : evaluator.error().message().c_str());
    const at::Tensor predicted = evaluator->run(samples->samples).predicted;
    int right = 0;
    for (int i = 0; i < 20; ++i) right += predicted[i].item<std::int64_t>() == (i % 2 == 0 ? 1 : 8);  // Trouser, Bag
    QVERIFY2(right >= 16, qPrintable(QStringLiteral("%1 of 20 samples recognised").arg(right)));
  }
};

TESSERA_TEST_MAIN(TestSlowTraining, Guiless)
#include "test_slow_training.moc"
