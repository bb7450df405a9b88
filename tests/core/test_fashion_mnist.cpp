// SPDX-License-Identifier: Apache-2.0
// Reads the real Fashion-MNIST files of Debian's dataset-fashion-mnist package.
#include "core/data/fashion_mnist.h"

#include <ATen/ATen.h>
#include <QtTest>

#include <filesystem>

using namespace tessera;

class TestFashionMnist : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void initTestCase() {
    QVERIFY2(std::filesystem::exists(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz"),
             "Fashion-MNIST is not installed: ./tessera.sh installs dataset-fashion-mnist");
  }

  void splits_data() {
    QTest::addColumn<QString>("split");
    QTest::addColumn<int>("count");
    QTest::newRow("train") << QStringLiteral("train") << 60000;
    QTest::newRow("test") << QStringLiteral("test") << 10000;
  }
  void splits() {
    QFETCH(QString, split);
    QFETCH(int, count);
    auto data = loadFashionMnist(split.toStdString());
    QVERIFY2(data, data ? "" : data.error().message().c_str());
    QCOMPARE(data->images.sizes().vec(), (std::vector<std::int64_t>{count, 28, 28}));
    QCOMPARE(data->images.scalar_type(), at::kByte);
    QCOMPARE(data->labels.sizes().vec(), (std::vector<std::int64_t>{count}));
    QCOMPARE(data->labels.min().item<std::int64_t>(), std::int64_t(0));
    QCOMPARE(data->labels.max().item<std::int64_t>(), std::int64_t(9));
    // The data set is balanced: every class has a tenth of the items.
    const at::Tensor perClass = at::bincount(data->labels, {}, 10);
    QVERIFY(at::equal(perClass, at::full({10}, count / 10, at::kLong)));
    // Images use the full byte range and are mostly background.
    QCOMPARE(data->images.max().item<int>(), 255);
    QCOMPARE(data->images.min().item<int>(), 0);
    const double mean = data->images.to(at::kDouble).mean().item<double>() / 255.0;
    QVERIFY2(mean > 0.2 && mean < 0.4, qPrintable(QString::number(mean)));
  }

  void knownFirstItems() {
    // Published facts of the data set: the first training item is an ankle boot (9),
    // the first test item too.
    auto train = loadFashionMnist("train");
    auto test = loadFashionMnist("test");
    QVERIFY(train && test);
    QCOMPARE(train->labels[0].item<std::int64_t>(), std::int64_t(9));
    QCOMPARE(test->labels[0].item<std::int64_t>(), std::int64_t(9));
    QCOMPARE(fashionMnistClassNames()[9], std::string("Ankle boot"));
  }

  void badSplitAndDir() {
    auto bad = loadFashionMnist("validation");
    QVERIFY(!bad);
    QVERIFY(bad.error().message().find("'validation'") != std::string::npos);
    auto missing = loadFashionMnist("train", "/nonexistent");
    QVERIFY(!missing);
    QVERIFY(missing.error().message().find("dataset-fashion-mnist") != std::string::npos);
  }
};

QTEST_APPLESS_MAIN(TestFashionMnist)
#include "test_fashion_mnist.moc"
