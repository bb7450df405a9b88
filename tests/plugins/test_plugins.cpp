// SPDX-License-Identifier: Apache-2.0
// Plugins: the two examples load and work (the lms sampler is of third order where Euler
// is of first; the convnet backbone builds, round-trips through a model file and
// generates), broken plugins are refused with a message and change nothing, a folder of
// good and bad files gives both results, and tessera-cli takes --plugin and the search
// path. The plugins' paths come from CMake (tests/CMakeLists.txt).
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/samplers/sampler.h"
#include "engine/generation.h"
#include "engine/model_file.h"
#include "engine/plugin_loader.h"
#include "models/registry.h"
#include "models/state_dict.h"
#include "plugins/tessera_plugin.h"
#include "tests/app/cli_runner.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QTemporaryDir>
#include <QtTest>
#include <c10/core/InferenceMode.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <set>
#endif

using namespace tessera;

namespace {

constexpr double kMu = 0.5, kS = 0.5;  // the data: N(μ, s²) per value

std::shared_ptr<SamplingSpace> gaussianSpace(const QString& kind) {
  Process p;
  if (kind == QLatin1String("ddpm-eps")) {
    GaussianDiffusionConfig c;
    c.learnSigma = false;
    p.diffusion = *GaussianDiffusion::create(c);
  } else {
    p.interpolant = *Interpolant::create(InterpolantConfig::defaultsFor("linear", "velocity"));
  }
  return *makeSamplingSpace(p);
}

/// The exact network for Gaussian data (as in test_samplers): eps for DDPM, the
/// velocity for the linear interpolant.
ModelFn gaussianModel(const std::shared_ptr<SamplingSpace>& sp, bool velocity) {
  return [sp, velocity](const at::Tensor& x, const at::Tensor& t, const at::Tensor&) {
    const double tau = sp->tauFromModelTime(t[0].item<double>());
    const Schedule s = sp->schedule(tau);
    const double denom = s.alpha * s.alpha * kS * kS + s.sigma * s.sigma;
    const at::Tensor x0 = kMu + (s.alpha * kS * kS / denom) * (x - s.alpha * kMu);
    const at::Tensor eps = (s.sigma / denom) * (x - s.alpha * kMu);
    return velocity ? s.dAlpha * x0 + s.dSigma * eps : eps;
  };
}

double relative(const at::Tensor& a, const at::Tensor& b) { return ((a - b).norm() / b.norm()).item<double>(); }

std::vector<std::string> names(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<std::string> all = a;
  all.insert(all.end(), b.begin(), b.end());
  return all;
}
std::vector<std::string> registryNames() { return names(samplerRegistry().names(), backboneRegistry().names()); }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

PluginInfo mustLoad(const char* path) {
  auto r = loadPlugin(path);
  if (!r) qFatal("%s", r.error().message().c_str());
  return *r;
}

/// A tiny convnet with in_channels 1 whose zero-initialised output convolution gets
/// small random weights, so that its prediction is smooth but not trivial.
LoadedModel convnetModel(bool velocity) {
  const BackboneEntry* entry = backboneRegistry().find("convnet");
  if (!entry) qFatal("convnet is not registered");
  nlohmann::json config = entry->tiny["config"];
  config["in_channels"] = 1;
  config["learn_sigma"] = !velocity;
  if (velocity) config["prediction"] = "velocity";
  auto built = backboneRegistry().create("convnet", Config::fromJson(config, "tiny"));
  if (!built) qFatal("%s", built.error().message().c_str());
  torch::manual_seed(5);
  {
    torch::NoGradGuard guard;
    for (auto& p : (*built)->named_parameters())
      if (contains(p.key(), "conv_out")) p.value().normal_(0, 0.05);
  }
  (*built)->eval();
  LoadedModel m;
  m.backbone = *built;
  Process process;
  if (velocity) {
    process.interpolant = *Interpolant::create(InterpolantConfig::defaultsFor("linear", "velocity"));
  } else {
    GaussianDiffusionConfig c;
    c.learnSigma = true;
    process.diffusion = *GaussianDiffusion::create(c);
  }
  m.process = process;
  m.description = {{"backbone", {{"kind", "convnet"}, {"config", config}}}, {"data", {{"kind", "image"}}}};
  m.path = "tiny-convnet";
  return m;
}

QStringList sampleArgs(const QString& out) {
  return {QStringLiteral("sample"), QStringLiteral("--model"), QStringLiteral("dit-fashion"), QStringLiteral("--sampler"),
          QStringLiteral("lms"), QStringLiteral("--steps"), QStringLiteral("5"), QStringLiteral("-n"), QStringLiteral("2"),
          QStringLiteral("--out"), out};
}

/// A folder with a link to the lms plugin, a plugin for another interface, a file that
/// is no shared library and one that is no plugin candidate at all.
void fillMixedFolder(const QTemporaryDir& dir) {
  QVERIFY(QFile::link(QStringLiteral(TESSERA_PLUGIN_LMS), dir.filePath(QStringLiteral("a_lms.so"))));
  QVERIFY(QFile::copy(QStringLiteral(TESSERA_TEST_PLUGIN_ABI), dir.filePath(QStringLiteral("b_abi.so"))));
  QFile garbage(dir.filePath(QStringLiteral("c_garbage.so")));
  QVERIFY(garbage.open(QIODevice::WriteOnly));
  garbage.write("this is not a shared library\n");
  garbage.close();
  QFile notes(dir.filePath(QStringLiteral("notes.txt")));
  QVERIFY(notes.open(QIODevice::WriteOnly));
  notes.write("not a plugin\n");
}

}  // namespace

