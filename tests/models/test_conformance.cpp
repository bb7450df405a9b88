// SPDX-License-Identifier: Apache-2.0
// Every backbone in the registry, on its tiny configuration, the day it is added:
// shapes, determinism, unique parameter names, model-file round trip, gradients.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/config/config.h"
#include "engine/model_file.h"
#include "models/registry.h"
#include "models/state_dict.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QTemporaryDir>
#include <QtTest>
#include <torch/utils.h>

#include <set>
#endif

using namespace tessera;

namespace {

struct TinyInput {
  at::Tensor x, t, y;
};

TinyInput makeInput(const nlohmann::json& spec, std::int64_t batch) {
  at::manual_seed(3);
  const auto c = spec.at("channels").get<std::int64_t>(), h = spec.at("height").get<std::int64_t>(),
             w = spec.at("width").get<std::int64_t>();
  const double tScale = spec.at("t_scale").get<double>();
  return {at::randn({batch, c, h, w}), at::rand({batch}) * tScale, at::randint(0, 10, {batch})};
}

}  // namespace

class TestConformance : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void everyBackbone_data() {
    QTest::addColumn<QString>("name");
    for (const auto& n : backboneRegistry().names()) QTest::newRow(n.c_str()) << QString::fromStdString(n);
  }
  void everyBackbone() {
    QFETCH(QString, name);
    const BackboneEntry* entry = backboneRegistry().find(name.toStdString());
    QVERIFY(entry);
    QVERIFY2(entry->tiny.contains("config") && entry->tiny.contains("input"), "registry entry lacks a tiny configuration");
    const Config cfg = Config::fromJson(entry->tiny.at("config"), "tiny");
    auto made = backboneRegistry().create(entry->name, cfg);
    QVERIFY2(made, made ? "" : made.error().message().c_str());
    auto model = *made;
    QCOMPARE(model->kind(), entry->name);

    // Parameter names are unique and every one is reachable.
    std::set<std::string> names;
    for (const auto& [n, t] : stateDict(*model)) QVERIFY2(names.insert(n).second, n.c_str());

    // Gradients reach the network. The reference initialisation zeroes the output
    // layer, so randomise first (as training would after one step).
    {
      torch::NoGradGuard g;
      for (auto& p : model->parameters()) p.add_(at::randn_like(p) * 0.05);
    }
    model->train();
    const TinyInput in = makeInput(entry->tiny.at("input"), 3);
    BackboneInput bi{in.x, in.t, in.y, std::nullopt, std::nullopt, std::nullopt, nullptr};
    const at::Tensor out = model->forward(bi).prediction;
    QCOMPARE(out.size(0), in.x.size(0));
    QCOMPARE(out.size(2), in.x.size(2));
    QCOMPARE(out.size(3), in.x.size(3));
    const std::int64_t c = in.x.size(1);
    QVERIFY(out.size(1) == c || (model->capabilities().learnedSigma && out.size(1) == 2 * c));
    out.pow(2).mean().backward();
    std::int64_t withGrad = 0, trainable = 0;
    for (const auto& p : model->parameters()) {
      if (!p.requires_grad()) continue;
      ++trainable;
      if (p.grad().defined() && p.grad().abs().sum().item<double>() > 0) ++withGrad;
    }
    QVERIFY2(withGrad >= trainable - 1, qPrintable(QStringLiteral("%1 of %2").arg(withGrad).arg(trainable)));

    // Deterministic in eval mode, and identical after a model-file round trip.
    model->eval();
    torch::NoGradGuard g;
    const at::Tensor a = model->forward(bi).prediction, b = model->forward(bi).prediction;
    QVERIFY(at::equal(a, b));
    QTemporaryDir dir;
    const std::string path = dir.filePath(QStringLiteral("tiny.safetensors")).toStdString();
    nlohmann::json description{{"backbone", {{"kind", entry->name}, {"config", entry->tiny.at("config")}}}};
    QVERIFY(writeModelFile(path, description, stateDict(*model)));
    auto loaded = loadModelFile(path);
    QVERIFY2(loaded, loaded ? "" : loaded.error().message().c_str());
    QVERIFY(at::equal(loaded->backbone->forward(bi).prediction, a));
  }

  void badConfigNamesTheField() {
    for (const auto& n : backboneRegistry().names()) {
      nlohmann::json bad = backboneRegistry().find(n)->tiny.at("config");
      bad["depht"] = 3;
      auto made = backboneRegistry().create(n, Config::fromJson(bad, "cfg.json"));
      QVERIFY(!made);
      QVERIFY2(made.error().message().find("depht") != std::string::npos, made.error().message().c_str());
    }
  }

  void modelFileRefusals() {
    QTemporaryDir dir;
    const std::string plain = dir.filePath(QStringLiteral("plain.safetensors")).toStdString();
    QVERIFY(writeSafetensors(plain, {{"a", at::zeros({1})}}));
    auto r = loadModelFile(plain);
    QVERIFY(!r);
    QVERIFY(r.error().message().find("not a Tessera model") != std::string::npos);
    const std::string unknown = dir.filePath(QStringLiteral("unknown.safetensors")).toStdString();
    QVERIFY(writeModelFile(unknown, {{"backbone", {{"kind", "zzz"}, {"config", nlohmann::json::object()}}}}, {{"a", at::zeros({1})}}));
    r = loadModelFile(unknown);
    QVERIFY(!r);
    QVERIFY2(r.error().message().find("unknown backbone 'zzz'") != std::string::npos, r.error().message().c_str());
    const std::string badProcess = dir.filePath(QStringLiteral("process.safetensors")).toStdString();
    const auto* dit = backboneRegistry().find("dit");
    QVERIFY(writeModelFile(badProcess, {{"backbone", {{"kind", "dit"}, {"config", dit->tiny.at("config")}}},
                                        {"process", {{"kind", "gaussian_diffusion"}, {"schedule", "quadratic"}}}}, {}));
    r = loadModelFile(badProcess);
    QVERIFY(!r);
    QVERIFY2(r.error().message().find("field 'process.schedule'") != std::string::npos, r.error().message().c_str());
  }
};

TESSERA_TEST_MAIN(TestConformance, Appless)
#include "test_conformance.moc"
