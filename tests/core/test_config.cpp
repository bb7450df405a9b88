// SPDX-License-Identifier: Apache-2.0
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/config/config.h"
#include "tests/support/test_main.h"

#include <QtTest>
#endif

using namespace tessera;

class TestConfig : public QObject {
  Q_OBJECT

  static Config make() {
    auto c = Config::fromString(R"({"model":{"depth":12,"width":"wide","ratio":0.5,"big":1e300,"flag":true,
                                   "names":["a","b"],"mixed":["a",3],"whole":4.0}, "lr": 1e-4})",
                                "run.json");
    return *c;
  }

private Q_SLOTS:
  void goodValues() {
    const Config c = make();
    QCOMPARE(*c.integer("model.depth", std::nullopt, 1, 64), std::int64_t(12));
    QCOMPARE(*c.integer("model.whole"), std::int64_t(4));
    QCOMPARE(*c.integer("model.missing", 7), std::int64_t(7));
    QCOMPARE(*c.number("model.ratio", std::nullopt, 0, 1), 0.5);
    QCOMPARE(*c.number("lr"), 1e-4);
    QCOMPARE(*c.boolean("model.flag"), true);
    QCOMPARE(*c.string("model.width", std::nullopt, {"narrow", "wide"}), std::string("wide"));
    QCOMPARE(*c.strings("model.names"), (std::vector<std::string>{"a", "b"}));
    QVERIFY(c.has("model.depth"));
    QVERIFY(!c.has("model.depth.x"));
    QVERIFY(c.rejectUnknown("model", {"depth", "width", "ratio", "big", "flag", "names", "mixed", "whole"}));
  }

  void errors_data() {
    QTest::addColumn<int>("which");
    QTest::addColumn<QString>("expected");
    QTest::newRow("out of range") << 0 << QStringLiteral("run.json: field 'model.depth': expected an integer in [1, 8], got 12");
    QTest::newRow("not integer") << 1 << QStringLiteral("field 'model.ratio': expected an integer, got 0.5");
    QTest::newRow("missing") << 2 << QStringLiteral("field 'model.heads': expected an integer, but it is missing");
    QTest::newRow("choice") << 3 << QStringLiteral("field 'model.width': expected one of \"narrow\", \"medium\", got \"wide\"");
    QTest::newRow("bool") << 4 << QStringLiteral("field 'model.depth': expected true or false, got 12");
    QTest::newRow("array item") << 5 << QStringLiteral("field 'model.mixed[1]': expected a string, got 3");
    QTest::newRow("number range") << 6 << QStringLiteral("field 'model.big': expected a finite number in [0, 10]");
    QTest::newRow("typo") << 7 << QStringLiteral("run.json: unknown field 'model.dpth' (did you mean 'model.depth'?)");
    QTest::newRow("string type") << 8 << QStringLiteral("field 'model.depth': expected a string, got 12");
  }
  void errors() {
    QFETCH(int, which);
    QFETCH(QString, expected);
    const Config c = make();
    std::string message;
    switch (which) {
      case 0: message = c.integer("model.depth", std::nullopt, 1, 8).error().message(); break;
      case 1: message = c.integer("model.ratio").error().message(); break;
      case 2: message = c.integer("model.heads").error().message(); break;
      case 3: message = c.string("model.width", std::nullopt, {"narrow", "medium"}).error().message(); break;
      case 4: message = c.boolean("model.depth").error().message(); break;
      case 5: message = c.strings("model.mixed").error().message(); break;
      case 6: message = c.number("model.big", std::nullopt, 0, 10).error().message(); break;
      case 7: {
        auto typo = Config::fromString(R"({"model":{"dpth":3}})", "run.json");
        message = typo->rejectUnknown("model", {"depth", "width"}).error().message();
        break;
      }
      case 8: message = c.string("model.depth").error().message(); break;
    }
    QVERIFY2(QString::fromStdString(message).contains(expected), message.c_str());
  }

  void invalidJson() {
    auto c = Config::fromString("{\"a\": ", "broken.json");
    QVERIFY(!c);
    QVERIFY(c.error().message().find("broken.json: not valid JSON") != std::string::npos);
    // Issue 22, found by the training_config fuzz target: a number too large for a double
    // (1E6666) escaped from the parser as an exception.
    auto big = Config::fromString(R"({"train": {"lr": 1E6666}})", "big.json");
    QVERIFY(!big);
    QVERIFY2(big.error().message().find("big.json: not valid JSON") != std::string::npos &&
                 big.error().message().find("number overflow") != std::string::npos,
             big.error().message().c_str());
    auto f = Config::fromFile("/nonexistent/cfg.json");
    QVERIFY(!f);
    QVERIFY(f.error().message().find("/nonexistent/cfg.json") != std::string::npos);
  }
};

TESSERA_TEST_MAIN(TestConfig, Appless)
#include "test_config.moc"
