// SPDX-License-Identifier: Apache-2.0
// tessera-cli's contract: exit codes 0/1/2, one-line errors naming the fault, JSON output.
#include "core/formats/safetensors.h"

#include <ATen/ATen.h>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

namespace {

struct Run {
  int code = -1;
  QByteArray out;
  QByteArray err;
};

Run cli(const QStringList& args, const QMap<QString, QString>& env = {}, const QStringList& unset = {}) {
  QProcess p;
  QProcessEnvironment e = QProcessEnvironment::systemEnvironment();
  for (const auto& k : unset) e.remove(k);
  for (auto it = env.begin(); it != env.end(); ++it) e.insert(it.key(), it.value());
  p.setProcessEnvironment(e);
  p.start(QStringLiteral(TESSERA_CLI), args);
  if (!p.waitForFinished(120000)) return {};
  return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2, p.readAllStandardOutput(), p.readAllStandardError()};
}

QString data(const char* name) { return QStringLiteral(TESSERA_TEST_DATA_DIR "/") + QString::fromUtf8(name); }

QJsonObject json(const QByteArray& text) {
  QJsonParseError e{};
  auto doc = QJsonDocument::fromJson(text, &e);
  return doc.object();
}

}  // namespace

class TestCli : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void versionAndHelp() {
    auto v = cli({QStringLiteral("--version")});
    QCOMPARE(v.code, 0);
    QVERIFY2(v.out.startsWith("tessera-cli " TESSERA_VERSION_STRING), v.out.constData());
    QVERIFY(v.out.contains("LibTorch"));
    auto h = cli({QStringLiteral("--help")});
    QCOMPARE(h.code, 0);
    QVERIFY(h.out.contains("info"));
    QVERIFY(h.out.contains("bench"));
    auto sub = cli({QStringLiteral("info"), QStringLiteral("--help")});
    QCOMPARE(sub.code, 0);
    QVERIFY(sub.out.contains("--system"));
  }

  void badUsage_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("expected");
    QTest::newRow("no command") << QStringList{} << QStringLiteral("subcommand");
    QTest::newRow("unknown command") << QStringList{QStringLiteral("paint")} << QStringLiteral("paint");
    QTest::newRow("unknown flag") << QStringList{QStringLiteral("--colour")} << QStringLiteral("--colour");
    QTest::newRow("info without model") << QStringList{QStringLiteral("info")} << QStringLiteral("MODEL is required");
    QTest::newRow("bad threads") << QStringList{QStringLiteral("--threads"), QStringLiteral("0"), QStringLiteral("info"), QStringLiteral("--system")}
                                 << QStringLiteral("--threads");
    QTest::newRow("bench size") << QStringList{QStringLiteral("bench"), QStringLiteral("blas"), QStringLiteral("--sizes"), QStringLiteral("0")}
                                << QStringLiteral("size 0 is out of range");
    QTest::newRow("missing file") << QStringList{QStringLiteral("info"), QStringLiteral("/nonexistent/m.safetensors")}
                                  << QStringLiteral("/nonexistent/m.safetensors: no such file");
    QTest::newRow("malicious checkpoint") << QStringList{QStringLiteral("info"), data("malicious.pt")}
                                          << QStringLiteral("refusing global 'posix.system'");
    QTest::newRow("legacy checkpoint") << QStringList{QStringLiteral("info"), data("legacy_state_dict.pt")}
                                       << QStringLiteral("legacy torch.save format");
    QTest::newRow("not a model") << QStringList{QStringLiteral("info"), data("make_fixtures.py")}
                                 << QStringLiteral("neither a safetensors file nor a torch.save archive");
    QTest::newRow("directory") << QStringList{QStringLiteral("info"), QStringLiteral(TESSERA_TEST_DATA_DIR)}
                               << QStringLiteral("is a directory");
  }
  void badUsage() {
    QFETCH(QStringList, args);
    QFETCH(QString, expected);
    auto r = cli(args);
    QCOMPARE(r.code, 2);
    QVERIFY(r.out.isEmpty());
    const QString err = QString::fromUtf8(r.err).trimmed();
    QVERIFY2(err.contains(expected), qPrintable(err));
    QVERIFY2(!err.contains(QLatin1Char('\n')), qPrintable(err));  // one line
  }

  void truncatedSafetensors() {
    QTemporaryDir dir;
    QFile ref(data("reference.safetensors"));
    QVERIFY(ref.open(QIODevice::ReadOnly));
    const QByteArray bytes = ref.readAll();
    const QString path = dir.filePath(QStringLiteral("cut.safetensors"));
    QFile cut(path);
    QVERIFY(cut.open(QIODevice::WriteOnly));
    cut.write(bytes.left(bytes.size() - 10));
    cut.close();
    auto r = cli({QStringLiteral("info"), path});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("run past the end of the data"), r.err.constData());
    QVERIFY(r.err.contains(path.toUtf8()));
  }

  void infoSafetensors() {
    auto r = cli({QStringLiteral("info"), data("reference.safetensors")});
    QCOMPARE(r.code, 0);
    const QJsonObject j = json(r.out);
    QCOMPARE(j[QStringLiteral("format")].toString(), QStringLiteral("safetensors"));
    QCOMPARE(j[QStringLiteral("tensor_count")].toInt(), 13);
    QCOMPARE(j[QStringLiteral("parameters")].toInt(), 55);
    QCOMPARE(j[QStringLiteral("metadata")].toObject()[QStringLiteral("format")].toString(), QStringLiteral("pt"));
    const QJsonArray tensors = j[QStringLiteral("tensors")].toArray();
    QCOMPARE(tensors.size(), 13);
    QCOMPARE(tensors[0].toObject()[QStringLiteral("dtype")].toString(), QStringLiteral("I64"));  // data order
  }

  void infoTorch() {
    auto r = cli({QStringLiteral("info"), data("nested_checkpoint.pt")});
    QCOMPARE(r.code, 0);
    const QJsonObject j = json(r.out);
    QCOMPARE(j[QStringLiteral("format")].toString(), QStringLiteral("torch.save"));
    QCOMPARE(j[QStringLiteral("import_uses")].toString(), QStringLiteral("ema"));
    QCOMPARE(j[QStringLiteral("state_dicts")].toArray().size(), 3);
    QCOMPARE(j[QStringLiteral("metadata")].toObject()[QStringLiteral("epoch")].toString(), QStringLiteral("7"));
    bool found = false;
    for (const auto& t : j[QStringLiteral("tensors")].toArray()) {
      const auto o = t.toObject();
      if (o[QStringLiteral("name")].toString() == QStringLiteral("ema.0.weight")) {
        found = true;
        QCOMPARE(o[QStringLiteral("shape")].toArray().size(), 2);
        QCOMPARE(o[QStringLiteral("dtype")].toString(), QStringLiteral("F32"));
      }
    }
    QVERIFY(found);
  }

  void jsonErrors() {
    auto r = cli({QStringLiteral("--json"), QStringLiteral("info"), QStringLiteral("/nonexistent/x.pt")});
    QCOMPARE(r.code, 2);
    const QJsonObject j = json(r.err);
    QCOMPARE(j[QStringLiteral("event")].toString(), QStringLiteral("error"));
    QCOMPARE(j[QStringLiteral("exit_code")].toInt(), 2);
    QVERIFY(j[QStringLiteral("message")].toString().contains(QStringLiteral("/nonexistent/x.pt")));
  }

  void systemInfo() {
    auto r = cli({QStringLiteral("--threads"), QStringLiteral("1"), QStringLiteral("info"), QStringLiteral("--system")});
    QCOMPARE(r.code, 0);
    const QJsonObject j = json(r.out);
    QCOMPARE(j[QStringLiteral("intra_op_threads")].toInt(), 1);
    const QJsonObject b = j[QStringLiteral("blas")].toObject();
    QVERIFY(!b[QStringLiteral("kernel")].toString().isEmpty());
    QVERIFY(b[QStringLiteral("verified")].toBool());
    QVERIFY(b[QStringLiteral("gemm_1024_gflops")].toDouble() > 0);
  }

  void userKernelIsRespected() {
    auto r = cli({QStringLiteral("info"), QStringLiteral("--system")}, {{QStringLiteral("OPENBLAS_CORETYPE"), QStringLiteral("Haswell")}},
                 {QStringLiteral("TESSERA_BLAS_CHOSEN"), QStringLiteral("TESSERA_BLAS_FALLBACK")});
    QCOMPARE(r.code, 0);
    const QJsonObject b = json(r.out)[QStringLiteral("blas")].toObject();
    QCOMPARE(b[QStringLiteral("kernel")].toString(), QStringLiteral("Haswell"));
    QCOMPARE(b[QStringLiteral("kernel_source")].toString(), QStringLiteral("user"));
  }

  void automaticKernelIsTheBest() {
    // With nothing set, the kernel in use is at least as capable as the CPU allows:
    // either OpenBLAS found it, or tessera-cli re-executed itself with it.
    auto r = cli({QStringLiteral("info"), QStringLiteral("--system")}, {},
                 {QStringLiteral("OPENBLAS_CORETYPE"), QStringLiteral("TESSERA_BLAS_CHOSEN"),
                  QStringLiteral("TESSERA_BLAS_FALLBACK"), QStringLiteral("TESSERA_NO_BLAS_REEXEC")});
    QCOMPARE(r.code, 0);
    const QJsonObject j = json(r.out);
    const QJsonObject b = j[QStringLiteral("blas")].toObject();
    const QString source = b[QStringLiteral("kernel_source")].toString();
    QVERIFY2(source == QStringLiteral("openblas") || source == QStringLiteral("tessera"), qPrintable(source));
    const QStringList features = [&] {
      QStringList f;
      for (const auto& v : j[QStringLiteral("cpu")].toObject()[QStringLiteral("features")].toArray()) f << v.toString();
      return f;
    }();
    const QString kernel = b[QStringLiteral("kernel")].toString().toLower();
    if (features.contains(QStringLiteral("avx512bw")) && features.contains(QStringLiteral("avx512vl")) &&
        features.contains(QStringLiteral("avx512dq")))
      QVERIFY2(kernel == QStringLiteral("skylakex") || kernel == QStringLiteral("cooperlake") ||
                   kernel == QStringLiteral("sapphirerapids"),
               qPrintable(kernel));
    if (source == QStringLiteral("tessera")) QCOMPARE(j[QStringLiteral("omp_wait_policy")].toString(), QStringLiteral("PASSIVE"));
  }

  void faultyKernelFallsBack() {
    // As if a re-exec had chosen SkylakeX over OpenBLAS's own Haswell, and SkylakeX then
    // failed the start-up check: the program must re-execute with Haswell and warn.
    auto r = cli({QStringLiteral("info"), QStringLiteral("--system")},
                 {{QStringLiteral("OPENBLAS_CORETYPE"), QStringLiteral("SkylakeX")},
                  {QStringLiteral("TESSERA_BLAS_CHOSEN"), QStringLiteral("SkylakeX")},
                  {QStringLiteral("TESSERA_BLAS_DETECTED"), QStringLiteral("Haswell")},
                  {QStringLiteral("TESSERA_BLAS_TEST_FAULT"), QStringLiteral("SkylakeX")}},
                 {QStringLiteral("TESSERA_BLAS_FALLBACK")});
    QCOMPARE(r.code, 0);
    const QJsonObject b = json(r.out)[QStringLiteral("blas")].toObject();
    QCOMPARE(b[QStringLiteral("kernel")].toString(), QStringLiteral("Haswell"));
    QCOMPARE(b[QStringLiteral("kernel_source")].toString(), QStringLiteral("fallback"));
    QVERIFY(b[QStringLiteral("warning")].toString().contains(QStringLiteral("SkylakeX")));
    QVERIFY2(r.err.contains("failed its start-up check"), r.err.constData());
  }

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
    QCOMPARE(meta[QStringLiteral("process")].toObject()[QStringLiteral("kind")].toString(),
             family == QStringLiteral("dit") ? QStringLiteral("gaussian_diffusion") : QStringLiteral("interpolant"));

    // Inputs of case 1 (a non-square grid) of the official fixture.
    auto io = tessera::SafetensorsFile::open((data("dit/") + fixture + QStringLiteral("_io.safetensors")).toStdString());
    QVERIFY(io);
    const std::string inputs = dir.filePath(QStringLiteral("in.safetensors")).toStdString();
    QVERIFY(tessera::writeSafetensors(inputs, {{"x", *io->load("1.x")}, {"t", *io->load("1.t")}, {"y", *io->load("1.y")}}));
    const QString out = dir.filePath(QStringLiteral("out.safetensors"));
    r = cli({QStringLiteral("forward"), QStringLiteral("--model"), model, QStringLiteral("--inputs"), QString::fromStdString(inputs),
             QStringLiteral("--out"), out, QStringLiteral("--cfg"), QStringLiteral("4")});
    QVERIFY2(r.code == 0, r.err.constData());
    auto result = tessera::SafetensorsFile::open(out.toStdString());
    QVERIFY(result);
    for (const auto& [got, expected] : {std::make_pair("output", "1.output"), std::make_pair("output_cfg", "1.output_cfg")}) {
      const at::Tensor a = *result->load(got), b = *io->load(expected);
      const double err = (a - b).abs().max().item<double>() / b.abs().max().item<double>();
      QVERIFY2(err < 1e-5, qPrintable(QStringLiteral("%1: %2").arg(QString::fromLatin1(got)).arg(err)));
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

  void benchJsonLines() {
    auto r = cli({QStringLiteral("bench"), QStringLiteral("blas"), QStringLiteral("--sizes"), QStringLiteral("32,64"),
                  QStringLiteral("--seconds"), QStringLiteral("0.01")});
    QCOMPARE(r.code, 0);
    const auto lines = r.out.trimmed().split('\n');
    QCOMPARE(lines.size(), 2);
    for (int i = 0; i < 2; ++i) {
      const QJsonObject j = json(lines[i]);
      QCOMPARE(j[QStringLiteral("bench")].toString(), QStringLiteral("gemm_f32"));
      QCOMPARE(j[QStringLiteral("n")].toInt(), i == 0 ? 32 : 64);
      QVERIFY(j[QStringLiteral("gflops")].toDouble() > 0);
      QVERIFY(!j[QStringLiteral("kernel")].toString().isEmpty());
    }
    auto k = cli({QStringLiteral("bench"), QStringLiteral("blas"), QStringLiteral("--sizes"), QStringLiteral("32"),
                  QStringLiteral("--seconds"), QStringLiteral("0.01"), QStringLiteral("--kernels"), QStringLiteral("Prescott,Haswell")});
    QCOMPARE(k.code, 0);
    const auto klines = k.out.trimmed().split('\n');
    QCOMPARE(klines.size(), 2);
    QCOMPARE(json(klines[0])[QStringLiteral("kernel")].toString(), QStringLiteral("Prescott"));
    QCOMPARE(json(klines[1])[QStringLiteral("kernel")].toString(), QStringLiteral("Haswell"));
  }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
