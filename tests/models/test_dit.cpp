// SPDX-License-Identifier: Apache-2.0
// DiT/SiT against the official forward passes, the embeddings against their formulas,
// presets against published sizes, import refusals, taps.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/formats/torch_checkpoint.h"
#include "models/common/embeddings.h"
#include "models/dit/dit.h"
#include "models/dit/dit_import.h"
#include "models/probe.h"
#include "models/state_dict.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QtTest>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#endif

using namespace tessera;

namespace {

std::string data(const std::string& name) { return std::string(TESSERA_TEST_DATA_DIR) + "/dit/" + name; }

std::shared_ptr<DiTImpl> importFixture(const std::string& name, const std::string& family) {
  auto ckpt = readTorchCheckpoint(data(name + ".pt"));
  if (!ckpt) qFatal("%s", ckpt.error().message().c_str());
  auto sd = extractStateDict(*ckpt);
  DiTImportOptions o;
  o.family = family;
  o.heads = 4;
  auto imported = importDiTStateDict(*sd, o);
  if (!imported) qFatal("%s", imported.error().message().c_str());
  auto model = std::make_shared<DiTImpl>(imported->config);
  model->setKind(family);
  auto ok = loadStateDict(*model, imported->weights);
  if (!ok) qFatal("%s", ok.error().message().c_str());
  model->eval();
  return model;
}

double relError(const at::Tensor& got, const at::Tensor& expected) {
  return (got - expected).abs().max().item<double>() / expected.abs().max().item<double>();
}

}  // namespace