class TestPlugins : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void lmsSamplerLoads() {
    QVERIFY(!samplerRegistry().find("lms"));
    const PluginInfo info = mustLoad(TESSERA_PLUGIN_LMS);
    QCOMPARE(info.name, std::string("lms-sampler"));
    QCOMPARE(info.samplers, std::vector<std::string>{"lms"});
    QVERIFY(info.backbones.empty());
    QCOMPARE(info.torchVersion, std::string(TORCH_VERSION));
    const SamplerEntry* entry = samplerRegistry().find("lms");
    QVERIFY(entry);
    QVERIFY(entry->family == SamplerFamily::Ode);
    QVERIFY(samplerRegistry().find("Adams-Bashforth") == entry);  // an alias, case-insensitive

    // A second load of the same file is the first one's result.
    const std::size_t count = loadedPlugins().size();
    const PluginInfo again = mustLoad(TESSERA_PLUGIN_LMS);
    QCOMPARE(again.path, info.path);
    QCOMPARE(loadedPlugins().size(), count);
  }

  void lmsIsThirdOrder_data() {
    QTest::addColumn<QString>("process");
    QTest::newRow("ddpm-eps (EDM coordinates)") << QStringLiteral("ddpm-eps");
    QTest::newRow("linear-velocity") << QStringLiteral("linear-velocity");
  }
  void lmsIsThirdOrder() {
    QFETCH(QString, process);
    mustLoad(TESSERA_PLUGIN_LMS);
    const auto sp = gaussianSpace(process);
    const ModelFn model = gaussianModel(sp, process == QLatin1String("linear-velocity"));
    at::manual_seed(11);
    const at::Tensor z = at::randn({256, 1, 2, 2}, at::TensorOptions(at::kDouble));
    SamplerOptions o;
    o.grid = "uniform";  // one grid for every sampler and step count: the same start
    // Gaussian data move along the probability-flow ODE as x = αμ + sqrt(α²s² + σ²) ξ with ξ
    // fixed, so the exact end point is known: no reference solver is needed.
    const double start = samplerGrid(*samplerRegistry().find("lms"), o, *sp)->front();
    const Schedule s0 = sp->schedule(start);
    const at::Tensor exact = kMu + kS * (z - s0.alpha * kMu) / std::sqrt(s0.alpha * s0.alpha * kS * kS + s0.sigma * s0.sigma);
    auto errorOf = [&](const std::string& sampler, std::int64_t steps, std::int64_t* nfe = nullptr) {
      Denoiser denoiser(*sp, model, at::zeros({z.size(0)}, at::kLong), at::Tensor(), GuidanceConfig());
      SamplerOptions options = o;
      options.steps = steps;
      auto r = runSampling(sampler, options, denoiser, z);
      if (!r) qFatal("%s", r.error().message().c_str());
      if (nfe) *nfe = r->nfe;
      return relative(r->x, exact);
    };
    std::int64_t nfe = 0;
    const double lms20 = errorOf("lms", 20, &nfe), lms40 = errorOf("lms", 40), euler20 = errorOf("euler", 20);
    qInfo("%s: relative error lms 20 steps %.2e, 40 steps %.2e; euler 20 steps %.2e", qPrintable(process), lms20, lms40,
          euler20);
    QCOMPARE(nfe, std::int64_t(20));  // one evaluation per step
    QVERIFY(lms20 < 0.25 * euler20);
    // Doubling the steps divides the error by about 8 (third order); 0.2 refuses a
    // second-order method (about 0.25), let alone Euler (0.5).
    QVERIFY(lms40 < 0.2 * lms20);
  }

  void convnetBackboneLoads() {
    QVERIFY(!backboneRegistry().find("convnet"));
    const PluginInfo info = mustLoad(TESSERA_PLUGIN_CONVNET);
    QCOMPARE(info.backbones, std::vector<std::string>{"convnet"});
    const BackboneEntry* entry = backboneRegistry().find("convnet");
    QVERIFY(entry);
    QVERIFY(!entry->presets.empty());
    auto made = backboneRegistry().create("convnet", Config::fromJson(entry->tiny["config"], "tiny"));
    QVERIFY2(made, made ? "" : made.error().message().c_str());
    auto model = *made;
    QCOMPARE(model->kind(), std::string("convnet"));
    const Capabilities caps = model->capabilities();
    QVERIFY(caps.anyGrid && !caps.fixedGrid && caps.learnedSigma && caps.nullClass);
    QCOMPARE(caps.numClasses, std::int64_t(10));

    // Any grid; a new network predicts exactly 0 (zeroed output convolution).
    at::manual_seed(3);
    BackboneInput in;
    in.x = at::randn({3, 4, 8, 13});
    in.t = at::rand({3}) * 999;
    in.y = at::tensor({0, 9, 10}, at::kLong);  // 10: the null class
    model->eval();
    torch::NoGradGuard noGrad;
    at::Tensor out = model->forward(in).prediction;
    QCOMPARE(out.sizes().vec(), (std::vector<std::int64_t>{3, 8, 8, 13}));  // learned sigma: 2·C channels
    QCOMPARE(out.abs().max().item<double>(), 0.0);

    // Unique parameter names, and the same outputs after a model-file round trip, which
    // builds the backbone through the registry by its name.
    for (auto& p : model->parameters()) p.add_(at::randn_like(p) * 0.05);
    out = model->forward(in).prediction;
    std::set<std::string> seen;
    for (const auto& [name, t] : stateDict(*model)) QVERIFY2(seen.insert(name).second, name.c_str());
    QTemporaryDir dir;
    const std::string path = dir.filePath(QStringLiteral("convnet.safetensors")).toStdString();
    QVERIFY(writeModelFile(path, {{"backbone", {{"kind", "convnet"}, {"config", entry->tiny["config"]}}}}, stateDict(*model)));
    auto loaded = loadModelFile(path);
    QVERIFY2(loaded, loaded ? "" : loaded.error().message().c_str());
    QVERIFY(at::equal(loaded->backbone->forward(in).prediction, out));

    // A misspelt key is named; a preset builds.
    nlohmann::json bad = entry->tiny["config"];
    bad["widht"] = 16;
    auto refused = backboneRegistry().create("convnet", Config::fromJson(bad, "cfg.json"));
    QVERIFY(!refused);
    QVERIFY2(contains(refused.error().message(), "widht"), refused.error().message().c_str());
    QVERIFY(backboneRegistry().create("convnet", Config::fromJson({{"preset", entry->presets.front()}, {"num_classes", 3}}, "preset")));
  }

  void convnetGeneratesWithLms_data() {
    QTest::addColumn<bool>("velocity");
    QTest::newRow("ddpm, learned sigma") << false;
    QTest::newRow("linear interpolant, velocity") << true;
  }
  void convnetGeneratesWithLms() {
    QFETCH(bool, velocity);
    mustLoad(TESSERA_PLUGIN_LMS);
    mustLoad(TESSERA_PLUGIN_CONVNET);
    const LoadedModel m = convnetModel(velocity);
    GenerationRequest r;
    r.classes = {1, 4, 7};
    r.sampler = "lms";
    r.options.steps = 6;
    r.height = 12;
    r.width = 10;
    r.seed = 3;
    r.guidance.scale = 2.0;
    auto out = generate(m, r);
    QVERIFY2(out, out ? "" : out.error().message().c_str());
    QCOMPARE(out->samples.sizes().vec(), (std::vector<std::int64_t>{3, 1, 12, 10}));
    QVERIFY(at::isfinite(out->samples).all().item<bool>());
    QVERIFY(out->samples.abs().max().item<double>() > 0);
    QCOMPARE(out->steps, std::int64_t(6));
    QCOMPARE(out->nfe, std::int64_t(6));
  }

  void brokenPluginsAreRefused_data() {
    QTest::addColumn<QString>("path");
    QTest::addColumn<QString>("expected");
    QTest::addColumn<QString>("stagedSampler");
    QTest::newRow("another interface") << QStringLiteral(TESSERA_TEST_PLUGIN_ABI)
                                       << QStringLiteral("was built for plugin interface 999, this Tessera has %1").arg(TESSERA_PLUGIN_ABI)
                                       << QString();
    QTest::newRow("registration throws") << QStringLiteral(TESSERA_TEST_PLUGIN_THROWS)
                                         << QStringLiteral("registration threw: bad plugin: registration throws")
                                         << QStringLiteral("thrown-staged");
    QTest::newRow("name taken") << QStringLiteral(TESSERA_TEST_PLUGIN_COLLIDES)
                                << QStringLiteral("backbone 'dit' is already registered") << QStringLiteral("collide-staged");
    QTest::newRow("no entry point") << QStringLiteral(TESSERA_TEST_PLUGIN_NO_ENTRY)
                                    << QStringLiteral("not a Tessera plugin: no tessera_plugin_descriptor") << QString();
    QTest::newRow("missing file") << QStringLiteral("/nonexistent/plugin.so") << QStringLiteral("no such file") << QString();
  }
  void brokenPluginsAreRefused() {
    QFETCH(QString, path);
    QFETCH(QString, expected);
    QFETCH(QString, stagedSampler);
    const auto before = registryNames();
    const std::size_t loaded = loadedPlugins().size();
    for (int attempt = 0; attempt < 2; ++attempt) {  // a refusal is not remembered as a load
      auto r = loadPlugin(path.toStdString());
      QVERIFY(!r);
      const std::string message = r.error().message();
      qInfo("%s", message.c_str());
      QVERIFY2(contains(message, path.toStdString()), message.c_str());  // names the file
      QVERIFY2(contains(message, expected.toStdString()), message.c_str());
    }
    QCOMPARE(registryNames(), before);  // nothing of it stayed, not even what it staged first
    if (!stagedSampler.isEmpty()) QVERIFY(!samplerRegistry().find(stagedSampler.toStdString()));
    QCOMPARE(loadedPlugins().size(), loaded);
    const auto report = pluginLoadReport();
    QVERIFY(std::any_of(report.begin(), report.end(),
                        [&](const PluginLoadResult& e) { return e.path == path.toStdString() && !e.plugin; }));
  }

  void notASharedLibrary() {
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("garbage.so"));
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("this is not a shared library\n");
    f.close();
    const auto before = registryNames();
    auto r = loadPlugin(path.toStdString());
    QVERIFY(!r);
    qInfo("%s", r.error().message().c_str());
    QVERIFY2(contains(r.error().message(), "garbage.so: cannot load: "), r.error().message().c_str());
    QCOMPARE(registryNames(), before);
  }

  void folderWithGoodAndBadFiles() {
    QTemporaryDir dir;
    fillMixedFolder(dir);
    const auto results = loadPluginsFrom({dir.path().toStdString(), dir.filePath(QStringLiteral("missing")).toStdString()});
    QCOMPARE(results.size(), std::size_t(3));  // notes.txt is no candidate; a missing folder is skipped
    QVERIFY(contains(results[0].path, "a_lms.so"));
    QVERIFY2(results[0].plugin, results[0].plugin ? "" : results[0].plugin.error().message().c_str());
    QCOMPARE(results[0].plugin->name, std::string("lms-sampler"));
    QVERIFY(!results[1].plugin && contains(results[1].plugin.error().message(), "plugin interface 999"));
    QVERIFY(!results[2].plugin && contains(results[2].plugin.error().message(), "cannot load"));
  }

  void searchPath() {
    qputenv("TESSERA_PLUGIN_PATH", "/a/b::/c");
    const auto dirs = pluginSearchPath();
    qunsetenv("TESSERA_PLUGIN_PATH");
    QVERIFY(dirs.size() == 3);
    QCOMPARE(dirs[0], std::string("/a/b"));
    QCOMPARE(dirs[1], std::string("/c"));
    QVERIFY2(contains(dirs[2], "lib/tessera/plugins"), dirs[2].c_str());  // next to the executable's folder
  }

  void cliTakesPlugins() {
    QTemporaryDir dir;
    // Without the plugin there is no lms sampler; with it the shipped model samples with it.
    auto r = test::cli(QStringList{QStringLiteral("-q")} + sampleArgs(dir.filePath(QStringLiteral("none"))));
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("unknown sampler 'lms'"), r.err.constData());
    const QString images = dir.filePath(QStringLiteral("images"));
    r = test::cli(QStringList{QStringLiteral("-q"), QStringLiteral("--plugin"), QStringLiteral(TESSERA_PLUGIN_LMS)} + sampleArgs(images));
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(QDir(images).entryList({QStringLiteral("*.png")}, QDir::Files).size(), 2);

    // A plugin asked for that cannot load is bad input, with the loader's message.
    r = test::cli({QStringLiteral("--plugin"), QStringLiteral("/nonexistent/plugin.so"), QStringLiteral("info"), QStringLiteral("--system")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("/nonexistent/plugin.so: no such file"), r.err.constData());
    r = test::cli({QStringLiteral("--plugin"), QStringLiteral(TESSERA_TEST_PLUGIN_ABI), QStringLiteral("info"), QStringLiteral("--system")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("plugin interface 999"), r.err.constData());
  }

  // Issue 22: a plugin's code runs as it is loaded, before any check. The programs try each
  // plugin in a child process first: one that crashes or hangs there is refused with what
  // happened, and the program goes on (a search-path plugin) or stops with exit 2 (asked for).
  void crashingAndHangingPluginsAreVettedInAChild() {
    // 3 s; more under the sanitizers, whose report on a crash alone can take seconds.
    const int limit = 3 * tessera::testing::timeScale();
    const QMap<QString, QString> quick{{QStringLiteral("TESSERA_PLUGIN_VET_SECONDS"), QString::number(limit)}};
    auto r = test::cli({QStringLiteral("--plugin"), QStringLiteral(TESSERA_TEST_PLUGIN_CRASHES), QStringLiteral("info"),
                        QStringLiteral("--system")},
                       quick);
    QCOMPARE(r.code, 2);
#if defined(__SANITIZE_ADDRESS__)
    // AddressSanitizer catches the SIGSEGV itself, reports it and exits: the refusal ends
    // with its report.
    QVERIFY2(r.err.contains("ABORTING"), r.err.constData());
#else
    QVERIFY2(r.err.contains("crashed while loading in a separate process (signal 11"), r.err.constData());
#endif
    r = test::cli({QStringLiteral("--plugin"), QStringLiteral(TESSERA_TEST_PLUGIN_HANGS), QStringLiteral("info"),
                   QStringLiteral("--system")},
                  quick);
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains(QStringLiteral("did not finish loading within %1 s").arg(limit).toUtf8()),
             r.err.constData());
    // Refusals in the child keep their message; good plugins still load.
    r = test::cli({QStringLiteral("--plugin"), QStringLiteral(TESSERA_TEST_PLUGIN_THROWS), QStringLiteral("info"),
                   QStringLiteral("--system")},
                  quick);
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("registration throws"), r.err.constData());
    // In the search path: skipped with a warning, the others load and the command runs.
    QTemporaryDir dir;
    QVERIFY(QFile::copy(QStringLiteral(TESSERA_TEST_PLUGIN_CRASHES), dir.filePath(QStringLiteral("a_crash.so"))));
    QVERIFY(QFile::copy(QStringLiteral(TESSERA_PLUGIN_LMS), dir.filePath(QStringLiteral("b_lms.so"))));
    QMap<QString, QString> env = quick;
    env.insert(QStringLiteral("TESSERA_PLUGIN_PATH"), dir.path());
    r = test::cli({QStringLiteral("--json"), QStringLiteral("info"), QStringLiteral("--system")}, env);
    QVERIFY2(r.code == 0, r.err.constData());
