// SPDX-License-Identifier: Apache-2.0
// The two processes: schedules and marginals against closed forms, conversions as round
// trips, respacing as the reference computes it, and one training step per process.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/process/gaussian_diffusion.h"
#include "core/process/interpolant.h"
#include "models/dit/dit.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QtTest>
#include <torch/optim/adam.h>

#include <cmath>
#endif

using namespace tessera;

namespace {

GaussianDiffusion ddpm(bool learnSigma = true, const std::string& prediction = "eps") {
  GaussianDiffusionConfig c;
  c.learnSigma = learnSigma;
  c.prediction = prediction;
  return *GaussianDiffusion::create(c);
}

double maxAbs(const at::Tensor& t) { return t.abs().max().item<double>(); }

}  // namespace

class TestProcess : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void linearSchedule() {
    const auto d = ddpm();
    QCOMPARE(d.numSteps(), std::int64_t(1000));
    QCOMPARE(d.betas()[0].item<double>(), 1e-4);
    QVERIFY(std::fabs(d.betas()[999].item<double>() - 0.02) < 1e-15);
    double prod = 1.0;
    for (int i = 0; i < 1000; ++i) {
      prod *= 1.0 - (1e-4 + (0.02 - 1e-4) * i / 999.0);
      if (i == 0 || i == 499 || i == 999) QVERIFY(std::fabs(d.alphasCumprod()[i].item<double>() - prod) < 1e-12);
    }
    // q(x_{t-1}|x_t,x0) variance: β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t)
    const double b = d.betas()[10].item<double>(), a = d.alphasCumprod()[10].item<double>(), ap = d.alphasCumprod()[9].item<double>();
    QVERIFY(std::fabs(d.posteriorVariance()[10].item<double>() - b * (1 - ap) / (1 - a)) < 1e-15);
    QCOMPARE(d.posteriorVariance()[0].item<double>(), 0.0);
    QCOMPARE(d.posteriorLogVarianceClipped()[0].item<double>(), std::log(d.posteriorVariance()[1].item<double>()));
  }

  void cosineSchedule() {
    GaussianDiffusionConfig c;
    c.schedule = "cosine";
    const auto d = *GaussianDiffusion::create(c);
    QVERIFY(d.betas().max().item<double>() <= 0.999);
    auto abar = [](double s) { return std::pow(std::cos((s + 0.008) / 1.008 * M_PI / 2), 2); };
    QVERIFY(std::fabs(d.alphasCumprod()[499].item<double>() - abar(0.5) / abar(0.0)) < 1e-9);
    c.schedule = "quadratic";
    QVERIFY(!GaussianDiffusion::create(c));
  }

  void forwardMarginals() {
    const auto d = ddpm();
    at::manual_seed(0);
    const std::int64_t n = 400000;
    for (std::int64_t step : {0, 250, 999}) {
      const at::Tensor x0 = at::full({1, n, 1, 1}, 0.7);
      const at::Tensor noise = at::randn({1, n, 1, 1});
      const at::Tensor xt = d.qSample(x0, at::tensor({step}), noise);
      const double ab = d.alphasCumprod()[step].item<double>();
      QVERIFY(maxAbs(xt - (std::sqrt(ab) * 0.7 + std::sqrt(1 - ab) * noise)) < 1e-6);  // exact
      QVERIFY(std::fabs(xt.mean().item<double>() - std::sqrt(ab) * 0.7) < 0.01);
      QVERIFY(std::fabs(xt.var().item<double>() - (1 - ab)) < 0.01);
    }
  }

  void conversionsRoundTrip() {
    const auto d = ddpm();
    at::manual_seed(1);
    const at::Tensor x0 = at::randn({4, 3, 5, 5}), eps = at::randn({4, 3, 5, 5}), t = at::tensor({0, 10, 500, 999});
    const at::Tensor xt = d.qSample(x0, t, eps);
    QVERIFY(maxAbs(d.x0FromEps(xt, t, eps) - x0) < 1e-3);  // t = 999 amplifies rounding: sqrt(1/ᾱ) ≈ 157
    QVERIFY(maxAbs(d.epsFromX0(xt, t, d.x0FromEps(xt, t, eps)) - eps) < 1e-4);
    const at::Tensor v = d.vFrom(x0, eps, t);
    QVERIFY(maxAbs(d.epsFromV(xt, t, v) - eps) < 1e-5);
    QVERIFY(maxAbs(d.x0FromV(xt, t, v) - x0) < 1e-5);
  }

  void learnedRangeVariance() {
    const auto d = ddpm();
    const at::Tensor xt = at::randn({2, 2, 3, 3}), t = at::tensor({0, 700});
    const at::Tensor eps = at::randn({2, 2, 3, 3});
    auto hi = d.interpret(at::cat({eps, at::ones_like(eps)}, 1), xt, t);
    auto lo = d.interpret(at::cat({eps, -at::ones_like(eps)}, 1), xt, t);
    QVERIFY(std::fabs(hi.logVariance[1][0][0][0].item<double>() - std::log(d.betas()[700].item<double>())) < 1e-5);
    QVERIFY(std::fabs(lo.logVariance[1][0][0][0].item<double>() - d.posteriorLogVarianceClipped()[700].item<double>()) < 1e-5);
    QVERIFY(maxAbs(hi.x0 - d.x0FromEps(xt, t, eps)) < 1e-6);
    try {
      d.interpret(eps, xt, t);  // 2 channels for a learned-sigma model of 2 data channels
      QFAIL("accepted a wrong channel count");
    } catch (const c10::Error& e) {
      QVERIFY(std::string(e.what()).find("must output 4 channels") != std::string::npos);
    }
  }

  void perfectPredictionHasZeroLoss() {
    const auto d = ddpm();
    at::manual_seed(2);
    const at::Tensor x0 = at::rand({3, 2, 4, 4}) * 2 - 1, noise = at::randn({3, 2, 4, 4});
    const at::Tensor t = at::tensor({0, 5, 600});
    // exact eps and the true posterior variance (v = -1 selects the clipped posterior log variance)
    const auto l = d.trainingLoss(at::cat({noise, -at::ones_like(noise)}, 1), x0, noise, t);
    QVERIFY(maxAbs(l.mse) == 0.0);
    QVERIFY2(l.vb[1].item<double>() < 1e-4 && l.vb[2].item<double>() < 1e-4, qPrintable(QString::number(l.vb[1].item<double>())));
    QVERIFY(l.vb[0].item<double>() > 0);  // t = 0: the decoder NLL of 256 bins
    const auto wrong = d.trainingLoss(at::cat({noise + 0.5, at::zeros_like(noise)}, 1), x0, noise, t);
    QVERIFY(std::fabs(wrong.mse[1].item<double>() - 0.25) < 1e-6);
  }

  void respacing() {
    auto ten = GaussianDiffusion::spaceTimesteps(1000, "10");
    QVERIFY(ten);
    QCOMPARE(*ten, (std::vector<std::int64_t>{0, 111, 222, 333, 444, 555, 666, 777, 888, 999}));
    auto ddim = GaussianDiffusion::spaceTimesteps(1000, "ddim10");
    QCOMPARE(*ddim, (std::vector<std::int64_t>{0, 100, 200, 300, 400, 500, 600, 700, 800, 900}));
    auto many = GaussianDiffusion::spaceTimesteps(1000, "250");
    QCOMPARE(many->size(), std::size_t(250));
    QCOMPARE(many->front(), std::int64_t(0));
    QCOMPARE(many->back(), std::int64_t(999));
    // Python's round() rounds half to even: 0, 1.25, 2.5, 3.75, 5 -> 0, 1, 2, 4, 5
    QCOMPARE(*GaussianDiffusion::spaceTimesteps(6, "5"), (std::vector<std::int64_t>{0, 1, 2, 4, 5}));
    QCOMPARE(*GaussianDiffusion::spaceTimesteps(10, "2,3"), (std::vector<std::int64_t>{0, 4, 5, 7, 9}));
    QVERIFY(!GaussianDiffusion::spaceTimesteps(1000, "ddim999"));
    QCOMPARE(GaussianDiffusion::spaceTimesteps(1000, "ddim7")->at(1), std::int64_t(143));  // first stride giving 7 steps
    QVERIFY(!GaussianDiffusion::spaceTimesteps(10, "20"));
    QVERIFY(!GaussianDiffusion::spaceTimesteps(10, "x"));

    const auto d = ddpm();
    auto spaced = d.respaced(*ten);
    QVERIFY(spaced);
    QCOMPARE(spaced->numSteps(), std::int64_t(10));
    QCOMPARE(spaced->timestepMap(), *ten);
    for (int k = 0; k < 10; ++k)
      QVERIFY(std::fabs(spaced->alphasCumprod()[k].item<double>() - d.alphasCumprod()[(*ten)[k]].item<double>()) < 1e-14);
    QVERIFY(at::equal(spaced->networkTimesteps(at::tensor({0, 9, 3})), at::tensor({0, 999, 333}, at::kLong)));
  }

  void interpolantPaths_data() {
    QTest::addColumn<QString>("path");
    QTest::newRow("linear") << QStringLiteral("linear");
    QTest::newRow("gvp") << QStringLiteral("gvp");
    QTest::newRow("vp") << QStringLiteral("vp");
  }
  void interpolantPaths() {
    QFETCH(QString, path);
    const auto I = *Interpolant::create(InterpolantConfig::defaultsFor(path.toStdString(), "velocity"));
    at::manual_seed(4);
    const at::Tensor t = at::tensor({0.1, 0.4, 0.75, 0.95}, at::kDouble);
    const at::Tensor x1 = at::randn({4, 2, 3, 3}, at::kDouble), x0 = at::randn({4, 2, 3, 3}, at::kDouble);
    const auto c = I.coefficients(t, x1);
    if (path == QStringLiteral("linear")) {
      QVERIFY(maxAbs(c.alpha.flatten() - t) < 1e-15 && maxAbs(c.sigma.flatten() - (1 - t)) < 1e-15);
    } else if (path == QStringLiteral("gvp")) {
      QVERIFY(maxAbs(c.alpha.pow(2) + c.sigma.pow(2) - 1) < 1e-12);  // variance preserving
    } else {
      const double tv = 0.4, m = -0.25 * std::pow(1 - tv, 2) * 19.9 - 0.5 * (1 - tv) * 0.1;
      QVERIFY(std::fabs(c.alpha[1].item<double>() - std::exp(m)) < 1e-12);
      QVERIFY(maxAbs(c.alpha.pow(2) + c.sigma.pow(2) - 1) < 1e-12);
    }
    // u_t is the time derivative of x_t (central differences).
    const double h = 1e-6;
    const at::Tensor fd = (I.xt(x0, x1, t + h) - I.xt(x0, x1, t - h)) / (2 * h);
    QVERIFY2(maxAbs(fd - I.ut(x0, x1, t)) < 1e-6, qPrintable(QString::number(maxAbs(fd - I.ut(x0, x1, t)))));
    // For data concentrated at x1, the true velocity is u_t and the true score -x0/σ.
    const at::Tensor x = I.xt(x0, x1, t), v = I.ut(x0, x1, t);
    QVERIFY(maxAbs(I.scoreFromVelocity(v, x, t) - (-x0 / c.sigma)) < 1e-9);
    QVERIFY(maxAbs(I.noiseFromVelocity(v, x, t) - x0) < 1e-9);
    QVERIFY(maxAbs(I.velocityFromScore(-x0 / c.sigma, x, t) - v) < 1e-9);
    QVERIFY(maxAbs(I.dataFromVelocity(v, x, t) - x1) < 1e-9);
    QVERIFY(maxAbs(I.scoreFromNoise(x0, x, t) - (-x0 / c.sigma)) < 1e-12);
    // Marginal of x_t for x1 = const and Gaussian noise: mean α c, variance σ².
    const at::Tensor noise = at::randn({1, 300000, 1, 1}, at::kDouble);
    const at::Tensor xs = I.xt(noise, at::full_like(noise, 0.5), at::tensor({0.4}, at::kDouble));
    const auto c1 = I.coefficients(at::tensor({0.4}, at::kDouble), noise);
    QVERIFY(std::fabs(xs.mean().item<double>() - 0.5 * c1.alpha.item<double>()) < 0.01);
    QVERIFY(std::fabs(xs.var().item<double>() - c1.sigma.pow(2).item<double>()) < 0.01);
  }

  void interpolantLossAndIntervals() {
    auto lin = *Interpolant::create(InterpolantConfig::defaultsFor("linear", "velocity"));
    QCOMPARE(lin.trainInterval(), std::make_pair(0.0, 1.0));
    auto noise = *Interpolant::create(InterpolantConfig::defaultsFor("linear", "noise"));
    QCOMPARE(noise.trainInterval(), std::make_pair(1e-3, 1.0 - 1e-3));
    auto vp = *Interpolant::create(InterpolantConfig::defaultsFor("vp", "velocity"));
    QCOMPARE(vp.trainInterval(), std::make_pair(0.0, 1.0 - 1e-5));
    const at::Tensor t = lin.sampleTrainingTimes(1000, at::TensorOptions().dtype(at::kDouble));
    QVERIFY(t.min().item<double>() >= 0 && t.max().item<double>() <= 1);
    const at::Tensor x0 = at::randn({2, 1, 2, 2}), x1 = at::randn({2, 1, 2, 2}), tt = at::tensor({0.3, 0.8});
    QVERIFY(maxAbs(lin.trainingLoss(x1 - x0, x0, x1, tt)) < 1e-12);  // exact velocity
    QVERIFY(maxAbs(noise.trainingLoss(x0, x0, x1, tt)) < 1e-12);     // exact noise
    InterpolantConfig bad;
    bad.path = "spiral";
    QVERIFY(!Interpolant::create(bad));
  }

  void oneStepReducesLoss_data() {
    QTest::addColumn<QString>("process");
    QTest::newRow("gaussian diffusion, learned sigma") << QStringLiteral("ddpm");
    QTest::newRow("linear interpolant, velocity") << QStringLiteral("sit");
  }
  void oneStepReducesLoss() {
    QFETCH(QString, process);
    const bool ddpmProcess = process == QStringLiteral("ddpm");
    at::manual_seed(5);
    DiTConfig c;
    c.inputSize = 8; c.patchSize = 2; c.hiddenSize = 32; c.depth = 2; c.numHeads = 4; c.numClasses = 10;
    c.learnSigma = ddpmProcess;
    auto model = std::make_shared<DiTImpl>(c);
    model->train();
    const at::Tensor x1 = at::rand({8, 4, 8, 8}) * 2 - 1, noise = at::randn({8, 4, 8, 8}), y = at::randint(0, 10, {8});
    const auto d = ddpm();
    const auto I = *Interpolant::create(InterpolantConfig::defaultsFor("linear", "velocity"));
    const at::Tensor tDdpm = at::randint(0, 1000, {8}), tSit = at::rand({8});
    auto loss = [&]() {
      at::manual_seed(9);  // same label dropout every evaluation
      if (ddpmProcess) {
        const at::Tensor xt = d.qSample(x1, tDdpm, noise);
        return d.trainingLoss(model->forwardTensors(xt, tDdpm, y), x1, noise, tDdpm).loss.mean();
      }
      return I.trainingLoss(model->forwardTensors(I.xt(noise, x1, tSit), tSit, y), noise, x1, tSit).mean();
    };
    torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-3));
    const at::Tensor before = loss();
    opt.zero_grad();
    before.backward();
    opt.step();
    const double after = loss().item<double>();
    QVERIFY2(after < before.item<double>(), qPrintable(QStringLiteral("%1 -> %2").arg(before.item<double>()).arg(after)));
  }
};

TESSERA_TEST_MAIN(TestProcess, Appless)
#include "test_process.moc"
