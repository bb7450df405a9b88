// SPDX-License-Identifier: Apache-2.0
// Inspection: the probe's attention taps on DiT, FiT and NiT (they change nothing and
// give rows that are distributions, per image at its own length), the capture run
// (the same image as a plain generation, one map per captured step and layer, the
// guidance map), attention maps, rollout and head entropy against their formulas, and
// the forward compute count against a hand count.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/config/config.h"
#include "core/formats/safetensors.h"
#include "engine/generation.h"
#include "engine/inspection.h"
#include "models/common/packing.h"
#include "models/probe.h"
#include "models/registry.h"

#include <ATen/ATen.h>
#include <QTemporaryDir>
#include "tests/models/tiny_backbone.h"
#include "tests/support/test_main.h"

#include <QtTest>
#include <c10/core/InferenceMode.h>
#include <torch/nn/module.h>
#include <torch/utils.h>

#include <cmath>
#endif

using namespace tessera;

namespace {

GenerationRequest oneImage(std::int64_t h, std::int64_t w, double cfg) {
  GenerationRequest g;
  g.classes = {3};
  g.height = h;
  g.width = w;
  g.sampler = "euler";
  g.options.steps = 6;
  g.guidance.scale = cfg;
  g.seed = 11;
  return g;
}

}  // namespace

