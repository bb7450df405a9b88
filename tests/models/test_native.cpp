// SPDX-License-Identifier: Apache-2.0
// Native resolution: FiT/FiTv2 and NiT against their official forward passes (fixtures
// written by tests/data/make_{fit,nit}_fixtures.py from the official code), RoPE and its
// extrapolation variants against their formulas, packing, variable-length and masked
// attention, and mixed-size generation against generating each size alone.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/config/config.h"
#include "core/formats/torch_checkpoint.h"
#include "engine/generation.h"
#include "models/common/attention.h"
#include "models/common/packing.h"
#include "models/common/rope.h"
#include "models/fit/fit.h"
#include "models/fit/fit_import.h"
#include "models/nit/nit.h"
#include "models/registry.h"
#include "models/state_dict.h"

#include <ATen/ATen.h>
#include "tests/models/tiny_backbone.h"
#include "tests/support/test_main.h"

#include <QtTest>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#endif

using namespace tessera;

namespace {

std::string data(const std::string& dir, const std::string& name) {
  return std::string(TESSERA_TEST_DATA_DIR) + "/" + dir + "/" + name;
}

nlohmann::json readJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) qFatal("cannot read %s", path.c_str());
  return nlohmann::json::parse(in);
}

NamedTensors stateDictOf(const std::string& path) {
  auto ckpt = readTorchCheckpoint(path);
  if (!ckpt) qFatal("%s", ckpt.error().message().c_str());
  auto sd = extractStateDict(*ckpt);
  if (!sd) qFatal("%s", sd.error().message().c_str());
  return *sd;
}

std::map<std::string, at::Tensor> loadIo(const std::string& path) {
  auto io = SafetensorsFile::open(path);
  if (!io) qFatal("%s", io.error().message().c_str());
  auto all = io->loadAll();
  if (!all) qFatal("%s", all.error().message().c_str());
  return {all->begin(), all->end()};
}

double maxError(const at::Tensor& got, const at::Tensor& expected) {
  return (got.to(at::kFloat) - expected.to(at::kFloat)).abs().max().item<double>() /
         std::max(1e-12, expected.abs().max().item<double>());
}

std::string ourMethod(const std::string& official) {
  if (official == "ntk-aware") return "ntk";
  if (official == "ntk-aware-pro1") return "ntk-pro1";
  if (official == "ntk-aware-pro2") return "ntk-pro2";
  if (official == "normal") return "none";
  return official;
}

std::shared_ptr<FiTImpl> fitFixture(const std::string& weights, const nlohmann::json& cfg) {
  FlexImportOptions o;
  o.heads = cfg["num_heads"].get<std::int64_t>();
  auto imported = importFiTStateDict(stateDictOf(data("fit", weights + ".pt")), o);
  if (!imported) qFatal("%s", imported.error().message().c_str());
  FiTConfig c = imported->config;
  c.timeShifting = cfg.value("time_shifting", 1.0);
  auto model = std::make_shared<FiTImpl>(c, false);
  if (auto ok = loadStateDict(*model, imported->weights); !ok) qFatal("%s", ok.error().message().c_str());
  model->eval();
  return model;
}

std::shared_ptr<NiTImpl> nitFixture(const std::string& weights, const nlohmann::json& cfg) {
  FlexImportOptions o;
  o.heads = cfg["num_heads"].get<std::int64_t>();
  auto imported = importNiTStateDict(stateDictOf(data("nit", weights + ".pt")), o);
  if (!imported) qFatal("%s", imported.error().message().c_str());
  auto model = std::make_shared<NiTImpl>(imported->config, false);
  if (auto ok = loadStateDict(*model, imported->weights); !ok) qFatal("%s", ok.error().message().c_str());
  model->eval();
  return model;
}

GridSizes gridsOf(const at::Tensor& hw, std::int64_t /*p*/) {
  GridSizes g;
  const at::Tensor s = hw.to(at::kLong);
  for (std::int64_t i = 0; i < s.size(0); ++i) g.emplace_back(s[i][0].item<std::int64_t>(), s[i][1].item<std::int64_t>());
  return g;
}

}  // namespace