#if defined(__SANITIZE_ADDRESS__)
    QVERIFY2(r.err.contains("a_crash.so") && r.err.contains("ABORTING"), r.err.constData());
#else
    QVERIFY2(r.err.contains("a_crash.so") && r.err.contains("crashed while loading"), r.err.constData());
#endif
    const QJsonArray plugins = test::json(r.out).value(QStringLiteral("plugins")).toArray();
    QCOMPARE(plugins.size(), 1);
    QCOMPARE(plugins[0].toObject().value(QStringLiteral("name")).toString(), QStringLiteral("lms-sampler"));
  }

  void cliSearchPath() {
    // The search path's plugins load by themselves; a bad one there is a warning only.
    QTemporaryDir dir;
    fillMixedFolder(dir);
    const QMap<QString, QString> env{{QStringLiteral("TESSERA_PLUGIN_PATH"), dir.path()}};
    auto r = test::cli({QStringLiteral("--json"), QStringLiteral("info"), QStringLiteral("--system")}, env);
    QVERIFY2(r.code == 0, r.err.constData());
    QVERIFY2(r.err.contains("c_garbage.so") && r.err.contains("b_abi.so"), r.err.constData());
    const QJsonObject info = test::json(r.out);
    const QJsonArray plugins = info.value(QStringLiteral("plugins")).toArray();
    QCOMPARE(plugins.size(), 1);
    QCOMPARE(plugins[0].toObject().value(QStringLiteral("name")).toString(), QStringLiteral("lms-sampler"));
    QCOMPARE(info.value(QStringLiteral("plugins_refused")).toArray().size(), 2);
    const QString images = dir.filePath(QStringLiteral("images"));
    r = test::cli(QStringList{QStringLiteral("-q")} + sampleArgs(images), env);
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(QDir(images).entryList({QStringLiteral("*.png")}, QDir::Files).size(), 2);
  }
};

TESSERA_TEST_MAIN(TestPlugins, Appless)
#include "test_plugins.moc"
