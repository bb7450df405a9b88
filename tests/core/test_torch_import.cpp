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

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#endif

using namespace tessera;

namespace {

/// Bytes as written, NULs included.
std::string rawBytes(std::initializer_list<unsigned char> values) { return std::string(values.begin(), values.end()); }

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

  // Issue 22: the official DiT and SiT train.py checkpoints hold the command line as an
  // argparse.Namespace (`args`), which was refused as code. It is read as plain data.
  void trainingCheckpointWithNamespaceArgs() {
    auto ckpt = readTorchCheckpoint(data("train_checkpoint.pt"));
    QVERIFY2(ckpt, ckpt ? "" : ckpt.error().message().c_str());
    QCOMPARE(ckpt->scalars.at("args.model"), std::string("DiT-XL/2"));
    QCOMPARE(ckpt->scalars.at("args.image_size"), std::string("256"));
    QCOMPARE(ckpt->scalars.at("args.vae"), std::string("ema"));
    auto chosen = chooseStateDict(*ckpt);
    QVERIFY(chosen);
    QCOMPARE(*chosen, std::string("ema"));
    auto ema = extractStateDict(*ckpt);
    QVERIFY(ema);
    QCOMPARE(ema->size(), std::size_t(4));
    // A Namespace built with arguments, or given a state that is not a dict, stays refused.
    const QByteArray withArgs = QByteArray::fromHex("80026361726770617273650a4e616d6573706163650a4b01858171002e");
    auto v = pickle::unpickle(std::string_view(withArgs.constData(), static_cast<std::size_t>(withArgs.size())), {});
    QVERIFY(!v);
    QVERIFY2(v.error().message().find("with arguments") != std::string::npos, v.error().message().c_str());
    const QByteArray listState = QByteArray::fromHex("80026361726770617273650a4e616d6573706163650a29815d622e");
    v = pickle::unpickle(std::string_view(listState.constData(), static_cast<std::size_t>(listState.size())), {});
    QVERIFY(!v);
    QVERIFY2(v.error().message().find("expected a dict") != std::string::npos, v.error().message().c_str());
  }

  // Issue 22: a 1 KB pickle that stores one list under 2^40 key paths (the memo lets it)
  // made the walk over the result take hours. The walk is metered and refuses it at once.
  void sharedContainersAreRefused() {
    // {"x": (L0, ..., L40)} where L0 = [0] and Lk = [Lk-1, Lk-1], each list memoized and
    // fetched twice (the tuple gathers them from a MARK, as torch.save's pickles do).
    std::string pkl = rawBytes({0x80, 0x02, '}', 'X', 1, 0, 0, 0, 'x', '(', ']', 'K', 0, 'a'});
    for (int k = 1; k <= 40; ++k) {
      const auto index = static_cast<unsigned char>(k - 1);
      pkl += rawBytes({'q', index, ']', '(', 'h', index, 'h', index, 'e'});
    }
    pkl += "ts.";
    QTemporaryDir dir;
    const std::string path = dir.filePath(QStringLiteral("shared.pt")).toStdString();
    {
      std::ofstream out(path, std::ios::binary);
      caffe2::serialize::PyTorchStreamWriter writer([&](const void* p, std::size_t n) {
        out.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
        return n;
      });
      writer.writeRecord("data.pkl", pkl.data(), pkl.size());
      writer.writeEndOfFile();
    }
    auto ckpt = readTorchCheckpoint(path);
    QVERIFY(!ckpt);
    QVERIFY2(ckpt.error().message().find("shared under so many keys") != std::string::npos,
             ckpt.error().message().c_str());
  }

  // Issue 22: every key of a dict was compared with every earlier one (n² steps: a 5 MB
  // pickle of 300 000 keys took minutes). Keys are indexed; a repeated key still replaces.
  void largeDictsAreLinear() {
    constexpr int kKeys = 300000;
    std::string pkl = rawBytes({0x80, 0x02, '}', '('});
    auto key = [](int i) {
      const std::string k = "k" + std::to_string(i);
      const auto n = static_cast<std::uint32_t>(k.size());
      return std::string("X") + std::string(reinterpret_cast<const char*>(&n), 4) + k;
    };
    for (int i = 0; i < kKeys; ++i) pkl += key(i) + rawBytes({'K', 1});
    pkl += key(0) + rawBytes({'K', 2, 'u', '.'});
    auto v = pickle::unpickle(pkl, {});
    QVERIFY2(v, v ? "" : v.error().message().c_str());
    QCOMPARE((*v)->entries.size(), std::size_t(kKeys));
    QCOMPARE((*v)->entries.front().second->integer, std::int64_t(2));
  }

  // Issue 22: a 2 MB record that inflated to 2 GiB was allocated and read whole. torch.save
  // stores records uncompressed, so a record claiming more than the archive is refused
  // before anything is read.
  void recordsClaimingMoreThanTheArchiveAreRefused() {
    QTemporaryDir dir;
    const std::string path = dir.filePath(QStringLiteral("bomb.pt")).toStdString();
    std::string archive;
    {
      caffe2::serialize::PyTorchStreamWriter writer([&](const void* p, std::size_t n) {
        archive.append(static_cast<const char*>(p), n);
        return n;
      });
      const std::string pkl = rawBytes({0x80, 0x02, '}', '.'});
      writer.writeRecord("data.pkl", pkl.data(), pkl.size());
      writer.writeEndOfFile();
    }
    // The central directory's header of data.pkl: claim 2 GiB uncompressed.
    const auto header = archive.find(std::string("PK\x01\x02", 4));
    QVERIFY(header != std::string::npos);
    const std::uint32_t claim = 0x7FFFFFF0;
    std::memcpy(&archive[header + 24], &claim, 4);
    {
      std::ofstream out(path, std::ios::binary);
      out << archive;
    }
    auto ckpt = readTorchCheckpoint(path);
    QVERIFY(!ckpt);
    QVERIFY2(ckpt.error().message().find("inflates to 2147483632 bytes") != std::string::npos,
             ckpt.error().message().c_str());
  }
};

TESSERA_TEST_MAIN(TestTorchImport, Appless)
#include "test_torch_import.moc"