class TestNative : public QObject {
  Q_OBJECT

private Q_SLOTS:
  // ---- official forward passes -------------------------------------------------------

  void fitMatchesOfficialForward_data() {
    QTest::addColumn<QString>("fixture");
    QTest::newRow("FiT v1 (DDPM, learned sigma, SwiGLU-large)") << QStringLiteral("fit_v1");
    QTest::newRow("FiTv2 (q/k norm, LoRA adaLN + global)") << QStringLiteral("fitv2");
  }
  void fitMatchesOfficialForward() {
    QFETCH(QString, fixture);
    const std::string name = fixture.toStdString();
    const auto cfg = readJson(data("fit", name + ".json"));
    auto model = fitFixture(name, cfg);
    auto io = loadIo(data("fit", name + "_io.safetensors"));
    const bool v1 = !cfg.value("use_sit", false);
    auto tokens = [&](const at::Tensor& x) { return v1 ? x.transpose(1, 2).contiguous() : x; };  // v1 is (B, C, N)
    c10::InferenceMode guard;
    // FiT v1 through the released forward clamps integer timesteps to 1 (see the
    // header of make_fit_fixtures.py); the v1 checkpoint was trained without it, so v1 is
    // compared with the forward without the clamp.
    const at::Tensor expected = tokens(io.count("out_noclamp") ? io.at("out_noclamp") : io.at("out"));
    const at::Tensor out = model->forwardTokens(tokens(io.at("x")), io.at("grid"), io.at("mask"), io.at("t"), io.at("y"));
    QCOMPARE(out.sizes().vec(), expected.sizes().vec());
    const double err = maxError(out, expected);
    QVERIFY2(err < 1e-5, qPrintable(QStringLiteral("relative error %1").arg(err)));
    // Padding: outputs exactly zero there, and garbage at padded inputs changes nothing.
    const at::Tensor valid = io.at("mask").to(at::kBool);
    QCOMPARE(out.masked_select(valid.logical_not().unsqueeze(-1).expand_as(out)).abs().max().item<double>(), 0.0);
    at::Tensor other = tokens(io.at("x")).clone();
    other.masked_fill_(valid.logical_not().unsqueeze(-1).expand_as(other), 123.0);
    const at::Tensor again = model->forwardTokens(other, io.at("grid"), io.at("mask"), io.at("t"), io.at("y"));
    QCOMPARE((again - out).abs().max().item<double>(), 0.0);
    // Guidance: the reference guides the first 3·p² token features = latent channels 0..2.
    const at::Tensor xc = tokens(io.at("x_cfg"));
    const std::int64_t B = xc.size(0) / 2, g = 3 * 4;
    const at::Tensor both = model->forwardTokens(at::cat({xc.narrow(0, 0, B), xc.narrow(0, 0, B)}), io.at("grid_cfg"),
                                                 io.at("mask_cfg"), io.at("t_cfg"), io.at("y_cfg"));
    const at::Tensor c = both.narrow(0, 0, B).narrow(2, 0, g), u = both.narrow(0, B, B).narrow(2, 0, g);
    const at::Tensor guided = u + 4.0 * (c - u);
    const at::Tensor expectedCfg = tokens(io.count("out_cfg_noclamp") ? io.at("out_cfg_noclamp") : io.at("out_cfg"));
    const double errCfg = maxError(guided, expectedCfg.narrow(0, 0, B).narrow(2, 0, g));
    QVERIFY2(errCfg < 1e-5, qPrintable(QStringLiteral("guided: relative error %1").arg(errCfg)));
    if (io.count("out_tshift3")) {  // FiTv2's time shifting, t' = 3t / (1 + 2t)
      nlohmann::json shiftedCfg = cfg;
      shiftedCfg["time_shifting"] = 3.0;
      auto shifted = fitFixture(name, shiftedCfg);
      const at::Tensor o3 = shifted->forwardTokens(tokens(io.at("x")), io.at("grid"), io.at("mask"), io.at("t"), io.at("y"));
      const double e3 = maxError(o3, io.at("out_tshift3"));
      QVERIFY2(e3 < 1e-5, qPrintable(QStringLiteral("time shifting: relative error %1").arg(e3)));
    }
  }

