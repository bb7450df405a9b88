// SPDX-License-Identifier: Apache-2.0
// Samplers against closed forms. On data that is a known Gaussian N(μ, s²) the exact
// denoiser is known for every process (E[x0 | x_τ] and E[ε | x_τ] are linear in x_τ),
// so every sampler on every process must produce samples with mean μ and deviation s.
// Plus: the time grids the references use, NFE counts (and the registry's evaluations
// per step), guidance, observers, cancel.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/guidance/guidance.h"
#include "core/samplers/sampler.h"
#include "core/samplers/time_grid.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <QtTest>

#include <cmath>
#include <memory>
#endif

using namespace tessera;

namespace {

constexpr double kMu = 0.5, kS = 0.5;

std::shared_ptr<SamplingSpace> space(const QString& kind) {
  Process p;
  if (kind.startsWith(QLatin1String("ddpm"))) {
    GaussianDiffusionConfig c;
    c.learnSigma = false;
    c.prediction = kind.endsWith(QLatin1String("-v")) ? "v" : "eps";
    p.diffusion = *GaussianDiffusion::create(c);
  } else {
    const auto parts = kind.split(QLatin1Char('-'));
    p.interpolant = *Interpolant::create(InterpolantConfig::defaultsFor(parts[0].toStdString(), parts[1].toStdString()));
  }
  return *makeSamplingSpace(p);
}

/// The exact network for Gaussian data, in the prediction the process expects.
ModelFn gaussianModel(const std::shared_ptr<SamplingSpace>& sp, const QString& kind, int* calls = nullptr, std::int64_t* rows = nullptr) {
  return [sp, kind, calls, rows](const at::Tensor& x, const at::Tensor& t, const at::Tensor&) {
    if (calls) ++*calls;
    if (rows) *rows += x.size(0);
    const double tau = sp->tauFromModelTime(t[0].item<double>());
    const Schedule s = sp->schedule(tau);
    const double denom = s.alpha * s.alpha * kS * kS + s.sigma * s.sigma;
    const at::Tensor x0 = kMu + (s.alpha * kS * kS / denom) * (x - s.alpha * kMu);
    const at::Tensor eps = (s.sigma / denom) * (x - s.alpha * kMu);
    if (kind == QLatin1String("ddpm-eps") || kind.endsWith(QLatin1String("-noise"))) return eps;
    if (kind == QLatin1String("ddpm-v")) return s.alpha * eps - s.sigma * x0;
    if (kind.endsWith(QLatin1String("-score"))) return eps / -s.sigma;
    return s.dAlpha * x0 + s.dSigma * eps;  // velocity
  };
}

class GeneratorNoise final : public NoiseSource {
public:
  explicit GeneratorNoise(std::uint64_t seed) : m_gen(at::make_generator<at::CPUGeneratorImpl>(seed)) {}
  at::Tensor draw(std::int64_t, const at::Tensor& like) override { return at::randn(like.sizes(), m_gen, like.options()); }
  at::Generator m_gen;
};

class CountingObserver final : public StepObserver {
public:
  void onStep(const StepEvent& e) override {
    ++steps;
    taus.push_back(e.tauNext);
    QVERIFY(e.denoised && e.denoised->x0.defined() && e.x && e.x->defined());
    if (cancelAfter > 0 && steps == cancelAfter && token) token->cancel();
  }
  int steps = 0, cancelAfter = 0;
  std::vector<double> taus;
  CancelToken* token = nullptr;
};

std::vector<double> modelTimes(const SamplingSpace& sp, const std::vector<double>& taus) {
  std::vector<double> t;
  for (double tau : taus) t.push_back(sp.modelTime(tau));
  return t;
}

}  // namespace