class TestDiT : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void matchesOfficialForward_data() {
    QTest::addColumn<QString>("fixture");
    QTest::addColumn<QString>("family");
    QTest::addColumn<int>("cases");
    QTest::newRow("DiT p2 learned sigma (8x8, 8x12, 12x6)") << QStringLiteral("dit_p2_sigma") << QStringLiteral("dit") << 3;
    QTest::newRow("DiT p4 no sigma (8x8, 8x16)") << QStringLiteral("dit_p4_nosigma") << QStringLiteral("dit") << 2;
    QTest::newRow("SiT p2 learned sigma (8x8, 10x6)") << QStringLiteral("sit_p2_sigma") << QStringLiteral("sit") << 2;
    QTest::newRow("SiT p4 no sigma (8x8, 16x8)") << QStringLiteral("sit_p4_nosigma") << QStringLiteral("sit") << 2;
  }
  void matchesOfficialForward() {
    QFETCH(QString, fixture);
    QFETCH(QString, family);
    QFETCH(int, cases);
    auto model = importFixture(fixture.toStdString(), family.toStdString());
    auto io = SafetensorsFile::open(data(fixture.toStdString() + "_io.safetensors"));
    QVERIFY(io);
    c10::InferenceMode guard;
    for (int i = 0; i < cases; ++i) {
      std::map<std::string, at::Tensor> tensors;
      for (const char* n : {"x", "t", "y", "output", "output_cfg"}) {
        auto r = io->load(std::to_string(i) + "." + n);
        QVERIFY(r);
        tensors[n] = std::move(*r);
      }
      auto get = [&](const char* n) { return tensors.at(n); };
      const at::Tensor x = get("x"), t = get("t"), y = get("y");
      const at::Tensor out = model->forwardTensors(x, t, y);
      const at::Tensor expected = get("output");
      QCOMPARE(out.sizes().vec(), expected.sizes().vec());
      // fp32 against fp32 computed elsewhere: the sums' order depends on the BLAS kernel
      // (OPENBLAS_CORETYPE). Measured (forward and guided, all cases): at most 9.5e-7 with
      // SkylakeX, 1.4e-5 with Haswell and Zen, 3.6e-5 with Prescott, 7.5e-5 with Sandybridge.
      constexpr double kTolerance = 1e-4;
      const double err = relError(out, expected);
      QVERIFY2(err < kTolerance, qPrintable(QStringLiteral("case %1: relative error %2").arg(i).arg(err)));
      const double errCfg = relError(model->forwardWithCfg(x, t, y, 4.0), get("output_cfg"));
      QVERIFY2(errCfg < kTolerance, qPrintable(QStringLiteral("case %1 (cfg): relative error %2").arg(i).arg(errCfg)));
    }
  }

  void storedPosEmbedEqualsFormula() {
    // The official code computed pos_embed for the 4x4 grid of the p2 fixture.
    auto ckpt = readTorchCheckpoint(data("dit_p2_sigma.pt"));
    QVERIFY(ckpt);
    auto sd = extractStateDict(*ckpt);
    at::Tensor stored;
    for (const auto& [n, t] : *sd)
      if (n == "pos_embed") stored = t;
    QVERIFY(stored.defined());
    QVERIFY((stored[0] - sincosPosEmbed2d(32, 4, 4)).abs().max().item<double>() < 1e-6);
  }

  void positionEmbeddingFormula() {
    const std::int64_t D = 16, H = 3, W = 5;
    const at::Tensor e = sincosPosEmbed2d(D, H, W);  // (15, 16)
    QCOMPARE(e.sizes().vec(), (std::vector<std::int64_t>{15, 16}));
    for (std::int64_t tok : {0, 4, 7, 14}) {
      const double col = double(tok % W), row = double(tok / W);
      for (std::int64_t k = 0; k < D / 4; ++k) {
        const double w = std::pow(10000.0, -double(k) / double(D / 4));
        QCOMPARE(e[tok][k].item<float>(), float(std::sin(col * w)));              // x: sin
        QCOMPARE(e[tok][D / 4 + k].item<float>(), float(std::cos(col * w)));      // x: cos
        QCOMPARE(e[tok][D / 2 + k].item<float>(), float(std::sin(row * w)));      // y: sin
        QCOMPARE(e[tok][3 * D / 4 + k].item<float>(), float(std::cos(row * w)));  // y: cos
      }
    }
  }

  void timestepEmbeddingFormula() {
    const at::Tensor t = at::tensor({0.0, 1.0, 500.0, 999.0, 0.25});
    const at::Tensor e = timestepEmbedding(t, 256);
    QCOMPARE(e.sizes().vec(), (std::vector<std::int64_t>{5, 256}));
    for (int n = 0; n < 5; ++n) {
      const double tv = t[n].item<double>();
      for (int i : {0, 1, 17, 64, 127}) {
        const float f = std::exp(-std::log(10000.0f) * float(i) / 128.0f);  // float32, as the reference
        const float arg = float(tv) * f;
        QVERIFY(std::fabs(e[n][i].item<float>() - std::cos(arg)) < 2e-6f);        // cos first
        QVERIFY(std::fabs(e[n][128 + i].item<float>() - std::sin(arg)) < 2e-6f);  // then sin
      }
    }
    QCOMPARE(timestepEmbedding(at::tensor({3.0}), 7).size(1), std::int64_t(7));  // odd: zero pad
    QCOMPARE(timestepEmbedding(at::tensor({3.0}), 7)[0][6].item<float>(), 0.0f);
  }

  void presetSizes_data() {
    QTest::addColumn<QString>("preset");
    QTest::addColumn<qint64>("params");
    // 675,129,632 = the official DiT-XL/2 (675M in the paper), counted from the
    // official module; the others follow the same formula.
    QTest::newRow("DiT-XL/2") << QStringLiteral("DiT-XL/2") << qint64(675129632);
  }
  void presetSizes() {
    QFETCH(QString, preset);
    QFETCH(qint64, params);
    auto c = ditPreset(preset.toStdString());
    QVERIFY(c);
    QCOMPARE(c->parameterCount(), std::int64_t(params));
  }

  void publishedSizesInMillions() {
    const std::map<std::string, double> published = {{"XL", 675}, {"L", 458}, {"B", 130}, {"S", 33}};
    for (const auto& name : ditPresetNames()) {
      auto c = ditPreset(name);
      QVERIFY(c);
      const std::string size = name.substr(4, name.find('/') - 4);
      const double millions = double(c->parameterCount()) / 1e6;
      QVERIFY2(std::fabs(millions - published.at(size)) / published.at(size) < 0.02, name.c_str());
    }
    QVERIFY(!ditPreset("DiT-XXL/2"));
  }

  void formulaEqualsModule() {
    for (const char* name : {"DiT-S/8", "SiT-S/4"}) {
      auto c = ditPreset(name);
      QVERIFY(c);
      auto m = std::make_shared<DiTImpl>(*c);
      std::int64_t n = 0;
      for (const auto& p : m->parameters()) n += p.numel();
      QCOMPARE(n, c->parameterCount());
      // The shape table equals the module's state dict, name for name, in order.
      const auto shapes = ditStateShapes(*c);
      const auto sd = stateDict(*m);
      QCOMPARE(shapes.size(), sd.size());
      std::map<std::string, std::vector<std::int64_t>> actual;
      for (const auto& [k, t] : sd) actual[k] = t.sizes().vec();
      for (const auto& [k, shape] : shapes) QCOMPARE(actual.at(k), shape);
    }
  }

  void xl2ShapesAsPublished() {
    // backbones.md §2.5, the key list of DiT-XL-2-256x256.pt
    const auto shapes = ditStateShapes(*ditPreset("DiT-XL/2"));
    std::map<std::string, std::vector<std::int64_t>> s(shapes.begin(), shapes.end());
    QCOMPARE(s.size(), std::size_t(8 + 28 * 10 + 4));
    QCOMPARE(s.at("pos_embed"), (std::vector<std::int64_t>{1, 256, 1152}));
    QCOMPARE(s.at("x_embedder.proj.weight"), (std::vector<std::int64_t>{1152, 4, 2, 2}));
    QCOMPARE(s.at("y_embedder.embedding_table.weight"), (std::vector<std::int64_t>{1001, 1152}));
    QCOMPARE(s.at("blocks.27.attn.qkv.weight"), (std::vector<std::int64_t>{3456, 1152}));
    QCOMPARE(s.at("blocks.0.mlp.fc1.weight"), (std::vector<std::int64_t>{4608, 1152}));
    QCOMPARE(s.at("blocks.3.adaLN_modulation.1.weight"), (std::vector<std::int64_t>{6912, 1152}));
    QCOMPARE(s.at("final_layer.linear.weight"), (std::vector<std::int64_t>{32, 1152}));
    QCOMPARE(s.at("final_layer.adaLN_modulation.1.weight"), (std::vector<std::int64_t>{2304, 1152}));
    auto x512 = *ditPreset("DiT-XL/2");
    x512.inputSize = 64;
    const auto big = ditStateShapes(x512);
    const std::map<std::string, std::vector<std::int64_t>> bigMap(big.begin(), big.end());
    QCOMPARE(bigMap.at("pos_embed"), (std::vector<std::int64_t>{1, 1024, 1152}));
  }

  void initialOutputIsZero() {
    DiTConfig c;
    c.inputSize = 8; c.hiddenSize = 32; c.depth = 1; c.numHeads = 2; c.numClasses = 5;
    DiTImpl m(c);
    torch::NoGradGuard g;
    const at::Tensor out = m.forwardTensors(at::randn({2, 4, 8, 8}), at::tensor({1, 2}), at::tensor({0, 5}));
    QCOMPARE(out.sizes().vec(), (std::vector<std::int64_t>{2, 8, 8, 8}));
    QCOMPARE(out.abs().max().item<float>(), 0.0f);  // zeroed final layer and adaLN
  }

  void gridsAndBadInput() {
    auto model = importFixture("dit_p2_sigma", "dit");
    torch::NoGradGuard g;
    const at::Tensor out = model->forwardTensors(at::randn({1, 4, 6, 14}), at::tensor({10}), at::tensor({3}));
    QCOMPARE(out.sizes().vec(), (std::vector<std::int64_t>{1, 8, 6, 14}));
    auto expectThrow = [&](const at::Tensor& x, const at::Tensor& y, const char* text) {
      try {
        model->forwardTensors(x, at::zeros({x.size(0)}), y);
        QFAIL("accepted bad input");
      } catch (const c10::Error& e) {
        QVERIFY2(std::string(e.what()).find(text) != std::string::npos, e.what());
      }
    };
    expectThrow(at::randn({1, 4, 7, 8}), at::tensor({1}), "multiples of the patch size 2");
    expectThrow(at::randn({1, 3, 8, 8}), at::tensor({1}), "expected 4 input channels");
    expectThrow(at::randn({1, 4, 8, 8}), at::tensor({11}), "class labels must lie in [0, 10]");
  }

  void importRefusals() {
    auto ckpt = readTorchCheckpoint(data("dit_p2_sigma.pt"));
    auto sd = *extractStateDict(*ckpt);
    DiTImportOptions noHeads;
    auto r = importDiTStateDict(sd, noHeads);
    QVERIFY(!r);
    QVERIFY2(r.error().message().find("--preset or --heads") != std::string::npos, r.error().message().c_str());

    DiTImportOptions wrongPreset;
    wrongPreset.preset = "DiT-XL/2";
    r = importDiTStateDict(sd, wrongPreset);
    QVERIFY(!r);
    QVERIFY2(r.error().message().find("does not fit the weights") != std::string::npos, r.error().message().c_str());

    DiTImportOptions ok;
    ok.heads = 4;
    NamedTensors damaged;
    for (const auto& [n, t] : sd) {
      if (n == "blocks.1.mlp.fc2.bias") continue;                                   // missing
      if (n == "blocks.0.attn.proj.weight") damaged.emplace_back(n, t.narrow(0, 0, 16));  // wrong shape
      else damaged.emplace_back(n, t);
    }
    damaged.emplace_back("blocks.0.extra.weight", at::zeros({2}));                  // unexpected
    r = importDiTStateDict(damaged, ok);
    QVERIFY(!r);
    const std::string m = r.error().message();
    QVERIFY2(m.find("missing 1: blocks.1.mlp.fc2.bias") != std::string::npos, m.c_str());
    QVERIFY2(m.find("wrong shape 1: blocks.0.attn.proj.weight (expected [32, 32], got [16, 32])") != std::string::npos, m.c_str());
    QVERIFY2(m.find("unexpected 1: blocks.0.extra.weight") != std::string::npos, m.c_str());

    NamedTensors wrapped;
    for (const auto& [n, t] : sd) wrapped.emplace_back("module." + n, t);  // DDP prefix
    QVERIFY(importDiTStateDict(wrapped, ok));
    NamedTensors notDit = {{"foo", at::zeros({1})}};
    r = importDiTStateDict(notDit, ok);
    QVERIFY(!r);
    QVERIFY(r.error().message().find("x_embedder.proj.weight") != std::string::npos);
  }

  void probeTaps() {
    auto model = importFixture("dit_p2_sigma", "dit");
    torch::NoGradGuard g;
    const at::Tensor x = at::randn({2, 4, 8, 12}), t = at::tensor({5, 900}), y = at::tensor({1, 10});
    const at::Tensor plain = model->forwardTensors(x, t, y);
    Probe probe;
    probe.requestAttention({1}, {0, 3});
    probe.requestActivationStats(true);
    probe.requestTimings(true);
    const at::Tensor tapped = model->forwardTensors(x, t, y, &probe);
    QVERIFY(at::allclose(plain, tapped, 1e-5, 1e-6));  // taps do not change the result
    QCOMPARE(probe.attention().size(), std::size_t(1));
    QCOMPARE(probe.attention().at(1).size(), std::size_t(2));  // one entry per row
    const at::Tensor a = at::stack(probe.attention().at(1), 0);
    QCOMPARE(a.sizes().vec(), (std::vector<std::int64_t>{2, 2, 24, 24}));  // 2 heads asked, 4x6 tokens
    QVERIFY(at::allclose(a.sum(-1), at::ones({2, 2, 24})));
    QCOMPARE(probe.stats().size(), std::size_t(4));  // x_embedder + 2 blocks + final layer
    QCOMPARE(probe.stats()[2].name, std::string("blocks.1"));
    QCOMPARE(probe.stats()[3].name, std::string("final_layer"));
    QCOMPARE(probe.timings().size(), std::size_t(3));
  }

  void sitDropsSigmaChannels() {
    auto model = importFixture("sit_p2_sigma", "sit");
    torch::NoGradGuard g;
    QCOMPARE(model->forwardTensors(at::randn({1, 4, 8, 8}), at::tensor({0.5}), at::tensor({2})).size(1), std::int64_t(4));
    QVERIFY(model->capabilities().prediction == Prediction::Velocity);
    QVERIFY(!model->capabilities().learnedSigma);
  }
};

TESSERA_TEST_MAIN(TestDiT, Appless)
#include "test_dit.moc"