  void fitExtrapolationMatchesOfficial_data() {
    QTest::addColumn<QString>("method");
    QTest::addColumn<bool>("decouple");
    for (const char* m : {"linear", "ntk-aware", "ntk-by-parts", "yarn", "ntk-aware-pro1", "ntk-aware-pro2"})
      for (bool d : {false, true})
        QTest::newRow((std::string(m) + (d ? " decoupled" : "")).c_str()) << QString::fromLatin1(m) << d;
  }
  void fitExtrapolationMatchesOfficial() {
    QFETCH(QString, method);
    QFETCH(bool, decouple);
    const std::string name = "fitv2_rope_" + method.toStdString() + (decouple ? "_decouple" : "");
    const auto cfg = readJson(data("fit", name + ".json"));
    auto model = fitFixture("fitv2", cfg);
    RopeExtrapolation e;
    e.method = ourMethod(method.toStdString());
    e.decouple = decouple;
    e.trainedLength = cfg["ori_max_pe_len"].get<double>();
    model->setExtrapolation(e);
    auto io = loadIo(data("fit", name + "_io.safetensors"));
    c10::InferenceMode guard;
    for (std::size_t r = 0; r < cfg["runs"].size(); ++r) {
      const auto& run = cfg["runs"][r];
      const std::string k = std::to_string(r) + ".";
      const double lh = run["max_pe_len_h"].get<double>(), lw = run["max_pe_len_w"].get<double>();
      // The tables alone, for the valid tokens of each sequence.
      const at::Tensor grid = io.at(k + "grid").to(at::kLong), valid = io.at(k + "mask").to(at::kBool);
      for (std::int64_t b = 0; b < grid.size(0); ++b) {
        const RopeTables t = model->ropeFor(grid[b][1], grid[b][0], lh, lw);
        const at::Tensor v = valid[b];
        const at::Tensor expCos = io.at(k + "freqs_cos")[b].index({v}), expSin = io.at(k + "freqs_sin")[b].index({v});
        QVERIFY2((t.cos.index({v}) - expCos).abs().max().item<double>() < 1e-5, qPrintable(QStringLiteral("run %1 cos").arg(r)));
        QVERIFY2((t.sin.index({v}) - expSin).abs().max().item<double>() < 1e-5, qPrintable(QStringLiteral("run %1 sin").arg(r)));
      }
      const at::Tensor out = model->forwardTokens(io.at(k + "x"), io.at(k + "grid"), io.at(k + "mask"), io.at(k + "t"),
                                                  io.at(k + "y"), {lh, lw});
      const double err = maxError(out, io.at(k + "out"));
      QVERIFY2(err < 1e-5, qPrintable(QStringLiteral("run %1: relative error %2").arg(r).arg(err)));
    }
  }

  void nitMatchesOfficialForward_data() {
    QTest::addColumn<QString>("fixture");
    QTest::newRow("NiT patch 1") << QStringLiteral("nit_p1");
    QTest::newRow("NiT patch 2") << QStringLiteral("nit_p2");
    QTest::newRow("NiT LoRA adaLN") << QStringLiteral("nit_lora");
  }
  void nitMatchesOfficialForward() {
    QFETCH(QString, fixture);
    const std::string name = fixture.toStdString();
    const auto cfg = readJson(data("nit", name + ".json"));
    auto model = nitFixture(name, cfg);
    auto io = loadIo(data("nit", name + "_io.safetensors"));
    c10::InferenceMode guard;
    const GridSizes grids = gridsOf(io.at("hw_list"), model->config().patchSize);
    // NiT's own RoPE positions (k mod h, k div h), non-square images included.
    std::vector<at::Tensor> a, b;
    for (const auto& [h, w] : grids) {
      auto [pa, pb] = model->ropePositions(h, w);
      a.push_back(pa);
      b.push_back(pb);
    }
    QVERIFY(at::equal(at::stack({at::cat(a), at::cat(b)}), io.at("rope_pos").to(at::kLong)));
    const at::Tensor out = model->forwardPacked(io.at("x"), grids, io.at("t"), io.at("y"));
    QCOMPARE(out.sizes().vec(), io.at("out").sizes().vec());
    const double err = maxError(out, io.at("out"));
    QVERIFY2(err < 1e-5, qPrintable(QStringLiteral("relative error %1").arg(err)));
    // Packing: the pack's images are the fixture's unpacked latents.
    const auto images = unpackImages(io.at("x"), grids);
    for (std::size_t i = 0; i < images.size(); ++i) QVERIFY(at::equal(images[i], io.at("latent" + std::to_string(i))));
    QVERIFY(at::equal(packImages(images, model->config().patchSize), io.at("x")));
  }