class TestSamplers : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void gaussianTarget_data() {
    QTest::addColumn<QString>("process");
    QTest::addColumn<QString>("sampler");
    QTest::addColumn<int>("steps");
    QTest::addColumn<double>("eta");
    for (const char* p : {"ddpm-eps", "ddpm-v", "linear-velocity", "vp-noise", "gvp-score"}) {
      for (const char* s : {"ddpm", "ddim", "euler", "heun", "dopri5", "sde-euler", "sde-heun", "dpmpp-2m"}) {
        // Enough steps that the discretisation bias stays well inside the tolerance; the
        // ancestral samplers converge slowest (their variance is too small by O(1/N)).
        const QByteArray name(s);
        const int steps = name == "dopri5" ? 2 : name == "ddpm" ? 250 : name.startsWith("sde") ? 200 : 100;
        QTest::newRow(qPrintable(QStringLiteral("%1/%2").arg(QLatin1String(p), QLatin1String(s)))) << QString::fromLatin1(p) << QString::fromLatin1(s) << steps << 0.0;
      }
      QTest::newRow(qPrintable(QStringLiteral("%1/ddim-eta1").arg(QLatin1String(p)))) << QString::fromLatin1(p) << QStringLiteral("ddim") << 250 << 1.0;
    }
  }
  void gaussianTarget() {
    QFETCH(QString, process);
    QFETCH(QString, sampler);
    QFETCH(int, steps);
    QFETCH(double, eta);
    auto sp = space(process);
    const at::Tensor labels = at::zeros({2000}, at::kLong);
    Denoiser denoiser(*sp, gaussianModel(sp, process), labels, at::Tensor(), GuidanceConfig());
    SamplerOptions o;
    o.steps = steps;
    o.eta = eta;
    GeneratorNoise noise(7);
    const at::Tensor z = at::randn({2000, 1, 2, 2}, noise.m_gen, at::TensorOptions(at::kFloat));
    auto r = runSampling(sampler.toStdString(), o, denoiser, z, &noise);
    QVERIFY2(r, r ? "" : r.error().message().c_str());
    const double mean = r->x.mean().item<double>(), sd = r->x.std().item<double>();
    QVERIFY2(std::fabs(mean - kMu) < 0.03, qPrintable(QStringLiteral("mean %1, expected %2").arg(mean).arg(kMu)));
    QVERIFY2(std::fabs(sd / kS - 1) < 0.06, qPrintable(QStringLiteral("sd %1, expected %2").arg(sd).arg(kS)));
    QVERIFY(r->nfe >= steps);
  }

  void referenceGrids() {
    // DDPM: p_sample_loop's "N" and ddim_sample_loop's "ddimN", then the data (k = −1).
    auto d = space(QStringLiteral("ddpm-eps"));
    const SamplerEntry* ddpm = samplerRegistry().find("ddpm");
    const SamplerEntry* ddim = samplerRegistry().find("ddim");
    SamplerOptions o;
    o.steps = 10;
    QCOMPARE(modelTimes(*d, *samplerGrid(*ddpm, o, *d)), (std::vector<double>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0, -1}));
    QCOMPARE(modelTimes(*d, *samplerGrid(*ddim, o, *d)), (std::vector<double>{900, 800, 700, 600, 500, 400, 300, 200, 100, 0, -1}));
    QCOMPARE(modelTimes(*d, *samplerGrid(*samplerRegistry().find("euler"), o, *d)).front(), 900.0);
    // SiT: ODE on linspace(0, 1); the SDE to 1 − 0.04, then the last step.
    auto s = space(QStringLiteral("linear-velocity"));
    auto ode = *samplerGrid(*samplerRegistry().find("euler"), o, *s);
    QCOMPARE(ode.size(), std::size_t(11));
    QCOMPARE(ode.front(), 0.0);
    QCOMPARE(ode.back(), 1.0);
    o.steps = 7;
    auto sde = *samplerGrid(*samplerRegistry().find("sde-euler"), o, *s);
    QCOMPARE(sde.size(), std::size_t(8));
    QVERIFY(std::fabs(sde.back() - 0.96) < 1e-12);
    // score models start at sample_eps (SiT's check_interval)
    auto score = space(QStringLiteral("linear-score"));
    QCOMPARE(samplerGrid(*samplerRegistry().find("euler"), o, *score)->front(), 1e-3);
    // shifted with shift 1 is uniform; a larger shift spends more steps near the noise
    o.steps = 10;
    o.grid = "shifted";
    o.shift = 1.0;
    auto flat = *samplerGrid(*samplerRegistry().find("euler"), o, *s);
    for (std::size_t i = 0; i < flat.size(); ++i) QVERIFY(std::fabs(flat[i] - ode[i]) < 1e-12);
    o.shift = 3.0;
    auto shifted = *samplerGrid(*samplerRegistry().find("euler"), o, *s);
    QVERIFY(shifted[1] < ode[1] && shifted.back() == 1.0);
    // Karras: decreasing σ/α, rho-spaced, ending with the data for DDPM
    o.grid = "karras";
    auto k = *samplerGrid(*samplerRegistry().find("heun"), o, *d);
    QCOMPARE(k.size(), std::size_t(11));
    QCOMPARE(k.back(), 1.0);
    QVERIFY(std::fabs(d->modelTime(k[k.size() - 2])) < 1e-6);  // the last evaluable step, k = 0
    o.grid = "respaced";
    QVERIFY(!samplerGrid(*samplerRegistry().find("euler"), o, *s));  // DDPM grids need a DDPM process
    o.grid = "nonsense";
    auto bad = samplerGrid(*samplerRegistry().find("euler"), o, *s);
    QVERIFY(!bad && bad.error().message().find("karras") != std::string::npos);
  }

  void nfeCounts_data() {
    QTest::addColumn<QString>("process");
    QTest::addColumn<QString>("sampler");
    QTest::addColumn<int>("nfe");
    QTest::newRow("euler") << QStringLiteral("linear-velocity") << QStringLiteral("euler") << 10;
    QTest::newRow("heun/sit") << QStringLiteral("linear-velocity") << QStringLiteral("heun") << 20;
    QTest::newRow("heun/ddpm: Euler into the data") << QStringLiteral("ddpm-eps") << QStringLiteral("heun") << 19;
    QTest::newRow("sde-euler: + last step") << QStringLiteral("linear-velocity") << QStringLiteral("sde-euler") << 11;
    QTest::newRow("sde-heun") << QStringLiteral("linear-velocity") << QStringLiteral("sde-heun") << 21;
    QTest::newRow("ddim") << QStringLiteral("ddpm-eps") << QStringLiteral("ddim") << 10;
    QTest::newRow("dpmpp-2m") << QStringLiteral("ddpm-eps") << QStringLiteral("dpmpp-2m") << 10;
  }
  void nfeCounts() {
    QFETCH(QString, process);
    QFETCH(QString, sampler);
    QFETCH(int, nfe);
    auto sp = space(process);
    int calls = 0;
    Denoiser denoiser(*sp, gaussianModel(sp, process, &calls), at::zeros({2}, at::kLong), at::Tensor(), GuidanceConfig());
    SamplerOptions o;
    o.steps = 10;
    GeneratorNoise noise(1);
    auto r = runSampling(sampler.toStdString(), o, denoiser, at::randn({2, 1, 2, 2}), &noise);
    QVERIFY(r);
    QCOMPARE(r->nfe, std::int64_t(nfe));
    QCOMPARE(calls, nfe);
  }

  void evaluationsPerStepAreWhatSamplersSpend_data() {
    QTest::addColumn<QString>("sampler");
    for (const std::string& name : samplerRegistry().names())
      QTest::newRow(name.c_str()) << QString::fromStdString(name);
  }
  void evaluationsPerStepAreWhatSamplersSpend() {
    // The registry's count is what matched-compute comparisons charge a sampler per step.
    QFETCH(QString, sampler);
    const SamplerEntry* entry = samplerRegistry().find(sampler.toStdString());
    QVERIFY(entry);
    // A process where every step ends at an evaluable time (not DDPM's clean data, where
    // a Heun step is an Euler step), and SDEs without their final denoising step.
    const QString process =
        entry->family == SamplerFamily::Discrete ? QStringLiteral("ddpm-eps") : QStringLiteral("linear-velocity");
    auto sp = space(process);
    Denoiser denoiser(*sp, gaussianModel(sp, process), at::zeros({2}, at::kLong), at::Tensor(), GuidanceConfig());
    SamplerOptions o;
    o.steps = 10;
    o.lastStep = "none";
    GeneratorNoise noise(3);
    auto r = runSampling(sampler.toStdString(), o, denoiser, at::randn({2, 1, 2, 2}), &noise);
    QVERIFY2(r, r ? "" : r.error().message().c_str());
    if (entry->adaptive()) {
      QVERIFY(r->nfe > r->steps);  // dopri5: several stages per attempted step, steps its own
      return;
    }
    QCOMPARE(r->steps, std::int64_t(10));
    QCOMPARE(r->nfe, std::int64_t(entry->evaluationsPerStep) * r->steps);
  }

  void evaluationsPerStepOfTheBuiltIns() {
    QCOMPARE(samplerRegistry().find("euler")->evaluationsPerStep, 1);
    QCOMPARE(samplerRegistry().find("heun")->evaluationsPerStep, 2);
    QCOMPARE(samplerRegistry().find("sde-heun")->evaluationsPerStep, 2);
    QCOMPARE(samplerRegistry().find("sde-euler")->evaluationsPerStep, 1);
    QCOMPARE(samplerRegistry().find("dpmpp-2m")->evaluationsPerStep, 1);
    QVERIFY(samplerRegistry().find("dopri5")->adaptive());
    // A negative count is refused, leaving the registry as it was.
    SamplerRegistry r;
    SamplerEntry e;
    e.name = "bad-cost";
    e.evaluationsPerStep = -1;
    e.make = [] { return std::unique_ptr<Sampler>(); };
    auto added = r.add(e);
    QVERIFY(!added && added.error().message().find("evaluationsPerStep") != std::string::npos);
    QVERIFY(!r.find("bad-cost"));
  }

  void guidanceCombination() {
    const at::Tensor cond = at::arange(2 * 8, at::kFloat).reshape({2, 8, 1, 1});
    const at::Tensor uncond = at::zeros_like(cond);
    // all 4 prediction channels guided, variance channels from the conditional half
    at::Tensor g = combineGuidance(cond, uncond, 3.0, 4);
    QVERIFY(g.narrow(1, 0, 4).equal(3.0 * cond.narrow(1, 0, 4)));
    QVERIFY(g.narrow(1, 4, 4).equal(cond.narrow(1, 4, 4)));
    // the DiT rule: three channels guided, the fourth passed through
    g = combineGuidance(cond, uncond, 3.0, 3);
    QVERIFY(g.narrow(1, 0, 3).equal(3.0 * cond.narrow(1, 0, 3)));
    QVERIFY(g.narrow(1, 3, 5).equal(cond.narrow(1, 3, 5)));
    GuidanceConfig bad;
    bad.scale = std::nan("");
    QVERIFY(!bad.validate());
    bad.scale = 2;
    bad.low = 0.8;
    bad.high = 0.2;
    QVERIFY(!bad.validate());
  }

  void guidanceCostsOneBatchedForward() {
    auto sp = space(QStringLiteral("linear-velocity"));
    const at::Tensor labels = at::zeros({3}, at::kLong), nulls = at::full({3}, 10, at::kLong);
    SamplerOptions o;
    o.steps = 10;
    for (double scale : {1.0, 4.0}) {
      int calls = 0;
      std::int64_t rows = 0;
      GuidanceConfig g;
      g.scale = scale;
      Denoiser denoiser(*sp, gaussianModel(sp, QStringLiteral("linear-velocity"), &calls, &rows), labels, nulls, g);
      QVERIFY(runSampling("euler", o, denoiser, at::randn({3, 1, 2, 2})));
      QCOMPARE(calls, 10);                              // one forward per step either way
      QCOMPARE(rows, std::int64_t(scale == 1.0 ? 30 : 60));  // scale 1: the conditional half only
    }
    // a guidance interval: only steps with τ in [0.5, 1] run both halves (τ = 0.5 … 0.9)
    int calls = 0;
    std::int64_t rows = 0;
    GuidanceConfig g;
    g.scale = 4.0;
    g.low = 0.5;
    Denoiser denoiser(*sp, gaussianModel(sp, QStringLiteral("linear-velocity"), &calls, &rows), labels, nulls, g);
    QVERIFY(runSampling("euler", o, denoiser, at::randn({3, 1, 2, 2})));
    QCOMPARE(rows, std::int64_t(5 * 6 + 5 * 3));
  }

  void observerAndCancel() {
    auto sp = space(QStringLiteral("ddpm-eps"));
    Denoiser denoiser(*sp, gaussianModel(sp, QStringLiteral("ddpm-eps")), at::zeros({2}, at::kLong), at::Tensor(), GuidanceConfig());
    SamplerOptions o;
    o.steps = 10;
    CountingObserver observer;
    auto r = runSampling("ddim", o, denoiser, at::randn({2, 1, 2, 2}), nullptr, &observer);
    QVERIFY(r && !r->cancelled);
    QCOMPARE(observer.steps, 10);
    QCOMPARE(r->states.size(), std::size_t(11));
    QCOMPARE(r->times.back(), -1.0);
    QCOMPARE(observer.taus.back(), 1.0);

    CancelToken token;
    CountingObserver stopper;
    stopper.cancelAfter = 3;
    stopper.token = &token;
    Denoiser again(*sp, gaussianModel(sp, QStringLiteral("ddpm-eps")), at::zeros({2}, at::kLong), at::Tensor(), GuidanceConfig());
    r = runSampling("ddim", o, again, at::randn({2, 1, 2, 2}), nullptr, &stopper, &token);
    QVERIFY(r && r->cancelled);
    QCOMPARE(r->steps, std::int64_t(3));
    QCOMPARE(again.evaluations(), std::int64_t(3));
  }

  void badOptions() {
    auto sp = space(QStringLiteral("linear-velocity"));
    Denoiser denoiser(*sp, gaussianModel(sp, QStringLiteral("linear-velocity")), at::zeros({1}, at::kLong), at::Tensor(), GuidanceConfig());
    SamplerOptions o;
    auto r = runSampling("bogus", o, denoiser, at::randn({1, 1, 2, 2}));
    QVERIFY(!r && r.error().message().find("dpmpp-2m") != std::string::npos);
    o.steps = 0;
    r = runSampling("euler", o, denoiser, at::randn({1, 1, 2, 2}));
    QVERIFY(!r && r.error().message().find("at least 1") != std::string::npos);
    o.steps = 5;
    o.diffusionForm = "wobbly";
    r = runSampling("sde-euler", o, denoiser, at::randn({1, 1, 2, 2}), nullptr);
    QVERIFY(!r && r.error().message().find("SBDM") != std::string::npos);
    // aliases resolve to the same entry
    QCOMPARE(samplerRegistry().find("DPM++2M"), samplerRegistry().find("dpmpp-2m"));
    QCOMPARE(samplerRegistry().names().size(), std::size_t(8));
  }

  void clipDenoisedKeepsEstimatesInTheDataRange_data() {
    QTest::addColumn<QString>("process");
    QTest::addColumn<QString>("sampler");
    for (const char* smp : {"ddim", "euler", "heun", "ddpm", "dpmpp-2m"}) QTest::newRow(smp) << "ddpm-eps" << smp;
    for (const char* smp : {"euler", "heun"}) QTest::newRow(qPrintable(QStringLiteral("linear-%1").arg(QLatin1String(smp)))) << "linear-velocity" << smp;
  }
  void clipDenoisedKeepsEstimatesInTheDataRange() {
    QFETCH(QString, process);
    QFETCH(QString, sampler);
    auto sp = space(process);
    // A network whose data estimate is 5 everywhere, far outside [-1, 1].
    ModelFn wild = [sp, process](const at::Tensor& x, const at::Tensor& t, const at::Tensor&) {
      const double tau = sp->tauFromModelTime(t[0].item<double>());
      const Schedule s = sp->schedule(tau);
      const at::Tensor eps = s.sigma > 0 ? (x - s.alpha * 5.0) / s.sigma : at::zeros_like(x);
      if (process == QLatin1String("ddpm-eps")) return eps;
      return s.dAlpha * at::full_like(x, 5.0) + s.dSigma * eps;
    };
    class RangeObserver final : public StepObserver {
    public:
      void onStep(const StepEvent& e) override { worst = std::max(worst, e.denoised->x0.abs().max().item<double>()); }
      double worst = 0;
    };
    for (bool clip : {false, true}) {
      SamplerOptions o;
      o.steps = 10;
      o.clipDenoised = clip;
      Denoiser denoiser(*sp, wild, at::zeros({2}, at::kLong), at::Tensor(), GuidanceConfig());
      denoiser.setClipDenoised(clip);
      GeneratorNoise noise(3);
      RangeObserver observer;
      auto r = runSampling(sampler.toStdString(), o, denoiser, at::randn({2, 1, 2, 2}), &noise, &observer);
      QVERIFY2(r, r ? "" : r.error().message().c_str());
      const double last = r->x.abs().max().item<double>();
      if (clip) {
        QVERIFY2(observer.worst <= 1.0 + 1e-6, qPrintable(QStringLiteral("x0 estimate %1").arg(observer.worst)));
        // Steps that land on the last data estimate end inside the range; Heun averages
        // two slopes, so its end lies near it (clipping bounds the estimates, not the ODE).
        const double bound = sampler == QLatin1String("heun") ? 1.5 : 1.0 + 1e-3;
        QVERIFY2(last <= bound, qPrintable(QStringLiteral("sample %1").arg(last)));
      } else {
        QVERIFY(observer.worst > 4.0);
        QVERIFY(last > 4.0);
      }
    }
  }

  void eulerOnDdpmIsDdim() {
    // In EDM coordinates an Euler step is a DDIM step: same grid, same result.
    auto sp = space(QStringLiteral("ddpm-eps"));
    const at::Tensor z = at::randn({4, 1, 2, 2});
    SamplerOptions o;
    o.steps = 20;
    Denoiser a(*sp, gaussianModel(sp, QStringLiteral("ddpm-eps")), at::zeros({4}, at::kLong), at::Tensor(), GuidanceConfig());
    Denoiser b(*sp, gaussianModel(sp, QStringLiteral("ddpm-eps")), at::zeros({4}, at::kLong), at::Tensor(), GuidanceConfig());
    const at::Tensor euler = runSampling("euler", o, a, z)->x, ddim = runSampling("ddim", o, b, z)->x;
    QVERIFY((euler - ddim).abs().max().item<double>() < 1e-4 * ddim.abs().max().item<double>());
  }
};

TESSERA_TEST_MAIN(TestSamplers, Appless)
#include "test_samplers.moc"
