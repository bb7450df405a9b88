// SPDX-License-Identifier: Apache-2.0
// tessera-cli sample: the official samplers' trajectories reproduced from the same noise,
// PNGs with their parameters, latents without an autoencoder, and bad input.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/formats/png.h"
#include "core/formats/safetensors.h"
#include "core/gallery/gallery_store.h"
#include "engine/generated_image.h"
#include "engine/model_file.h"
#include "models/registry.h"
#include "models/state_dict.h"
#include "tests/app/cli_runner.h"
#include "tests/support/test_main.h"
#include "tests/support/test_support.h"

#include <ATen/ATen.h>
#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>
#endif

using tessera::test::cli;
using tessera::test::data;
using tessera::test::json;
using tessera::test::must;
using namespace tessera;

namespace {

at::Tensor tensor(const QString& file, const char* name) {
  auto f = SafetensorsFile::open(file.toStdString());
  if (!f) qFatal("%s", f.error().message().c_str());
  return must(f->load(name));
}

/// A tiny pixel-space DiT with class names, written as a model file.
QString imageModel(const QTemporaryDir& dir, const nlohmann::json& defaults = nlohmann::json()) {
  const auto* entry = backboneRegistry().find("dit");
  nlohmann::json config = entry->tiny["config"];
  config["in_channels"] = 1;
  config["cfg_channels"] = 1;
  config["learn_sigma"] = false;
  auto built = entry->factory(Config::fromJson(config, "tiny"), BuildOptions());
  if (!built) qFatal("%s", built.error().message().c_str());
  torch::manual_seed(3);
  {
    torch::NoGradGuard guard;
    for (auto& p : (*built)->named_parameters())
      if (p.key().find("final_layer") != std::string::npos) p.value().normal_(0, 0.05);
  }
  GaussianDiffusionConfig process;
  process.learnSigma = false;
  nlohmann::json description{{"backbone", {{"kind", "dit"}, {"config", config}}},
                             {"process", process.toJson()},
                             {"classes", {{"count", 10}, {"null_class", true},
                                          {"names", {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                                     "Sneaker", "Bag", "Ankle boot"}}}},
                             {"data", {{"kind", "image"}, {"channels", 1}, {"size", {8, 8}}}}};
  if (!defaults.is_null()) description["defaults"] = defaults;
  const QString path = dir.filePath(QStringLiteral("image.safetensors"));
  auto ok = writeModelFile(path.toStdString(), description, stateDict(**built));
  if (!ok) qFatal("%s", ok.error().message().c_str());
  return path;
}

QString import(const QTemporaryDir& dir, const QString& family, const char* fixture) {
  const QString out = dir.filePath(QString::fromLatin1(fixture) + QStringLiteral(".safetensors"));
  auto r = cli({QStringLiteral("-q"), QStringLiteral("import"), QStringLiteral("--from"), family, QStringLiteral("--in"),
                data("dit/") + QString::fromLatin1(fixture) + QStringLiteral(".pt"), QStringLiteral("--out"), out,
                QStringLiteral("--heads"), QStringLiteral("4")});
  if (r.code != 0) qFatal("import failed: %s", r.err.constData());
  return out;
}

}  // namespace