  void nitExtrapolationMatchesOfficial_data() {
    QTest::addColumn<QString>("method");
    QTest::addColumn<bool>("decouple");
    for (const char* m : {"linear", "ntk-aware", "ntk-by-parts", "yarn", "ntk-aware-pro1", "ntk-aware-pro2"})
      for (bool d : {false, true})
        QTest::newRow((std::string(m) + (d ? " decoupled" : "")).c_str()) << QString::fromLatin1(m) << d;
    QTest::newRow("scale1") << QStringLiteral("scale1") << false;
    QTest::newRow("scale2") << QStringLiteral("scale2") << false;
  }
  void nitExtrapolationMatchesOfficial() {
    QFETCH(QString, method);
    QFETCH(bool, decouple);
    const std::string name = "nit_rope_" + method.toStdString() + (decouple ? "_decouple" : "");
    const auto cfg = readJson(data("nit", name + ".json"));
    auto model = nitFixture("nit_p1", cfg);
    RopeExtrapolation e;
    e.method = ourMethod(method.toStdString());
    e.decouple = decouple;
    e.trainedLength = cfg["ori_max_pe_len"].get<double>();
    model->setExtrapolation(e);
    auto io = loadIo(data("nit", name + "_io.safetensors"));
    c10::InferenceMode guard;
    const double lh = cfg["max_pe_len_h"].get<double>(), lw = cfg["max_pe_len_w"].get<double>();
    const at::Tensor out = model->forwardPacked(io.at("x"), gridsOf(io.at("hw_list"), 1), io.at("t"), io.at("y"), {lh, lw});
    const double err = maxError(out, io.at("out"));
    QVERIFY2(err < 1e-5, qPrintable(QStringLiteral("relative error %1").arg(err)));
  }

  void importRefusesWhatDoesNotFit() {
    auto sd = stateDictOf(data("nit", "nit_p1.pt"));
    FlexImportOptions none;
    auto r = importNiTStateDict(sd, none);
    QVERIFY(!r);
    QVERIFY2(r.error().message().find("--heads") != std::string::npos, r.error().message().c_str());
    FlexImportOptions heads;
    heads.heads = 2;
    NamedTensors damaged = sd;
    for (auto& [n, t] : damaged)
      if (n == "blocks.1.attn.qkv.weight") t = t.narrow(0, 0, 10);
    r = importNiTStateDict(damaged, heads);
    QVERIFY(!r);
    QVERIFY2(r.error().message().find("blocks.1.attn.qkv.weight") != std::string::npos, r.error().message().c_str());
    auto f = importFiTStateDict(sd, heads);  // a NiT state dict is not a FiT one
    QVERIFY(!f);
  }

  // ---- RoPE ---------------------------------------------------------------------------

