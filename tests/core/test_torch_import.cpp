// SPDX-License-Identifier: Apache-2.0
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/formats/pickle.h"
#include "core/formats/torch_checkpoint.h"
#include "tests/support/test_main.h"
#include "tests/support/test_support.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <QTemporaryDir>
#include <QtTest>

#include <fstream>
#include <random>
#include <sstream>
#endif

using namespace tessera;

namespace {

std::string data(const char* name) { return std::string(TESSERA_TEST_DATA_DIR) + "/" + name; }

at::Tensor find(const NamedTensors& tensors, const std::string& name) {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  return {};
}

}  // namespace

class TestTorchImport : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void nestedCheckpoint() {
    auto ckpt = readTorchCheckpoint(data("nested_checkpoint.pt"));
    QVERIFY2(ckpt, ckpt ? "" : ckpt.error().message().c_str());
    QCOMPARE(ckpt->stateDictPaths, (std::vector<std::string>{"model", "ema", "extras"}));
    auto chosen = chooseStateDict(*ckpt);
    QVERIFY(chosen);
    QCOMPARE(*chosen, std::string("ema"));  // EMA weights preferred

    auto model = extractStateDict(*ckpt, "model");
    QVERIFY(model);
    QCOMPARE(model->size(), std::size_t(4));
    const at::Tensor w = find(*model, "0.weight");
    QCOMPARE(w.sizes().vec(), (std::vector<std::int64_t>{3, 4}));
    QVERIFY(at::equal(w, at::arange(12, at::kFloat).reshape({3, 4}) / 8 - 0.5));
    QVERIFY(at::equal(find(*model, "0.bias"), at::tensor({0.25f, -0.5f, 1.0f})));
    QVERIFY(at::equal(find(*model, "1.weight"), at::ones({3})));
    QVERIFY(at::equal(find(*model, "1.bias"), at::zeros({3})));

    auto ema = extractStateDict(*ckpt);
    QVERIFY(ema);
    QVERIFY(at::equal(find(*ema, "0.weight"), w * 2));

    auto extras = extractStateDict(*ckpt, "extras");
    QVERIFY(extras);
    const auto& x = *extras;
    QCOMPARE(find(x, "half").scalar_type(), at::kHalf);
    QVERIFY(at::equal(find(x, "half").to(at::kFloat), at::tensor({1.5f, -2.0f, 0.25f})));
    QCOMPARE(find(x, "bf16").scalar_type(), at::kBFloat16);
    QVERIFY(at::equal(find(x, "bf16").to(at::kFloat), at::tensor({1.5f, -2.0f, 0.25f})));
    QVERIFY(at::equal(find(x, "long"), at::tensor(std::vector<std::int64_t>{-3, 0, std::int64_t(1) << 40})));
    QVERIFY(at::equal(find(x, "int"), at::tensor(std::vector<std::int32_t>{7, -8}).reshape({1, 2})));
    QVERIFY(at::equal(find(x, "mask"), at::tensor(std::vector<std::uint8_t>{1, 0, 1}).to(at::kBool)));
    QVERIFY(at::equal(find(x, "bytes"), at::tensor(std::vector<std::uint8_t>{0, 127, 255})));
    QVERIFY(at::equal(find(x, "double"), at::tensor(std::vector<double>{0.1, 0.2})));
    const at::Tensor base = at::arange(24, at::kFloat).reshape({4, 6});
    QVERIFY(find(x, "transposed").is_contiguous());
    QVERIFY(at::equal(find(x, "transposed"), base.t()));
    QVERIFY(at::equal(find(x, "row"), base[2]));
    QVERIFY(at::equal(find(x, "param"), at::full({2, 2}, 3.0f)));

    QCOMPARE(ckpt->scalars.at("epoch"), std::string("7"));
    QCOMPARE(ckpt->scalars.at("name"), std::string("tiny"));
    QCOMPARE(ckpt->scalars.at("flag"), std::string("true"));
    QCOMPARE(ckpt->scalars.at("nothing"), std::string("None"));
    QCOMPARE(ckpt->scalars.at("steps.1"), std::string("20"));
    QCOMPARE(std::stod(ckpt->scalars.at("betas.1")), 0.999);
    QCOMPARE(std::stod(ckpt->scalars.at("lr")), 1e-4);

