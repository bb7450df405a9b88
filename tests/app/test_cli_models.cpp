// SPDX-License-Identifier: Apache-2.0
// tessera-cli import and forward against the outputs of the official DiT and SiT code;
// import recognising the family (--from auto); info --backbones and train --help list the fields.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/formats/safetensors.h"
#include "models/state_dict.h"
#include "tests/app/cli_runner.h"
#include "tests/models/tiny_backbone.h"
#include "tests/support/test_main.h"
#include "tests/support/test_support.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QJsonArray>
#include <QProcess>
#include <QTemporaryDir>
#include <signal.h>
#include <sys/stat.h>

#include <random>
#include <QRegularExpression>
#include <QtTest>
#endif

using tessera::test::cli;
using tessera::test::data;
using tessera::test::json;
using tessera::test::must;

class TestCliModels : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void importAndForwardMatchOfficial_data() {
    QTest::addColumn<QString>("family");
    QTest::addColumn<QString>("fixture");
    QTest::newRow("dit") << QStringLiteral("dit") << QStringLiteral("dit_p2_sigma");
    QTest::newRow("sit") << QStringLiteral("sit") << QStringLiteral("sit_p4_nosigma");
  }
  void importAndForwardMatchOfficial() {
    QFETCH(QString, family);
    QFETCH(QString, fixture);
    QTemporaryDir dir;
    const QString model = dir.filePath(QStringLiteral("m.safetensors"));
    const QString pt = data("dit/") + fixture + QStringLiteral(".pt");
    auto r = cli({QStringLiteral("import"), QStringLiteral("--from"), family, QStringLiteral("--in"), pt,
                  QStringLiteral("--out"), model, QStringLiteral("--heads"), QStringLiteral("4")});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(json(r.out)[QStringLiteral("backbone")].toString(), family);
    auto info = cli({QStringLiteral("info"), model});
    QCOMPARE(info.code, 0);
    const QJsonObject meta = json(info.out)[QStringLiteral("metadata")].toObject()[QStringLiteral("tessera.model")].toObject();
    QCOMPARE(meta[QStringLiteral("backbone")].toObject()[QStringLiteral("kind")].toString(), family);
    const QJsonObject summary = json(info.out)[QStringLiteral("model")].toObject();
    QCOMPARE(summary[QStringLiteral("backbone")].toString(), family);
    QCOMPARE(summary[QStringLiteral("classes")].toObject()[QStringLiteral("count")].toInt(), 10);
    QCOMPARE(summary[QStringLiteral("config")].toObject()[QStringLiteral("hidden_size")].toInt(), 32);
    QCOMPARE(meta[QStringLiteral("process")].toObject()[QStringLiteral("kind")].toString(),
             family == QStringLiteral("dit") ? QStringLiteral("gaussian_diffusion") : QStringLiteral("interpolant"));

    // Inputs of case 1 (a non-square grid) of the official fixture.
    auto io = tessera::SafetensorsFile::open((data("dit/") + fixture + QStringLiteral("_io.safetensors")).toStdString());
    QVERIFY(io);
    const std::string inputs = dir.filePath(QStringLiteral("in.safetensors")).toStdString();
    QVERIFY(tessera::writeSafetensors(inputs, {{"x", must(io->load("1.x"))}, {"t", must(io->load("1.t"))}, {"y", must(io->load("1.y"))}}));
    const QString out = dir.filePath(QStringLiteral("out.safetensors"));
    r = cli({QStringLiteral("forward"), QStringLiteral("--model"), model, QStringLiteral("--inputs"), QString::fromStdString(inputs),
             QStringLiteral("--out"), out, QStringLiteral("--cfg"), QStringLiteral("4")});
    QVERIFY2(r.code == 0, r.err.constData());
    auto result = tessera::SafetensorsFile::open(out.toStdString());
    QVERIFY(result);
    for (const auto& [got, expected] : {std::make_pair("output", "1.output"), std::make_pair("output_cfg", "1.output_cfg")}) {
      const at::Tensor a = must(result->load(got)), b = must(io->load(expected));
      const double err = (a - b).abs().max().item<double>() / b.abs().max().item<double>();
      // 1e-4: fp32 rounding depends on the BLAS kernel (1.2e-5 measured with Prescott's).
      QVERIFY2(err < 1e-4, qPrintable(QStringLiteral("%1: %2").arg(QString::fromLatin1(got)).arg(err)));
    }

    // Bad inputs: wrong channel count, labels out of range, odd batch with --cfg.
    const std::string bad = dir.filePath(QStringLiteral("bad.safetensors")).toStdString();
    QVERIFY(tessera::writeSafetensors(bad, {{"x", at::zeros({2, 3, 8, 8})}, {"t", at::zeros({2})}, {"y", at::zeros({2}, at::kLong)}}));
    r = cli({QStringLiteral("forward"), QStringLiteral("--model"), model, QStringLiteral("--inputs"), QString::fromStdString(bad),
             QStringLiteral("--out"), out});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("expected 4 channels, got 3"), r.err.constData());
    QVERIFY(tessera::writeSafetensors(bad, {{"x", at::zeros({1, 4, 8, 8})}, {"t", at::zeros({1})}, {"y", at::full({1}, 11, at::kLong)}}));
    r = cli({QStringLiteral("forward"), QStringLiteral("--model"), model, QStringLiteral("--inputs"), QString::fromStdString(bad),
             QStringLiteral("--out"), out, QStringLiteral("--cfg"), QStringLiteral("2")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("labels must lie in [0, 10]"), r.err.constData());
  }

  void inspectCapturesAttentionAndGuidance() {
    // The studio's capture, headless, on the shipped NiT at a native (tall) size.
    QTemporaryDir dir;
    const QString out = dir.filePath(QStringLiteral("capture.safetensors"));
    auto r = cli({QStringLiteral("--json"), QStringLiteral("inspect"), QStringLiteral("--model"), QStringLiteral("nit-fashion"),
                  QStringLiteral("--class"), QStringLiteral("Trouser"), QStringLiteral("--size"), QStringLiteral("12x28"),
                  QStringLiteral("--steps"), QStringLiteral("5"), QStringLiteral("--cfg"), QStringLiteral("2"),
                  QStringLiteral("--capture-steps"), QStringLiteral("0,4"), QStringLiteral("--out"), out});
    QVERIFY2(r.code == 0, r.err.constData());
    const QJsonObject j = json(r.out);
    QCOMPARE(j.value(QStringLiteral("tokens")).toInt(), 21);  // 3 × 7 patches of 4 px
    auto file = tessera::SafetensorsFile::open(out.toStdString());
    QVERIFY(file);
    const at::Tensor a = must(file->load("attention"));
    QCOMPARE(a.sizes().vec(), (std::vector<std::int64_t>{2, 6, 4, 21, 21}));
    QVERIFY(at::allclose(a.sum(-1), at::ones({2, 6, 4, 21}), 1e-4, 1e-5));
    const at::Tensor g = must(file->load("guidance"));
    QCOMPARE(g.sizes().vec(), (std::vector<std::int64_t>{5, 28, 12}));
    QVERIFY(file->metadata().count("tessera.inspection"));
    // The estimate alone, and bad requests named.
    r = cli({QStringLiteral("--json"), QStringLiteral("inspect"), QStringLiteral("--model"), QStringLiteral("nit-fashion"),
             QStringLiteral("--estimate")});
    QVERIFY2(r.code == 0, r.err.constData());
    QVERIFY(json(r.out).value(QStringLiteral("estimated_bytes")).toDouble() > 0);
    r = cli({QStringLiteral("inspect"), QStringLiteral("--model"), QStringLiteral("nit-fashion"), QStringLiteral("--blocks"),
             QStringLiteral("9"), QStringLiteral("--out"), out});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("layer 9 is out of range"), r.err.constData());
    r = cli({QStringLiteral("inspect"), QStringLiteral("--model"), QStringLiteral("nit-fashion"), QStringLiteral("--capture-steps"),
             QStringLiteral("x"), QStringLiteral("--out"), out});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("--capture-steps"), r.err.constData());
  }

  void nativeImagesOfTheirOwnSizes() {
    // NiT imported from the official fixture; x.0 … x.2 are its pack's images (4×4, 3×5,
    // 5×2 patches of 2 px), forwarded as one pack, against the official outputs.
    QTemporaryDir dir;
    const QString model = dir.filePath(QStringLiteral("nit.safetensors"));
    auto r = cli({QStringLiteral("import"), QStringLiteral("--from"), QStringLiteral("nit"), QStringLiteral("--in"),
                  data("nit/nit_p2.pt"), QStringLiteral("--out"), model, QStringLiteral("--heads"), QStringLiteral("2")});
    QVERIFY2(r.code == 0, r.err.constData());
    auto io = tessera::SafetensorsFile::open(data("nit/nit_p2_io.safetensors").toStdString());
    QVERIFY(io);
    const std::string inputs = dir.filePath(QStringLiteral("in.safetensors")).toStdString();
    tessera::NamedTensors in{{"t", must(io->load("t"))}, {"y", must(io->load("y"))}};
    for (int i = 0; i < 3; ++i) in.emplace_back("x." + std::to_string(i), must(io->load("latent" + std::to_string(i))));
    QVERIFY(tessera::writeSafetensors(inputs, in));
    const QString out = dir.filePath(QStringLiteral("out.safetensors"));
    r = cli({QStringLiteral("forward"), QStringLiteral("--model"), model, QStringLiteral("--inputs"), QString::fromStdString(inputs),
             QStringLiteral("--out"), out});
    QVERIFY2(r.code == 0, r.err.constData());
    auto result = tessera::SafetensorsFile::open(out.toStdString());
    QVERIFY(result);
    for (int i = 0; i < 3; ++i) {
      const at::Tensor a = must(result->load("output." + std::to_string(i))), b = must(io->load("out_latent" + std::to_string(i)));
      QCOMPARE(a.sizes().vec(), b.sizes().vec());
      QVERIFY2((a - b).abs().max().item<double>() / b.abs().max().item<double>() < 1e-4, qPrintable(QString::number(i)));
    }
    // Bad inputs name the image at fault; --cfg is DiT's batch rule, not for a list.
    in[3].second = at::zeros({4, 5, 4});
    QVERIFY(tessera::writeSafetensors(inputs, in));
    r = cli({QStringLiteral("forward"), QStringLiteral("--model"), model, QStringLiteral("--inputs"), QString::fromStdString(inputs),
             QStringLiteral("--out"), out});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("tensor 'x.1'") && r.err.contains("multiples of the patch size 2"), r.err.constData());
    r = cli({QStringLiteral("forward"), QStringLiteral("--model"), model, QStringLiteral("--inputs"), QString::fromStdString(inputs),
             QStringLiteral("--out"), out, QStringLiteral("--cfg"), QStringLiteral("2")});
    QCOMPARE(r.code, 2);
    // Sampling several sizes: one tensor per image (a latent model has no PNG).
    const QString samples = dir.filePath(QStringLiteral("s"));
    r = cli({QStringLiteral("sample"), QStringLiteral("--model"), model, QStringLiteral("--size"), QStringLiteral("8x12,12x8,4x4"),
             QStringLiteral("--steps"), QStringLiteral("3"), QStringLiteral("--extrapolation"), QStringLiteral("yarn"),
             QStringLiteral("--out"), samples});
    QVERIFY2(r.code == 0, r.err.constData());
    auto drawn = tessera::SafetensorsFile::open((samples + QStringLiteral("/samples.safetensors")).toStdString());
    QVERIFY(drawn);
    QCOMPARE(must(drawn->load("samples.0")).sizes().vec(), (std::vector<std::int64_t>{4, 12, 8}));
    QCOMPARE(must(drawn->load("samples.2")).sizes().vec(), (std::vector<std::int64_t>{4, 4, 4}));
    r = cli({QStringLiteral("sample"), QStringLiteral("--model"), model, QStringLiteral("--size"), QStringLiteral("8x12,7x8"),
             QStringLiteral("--out"), samples});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("7x8"), r.err.constData());
    r = cli({QStringLiteral("sample"), QStringLiteral("--model"), model, QStringLiteral("--extrapolation"), QStringLiteral("warp"),
             QStringLiteral("--out"), samples});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("yarn"), r.err.constData());
  }

  void importRefusals() {
    QTemporaryDir dir;
    const QString out = dir.filePath(QStringLiteral("m.safetensors"));
    auto r = cli({QStringLiteral("import"), QStringLiteral("--from"), QStringLiteral("dit"), QStringLiteral("--in"),
                  data("dit/dit_p2_sigma.pt"), QStringLiteral("--out"), out});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("give --preset or --heads"), r.err.constData());
    r = cli({QStringLiteral("import"), QStringLiteral("--from"), QStringLiteral("dit"), QStringLiteral("--in"),
             data("nested_checkpoint.pt"), QStringLiteral("--out"), out, QStringLiteral("--heads"), QStringLiteral("2")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("x_embedder.proj.weight"), r.err.constData());
    r = cli({QStringLiteral("import"), QStringLiteral("--from"), QStringLiteral("fit"), QStringLiteral("--in"),
             data("dit/dit_p2_sigma.pt"), QStringLiteral("--out"), out});
    QCOMPARE(r.code, 2);
    QVERIFY(!QFile::exists(out));
    r = cli({QStringLiteral("forward"), QStringLiteral("--model"), data("reference.safetensors"), QStringLiteral("--inputs"),
             data("reference.safetensors"), QStringLiteral("--out"), out});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("not a Tessera model"), r.err.constData());
  }

  // Issue 22: hostile checkpoints and requests end with a message and exit code 2, never a
  // signal. A patch of size 0 made the importers divide by zero (SIGFPE); a 25-digit block
  // index said only "stoll".
  void hostileImports_data() {
    QTest::addColumn<QString>("family");
    QTest::addColumn<QString>("what");
    QTest::addColumn<QString>("expected");
    for (const char* family : {"dit", "sit", "nit", "fit"}) {
      QTest::addRow("%s patch 0", family) << QString::fromLatin1(family) << QStringLiteral("patch0")
                                          << QStringLiteral("expected every size to be at least 1");
      QTest::addRow("%s block index", family)
          << QString::fromLatin1(family) << QStringLiteral("index")
          << QStringLiteral("block index 1234567890123456789012345 is out of range");
    }
  }
  void hostileImports() {
    QFETCH(QString, family);
    QFETCH(QString, what);
    QFETCH(QString, expected);
    QTemporaryDir dir;
    const QString in = dir.filePath(QStringLiteral("in.safetensors")),
                  out = dir.filePath(QStringLiteral("m.safetensors"));
    tessera::NamedTensors sd;
    if (what == QLatin1String("patch0")) {
      sd = {{"x_embedder.proj.weight", at::zeros({32, 4, 0, 0})},
            {"blocks.0.mlp.fc1.weight", at::zeros({128, 32})},
            {"y_embedder.embedding_table.weight", at::zeros({11, 32})},
            {"final_layer.linear.weight", at::zeros({16, 32})},
            {"pos_embed", at::zeros({1, 16, 32})}};
      if (family == QLatin1String("fit")) sd[0].second = at::zeros({32, 0});
    } else {
      sd = {{"x_embedder.proj.weight", family == QLatin1String("fit") ? at::zeros({32, 16}) : at::zeros({32, 4, 2, 2})},
            {"blocks.1234567890123456789012345.mlp.fc1.weight", at::zeros({128, 32})}};
    }
    QVERIFY(tessera::writeSafetensors(in.toStdString(), sd));
    const auto r = cli({QStringLiteral("import"), QStringLiteral("--from"), family, QStringLiteral("--in"), in,
                        QStringLiteral("--out"), out, QStringLiteral("--heads"), QStringLiteral("2")});
    QVERIFY2(r.code == 2, r.err.constData());
    QVERIFY2(r.err.contains(expected.toUtf8()), r.err.constData());
    QVERIFY(!QFile::exists(out));
  }

  // Issue 22: any 1- or 2-channel DiT import failed on cfg_channels (3 > the output
  // channels); the reference's forward_with_cfg guides all of them when there are fewer.
  void oneAndTwoChannelDiTImports_data() {
    QTest::addColumn<int>("channels");
    QTest::addColumn<bool>("learnSigma");
    QTest::addColumn<int>("guided");
    QTest::newRow("1 channel, learned sigma") << 1 << true << 2;
    QTest::newRow("1 channel") << 1 << false << 1;
    QTest::newRow("2 channels") << 2 << false << 2;
    QTest::newRow("2 channels, learned sigma") << 2 << true << 3;
  }
  void oneAndTwoChannelDiTImports() {
    QFETCH(int, channels);
    QFETCH(bool, learnSigma);
    QFETCH(int, guided);
    QTemporaryDir dir;
    const QString in = dir.filePath(QStringLiteral("official.safetensors")),
                  out = dir.filePath(QStringLiteral("m.safetensors"));
    auto backbone = tessera::test::tinyBackbone(
        "dit", {{"in_channels", channels}, {"learn_sigma", learnSigma}, {"cfg_channels", 1}}, 1);
    QVERIFY(tessera::writeSafetensors(in.toStdString(), tessera::stateDict(*backbone)));
    const auto r =
        cli({QStringLiteral("import"), QStringLiteral("--from"), QStringLiteral("dit"), QStringLiteral("--in"), in,
             QStringLiteral("--out"), out, QStringLiteral("--heads"), QStringLiteral("4")});
    QVERIFY2(r.code == 0, r.err.constData());
    auto file = tessera::SafetensorsFile::open(out.toStdString());
    QVERIFY(file);
    const auto description = nlohmann::json::parse(file->metadata().at("tessera.model"));
    QCOMPARE(description["backbone"]["config"]["cfg_channels"].get<int>(), guided);
  }

  // Issue 22: a 4 KB model file whose description claims width 8192 and depth 28 had the
  // network (about 90 GB) built before any shape was compared.
  void aDescriptionLargerThanItsWeightsIsRefused() {
    QTemporaryDir dir;
    const QString model = dir.filePath(QStringLiteral("huge.safetensors"));
    const nlohmann::json description = {
        {"format", 1},
        {"backbone",
         {{"kind", "dit"},
          {"config",
           {{"hidden_size", 8192}, {"depth", 28}, {"num_heads", 16}, {"patch_size", 2}, {"in_channels", 4}}}}}};
    QVERIFY(tessera::writeSafetensors(model.toStdString(), {{"pos_embed", at::zeros({1, 4, 8})}},
                                      {{"tessera.model", description.dump()}}));
    QElapsedTimer timer;
    timer.start();
    const auto r = cli({QStringLiteral("sample"), QStringLiteral("--model"), model, QStringLiteral("--out"),
                        dir.filePath(QStringLiteral("o"))});
    QVERIFY2(r.code == 2, r.err.constData());
    QVERIFY2(r.err.contains("refusing to build it") && r.err.contains("hidden_size 8192"), r.err.constData());
    QVERIFY2(timer.elapsed() < 30000 * tessera::testing::timeScale(), "refused before anything is built");
    // An empty config means the defaults (DiT-XL/2, 675 M weights): measured the same way.
    const QString bare = dir.filePath(QStringLiteral("bare.safetensors"));
    const nlohmann::json empty = {{"format", 1}, {"backbone", {{"kind", "dit"}, {"config", nlohmann::json::object()}}}};
    QVERIFY(tessera::writeSafetensors(bare.toStdString(), {{"pos_embed", at::zeros({1, 4, 8})}},
                                      {{"tessera.model", empty.dump()}}));
    const auto d = cli({QStringLiteral("sample"), QStringLiteral("--model"), bare, QStringLiteral("--out"),
                        dir.filePath(QStringLiteral("o"))});
    QVERIFY2(d.code == 2, d.err.constData());
    QVERIFY2(d.err.contains("refusing to build it") && d.err.contains("hidden_size 1152"), d.err.constData());
    // A U-Net has no hidden_size: its state dict is computed from the description (here
    // 4096 channels at six levels, about 10¹¹ weights) and compared before anything is built.
    const QString unet = dir.filePath(QStringLiteral("unet.safetensors"));
    const nlohmann::json wide = {
        {"format", 1},
        {"backbone",
         {{"kind", "unet"},
          {"config", {{"model_channels", 4096}, {"channel_mult", {1, 2, 4, 8, 16, 32}}, {"image_size", 64}}}}}};
    QVERIFY(tessera::writeSafetensors(unet.toStdString(), {{"time_embed.0.weight", at::zeros({4, 1})}},
                                      {{"tessera.model", wide.dump()}}));
    timer.restart();
    const auto u = cli({QStringLiteral("sample"), QStringLiteral("--model"), unet, QStringLiteral("--out"),
                        dir.filePath(QStringLiteral("o"))});
    QVERIFY2(u.code == 2, u.err.constData());
    QVERIFY2(u.err.contains("state dict does not fit") && u.err.contains("time_embed.0.weight"), u.err.constData());
    QVERIFY2(timer.elapsed() < 30000 * tessera::testing::timeScale(), "refused before anything is built");
  }

  // bench sample on a registry preset builds a model without a description; the memory
  // estimate read the description and threw ("cannot use value() with null") for every preset.
  void benchSampleOnPresets() {
    for (const auto& [preset, channels] : {std::pair{"DiT-S/2", "4"}, std::pair{"LDM-cin256-v2", "3"}}) {
      const auto r = cli({QStringLiteral("bench"), QStringLiteral("sample"), QStringLiteral("--preset"),
                          QString::fromLatin1(preset), QStringLiteral("--size"), QStringLiteral("8x8"),
                          QStringLiteral("--channels"), QString::fromLatin1(channels), QStringLiteral("--steps"),
                          QStringLiteral("1"), QStringLiteral("--batches"), QStringLiteral("1"),
                          QStringLiteral("--repeats"), QStringLiteral("1")});
      QVERIFY2(r.code == 0, r.err.constData());
      const auto j = nlohmann::json::parse(r.out.trimmed().split('\n').back().toStdString());
      QCOMPARE(QString::fromStdString(j.value("model", "")), QString::fromLatin1(preset));
      QVERIFY(j.value("per_step_ms", 0.0) > 0);
    }
  }

  // Issue 22: an output that is an input is refused before anything is written
  // (sample --trajectory pointed at the model overwrote it and exited 0).
  void outputsNeverOverwriteInputs() {
    QTemporaryDir dir;
    const QString model = dir.filePath(QStringLiteral("dit.safetensors"));
    QVERIFY(QFile::copy(QStringLiteral(TESSERA_SOURCE_DIR "/resources/models/dit-fashion.safetensors"), model));
    auto r =
        cli({QStringLiteral("sample"), QStringLiteral("--model"), model, QStringLiteral("--steps"), QStringLiteral("2"),
             QStringLiteral("--trajectory"), model, QStringLiteral("--out"), dir.filePath(QStringLiteral("out"))});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("refusing to overwrite"), r.err.constData());
    r = cli({QStringLiteral("inspect"), QStringLiteral("--model"), model, QStringLiteral("--out"), model});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("refusing to overwrite"), r.err.constData());
    r = cli({QStringLiteral("import"), QStringLiteral("--in"), model, QStringLiteral("--out"), model});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("refusing to overwrite"), r.err.constData());
    // eval's evaluator and train's fine-tuning start (the run writes --out/model.safetensors).
    r = cli({QStringLiteral("eval"), QStringLiteral("--model"), model, QStringLiteral("--train-evaluator"), model});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("refusing to overwrite"), r.err.constData());
    const QString config = dir.filePath(QStringLiteral("c.json"));
    QVERIFY(QFile::copy(QStringLiteral(TESSERA_SOURCE_DIR "/resources/models/dit-fashion-rewarm.json"), config));
    QVERIFY(QFile::copy(model, dir.filePath(QStringLiteral("model.safetensors"))));
    r = cli({QStringLiteral("train"), QStringLiteral("--config"), config, QStringLiteral("--out"), dir.path(),
             QStringLiteral("--init"), dir.filePath(QStringLiteral("model.safetensors"))});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("refusing to overwrite"), r.err.constData());
    QCOMPARE(tessera::test::readFile(model.toStdString()),
             tessera::test::readFile(TESSERA_SOURCE_DIR "/resources/models/dit-fashion.safetensors"));
  }

  // Issue 22: a named pipe given as a model blocked for ever; --threads 1024 was accepted.
  void pipesAndAbsurdThreadCounts() {
    QTemporaryDir dir;
    const QString fifo = dir.filePath(QStringLiteral("model.safetensors"));
    QCOMPARE(::mkfifo(fifo.toLocal8Bit().constData(), 0600), 0);
    for (const QStringList& args : {QStringList{QStringLiteral("info"), fifo},
                                    QStringList{QStringLiteral("sample"), QStringLiteral("--model"), fifo,
                                                QStringLiteral("--out"), dir.filePath(QStringLiteral("o"))}}) {
      const auto r = cli(args, {}, {}, 30000);
      QVERIFY2(r.code == 2, r.err.constData());
      QVERIFY2(r.err.contains("not a regular file") || r.err.contains("neither a safetensors file"), r.err.constData());
    }
    const auto r =
        cli({QStringLiteral("--threads"), QStringLiteral("1024"), QStringLiteral("info"), QStringLiteral("--system")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("--threads"), r.err.constData());
  }

  // Issue 22: requests whose memory need is absurd are refused before anything is
  // allocated, with the estimate in the message (-n 10⁹ built an 8 GB class list first;
  // NiT at 16384x16384 allocated until the allocator failed); and the nearest valid size
  // of 100000x100000 is no longer 100000x100000.
  void absurdRequestsAreRefusedWithAnEstimate() {
    QTemporaryDir dir;
    const QString out = dir.filePath(QStringLiteral("o"));
    QElapsedTimer timer;
    timer.start();
    auto r = cli({QStringLiteral("sample"), QStringLiteral("--model"), QStringLiteral("dit-fashion"),
                  QStringLiteral("-n"), QStringLiteral("1000000000"), QStringLiteral("--out"), out});
    QVERIFY2(r.code == 2, r.err.constData());
    QVERIFY2(r.err.contains("1000000000 images of 28x28") && r.err.contains("of memory") && r.err.contains("available"),
             r.err.constData());
    r = cli({QStringLiteral("sample"), QStringLiteral("--model"), QStringLiteral("nit-fashion"),
             QStringLiteral("--size"), QStringLiteral("16384x16384"), QStringLiteral("--out"), out});
    QVERIFY2(r.code == 2, r.err.constData());
    QVERIFY2(r.err.contains("need about") && r.err.contains("GB of memory"), r.err.constData());
    QVERIFY2(timer.elapsed() < 60000 * tessera::testing::timeScale(), "refusals take seconds, not an allocation");
    r = cli({QStringLiteral("sample"), QStringLiteral("--model"), QStringLiteral("dit-fashion"),
             QStringLiteral("--size"), QStringLiteral("100000x100000"), QStringLiteral("--out"), out});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("nearest valid sizes: 16384x16384"), r.err.constData());
    QVERIFY(!QFileInfo::exists(out) || QDir(out).isEmpty());
  }

  void importRecognisesTheFamily_data() {
    QTest::addColumn<QString>("fixture");
    QTest::addColumn<QString>("family");
    QTest::addColumn<QString>("heads");
    QTest::newRow("dit") << QStringLiteral("dit/dit_p2_sigma.pt") << QStringLiteral("dit") << QStringLiteral("4");
    QTest::newRow("dit, no sigma") << QStringLiteral("dit/dit_p4_nosigma.pt") << QStringLiteral("dit")
                                   << QStringLiteral("4");
    QTest::newRow("sit") << QStringLiteral("dit/sit_p2_sigma.pt") << QStringLiteral("sit") << QStringLiteral("4");
    QTest::newRow("sit, no sigma") << QStringLiteral("dit/sit_p4_nosigma.pt") << QStringLiteral("sit")
                                   << QStringLiteral("4");
    QTest::newRow("fit v1") << QStringLiteral("fit/fit_v1.pt") << QStringLiteral("fit") << QStringLiteral("2");
    QTest::newRow("fitv2") << QStringLiteral("fit/fitv2.pt") << QStringLiteral("fit") << QStringLiteral("2");
    QTest::newRow("nit p2") << QStringLiteral("nit/nit_p2.pt") << QStringLiteral("nit") << QStringLiteral("2");
    QTest::newRow("nit lora") << QStringLiteral("nit/nit_lora.pt") << QStringLiteral("nit") << QStringLiteral("2");
  }
  void importRecognisesTheFamily() {
    // --from auto (the default) on the official fixtures writes what --from FAMILY does.
    QFETCH(QString, fixture);
    QFETCH(QString, family);
    QFETCH(QString, heads);
    QTemporaryDir dir;
    const QString pt = data("") + fixture;
    const QString detected = dir.filePath(QStringLiteral("auto.safetensors")),
                  named = dir.filePath(QStringLiteral("named.safetensors"));
    auto r = cli({QStringLiteral("import"), QStringLiteral("--in"), pt, QStringLiteral("--out"), detected,
                  QStringLiteral("--heads"), heads});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(json(r.out)[QStringLiteral("backbone")].toString(), family);
    QVERIFY2(r.err.contains("recognised as a " + family.toUtf8()), r.err.constData());
    r = cli({QStringLiteral("import"), QStringLiteral("--from"), family, QStringLiteral("--in"), pt,
             QStringLiteral("--out"), named, QStringLiteral("--heads"), heads});
    QVERIFY2(r.code == 0, r.err.constData());
    auto model = [](const QString& path) {
      auto info = cli({QStringLiteral("info"), path});
      return json(info.out)[QStringLiteral("metadata")].toObject()[QStringLiteral("tessera.model")].toObject();
    };
    const QJsonObject a = model(detected), b = model(named);
    QCOMPARE(a[QStringLiteral("backbone")].toObject()[QStringLiteral("kind")].toString(), family);
    QCOMPARE(a[QStringLiteral("backbone")], b[QStringLiteral("backbone")]);
    QCOMPARE(a[QStringLiteral("process")], b[QStringLiteral("process")]);
    QCOMPARE(a[QStringLiteral("classes")], b[QStringLiteral("classes")]);
  }

  void importAutoRefusals() {
    QTemporaryDir dir;
    const QString out = dir.filePath(QStringLiteral("m.safetensors"));
    // DiT and SiT share every tensor: a file name naming neither cannot be decided.
    const QString anonymous = dir.filePath(QStringLiteral("checkpoint-0400000.pt"));
    QVERIFY(QFile::copy(data("dit/dit_p2_sigma.pt"), anonymous));
    auto r = cli({QStringLiteral("import"), QStringLiteral("--from"), QStringLiteral("auto"), QStringLiteral("--in"),
                  anonymous, QStringLiteral("--out"), out, QStringLiteral("--heads"), QStringLiteral("4")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("--from dit or --from sit"), r.err.constData());
    QVERIFY(!QFile::exists(out));
    // Tensors no backbone recognises.
    r = cli({QStringLiteral("import"), QStringLiteral("--in"), data("reference.safetensors"), QStringLiteral("--out"),
             out});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("no backbone recognises") && r.err.contains("--from"), r.err.constData());
    // An unknown --from names the known ones.
    r = cli({QStringLiteral("import"), QStringLiteral("--from"), QStringLiteral("dat"), QStringLiteral("--in"),
             data("dit/dit_p2_sigma.pt"), QStringLiteral("--out"), out});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("known: auto, dit, fit, nit, sit"), r.err.constData());
  }

  // Issue 22: `import` killed with SIGKILL at random moments over an earlier model, 20
  // times: the model file is always whole (the earlier model or the new one: it opens and
  // every tensor loads), and the temporary files the kills leave are swept by the next
  // import into that folder.
  void importKilledMidWriteLeavesOneWholeModel() {
    QTemporaryDir dir;
    const QString out = dir.filePath(QStringLiteral("model.safetensors"));
    auto args = [&](int k) {
      const QString fixture = data(k % 2 ? "dit/dit_p2_sigma.pt" : "dit/dit_p4_nosigma.pt");
      return QStringList{QStringLiteral("-q"),      QStringLiteral("import"),
                         QStringLiteral("--from"),  QStringLiteral("dit"),
                         QStringLiteral("--in"),    fixture,
                         QStringLiteral("--out"),   out,
                         QStringLiteral("--heads"), QStringLiteral("4")};
    };
    auto r = cli(args(0));
    QVERIFY2(r.code == 0, r.err.constData());
    QElapsedTimer whole;
    whole.start();
    r = cli(args(1));
    QVERIFY2(r.code == 0, r.err.constData());
    const int runMs = static_cast<int>(whole.elapsed());
    std::mt19937 rng(22);
    int killedBeforeTheEnd = 0;
    for (int k = 0; k < 20; ++k) {
      QProcess p;
      p.start(QStringLiteral(TESSERA_CLI), args(k));
      QVERIFY(p.waitForStarted());
      QTest::qWait(static_cast<int>(rng() % static_cast<unsigned>(runMs + 1)));
      killedBeforeTheEnd += p.state() == QProcess::Running;
      ::kill(static_cast<pid_t>(p.processId()), SIGKILL);
      QVERIFY(p.waitForFinished(10000));
      auto file = tessera::SafetensorsFile::open(out.toStdString());
      QVERIFY2(file, file ? "" : file.error().message().c_str());
      auto all = file->loadAll();
      QVERIFY2(all && !all->empty(), all ? "no tensors" : all.error().message().c_str());
    }
    QVERIFY2(killedBeforeTheEnd >= 10, qPrintable(QString::number(killedBeforeTheEnd)));
    r = cli(args(0));
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden), QStringList{QStringLiteral("model.safetensors")});
  }

  void infoListsTheBackbones() {
    auto r = cli({QStringLiteral("info"), QStringLiteral("--backbones")});
    QVERIFY2(r.code == 0, r.err.constData());
    for (const char* text : {"dit:", "sit:", "fit:", "nit:", "hidden_size", "DiT-XL/2", "NiT-XXL", "import --from fit"})
      QVERIFY2(r.out.contains(text), text);
    r = cli({QStringLiteral("--json"), QStringLiteral("info"), QStringLiteral("--backbones")});
    QVERIFY2(r.code == 0, r.err.constData());
    const QJsonArray kinds = QJsonDocument::fromJson(r.out).array();
    QVERIFY(kinds.size() >= 4);
    bool sawSit = false;
    for (const auto& k : kinds) {
      const QJsonObject o = k.toObject();
      QVERIFY(!o[QStringLiteral("fields")].toArray().isEmpty());
      if (o[QStringLiteral("name")].toString() != QLatin1String("sit")) continue;
      sawSit = true;
      QCOMPARE(o[QStringLiteral("capabilities")].toObject()[QStringLiteral("predictions")].toArray().first().toString(),
               QStringLiteral("velocity"));
      for (const auto& f : o[QStringLiteral("fields")].toArray())
        if (f.toObject()[QStringLiteral("key")].toString() == QLatin1String("drop_sigma_output"))
          QCOMPARE(f.toObject()[QStringLiteral("default")].toBool(), true);  // SiT's own defaults
    }
    QVERIFY(sawSit);
    r = cli({QStringLiteral("info"), QStringLiteral("--backbones"), QStringLiteral("--system")});
    QCOMPARE(r.code, 2);
  }

  // train --help lists each backbone's configuration fields from its config table.
  void trainHelpListsTheConfigFields() {
    const auto r = cli({QStringLiteral("train"), QStringLiteral("--help")});
    QVERIFY2(r.code == 0, r.err.constData());
    QVERIFY2(r.out.contains("--config"), r.out.constData());
    for (const char* text : {"dit:", "fit:", "nit:", "sit:", "fields (backbone.config)", "context_size"})
      QVERIFY2(r.out.contains(text), text);
    const QString out = QString::fromUtf8(r.out);
    QVERIFY2(out.contains(QRegularExpression(QStringLiteral("hidden_size +integer = 1152 in \\[4, 65536\\]"))),
             r.out.constData());
  }
};

TESSERA_TEST_MAIN(TestCliModels, Guiless)
#include "test_cli_models.moc"