  void ropeFollowsItsFormula() {
    // Plain frequencies θ^(−2i/(d/2)); pair (x0, x1) rotated by pos·f: a 2-D rotation.
    const RopeAxis axis = ropeAxis(8, 10000.0, RopeExtrapolation(), 4, 4, 16);
    QCOMPARE(static_cast<int>(axis.freqs.size()), 4);
    for (int i = 0; i < 4; ++i) QVERIFY(std::abs(axis.freqs[static_cast<std::size_t>(i)] - std::pow(10000.0, -2.0 * i / 8)) < 1e-15);
    const at::Tensor a = at::tensor({3}, at::kLong), b = at::tensor({5}, at::kLong);
    const RopeTables t = ropeTables(a, b, axis, axis);
    at::Tensor x = at::randn({1, 16}, at::kDouble).to(at::kFloat);
    const at::Tensor y = applyRope(x, t.cos, t.sin);
    for (int pair = 0; pair < 8; ++pair) {
      const double pos = pair < 4 ? 3 : 5, angle = pos * axis.freqs[static_cast<std::size_t>(pair % 4)];
      const double x0 = x[0][2 * pair].item<double>(), x1 = x[0][2 * pair + 1].item<double>();
      QVERIFY(std::abs(y[0][2 * pair].item<double>() - (x0 * std::cos(angle) - x1 * std::sin(angle))) < 1e-5);
      QVERIFY(std::abs(y[0][2 * pair + 1].item<double>() - (x1 * std::cos(angle) + x0 * std::sin(angle))) < 1e-5);
    }
    // Rotations preserve norms; relative: q·k depends on position differences only.
    const at::Tensor many = at::randn({7, 16});
    const at::Tensor pa = at::arange(7, at::kLong), pb = at::arange(7, at::kLong) * 2;
    const RopeTables tt = ropeTables(pa, pb, axis, axis);
    QVERIFY((applyRope(many, tt.cos, tt.sin).norm(2, {1}) - many.norm(2, {1})).abs().max().item<double>() < 1e-5);
    const at::Tensor q = at::randn({1, 16}), k = at::randn({1, 16});
    auto dot = [&](std::int64_t i, std::int64_t j) {
      const RopeTables ti = ropeTables(at::tensor({i}, at::kLong), at::tensor({i}, at::kLong), axis, axis);
      const RopeTables tj = ropeTables(at::tensor({j}, at::kLong), at::tensor({j}, at::kLong), axis, axis);
      return (applyRope(q, ti.cos, ti.sin) * applyRope(k, tj.cos, tj.sin)).sum().item<double>();
    };
    QVERIFY(std::abs(dot(2, 5) - dot(10, 13)) < 1e-4);
  }

  void extrapolationFactors() {
    RopeExtrapolation e;
    e.trainedLength = 16;
    // Within the trained length every method but the proportions is the plain RoPE.
    for (const char* m : {"linear", "ntk", "ntk-by-parts", "yarn"}) {
      e.method = m;
      const RopeAxis a = ropeAxis(36, 10000.0, e, 16, 16, 256);
      for (std::size_t i = 0; i < a.freqs.size(); ++i)
        QVERIFY2(std::abs(a.freqs[i] - std::pow(10000.0, -2.0 * double(i) / 36)) < 1e-12, m);
      QCOMPARE(a.factor, 1.0);
    }
    // Twice the trained length: linear halves, NTK changes the base to θ·s^(d/(d−2)).
    e.method = "linear";
    QVERIFY(std::abs(ropeAxis(36, 1e4, e, 32, 32, 1024).freqs[3] - std::pow(1e4, -6.0 / 36) / 2) < 1e-15);
    e.method = "ntk";
    const double base = 1e4 * std::pow(2.0, 36.0 / 34.0);
    QVERIFY(std::abs(ropeAxis(36, 1e4, e, 32, 32, 1024).freqs[5] - std::pow(base, -10.0 / 36)) < 1e-15);
    QCOMPARE(ropeAxis(36, 1e4, e, 32, 32, 1024).freqs[0], 1.0);  // the highest frequency is kept
    e.method = "yarn";
    QVERIFY(std::abs(ropeAxis(36, 1e4, e, 32, 32, 1024).factor - (1 + 0.1 * std::log(2.0))) < 1e-12);
    e.method = "ntk-pro1";
    QVERIFY(std::abs(ropeAxis(36, 1e4, e, 32, 32, 1024).factor - std::sqrt(std::log(64.0) / std::log(16.0))) < 1e-12);
    e.method = "ntk-pro2";
    QVERIFY(std::abs(ropeAxis(36, 1e4, e, 32, 32, 1024).factor - std::sqrt(std::log(2048.0) / std::log(256.0))) < 1e-12);
    e.method = "warp";
    QVERIFY(!e.validate());
  }

  // ---- packing and attention ----------------------------------------------------------