class TestCliSample : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void officialTrajectories_data() {
    QTest::addColumn<QString>("family");
    QTest::addColumn<QString>("weights");
    QTest::addColumn<QString>("sampler");
    QTest::addColumn<int>("steps");
    QTest::addColumn<QString>("fixture");
    QTest::addColumn<QString>("classes");
    QTest::addColumn<bool>("stepNoise");
    QTest::newRow("DiT ddim (eta 0, ddim10)") << "dit" << "dit_p2_sigma" << "ddim" << 10 << "dit_ddim10_cfg4" << "1,7" << false;
    QTest::newRow("DiT ddpm (learned sigma, \"10\")") << "dit" << "dit_p2_sigma" << "ddpm" << 10 << "dit_ddpm10_cfg4" << "1,7" << true;
    QTest::newRow("DiT ddpm (fixed variance)") << "dit" << "dit_p4_nosigma" << "ddpm" << 10 << "dit_p4_ddpm10_cfg4" << "1,7" << true;
    QTest::newRow("SiT euler") << "sit" << "sit_p2_sigma" << "euler" << 10 << "sit_euler10_cfg4" << "3,9" << false;
    QTest::newRow("SiT heun") << "sit" << "sit_p2_sigma" << "heun" << 10 << "sit_heun10_cfg4" << "3,9" << false;
    QTest::newRow("SiT sde-euler (sample.py defaults)") << "sit" << "sit_p2_sigma" << "sde-euler" << 7 << "sit_sde_euler7_cfg4" << "3,9" << true;
    QTest::newRow("SiT sde-heun") << "sit" << "sit_p2_sigma" << "sde-heun" << 7 << "sit_sde_heun7_cfg4" << "3,9" << true;
  }
  void officialTrajectories() {
    QFETCH(QString, family);
    QFETCH(QString, weights);
    QFETCH(QString, sampler);
    QFETCH(int, steps);
    QFETCH(QString, fixture);
    QFETCH(QString, classes);
    QFETCH(bool, stepNoise);
    QTemporaryDir dir;
    const QString model = import(dir, family, weights.toLatin1().constData());
    const QString ref = data("samplers/") + fixture + QStringLiteral(".safetensors");
    const QString traj = dir.filePath(QStringLiteral("t.safetensors"));
    QStringList args{QStringLiteral("-q"), QStringLiteral("sample"), QStringLiteral("--model"), model, QStringLiteral("--sampler"), sampler,
                     QStringLiteral("--steps"), QString::number(steps), QStringLiteral("--cfg"), QStringLiteral("4"),
                     QStringLiteral("--class"), classes, QStringLiteral("-n"), QStringLiteral("2"), QStringLiteral("--noise"), ref,
                     QStringLiteral("--trajectory"), traj, QStringLiteral("--out"), dir.filePath(QStringLiteral("out"))};
    if (stepNoise) args << QStringLiteral("--step-noise") << ref;
    auto r = cli(args);
    QVERIFY2(r.code == 0, r.err.constData());
    const at::Tensor expected = tensor(ref, "x_t"), got = tensor(traj, "x_t");
    QCOMPARE(got.sizes().vec(), expected.sizes().vec());
    // The BLAS kernel (OPENBLAS_CORETYPE) changes fp32 rounding, and CFG 4 amplifies it over
    // the steps. Measured (every state): at most 7.6e-6 with SkylakeX kernels, 2.7e-5 with
    // Haswell, Zen, Sandybridge or Prescott; but DDIM from t = 900, whose x0 estimates
    // amplify the rounding about 150 times, 2.8e-6 with SkylakeX and up to 1.8e-4 (Haswell).
    const double tolerance = sampler == QLatin1String("ddim") ? 5e-4 : 1e-4;
    for (std::int64_t i = 0; i < expected.size(0); ++i) {
      const double rel = ((got[i] - expected[i]).norm() / expected[i].norm()).item<double>();
      QVERIFY2(rel < tolerance, qPrintable(QStringLiteral("state %1: relative difference %2").arg(i).arg(rel)));
    }
    if (sampler == QLatin1String("ddim")) {
      const at::Tensor x0 = tensor(ref, "x0"), gotX0 = tensor(traj, "x0");
      QVERIFY(((gotX0 - x0).norm() / x0.norm()).item<double>() < tolerance);
    }
    // t: the model's own time of every state (DDPM indices ending at −1 for the data)
    const at::Tensor t = tensor(traj, "t");
    QCOMPARE(t.size(0), expected.size(0));
    if (family == QLatin1String("dit"))
      QCOMPARE(t[0].item<double>(), sampler == QLatin1String("ddim") ? 900.0 : 999.0);
    QCOMPARE(t[-1].item<double>(), family == QLatin1String("dit") ? -1.0 : 1.0);
    QVERIFY(!QDir(dir.filePath(QStringLiteral("out"))).entryList({QStringLiteral("*.png")}).size());  // latents: no PNG
    QVERIFY(QFile::exists(dir.filePath(QStringLiteral("out/samples.safetensors"))));
    QVERIFY(r.out.contains("no PNG written"));
  }

  void pngsCarryTheirParameters() {
    QTemporaryDir dir;
    const QString model = imageModel(dir);
    const QString out = dir.filePath(QStringLiteral("png"));
    auto r = cli({QStringLiteral("--json"), QStringLiteral("-q"), QStringLiteral("sample"), QStringLiteral("--model"), model,
                  QStringLiteral("--class"), QStringLiteral("Trouser,bag"), QStringLiteral("-n"), QStringLiteral("3"),
                  QStringLiteral("--size"), QStringLiteral("8x12"), QStringLiteral("--steps"), QStringLiteral("6"),
                  QStringLiteral("--cfg"), QStringLiteral("2.5"), QStringLiteral("--seed"), QStringLiteral("40"),
                  QStringLiteral("--sampler"), QStringLiteral("dpmpp-2m"), QStringLiteral("--batch"), QStringLiteral("2"),
                  QStringLiteral("--out"), out});
    QVERIFY2(r.code == 0, r.err.constData());
    const QStringList files = QDir(out).entryList({QStringLiteral("*.png")}, QDir::Files, QDir::Name);
    QCOMPARE(files, (QStringList{QStringLiteral("00000_seed40_class1.png"), QStringLiteral("00001_seed41_class8.png"),
                                 QStringLiteral("00002_seed42_class1.png")}));
    auto png = readPng(QDir(out).filePath(files[1]).toStdString());
    QVERIFY(png);
    QCOMPARE(png->image.width, std::int64_t(8));
    QCOMPARE(png->image.height, std::int64_t(12));
    QCOMPARE(png->image.channels, std::int64_t(1));
    const auto meta = nlohmann::json::parse(png->text.at("tessera"));
    QCOMPARE(meta["sampler"].get<std::string>(), std::string("dpmpp-2m"));
    QCOMPARE(meta["steps"].get<int>(), 6);
    QCOMPARE(meta["guidance"]["scale"].get<double>(), 2.5);
    QCOMPARE(meta["image"]["seed"].get<int>(), 41);
    QCOMPARE(meta["image"]["class_name"].get<std::string>(), std::string("Bag"));
    QCOMPARE(meta["size"]["width"].get<int>(), 8);
    // the same settings again: the same bytes; image 2 alone (seed 42) matches too
    const QString again = dir.filePath(QStringLiteral("again"));
    r = cli({QStringLiteral("-q"), QStringLiteral("sample"), QStringLiteral("--model"), model, QStringLiteral("--class"),
             QStringLiteral("1"), QStringLiteral("--size"), QStringLiteral("8x12"), QStringLiteral("--steps"), QStringLiteral("6"),
             QStringLiteral("--cfg"), QStringLiteral("2.5"), QStringLiteral("--seed"), QStringLiteral("42"),
             QStringLiteral("--sampler"), QStringLiteral("dpmpp-2m"), QStringLiteral("--out"), again});
    QVERIFY2(r.code == 0, r.err.constData());
    auto alone = readPng(QDir(again).filePath(QStringLiteral("00000_seed42_class1.png")).toStdString());
    auto batched = readPng(QDir(out).filePath(files[2]).toStdString());
    QVERIFY(alone && batched);
    QVERIFY(alone->image.pixels == batched->image.pixels);
  }

  void modelDefaultsApply() {  // what `eval --record-defaults` writes is what `sample` uses when not told
    QTemporaryDir dir;
    const QString model = imageModel(dir, {{"sampler", "euler"}, {"steps", 4}, {"cfg", 3.0}, {"cfg_interval", {0.25, 0.75}}, {"clip_x0", true}});
    const QString out = dir.filePath(QStringLiteral("d"));
    auto r = cli({QStringLiteral("-q"), QStringLiteral("sample"), QStringLiteral("--model"), model, QStringLiteral("--class"),
                  QStringLiteral("2"), QStringLiteral("--out"), out});
    QVERIFY2(r.code == 0, r.err.constData());
    auto png = readPng(QDir(out).filePath(QStringLiteral("00000_seed0_class2.png")).toStdString());
    QVERIFY(png);
    auto meta = nlohmann::json::parse(png->text.at("tessera"));
    QCOMPARE(meta["sampler"].get<std::string>(), std::string("euler"));
    QCOMPARE(meta["steps"].get<int>(), 4);
    QCOMPARE(meta["guidance"]["scale"].get<double>(), 3.0);
    QCOMPARE(meta["guidance"]["interval"], nlohmann::json({0.25, 0.75}));
    // the command line wins over the model's defaults
    const QString told = dir.filePath(QStringLiteral("t"));
    r = cli({QStringLiteral("-q"), QStringLiteral("sample"), QStringLiteral("--model"), model, QStringLiteral("--class"),
             QStringLiteral("2"), QStringLiteral("--cfg-interval"), QStringLiteral("0,1"), QStringLiteral("--out"), told});
    QVERIFY2(r.code == 0, r.err.constData());
    png = readPng(QDir(told).filePath(QStringLiteral("00000_seed0_class2.png")).toStdString());
    QVERIFY(png);
    meta = nlohmann::json::parse(png->text.at("tessera"));
    QCOMPARE(meta["guidance"]["interval"], nlohmann::json({0.0, 1.0}));
    // a malformed interval in the file is ignored (defaults are advice), not a reason to refuse the model
    QTemporaryDir dir2;
    const QString odd = imageModel(dir2, {{"cfg_interval", {0.9, 0.1}}, {"steps", "many"}});
    r = cli({QStringLiteral("-q"), QStringLiteral("sample"), QStringLiteral("--model"), odd, QStringLiteral("--class"),
             QStringLiteral("2"), QStringLiteral("--steps"), QStringLiteral("3"), QStringLiteral("--out"), dir2.filePath(QStringLiteral("o"))});
    QVERIFY2(r.code == 0, r.err.constData());
    png = readPng(QDir(dir2.filePath(QStringLiteral("o"))).filePath(QStringLiteral("00000_seed0_class2.png")).toStdString());
    QVERIFY(png);
    meta = nlohmann::json::parse(png->text.at("tessera"));
    QCOMPARE(meta["guidance"]["interval"], nlohmann::json({0.0, 1.0}));  // the reversed interval was not used
  }

  void galleryStoresEveryImage() {
    QTemporaryDir dir;
    const QString model = imageModel(dir);
    const QString db = dir.filePath(QStringLiteral("sub/gallery.db"));  // its folder is created
    auto r = cli({QStringLiteral("--json"), QStringLiteral("-q"), QStringLiteral("sample"), QStringLiteral("--model"), model,
                  QStringLiteral("--class"), QStringLiteral("Bag"), QStringLiteral("-n"), QStringLiteral("2"),
                  QStringLiteral("--size"), QStringLiteral("8x12"), QStringLiteral("--steps"), QStringLiteral("4"),
                  QStringLiteral("--seed"), QStringLiteral("5"), QStringLiteral("--gallery"), db,
                  QStringLiteral("--out"), dir.filePath(QStringLiteral("out"))});
    QVERIFY2(r.code == 0, r.err.constData());
    auto store = GalleryStore::open(db.toStdString());
    QVERIFY(store);
    QCOMPARE(*store->count(), std::int64_t{2});
    auto ids = store->query({});
    auto rec = store->record(ids->back());  // oldest: image 0
    QVERIFY(rec);
    QCOMPARE(rec->seed, std::uint64_t{5});
    QCOMPARE(rec->className, std::string("Bag"));
    QCOMPARE(rec->width, std::int64_t{8});
    QCOMPARE(rec->height, std::int64_t{12});
    QCOMPARE(rec->steps, std::int64_t{4});
    QCOMPARE(rec->modelHash, *sha256File(model.toStdString()));
    // The stored PNG is the file written to --out, byte for byte.
    QFile file(dir.filePath(QStringLiteral("out/00000_seed5_class8.png")));
    QVERIFY(file.open(QIODevice::ReadOnly));
    QCOMPARE(*store->png(rec->id), file.readAll().toStdString());
    // Its metadata reproduces it through requestFromMetadata.
    auto request = requestFromMetadata(nlohmann::json::parse(rec->settings));
    QVERIFY2(request, request ? "" : request.error().message().c_str());
    QCOMPARE(request->seed, std::uint64_t{5});
    QCOMPARE(request->classes, std::vector<std::int64_t>{8});
    QCOMPARE(request->options.steps, std::int64_t{4});
    // Not a gallery: refused before any work, the file untouched.
    const QString bad = dir.filePath(QStringLiteral("bad.db"));
    {
      QFile f(bad);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(QByteArray(2048, 'z'));
    }
    r = cli({QStringLiteral("-q"), QStringLiteral("sample"), QStringLiteral("--model"), model, QStringLiteral("--gallery"), bad,
             QStringLiteral("--out"), dir.filePath(QStringLiteral("out2"))});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("not a Tessera gallery"), r.err.constData());
    QVERIFY(!QDir(dir.filePath(QStringLiteral("out2"))).exists());
  }

  void nativeDataReport() {  // the fashion-native crops' widths and heights (training issue, data part)
    auto r = cli({QStringLiteral("--json"), QStringLiteral("info"), QStringLiteral("--data"), QStringLiteral("fashion-native"),
                  QStringLiteral("--split"), QStringLiteral("test")});
    QVERIFY2(r.code == 0, r.err.constData());
    const auto j = nlohmann::json::parse(r.out.toStdString());
    QCOMPARE(j["images"].get<int>(), 10000);
    QCOMPARE(j["per_class"][1]["name"].get<std::string>(), std::string("Trouser"));
    QVERIFY(j["height"]["quantiles"]["50"].get<int>() <= 28);
    r = cli({QStringLiteral("info"), QStringLiteral("--data"), QStringLiteral("imagenet")});
    QCOMPARE(r.code, 2);
    QVERIFY(r.err.contains("fashion-native"));
    // an image folder: classes, counts and the unreadable files
    QTemporaryDir dir;
    QDir(dir.path()).mkpath(QStringLiteral("shoes"));
    Image8 img;
    img.width = 4;
    img.height = 3;
    img.channels = 1;
    img.pixels.assign(12, 7);
    QVERIFY(writePng(dir.filePath(QStringLiteral("shoes/a.png")).toStdString(), img));
    QFile junk(dir.filePath(QStringLiteral("shoes/b.jpg")));
    QVERIFY(junk.open(QIODevice::WriteOnly));
    junk.write("not a jpeg");
    junk.close();
    r = cli({QStringLiteral("--json"), QStringLiteral("info"), QStringLiteral("--data"), dir.path()});
    QVERIFY2(r.code == 0, r.err.constData());
    const auto folder = nlohmann::json::parse(r.out.toStdString());
    QCOMPARE(folder["images"].get<int>(), 1);
    QCOMPARE(folder["classes"][0]["name"].get<std::string>(), std::string("shoes"));
    QCOMPARE(folder["skipped"].get<int>(), 1);
    QVERIFY(r.err.contains("b.jpg"));
  }

  void badInput_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("message");
    QTest::newRow("unknown sampler") << QStringList{QStringLiteral("--sampler"), QStringLiteral("plms")} << "dpmpp-2m, euler, heun";
    QTest::newRow("size") << QStringList{QStringLiteral("--size"), QStringLiteral("7x8")} << "nearest valid sizes: 6x8, 8x8";
    QTest::newRow("class index") << QStringList{QStringLiteral("--class"), QStringLiteral("10")} << "classes 0 to 9";
    QTest::newRow("class name") << QStringList{QStringLiteral("--class"), QStringLiteral("Hat")} << "T-shirt/top, Trouser";
    QTest::newRow("steps") << QStringList{QStringLiteral("--steps"), QStringLiteral("0")} << "--steps: at least 1";
    QTest::newRow("cfg inf") << QStringList{QStringLiteral("--cfg"), QStringLiteral("inf")} << "finite guidance scale";
    QTest::newRow("cfg nan") << QStringList{QStringLiteral("--cfg"), QStringLiteral("nan")} << "finite guidance scale";
    QTest::newRow("noise shape") << QStringList{QStringLiteral("--noise"), data("samplers/dit_ddim10_cfg4.safetensors")} << "(1, 1, 8, 8)";
    QTest::newRow("cfg interval one value") << QStringList{QStringLiteral("--cfg-interval"), QStringLiteral("0.5")} << "expected LO,HI";
    QTest::newRow("cfg interval order") << QStringList{QStringLiteral("--cfg-interval"), QStringLiteral("0.8,0.2")} << "0 <= LO <= HI <= 1";
    QTest::newRow("cfg interval range") << QStringList{QStringLiteral("--cfg-interval"), QStringLiteral("0,1.5")} << "got '0,1.5'";
    QTest::newRow("cfg interval text") << QStringList{QStringLiteral("--cfg-interval"), QStringLiteral("0.2,high")} << "expected LO,HI";
    QTest::newRow("grid") << QStringList{QStringLiteral("--grid"), QStringLiteral("cosine")} << "uniform, quadratic";
  }
  void badInput() {
    QFETCH(QStringList, args);
    QFETCH(QString, message);
    QTemporaryDir dir;
    const QString model = imageModel(dir);
    auto r = cli(QStringList{QStringLiteral("sample"), QStringLiteral("--model"), model, QStringLiteral("--out"), dir.filePath(QStringLiteral("o"))} + args);
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains(message.toUtf8()), r.err.constData());
  }
};

TESSERA_TEST_MAIN(TestCliSample, Appless)
#include "test_cli_sample.moc"
