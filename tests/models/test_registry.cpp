// SPDX-License-Identifier: Apache-2.0
#include "models/registry.h"

#include <QtTest>

using namespace tessera;

namespace {

class NullBackbone : public BackboneImpl {
public:
  BackboneOutput forward(const BackboneInput& input) override { return {input.x, std::nullopt}; }
  Capabilities capabilities() const override { return {}; }
  std::string kind() const override { return "null"; }
};

}  // namespace

class TestRegistry : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void addFindCreate() {
    BackboneRegistry r;
    QVERIFY(r.add({"null", "identity", [](const Config&, const BuildOptions&) -> Result<std::shared_ptr<BackboneImpl>> {
                     return std::make_shared<NullBackbone>();
                   }, {}, {}}));
    QVERIFY(r.find("null"));
    QVERIFY(!r.find("dit"));
    auto made = r.create("null", Config::fromJson({}, "test"));
    QVERIFY(made);
    QCOMPARE((*made)->kind(), std::string("null"));
  }

  void errorsNameTheProblem() {
    BackboneRegistry r;
    auto factory = [](const Config& c, const BuildOptions&) -> Result<std::shared_ptr<BackboneImpl>> {
      auto depth = c.integer("depth", std::nullopt, 1, 4);
      if (!depth) return fail(depth.error());
      return std::make_shared<NullBackbone>();
    };
    QVERIFY(r.add({"a", "", factory, {}, {}}));
    auto twice = r.add({"a", "", factory, {}, {}});
    QVERIFY(!twice);
    QVERIFY(twice.error().message().find("twice") != std::string::npos);
    QVERIFY(!r.add({"b", "", nullptr, {}, {}}));
    auto unknown = r.create("zzz", Config::fromJson({}, "cfg"));
    QVERIFY(!unknown);
    QVERIFY(unknown.error().message().find("unknown backbone 'zzz' (known: a)") != std::string::npos);
    auto badConfig = r.create("a", Config::fromJson({{"depth", 9}}, "cfg.json"));
    QVERIFY(!badConfig);
    QVERIFY2(badConfig.error().message().find("backbone 'a': cfg.json: field 'depth'") != std::string::npos,
             badConfig.error().message().c_str());
  }

  void globalRegistryMatchesDefFile() {
    // Every name in models/backbones.def is registered, and nothing else.
    QFile def(QStringLiteral(TESSERA_SOURCE_DIR "/models/backbones.def"));
    QVERIFY(def.open(QIODevice::ReadOnly));
    std::vector<std::string> listed;
    const QRegularExpression line(QStringLiteral("^TESSERA_BACKBONE\\((\\w+)\\)"), QRegularExpression::MultilineOption);
    auto it = line.globalMatch(QString::fromUtf8(def.readAll()));
    while (it.hasNext()) listed.push_back(it.next().captured(1).toStdString());
    std::sort(listed.begin(), listed.end());
    QCOMPARE(backboneRegistry().names(), listed);
  }
};

QTEST_APPLESS_MAIN(TestRegistry)
#include "test_registry.moc"