  void packingRoundTrips() {
    std::vector<at::Tensor> images{at::randn({3, 4, 6}), at::randn({3, 8, 2}), at::randn({3, 2, 2})};
    const at::Tensor pack = packImages(images, 2);
    QCOMPARE(pack.sizes().vec(), (std::vector<std::int64_t>{6 + 4 + 1, 3, 2, 2}));
    const GridSizes grids{{2, 3}, {4, 1}, {1, 1}};
    const auto back = unpackImages(pack, grids);
    for (std::size_t i = 0; i < images.size(); ++i) QVERIFY(at::equal(back[i], images[i]));
    // Raster order: token k of an image is patch (k div w, k mod w).
    QVERIFY(at::equal(pack[4], images[0].slice(1, 2, 4).slice(2, 2, 4)));
    // Padded layout and back.
    const at::Tensor rows = pack.reshape({pack.size(0), -1});
    const at::Tensor padded = padPacked(rows, grids, 6);
    QCOMPARE(padded.sizes().vec(), (std::vector<std::int64_t>{3, 6, 12}));
    QVERIFY(at::equal(unpadToPacked(padded, grids), rows));
    QCOMPARE(paddingMask(grids, 6).sum().item<std::int64_t>(), std::int64_t{11});
    QVERIFY(at::equal(cumulativeLengths(grids), at::tensor({0, 6, 10, 11}, at::kLong)));
  }

  void varlenAttentionEqualsPerImage() {
    const std::vector<std::int64_t> lengths{5, 9, 5, 1, 12};
    std::int64_t total = 0;
    for (auto l : lengths) total += l;
    const at::Tensor q = at::randn({total, 3, 8}), k = at::randn({total, 3, 8}), v = at::randn({total, 3, 8});
    std::vector<std::int64_t> cu{0};
    for (auto l : lengths) cu.push_back(cu.back() + l);
    const at::Tensor out = varlenAttention(q, k, v, at::tensor(cu, at::kLong));
    for (std::size_t i = 0; i < lengths.size(); ++i) {
      auto one = [&](const at::Tensor& t) { return t.narrow(0, cu[i], lengths[i]).transpose(0, 1).unsqueeze(0); };
      const at::Tensor alone = at::softmax(at::matmul(one(q), one(k).transpose(-2, -1)) / std::sqrt(8.0), -1);
      const at::Tensor expected = at::matmul(alone, one(v)).squeeze(0).transpose(0, 1);
      QVERIFY((out.narrow(0, cu[i], lengths[i]) - expected).abs().max().item<double>() < 1e-5);
    }
    // Gradients flow through the grouped computation.
    const at::Tensor qg = q.clone().requires_grad_(true);
    varlenAttention(qg, k, v, at::tensor(cu, at::kLong)).sum().backward();
    QVERIFY(qg.grad().defined() && qg.grad().abs().sum().item<double>() > 0);
  }

  void maskedAttentionIgnoresPadding() {
    const at::Tensor q = at::randn({2, 2, 6, 8}), k = at::randn({2, 2, 6, 8}), v = at::randn({2, 2, 6, 8});
    const at::Tensor valid = at::tensor({1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0}, at::kLong).to(at::kBool).reshape({2, 6});
    const at::Tensor out = maskedAttention(q, k, v, valid);
    at::Tensor k2 = k.clone(), v2 = v.clone();
    const at::Tensor pad = valid.logical_not().unsqueeze(1).unsqueeze(-1).expand_as(k2);
    k2.masked_fill_(pad, 50.0);
    v2.masked_fill_(pad, -7.0);
    const at::Tensor out2 = maskedAttention(q, k2, v2, valid);
    const at::Tensor real = valid.unsqueeze(1).unsqueeze(-1).expand_as(out);
    QVERIFY((out.masked_select(real) - out2.masked_select(real)).abs().max().item<double>() < 1e-6);
    // And the real tokens get what attention over the real tokens alone gives.
    const at::Tensor alone = at::matmul(at::softmax(at::matmul(q[1].narrow(1, 0, 3), k[1].narrow(1, 0, 3).transpose(-2, -1)) / std::sqrt(8.0), -1),
                                        v[1].narrow(1, 0, 3));
    QVERIFY((out[1].narrow(1, 0, 3) - alone).abs().max().item<double>() < 1e-5);
  }