class TestInspection : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void tapsChangeNothingAndRowsAreDistributions_data() {
    QTest::addColumn<QString>("kind");
    QTest::newRow("dit") << QStringLiteral("dit");
    QTest::newRow("fit") << QStringLiteral("fit");
    QTest::newRow("nit") << QStringLiteral("nit");
  }
  void tapsChangeNothingAndRowsAreDistributions() {
    QFETCH(QString, kind);
    const LoadedModel m = test::tinyVelocityModel(kind.toStdString(), 5);
    c10::InferenceMode mode;
    const bool packed = kind != QLatin1String("dit");
    BackboneInput in;
    GridSizes grids = {{4, 4}, {3, 5}};
    if (packed) {
      in.x = packImages({at::randn({1, 8, 8}), at::randn({1, 6, 10})}, 2);
      in.sizes = at::tensor({8, 8, 6, 10}, at::kLong).reshape({2, 2});
    } else {
      in.x = at::randn({2, 1, 8, 8});
      grids = {{4, 4}, {4, 4}};
    }
    in.t = at::tensor({0.3, 0.7});
    in.y = at::tensor({1, 10}, at::kLong);
    const at::Tensor plain = m.backbone->forward(in).prediction;
    Probe probe;
    probe.requestAttention({0, 1});
    probe.requestActivationStats(true);
    probe.requestTimings(true);
    in.probe = &probe;
    const at::Tensor tapped = m.backbone->forward(in).prediction;
    QVERIFY(at::allclose(plain, tapped, 1e-4, 1e-5));
    QCOMPARE(probe.attention().size(), std::size_t(2));
    for (const auto& [layer, rows] : probe.attention()) {
      QCOMPARE(rows.size(), std::size_t(2));
      for (std::size_t i = 0; i < rows.size(); ++i) {
        const std::int64_t T = grids[i].first * grids[i].second;  // each image at its own length
        QCOMPARE(rows[i].size(1), T);
        QCOMPARE(rows[i].size(2), T);
        QVERIFY(at::allclose(rows[i].sum(-1), at::ones({rows[i].size(0), T}), 1e-5, 1e-5));
      }
    }
    QCOMPARE(probe.stats().size(), std::size_t(4));  // x_embedder, 2 blocks, final layer
    QCOMPARE(probe.stats().back().name, std::string("final_layer"));
    QCOMPARE(probe.timings().size(), std::size_t(3));
  }

  void captureReproducesTheImage_data() { tapsChangeNothingAndRowsAreDistributions_data(); }
  void captureReproducesTheImage() {
    QFETCH(QString, kind);
    const LoadedModel m = test::tinyVelocityModel(kind.toStdString(), 5);
    const std::int64_t H = kind == QLatin1String("dit") ? 8 : 6, W = kind == QLatin1String("dit") ? 8 : 10;
    auto plain = generate(m, oneImage(H, W, 2.5));
    QVERIFY2(plain, plain ? "" : plain.error().message().c_str());
    InspectionRequest r;
    r.generation = oneImage(H, W, 2.5);
    r.steps = {0, 3, 5};
    std::int64_t progressCalls = 0;
    r.progress = [&](std::int64_t, std::int64_t total) {
      ++progressCalls;
      QCOMPARE(total, std::int64_t(6));
    };
    auto estimate = estimateInspection(m, r);
    QVERIFY2(estimate, estimate ? "" : estimate.error().message().c_str());
    const std::int64_t T = (H / 2) * (W / 2);
    QCOMPARE(estimate->tokens, T);
    QCOMPARE(estimate->layers, std::int64_t(2));
    QVERIFY(estimate->bytes >= std::uint64_t(3 * 2 * estimate->heads * T * T * 4));
    auto cap = captureInspection(m, r);
    QVERIFY2(cap, cap ? "" : cap.error().message().c_str());
    QCOMPARE(progressCalls, std::int64_t(6));
    QVERIFY(at::equal(cap->image, plain->images.front()));  // the taps change nothing
    QCOMPARE(cap->attention.sizes().vec(), (std::vector<std::int64_t>{3, 2, estimate->heads, T, T}));
    QCOMPARE(cap->steps, (std::vector<std::int64_t>{0, 3, 5}));
    QCOMPARE(cap->gridH * cap->gridW, T);
    // Guidance map at every guided step: the conditional and unconditional x0 differ.
    QCOMPARE(cap->guidance.sizes().vec(), (std::vector<std::int64_t>{6, H, W}));
    QVERIFY(cap->guidance.min().item<float>() >= 0.0f);
    QVERIFY(cap->guidance.sum().item<float>() > 0.0f);
  }

  void mapsFollowTheirFormulas() {
    const LoadedModel m = test::tinyVelocityModel("dit", 5);
    InspectionRequest r;
    r.generation = oneImage(8, 8, 1.0);  // no guidance: no guidance map
    r.steps = {2};
    auto cap = captureInspection(m, r);
    QVERIFY2(cap, cap ? "" : cap.error().message().c_str());
    QVERIFY(!cap->guidance.defined());
    const at::Tensor A = cap->attention[0];  // (L, heads, T, T)
    const std::int64_t T = A.size(2);
    for (int layer : {0, 1, kMeanOfLayers, kRollout})
      for (int head : {0, 3, kMeanOfHeads}) {
        auto map = attentionMap(*cap, 0, layer, head, 5, false);
        QVERIFY(map);
        QCOMPARE(map->sizes().vec(), (std::vector<std::int64_t>{4, 4}));
        QVERIFY(std::abs(map->sum().item<double>() - 1.0) < 1e-5);  // a distribution over keys
      }
    // One layer and head: row 5 of its matrix; reverse: column 5.
    QVERIFY(at::allclose(*attentionMap(*cap, 0, 1, 3, 5, false), A[1][3][5].reshape({4, 4})));
    QVERIFY(at::allclose(*attentionMap(*cap, 0, 1, 3, 5, true), A[1][3].select(1, 5).reshape({4, 4})));
    QVERIFY(at::allclose(*attentionMap(*cap, 0, kMeanOfLayers, kMeanOfHeads, 7, false), A.mean(1).mean(0)[7].reshape({4, 4}), 1e-5, 1e-6));
    // Rollout by hand.
    const at::Tensor eye = at::eye(T);
    at::Tensor a0 = 0.5 * A[0].mean(0) + 0.5 * eye, a1 = 0.5 * A[1].mean(0) + 0.5 * eye;
    a0 = a0 / a0.sum(-1, true);
    a1 = a1 / a1.sum(-1, true);
    QVERIFY(at::allclose(*attentionMap(*cap, 0, kRollout, kMeanOfHeads, 9, false), at::matmul(a1, a0)[9].reshape({4, 4}), 1e-5, 1e-6));
    // Entropy: −Σ p log p averaged over queries; within [0, log T].
    auto h = headEntropy(*cap, 0);
    QVERIFY(h);
    QCOMPARE(h->sizes().vec(), (std::vector<std::int64_t>{2, 4}));
    const at::Tensor p = A[1][2];
    QVERIFY(std::abs((*h)[1][2].item<double>() - (-(p * p.log()).sum(-1)).mean().item<double>()) < 1e-5);
    QVERIFY(h->max().item<double>() <= std::log(static_cast<double>(T)) + 1e-5);
    // A different patch gives a different map.
    QVERIFY(!at::allclose(*attentionMap(*cap, 0, 0, 0, 0, false), *attentionMap(*cap, 0, 0, 0, 15, false)));
    // Out of range, named.
    auto bad = attentionMap(*cap, 0, 0, 0, T, false);
    QVERIFY(!bad);
    QVERIFY(bad.error().message().find("token 16 is out of range") != std::string::npos);
    QVERIFY(!attentionMap(*cap, 1, 0, 0, 0, false));
    QVERIFY(!attentionMap(*cap, 0, 2, 0, 0, false));
    QVERIFY(!attentionMap(*cap, 0, 0, 4, 0, false));
    // Written and read back.
    QTemporaryDir dir;
    const std::string path = dir.filePath(QStringLiteral("cap.safetensors")).toStdString();
    QVERIFY(writeInspection(path, *cap));
    auto file = SafetensorsFile::open(path);
    QVERIFY2(file, file ? "" : file.error().message().c_str());
    auto back = file->load("attention");
    QVERIFY(back);
    QVERIFY(at::equal(*back, cap->attention));
  }

  void badRequestsAreNamed() {
    const LoadedModel m = test::tinyVelocityModel("dit", 5);
    InspectionRequest r;
    r.generation = oneImage(8, 8, 1.0);
    r.generation.classes = {1, 2};
    auto e = captureInspection(m, r);
    QVERIFY(!e);
    QVERIFY(e.error().message().find("one image") != std::string::npos);
    r.generation.classes = {1};
    r.steps = {6};
    e = captureInspection(m, r);
    QVERIFY(!e);
    QVERIFY(e.error().message().find("step 6 is out of range") != std::string::npos);
    r.steps = {};
    r.layers = {2};
    e = captureInspection(m, r);
    QVERIFY(!e);
    QVERIFY(e.error().message().find("layer 2 is out of range: this model has blocks 0 to 1") != std::string::npos);
  }

  // Issue 22: inspect at 128 x 128 grew past 2 GB with no guard, and at large sizes the
  // estimate's integer products wrapped around. The estimate grows with the size all the way
  // to 16384 x 16384, and a capture that cannot fit is refused before anything runs.
  void absurdCapturesAreRefusedWithTheEstimate() {
    const LoadedModel m = test::tinyVelocityModel("dit", 5);
    InspectionRequest r;
    std::uint64_t previous = 0;
    for (std::int64_t side : {8, 256, 2048, 16384}) {
      r.generation = oneImage(side, side, 2.0);
      auto e = estimateInspection(m, r);
      QVERIFY2(e, e ? "" : e.error().message().c_str());
      QVERIFY2(e->bytes > previous, qPrintable(QString::number(side)));
      previous = e->bytes;
    }
    QVERIFY(static_cast<double>(previous) > 1e17);  // (16384 / 2)^4 tokens squared: far beyond any machine
    r.generation = oneImage(2048, 2048, 2.0);
    auto capture = captureInspection(m, r);
    QVERIFY(!capture);
    QVERIFY2(capture.error().message().find("GB is available; capture fewer steps or blocks") != std::string::npos,
             capture.error().message().c_str());
  }

  void forwardComputeByHand() {
    const LoadedModel m = test::tinyVelocityModel("dit", 5);  // D 32, depth 2, patch 2, 1 channel, MLP 4D
    const double T = 16, D = 32, C = 1, p = 2;
    const double perToken = 3 * D * D + D * D + 2 * 4 * D * D;  // qkv, proj, MLP per block
    double macs = 2 * (T * perToken + 2 * T * T * D);          // two blocks with attention
    macs += T * C * p * p * D + T * D * p * p * C;             // patch embedding, final linear
    macs += 2 * 6 * D * D + 2 * D * D;                         // adaLN of the blocks and of the final layer
    macs += 256 * D + D * D;                                   // timestep MLP (256 frequencies)
    QVERIFY(std::abs(forwardGflops(m, 8, 8) - 2 * macs / 1e9) < 1e-9);
    // Compute grows with the token count: twice the area, more than twice the FLOPs.
    QVERIFY(forwardGflops(m, 16, 8) > 2 * forwardGflops(m, 8, 8) * 0.99);
  }
};

TESSERA_TEST_MAIN(TestInspection, Guiless)
#include "test_inspection.moc"
