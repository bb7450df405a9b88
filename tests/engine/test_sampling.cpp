// SPDX-License-Identifier: Apache-2.0
// Samplers on real (tiny) networks: different ODE solvers converge to the same sample,
// DDIM inversion round-trips, generation is reproducible and independent of batching.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/samplers/sampler.h"
#include "engine/generation.h"
#include "models/registry.h"

#include <ATen/ATen.h>
#include "tests/models/tiny_backbone.h"
#include "tests/support/test_main.h"

#include <QtTest>
#include <c10/core/InferenceMode.h>
#include <torch/nn/modules/linear.h>
#endif

using namespace tessera;

namespace {

/// A tiny DiT/SiT whose zero-initialised output layer is given small random weights, so
/// that its prediction is smooth but not trivial.
LoadedModel tinyModel(const std::string& kind, bool learnSigma) {
  LoadedModel m;
  m.backbone = test::tinyBackbone(kind, {{"learn_sigma", learnSigma}, {"in_channels", 1}, {"cfg_channels", 1}}, 5);
  Process process;
  if (kind == "dit") {
    GaussianDiffusionConfig c;
    c.learnSigma = learnSigma;
    process.diffusion = *GaussianDiffusion::create(c);
  } else {
    process.interpolant = *Interpolant::create(InterpolantConfig::defaultsFor("linear", "velocity"));
  }
  m.process = process;
  m.description = {{"data", {{"kind", "image"}}}};
  m.path = "tiny-" + kind;
  return m;
}

double relative(const at::Tensor& a, const at::Tensor& b) { return ((a - b).norm() / b.norm()).item<double>(); }

at::Tensor sampleWith(const LoadedModel& m, const std::string& sampler, std::int64_t steps, const at::Tensor& z, double rtol = 1e-3) {
  GenerationRequest r;
  r.classes = {1, 4};
  r.sampler = sampler;
  r.options.steps = steps;
  r.options.grid = "uniform";  // one grid for every solver: the same starting time
  r.options.rtol = rtol;
  r.options.atol = rtol * 1e-2;
  r.noise = z;
  r.height = z.size(2);
  r.width = z.size(3);
  r.guidance.scale = 2.0;
  auto out = generate(m, r);
  if (!out) qFatal("%s", out.error().message().c_str());
  return out->samples;
}

}  // namespace

class TestSampling : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void odeSolversAgree_data() {
    QTest::addColumn<QString>("kind");
    QTest::newRow("dit (DDPM, EDM coordinates)") << QStringLiteral("dit");
    QTest::newRow("sit (linear interpolant)") << QStringLiteral("sit");
  }
  void odeSolversAgree() {
    QFETCH(QString, kind);
    const auto m = tinyModel(kind.toStdString(), kind == QLatin1String("dit"));
    const at::Tensor z = at::randn({2, 1, 8, 12}, at::TensorOptions(at::kFloat));
    const at::Tensor reference = sampleWith(m, "dopri5", 1, z, 1e-6);
    const at::Tensor heun = sampleWith(m, "heun", 100, z);
    const at::Tensor fine = sampleWith(m, kind == QLatin1String("dit") ? "ddim" : "euler", 500, z);
    const at::Tensor coarse = sampleWith(m, kind == QLatin1String("dit") ? "ddim" : "euler", 10, z);
    qInfo("%s: heun100 %.2e, first-order 500 %.2e, first-order 10 %.2e (relative to dopri5)", qPrintable(kind),
          relative(heun, reference), relative(fine, reference), relative(coarse, reference));
    QVERIFY(relative(heun, reference) < 2e-3);
    QVERIFY(relative(fine, reference) < 1e-2);
    QVERIFY(relative(coarse, reference) > relative(fine, reference));  // the error shrinks with steps
    const at::Tensor dpm = sampleWith(m, "dpmpp-2m", 50, z);
    QVERIFY(relative(dpm, reference) < relative(sampleWith(m, kind == QLatin1String("dit") ? "ddim" : "euler", 50, z), reference));
  }

  void ddimInversionRoundTrip() {
    const auto m = tinyModel("dit", false);
    const at::Tensor z = at::randn({2, 1, 8, 8});
    auto space = *makeSamplingSpace(*m.process);
    const ModelFn fn = modelFunction(m);
    c10::InferenceMode guard;
    const at::Tensor labels = at::tensor({2, 3}, at::kLong);
    SamplerOptions o;
    o.steps = 50;
    Denoiser d1(*space, fn, labels, at::Tensor(), GuidanceConfig());
    const at::Tensor image = runSampling("ddim", o, d1, z)->x;
    const auto grid = *samplerGrid(*samplerRegistry().find("ddim"), o, *space);
    Denoiser d2(*space, fn, labels, at::Tensor(), GuidanceConfig());
    auto inversion = invertDDIM(d2, image, grid);
    QVERIFY(inversion);
    const at::Tensor inverted = inversion.value();
    Denoiser d3(*space, fn, labels, at::Tensor(), GuidanceConfig());
    const at::Tensor again = runSampling("ddim", o, d3, inverted)->x;
    qInfo("inversion: noise recovered to %.2e, image to %.2e", relative(inverted, z), relative(again, image));
    QVERIFY(relative(again, image) < 2e-2);
    QVERIFY(relative(inverted, z) < 5e-2);
  }

  void seedsAndBatches() {
    const auto m = tinyModel("sit", false);
    GenerationRequest r;
    r.classes = {0, 1, 2, 3, 4};
    r.sampler = "sde-euler";  // stochastic: the step noise must follow the image too
    r.options.steps = 8;
    r.seed = 100;
    r.guidance.scale = 3.0;
    r.batch = 5;
    const at::Tensor together = generate(m, r)->samples;
    QVERIFY(generate(m, r)->samples.equal(together));  // the same settings, bit-identical
    r.batch = 2;
    const at::Tensor pairs = generate(m, r)->samples;
    GenerationRequest single = r;
    single.classes = {3};
    single.seed = 103;
    single.batch = 1;
    const at::Tensor alone = generate(m, single)->samples;
    const double batchDiff = (pairs - together).abs().max().item<double>();
    const double aloneDiff = (alone[0] - together[3]).abs().max().item<double>();
    qInfo("batching changes samples by at most %.2e (alone vs in a batch of 5: %.2e)", batchDiff, aloneDiff);
    QVERIFY(batchDiff < 1e-4);
    QVERIFY(aloneDiff < 1e-4);
    r.seed = 101;
    QVERIFY(!generate(m, r)->samples.equal(pairs));
  }

  void badRequests() {
    const auto m = tinyModel("dit", true);
    GenerationRequest r;
    r.classes = {10};
    auto out = generate(m, r);
    QVERIFY(!out && out.error().message().find("0 to 9") != std::string::npos);
    r.classes = {1};
    r.height = 7;
    out = generate(m, r);
    QVERIFY(!out && out.error().message().find("nearest valid sizes: 8x6, 8x8") != std::string::npos);
    r.height = 0;
    r.noise = at::zeros({2, 1, 8, 8});
    out = generate(m, r);
    QVERIFY(!out && out.error().message().find("(1, 1, 8, 8)") != std::string::npos);
  }
};

TESSERA_TEST_MAIN(TestSampling, Appless)
#include "test_sampling.moc"
