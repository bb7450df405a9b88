// SPDX-License-Identifier: Apache-2.0
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/system/blas.h"
#include "core/system/system_info.h"
#include "tests/support/test_main.h"

#include <nlohmann/json.hpp>
#include <QtTest>
#include <torch/cuda.h>
#endif

using namespace tessera;

class TestBlas : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void kernelChoice_data() {
    QTest::addColumn<bool>("avx");
    QTest::addColumn<bool>("avx2");
    QTest::addColumn<bool>("fma");
    QTest::addColumn<bool>("avx512");
    QTest::addColumn<QString>("kernel");
    QTest::newRow("AVX-512 F/BW/DQ/VL") << true << true << true << true << QStringLiteral("SkylakeX");
    QTest::newRow("AVX2 + FMA") << true << true << true << false << QStringLiteral("Haswell");
    QTest::newRow("AVX2 without FMA") << true << true << false << false << QStringLiteral("Sandybridge");
    QTest::newRow("AVX only") << true << false << false << false << QStringLiteral("Sandybridge");
    QTest::newRow("SSE only") << false << false << false << false << QString();
  }
  void kernelChoice() {
    QFETCH(bool, avx);
    QFETCH(bool, avx2);
    QFETCH(bool, fma);
    QFETCH(bool, avx512);
    QFETCH(QString, kernel);
    blas::CpuFeatures f;
    f.avx = avx;
    f.avx2 = avx2;
    f.fma = fma;
    f.avx512f = f.avx512bw = f.avx512dq = f.avx512vl = avx512;
    QCOMPARE(QString::fromStdString(blas::kernelForFeatures(f)), kernel);
  }

  void avx512NeedsAllFourSubsets() {
    blas::CpuFeatures f;
    f.avx = f.avx2 = f.fma = true;
    f.avx512f = f.avx512dq = f.avx512vl = true;  // no BW: SkylakeX kernels would fault
    QCOMPARE(blas::kernelForFeatures(f), std::string("Haswell"));
  }

  void ranks() {
    QCOMPARE(blas::kernelRank("Prescott"), 0);
    QCOMPARE(blas::kernelRank("Sandybridge"), 1);
    QCOMPARE(blas::kernelRank("Haswell"), 2);
    QCOMPARE(blas::kernelRank("Zen"), 2);
    QCOMPARE(blas::kernelRank("SkylakeX"), 3);
    QCOMPARE(blas::kernelRank("cooperlake"), 3);
    QCOMPARE(blas::kernelRank("nonsense"), 0);
  }

  void productIsCorrect() {
    // Whatever kernel the environment gives, LibTorch's products through it agree with
    // a double-precision reference.
    const double err = blas::gemmRelativeError();
    QVERIFY2(err < 1e-5, qPrintable(QString::number(err)));
  }

  void openBlasIsTheSystemBlas() {
    // The project installs libopenblas0-pthread; the reference BLAS is 14x slower.
    QVERIFY2(!blas::activeCoreName().empty(), "the process's BLAS is not OpenBLAS");
    QVERIFY(blas::activeConfig().find("OpenBLAS") != std::string::npos);
  }

  void threadsAreApplied() {
    setThreadCount(1);
    QCOMPARE(blas::openBlasThreads(), 1);
    auto info = querySystemInfo(false);
    QCOMPARE(info.intraOpThreads, 1);
    QCOMPARE(info.blasThreads, 1);
    setThreadCount(2);
    QCOMPARE(querySystemInfo(false).intraOpThreads, 2);
    QCOMPARE(querySystemInfo(false).gemmGflops, -1.0);
  }

  void infoJson() {
    auto j = nlohmann::json::parse(systemInfoJson(querySystemInfo(false)));
    QVERIFY(j["libtorch_version"].get<std::string>().size() >= 4);
    // What runs the networks: the CPU, or the CUDA devices where LibTorch sees any.
    const int cuda = j["cuda_devices"].get<int>();
    QCOMPARE(cuda, static_cast<int>(torch::cuda::device_count()));
    QCOMPARE(j["device"].get<std::string>(), cuda == 0   ? std::string("CPU")
                                             : cuda == 1 ? std::string("CUDA (1 device)")
                                                         : "CUDA (" + std::to_string(cuda) + " devices)");
    QVERIFY(j["blas"]["verified"].get<bool>());
    QVERIFY(!j.contains("gemm_1024_gflops"));
  }
};

TESSERA_TEST_MAIN(TestBlas, Appless)
#include "test_blas.moc"
