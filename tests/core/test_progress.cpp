// SPDX-License-Identifier: Apache-2.0
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/util/progress.h"
#include "tests/support/test_main.h"

#include <nlohmann/json.hpp>
#include <QtTest>

#include <sstream>
#endif

using namespace tessera;

class TestProgress : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void durations() {
    QCOMPARE(Progress::formatDuration(0), std::string("0:00"));
    QCOMPARE(Progress::formatDuration(125.4), std::string("2:05"));
    QCOMPARE(Progress::formatDuration(3723), std::string("1:02:03"));
    QCOMPARE(Progress::formatDuration(-1), std::string("?"));
  }

  void bar() {
    // 25 of 100 in 10 s: 2.5 it/s, 75 left -> 30 s.
    QCOMPARE(Progress::renderBar("train", 25, 100, 10.0, "loss 0.5", 20),
             std::string("train  [#####...............]  25/100  2.50 it/s  ETA 0:30  loss 0.5"));
    QCOMPARE(Progress::renderBar("x", 4, 4, 2.0, "", 4), std::string("x  [####]  4/4  2.00 it/s  0:02"));
    QCOMPARE(Progress::renderBar("x", 0, 0, 0.0, "", 4), std::string("x  [....]  0/0"));
  }

  void jsonLines() {
    std::ostringstream out;
    {
      Progress p("sample", 4, Progress::Mode::JsonLines, out);
      for (int i = 1; i <= 4; ++i) p.update(i, "step");
    }
    std::istringstream in(out.str());
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      ++n;
      QCOMPARE(j["event"].get<std::string>(), std::string("progress"));
      QCOMPARE(j["done"].get<int>(), n);
      QCOMPARE(j["total"].get<int>(), 4);
      QVERIFY(j.contains("eta_s"));
    }
    QCOMPARE(n, 4);
  }

  void silentWritesNothing() {
    std::ostringstream out;
    {
      Progress p("x", 10, Progress::Mode::Silent, out);
      p.update(5);
    }
    QVERIFY(out.str().empty());
    QCOMPARE(Progress::chooseMode(true, true), Progress::Mode::JsonLines);
    QCOMPARE(Progress::chooseMode(false, true), Progress::Mode::Silent);
  }

  void barEndsWithNewline() {
    std::ostringstream out;
    {
      Progress p("x", 2, Progress::Mode::Bar, out);
      p.update(1);
      p.update(2);
    }
    QVERIFY(out.str().find("2/2") != std::string::npos);
    QCOMPARE(out.str().back(), '\n');
  }
};

TESSERA_TEST_MAIN(TestProgress, Appless)
#include "test_progress.moc"
