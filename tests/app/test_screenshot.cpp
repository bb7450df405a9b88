// SPDX-License-Identifier: Apache-2.0
// `tessera --screenshot FILE.png` renders the loaded main window and exits.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include <QImage>
#include "tests/support/test_main.h"
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <set>
#endif

class TestScreenshot : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void writesLoadedWindow() {
    QTemporaryDir dir;
    const QString png = dir.filePath(QStringLiteral("main.png"));
    QProcess p;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert(QStringLiteral("QT_QPA_PLATFORM"), QStringLiteral("offscreen"));
    env.insert(QStringLiteral("XDG_CONFIG_HOME"), dir.filePath(QStringLiteral("config")));  // no stored geometry
    env.insert(QStringLiteral("XDG_DATA_HOME"), dir.filePath(QStringLiteral("data")));      // its own gallery
    p.setProcessEnvironment(env);
    p.start(QStringLiteral(TESSERA_GUI_EXE), {QStringLiteral("--screenshot"), png});
    QVERIFY(p.waitForFinished(120000 * tessera::testing::timeScale()));
    QCOMPARE(p.exitCode(), 0);
    QImage image(png);
    QVERIFY(!image.isNull());
    QCOMPARE(image.size(), QSize(1280, 800));  // the default layout
    // A real rendering, not a blank surface: many distinct colours.
    std::set<QRgb> colours;
    for (int y = 0; y < image.height(); y += 4)
      for (int x = 0; x < image.width(); x += 4) colours.insert(image.pixel(x, y));
    QVERIFY2(colours.size() > 20, qPrintable(QString::number(colours.size())));
  }

  void galleryBenchmarkPrintsItsFigures() {
    QProcess p;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert(QStringLiteral("QT_QPA_PLATFORM"), QStringLiteral("offscreen"));
    p.setProcessEnvironment(env);
    p.start(QStringLiteral(TESSERA_GUI_EXE), {QStringLiteral("--bench-gallery"), QStringLiteral("300")});
    QVERIFY(p.waitForFinished(120000 * tessera::testing::timeScale()));
    QCOMPARE(p.exitCode(), 0);
    QStringList events;
    for (const QByteArray& line : p.readAllStandardOutput().split('\n')) {
      const QJsonObject o = QJsonDocument::fromJson(line).object();
      if (o.isEmpty()) continue;
      events << o.value(QStringLiteral("event")).toString();
      if (o.value(QStringLiteral("event")).toString() == QStringLiteral("gallery_open"))
        QCOMPARE(o.value(QStringLiteral("entries")).toInt(), 300);
      if (o.value(QStringLiteral("event")).toString() == QStringLiteral("gallery_search") &&
          o.value(QStringLiteral("text")).toString() == QStringLiteral("keeper"))
        QCOMPARE(o.value(QStringLiteral("rows")).toInt(), 6);  // every 50th image is tagged
    }
    for (const char* e : {"gallery_fill", "gallery_open", "gallery_scroll", "gallery_filter", "gallery_search"})
      QVERIFY2(events.contains(QString::fromLatin1(e)), e);
  }

  void badArgumentsFail() {
    QProcess p;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert(QStringLiteral("QT_QPA_PLATFORM"), QStringLiteral("offscreen"));
    p.setProcessEnvironment(env);
    p.start(QStringLiteral(TESSERA_GUI_EXE), {QStringLiteral("--no-such-flag")});
    QVERIFY(p.waitForFinished(60000 * tessera::testing::timeScale()));
    QVERIFY(p.exitCode() != 0);
    QVERIFY(p.readAllStandardError().contains("no-such-flag"));
  }
};

TESSERA_TEST_MAIN(TestScreenshot, Guiless)
#include "test_screenshot.moc"
