// SPDX-License-Identifier: Apache-2.0
// Reads the real Fashion-MNIST files of Debian's dataset-fashion-mnist package.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/data/fashion_mnist.h"
#include "core/data/fashion_native.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QtTest>

#include <filesystem>
#endif

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

  void boundingBoxes() {
    at::Tensor img = at::zeros({28, 28}, at::kByte);
    CropBox b = boundingBox(img);  // nothing above the threshold: the whole frame
    QCOMPARE(b.height, std::int64_t(28));
    QCOMPARE(b.width, std::int64_t(28));
    img[3][5] = 200;
    img[6][9] = 17;  // just above the default threshold of 16
    img[20][20] = 16;  // not above it
    b = boundingBox(img);
    QCOMPARE((std::vector<std::int64_t>{b.top, b.left, b.height, b.width}), (std::vector<std::int64_t>{2, 4, 6, 7}));
    img[27][0] = 255;  // the margin is clamped to the frame
    b = boundingBox(img, {16, 2});
    QCOMPARE((std::vector<std::int64_t>{b.top, b.left, b.height, b.width}), (std::vector<std::int64_t>{1, 0, 27, 12}));
  }

  void nativeCrops() {
    auto data = loadFashionMnist("test");
    QVERIFY(data);
    const NativeSet set = cropNative(*data);
    QCOMPARE(set.images.size(), std::size_t(10000));
    for (std::size_t i = 0; i < set.images.size(); i += 7) {
      const CropBox& b = set.boxes[i];
      QVERIFY(b.top >= 0 && b.left >= 0 && b.height >= 1 && b.width >= 1 && b.top + b.height <= 28 && b.left + b.width <= 28);
      QCOMPARE(set.images[i].sizes().vec(), (std::vector<std::int64_t>{b.height, b.width}));
      // everything outside the box (grown by the margin) is at or below the threshold
      at::Tensor outside = data->images[static_cast<std::int64_t>(i)].clone();
      outside.narrow(0, b.top, b.height).narrow(1, b.left, b.width).zero_();
      QVERIFY(outside.max().item<int>() <= 16);
      QVERIFY(set.images[i].equal(data->images[static_cast<std::int64_t>(i)].narrow(0, b.top, b.height).narrow(1, b.left, b.width)));
    }
    // objects have their own shapes: trousers tall and narrow, sneakers wide and low
    const auto stats = sizeDistribution(set);
    QCOMPARE(stats["images"].get<int>(), 10000);
    QVERIFY(stats["per_class"][1]["mean_aspect_h_over_w"].get<double>() > 1.5);  // Trouser
    QVERIFY(stats["per_class"][7]["mean_aspect_h_over_w"].get<double>() < 0.8);  // Sneaker
    std::int64_t total = 0;
    for (const auto& v : stats["width"]["histogram"]) total += v.get<std::int64_t>();
    QCOMPARE(total, std::int64_t(10000));
  }
};

TESSERA_TEST_MAIN(TestFashionMnist, Appless)
#include "test_fashion_mnist.moc"
