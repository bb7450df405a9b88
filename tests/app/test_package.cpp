// SPDX-License-Identifier: Apache-2.0
// The Debian package: CPack builds it from this build tree, it is unpacked into a
// temporary root, and the programs run from there with the models the package carries.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include <QDir>
#include "tests/support/test_main.h"
#include <QFileInfo>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>
#endif

namespace {

struct Ran {
  int code = -1;
  QByteArray out, err;
};

Ran run(const QString& program, const QStringList& args, const QString& workdir = {}, int timeoutMs = 300000) {
  QProcess p;
  if (!workdir.isEmpty()) p.setWorkingDirectory(workdir);
  QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
  env.remove(QStringLiteral("TESSERA_RESOURCES"));
  env.remove(QStringLiteral("TESSERA_PLUGIN_PATH"));
  p.setProcessEnvironment(env);
  p.start(program, args);
  if (!p.waitForFinished(timeoutMs * tessera::testing::timeScale())) return {};
  return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2, p.readAllStandardOutput(), p.readAllStandardError()};
}

}  // namespace

class TestPackage : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void debianPackageInstallsAndRuns() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString out = dir.filePath(QStringLiteral("out"));
    // The package, as `cpack -G DEB` in the build folder makes it (into our folder).
    Ran r = run(QStringLiteral(TESSERA_CPACK), {QStringLiteral("-G"), QStringLiteral("DEB"), QStringLiteral("-B"), out},
                QStringLiteral(TESSERA_BUILD_DIR));
    QVERIFY2(r.code == 0, (r.out + r.err).right(2000).constData());
    const QStringList debs = QDir(out).entryList({QStringLiteral("tessera_*.deb")}, QDir::Files);
    QCOMPARE(debs.size(), 1);
    const QString deb = QDir(out).filePath(debs.front());

    // Its control data: the dependencies the binaries need.
    r = run(QStringLiteral("dpkg-deb"), {QStringLiteral("-f"), deb, QStringLiteral("Depends")});
    QCOMPARE(r.code, 0);
    for (const char* dep : {"libtorch1.13", "libopenblas0-pthread", "libqt6widgets6", "libsqlite3-0", "libgl1"})
      QVERIFY2(r.out.contains(dep), (QByteArray("Depends lacks ") + dep + ": " + r.out).constData());

    // Unpacked into a root of its own.
    const QString root = dir.filePath(QStringLiteral("root"));
    r = run(QStringLiteral("dpkg-deb"), {QStringLiteral("-x"), deb, root});
    QVERIFY2(r.code == 0, r.err.constData());
    for (const char* file : {"usr/bin/tessera", "usr/bin/tessera-cli", "usr/share/applications/org.tessera.Tessera.desktop",
                             "usr/share/metainfo/org.tessera.Tessera.metainfo.xml", "usr/share/icons/hicolor/256x256/apps/tessera.png",
                             "usr/share/tessera/models/dit-fashion.safetensors", "usr/share/tessera/models/fashion-evaluator.safetensors",
                             "usr/lib/tessera/plugins/tessera_plugin_lms.so", "usr/lib/tessera/plugins/tessera_plugin_convnet.so"})
      QVERIFY2(QFileInfo::exists(QDir(root).filePath(QString::fromLatin1(file))), file);
    // Stripped: the binaries carry no debug sections.
    QVERIFY(QFileInfo(QDir(root).filePath(QStringLiteral("usr/bin/tessera-cli"))).size() < 40 * 1024 * 1024);

    const QString cli = QDir(root).filePath(QStringLiteral("usr/bin/tessera-cli"));
    r = run(cli, {QStringLiteral("--version")});
    QVERIFY2(r.code == 0, r.err.constData());
    QVERIFY(r.out.startsWith("tessera-cli "));
    // A small sample with the model the package carries and the example plugin's sampler,
    // which the packaged CLI finds in its own lib/tessera/plugins (the stripped binary
    // still exports what plugins link against).
    const QString images = dir.filePath(QStringLiteral("images"));
    r = run(cli, {QStringLiteral("-q"), QStringLiteral("sample"), QStringLiteral("--model"),
                  QDir(root).filePath(QStringLiteral("usr/share/tessera/models/dit-fashion.safetensors")), QStringLiteral("--class"),
                  QStringLiteral("Bag"), QStringLiteral("-n"), QStringLiteral("2"), QStringLiteral("--steps"), QStringLiteral("5"),
                  QStringLiteral("--sampler"), QStringLiteral("lms"),
                  QStringLiteral("--out"), images});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(QDir(images).entryList({QStringLiteral("*.png")}, QDir::Files).size(), 2);
  }
};

TESSERA_TEST_MAIN(TestPackage, Guiless)
#include "test_package.moc"