  // ---- whole networks ------------------------------------------------------------------

  void packedForwardEqualsEachImageAlone_data() {
    QTest::addColumn<QString>("kind");
    QTest::newRow("nit") << QStringLiteral("nit");
    QTest::newRow("fit") << QStringLiteral("fit");
  }
  void packedForwardEqualsEachImageAlone() {
    QFETCH(QString, kind);
    const LoadedModel m = test::tinyVelocityModel(kind.toStdString(), 3);
    c10::InferenceMode guard;
    std::vector<at::Tensor> images{at::randn({1, 8, 12}), at::randn({1, 12, 4}), at::randn({1, 6, 6})};
    const at::Tensor t = at::tensor({0.2f, 0.5f, 0.9f}), y = at::tensor({1, 4, 10}, at::kLong);
    BackboneInput in;
    in.x = packImages(images, 2);
    in.sizes = at::tensor({8, 12, 12, 4, 6, 6}, at::kLong).reshape({3, 2});
    in.t = t, in.y = y;
    const auto outs = unpackImages(m.backbone->forward(in).prediction, {{4, 6}, {6, 2}, {3, 3}});
    for (std::size_t i = 0; i < images.size(); ++i) {
      BackboneInput one;
      one.x = images[i].unsqueeze(0);
      one.t = t.narrow(0, static_cast<std::int64_t>(i), 1), one.y = y.narrow(0, static_cast<std::int64_t>(i), 1);
      const at::Tensor alone = m.backbone->forward(one).prediction[0];
      QVERIFY2((outs[i] - alone).abs().max().item<double>() < 1e-5, qPrintable(QStringLiteral("image %1").arg(i)));
    }
  }

  void mixedSizeBatchEqualsEachSizeAlone_data() {
    QTest::addColumn<QString>("kind");
    QTest::newRow("nit (one packed forward per step)") << QStringLiteral("nit");
    QTest::newRow("fit (padded)") << QStringLiteral("fit");
    QTest::newRow("dit (one batch per size)") << QStringLiteral("dit");
  }
  void mixedSizeBatchEqualsEachSizeAlone() {
    QFETCH(QString, kind);
    LoadedModel m = test::tinyVelocityModel(kind.toStdString(), 3);
    GenerationRequest r;
    r.classes = {1, 2, 3, 4};
    r.sizes = {{8, 12}, {12, 8}, {8, 8}};
    r.sampler = "euler";
    r.options.steps = 6;
    r.guidance.scale = 2.0;
    r.seed = 11;
    auto mixed = generate(m, r);
    QVERIFY2(mixed, mixed ? "" : mixed.error().message().c_str());
    QCOMPARE(static_cast<int>(mixed->images.size()), 4);
    QVERIFY(!mixed->samples.defined());
    for (int i = 0; i < 4; ++i) {
      GenerationRequest one = r;
      one.sizes.clear();
      one.classes = {r.classes[static_cast<std::size_t>(i)]};
      one.height = r.sizes[static_cast<std::size_t>(i % 3)].first, one.width = r.sizes[static_cast<std::size_t>(i % 3)].second;
      one.seed = r.seed + static_cast<std::uint64_t>(i);
      auto alone = generate(m, one);
      QVERIFY(alone);
      QCOMPARE(mixed->images[static_cast<std::size_t>(i)].sizes().vec(), alone->samples[0].sizes().vec());
      const double d = (mixed->images[static_cast<std::size_t>(i)] - alone->samples[0]).abs().max().item<double>();
      QVERIFY2(d < 1e-4, qPrintable(QStringLiteral("image %1 differs by %2").arg(i).arg(d)));
    }
    // Sizes the model cannot take are named.
    r.sizes = {{8, 12}, {9, 8}};
    auto bad = generate(m, r);
    QVERIFY(!bad);
    QVERIFY2(bad.error().message().find("8x9") != std::string::npos, bad.error().message().c_str());
  }
};

TESSERA_TEST_MAIN(TestNative, Guiless)
#include "test_native.moc"