    auto missing = extractStateDict(*ckpt, "opt");
    QVERIFY(!missing);
    QVERIFY(missing.error().message().find("'ema'") != std::string::npos);  // lists what exists
  }

  void plainStateDict() {
    auto ckpt = readTorchCheckpoint(data("state_dict.pt"));
    QVERIFY2(ckpt, ckpt ? "" : ckpt.error().message().c_str());
    QCOMPARE(*chooseStateDict(*ckpt), std::string());
    auto sd = extractStateDict(*ckpt);
    QVERIFY(sd);
    QCOMPARE(sd->size(), std::size_t(4));
    QCOMPARE((*sd)[0].first, std::string("0.weight"));  // archive order kept
    QVERIFY(at::equal(find(*sd, "0.weight"), at::arange(12, at::kFloat).reshape({3, 4}) / 8 - 0.5));
  }

  void refusesCodeExecution() {
    auto ckpt = readTorchCheckpoint(data("malicious.pt"));
    QVERIFY(!ckpt);
    const std::string m = ckpt.error().message();
    QVERIFY2(m.find("refusing global 'posix.system'") != std::string::npos, m.c_str());
    QVERIFY2(m.find("malicious.pt") != std::string::npos, m.c_str());
  }

  void refusesLegacyFormat() {
    auto ckpt = readTorchCheckpoint(data("legacy_state_dict.pt"));
    QVERIFY(!ckpt);
    QVERIFY2(ckpt.error().message().find("legacy") != std::string::npos, ckpt.error().message().c_str());
  }

  void damagedArchives_data() {
    QTest::addColumn<int>("keepBytes");
    QTest::addColumn<bool>("flipMiddle");
    QTest::newRow("empty") << 0 << false;
    QTest::newRow("three bytes") << 3 << false;
    QTest::newRow("first half") << -2 << false;
    QTest::newRow("all but 10 bytes") << -10 << false;
    QTest::newRow("corrupted directory") << -1 << true;
  }
  void damagedArchives() {
    QFETCH(int, keepBytes);
    QFETCH(bool, flipMiddle);
    std::string bytes = test::readFile(data("nested_checkpoint.pt"));
    if (keepBytes == -2) bytes.resize(bytes.size() / 2);
    else if (keepBytes < -2 ) bytes.resize(bytes.size() - static_cast<std::size_t>(-keepBytes));
    else if (keepBytes >= 0) bytes.resize(static_cast<std::size_t>(keepBytes));
    if (flipMiddle)
      // the zip's central directory, near the end
      for (std::size_t i = bytes.size() - 120; i < bytes.size() - 104; ++i) bytes[i] = static_cast<char>(~bytes[i]);
    QTemporaryDir dir;
    const std::string path = dir.filePath(QStringLiteral("damaged.pt")).toStdString();
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    auto ckpt = readTorchCheckpoint(path);
    QVERIFY(!ckpt);
    QVERIFY2(ckpt.error().message().find(path) != std::string::npos, ckpt.error().message().c_str());
  }

  // Hand-made pickles: faults that torch.save never writes but a damaged file can hold.
  void pickleFaults_data() {
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<QString>("expected");
    QTest::newRow("no STOP") << QByteArray::fromHex("80027d") << QStringLiteral("before the STOP");
    QTest::newRow("unknown opcode") << QByteArray::fromHex("8002ff2e") << QStringLiteral("unsupported opcode");
    QTest::newRow("memo miss") << QByteArray::fromHex("800268052e") << QStringLiteral("never stored");
    QTest::newRow("underflow") << QByteArray::fromHex("8002732e") << QStringLiteral("underflow");
    QTest::newRow("string past end") << QByteArray::fromHex("800258ff00000061622e") << QStringLiteral("remain");
    QTest::newRow("setitem on list") << QByteArray::fromHex("80025d4b014b02732e") << QStringLiteral("expected a dict");
    QTest::newRow("two values left") << QByteArray::fromHex("80024b014b022e") << QStringLiteral("2 values");
    QTest::newRow("builtins.eval") << QByteArray::fromHex("8002636275696c74696e730a6576616c0a2e") << QStringLiteral("refusing global 'builtins.eval'");
    QTest::newRow("huge long") << QByteArray::fromHex("80028a093132333435363738392e") << QStringLiteral("64 bits");
    QTest::newRow("bad utf-8") << QByteArray::fromHex("80025801000000ff2e") << QStringLiteral("UTF-8");
    QTest::newRow("cycle") << QByteArray::fromHex("80025d71006800612e") << QStringLiteral("recursive structure");
    QTest::newRow("indirect cycle") << QByteArray::fromHex("80025d71005d680061612e") << QStringLiteral("recursive structure");
    QTest::newRow("protocol 9") << QByteArray::fromHex("80097d2e") << QStringLiteral("protocol 9");
    QTest::newRow("too deep") << (QByteArray::fromHex("8002") + QByteArray(300, ']') + QByteArray(299, 'a') + QByteArray("."))
                              << QStringLiteral("nested deeper than 200");
  }
  void pickleFaults() {
    QFETCH(QByteArray, bytes);
    QFETCH(QString, expected);
    auto v = pickle::unpickle(std::string_view(bytes.constData(), static_cast<std::size_t>(bytes.size())), {});
    QVERIFY(!v);
    const QString m = QString::fromStdString(v.error().message());
    QVERIFY2(m.contains(expected), qPrintable(m));
  }

  void pickleValues() {
    // {'a': -5 (LONG1), 'b': 2**40 (LONG1), 'c': 1.5, 'd': (1, 2)} with memo round trip
    const QByteArray bytes = QByteArray::fromHex(
        "80027d7100285801000000618a01fb5801000000628a060000000000015801000000"
        "63473ff80000000000005801000000644b014b0286752e");
    auto v = pickle::unpickle(std::string_view(bytes.constData(), static_cast<std::size_t>(bytes.size())), {});
    QVERIFY2(v, v ? "" : v.error().message().c_str());
    const auto& d = **v;
    QCOMPARE(d.kind, pickle::Value::Kind::Dict);
    QCOMPARE(d.entries.size(), std::size_t(4));
    QCOMPARE(d.entries[0].second->integer, std::int64_t(-5));
    QCOMPARE(d.entries[1].second->integer, std::int64_t(1) << 40);
    QCOMPARE(d.entries[2].second->real, 1.5);
    QCOMPARE(d.entries[3].second->items.size(), std::size_t(2));
  }

  void damagedPicklesNeverCrash() {
    // The real data.pkl of a nested checkpoint, damaged 3000 ways: every result is a
    // value or an error, never a crash or a huge allocation.
    caffe2::serialize::PyTorchStreamReader reader(data("nested_checkpoint.pt"));
    auto [ptr, size] = reader.getRecord("data.pkl");
    const std::string good(static_cast<const char*>(ptr.get()), size);
    pickle::PersistentLoader loader = [](const pickle::Value& pid) -> Result<pickle::ValuePtr> {
      if (pid.kind != pickle::Value::Kind::Tuple || pid.items.size() != 5) return fail("bad pid");
      auto s = pickle::Value::make(pickle::Value::Kind::Storage);
      s->tensor = at::zeros({64});
      return s;
    };
    QVERIFY(pickle::unpickle(good, loader));
    std::mt19937 rng(7);
    int rejected = 0;
    for (int i = 0; i < 3000; ++i) {
      std::string bytes = good;
      switch (rng() % 3) {
        case 0: bytes[rng() % bytes.size()] = static_cast<char>(rng()); break;
        case 1: bytes.resize(rng() % bytes.size()); break;
        default:
          for (int k = 0; k < 4; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng());
      }
      auto v = pickle::unpickle(bytes, loader);
      if (!v) ++rejected;
    }
    QVERIFY2(rejected > 1000, qPrintable(QString::number(rejected)));
  }

  void tensorViewOutOfStorageIsRefused() {
    // _rebuild_tensor_v2(storage(2 floats), 0, (10,), (1,), False, OrderedDict())
    const QByteArray bytes = QByteArray::fromHex(
        "800263746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a28285807000000"
        "73746f7261676563746f7263680a466c6f617453746f726167650a58010000003058030000006370754b"
        "0274514b004b0a854b01858963636f6c6c656374696f6e730a4f726465726564446963740a295274522e");
    pickle::PersistentLoader loader = [](const pickle::Value&) -> Result<pickle::ValuePtr> {
      auto s = pickle::Value::make(pickle::Value::Kind::Storage);
      s->tensor = at::zeros({2});
      return s;
    };
    auto v = pickle::unpickle(std::string_view(bytes.constData(), static_cast<std::size_t>(bytes.size())), loader);
    QVERIFY(!v);
    QVERIFY2(v.error().message().find("reaches element 9 of a storage with 2 elements") != std::string::npos,
             v.error().message().c_str());
  }
};

TESSERA_TEST_MAIN(TestTorchImport, Appless)
#include "test_torch_import.moc"
