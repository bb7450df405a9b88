// SPDX-License-Identifier: Apache-2.0
// tessera-cli's contract: exit codes 0/1/2, one-line errors naming the fault, JSON output.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "tests/app/cli_runner.h"
#include "tests/support/test_main.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>
#endif

namespace {
using tessera::test::cli;
using tessera::test::data;
using tessera::test::json;
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
                  QStringLiteral("TESSERA_BLAS_FALLBACK"), QStringLiteral("TESSERA_NO_BLAS_REEXEC"),
                  QStringLiteral("TESSERA_REEXECUTED"), QStringLiteral("OMP_WAIT_POLICY"), QStringLiteral("GOMP_SPINCOUNT")});
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
    // and idle OpenMP threads do not spin against OpenBLAS's pool
    QCOMPARE(j[QStringLiteral("omp_wait_policy")].toString(), QStringLiteral("PASSIVE"));
  }

  void faultyKernelFallsBack() {
    // As if a re-exec had chosen SkylakeX over OpenBLAS's own Haswell, and SkylakeX then
    // failed the start-up check: the program must re-execute with Haswell and warn.
    auto r = cli({QStringLiteral("info"), QStringLiteral("--system")},
                 {{QStringLiteral("OPENBLAS_CORETYPE"), QStringLiteral("SkylakeX")},
                  {QStringLiteral("TESSERA_BLAS_CHOSEN"), QStringLiteral("SkylakeX")},
                  {QStringLiteral("TESSERA_BLAS_DETECTED"), QStringLiteral("Haswell")},
                  {QStringLiteral("TESSERA_BLAS_TEST_FAULT"), QStringLiteral("SkylakeX")}},
                 {QStringLiteral("TESSERA_BLAS_FALLBACK"), QStringLiteral("TESSERA_REEXECUTED")});
    QCOMPARE(r.code, 0);
    const QJsonObject b = json(r.out)[QStringLiteral("blas")].toObject();
    QCOMPARE(b[QStringLiteral("kernel")].toString(), QStringLiteral("Haswell"));
    QCOMPARE(b[QStringLiteral("kernel_source")].toString(), QStringLiteral("fallback"));
    QVERIFY(b[QStringLiteral("warning")].toString().contains(QStringLiteral("SkylakeX")));
    QVERIFY2(r.err.contains("failed its start-up check"), r.err.constData());
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

TESSERA_TEST_MAIN(TestCli, Guiless)
#include "test_cli.moc"
