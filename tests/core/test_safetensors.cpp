// SPDX-License-Identifier: Apache-2.0
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/formats/safetensors.h"
#include "core/util/atomic_file.h"
#include "tests/support/test_main.h"
#include "tests/support/test_support.h"

#include <ATen/ATen.h>
#include <QTemporaryDir>
#include <QtTest>

#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>
#endif

using namespace tessera;

namespace {

void writeAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

/// A file from a header text and a data area.
std::string makeFile(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

const std::string kRef = std::string(TESSERA_TEST_DATA_DIR) + "/reference.safetensors";

// The formula of make_fixtures.py.
std::int64_t base(std::int64_t i) { return (i * 7 + 3) % 11; }

}  // namespace

class TestSafetensors : public QObject {
  Q_OBJECT

private Q_SLOTS:
  // Issue 22: a writer killed before its rename left a hidden .NAME.tmp-PID-RANDOM file (up
  // to 132 MB) for ever. The next atomic write into that folder removes those of processes
  // that no longer exist, and nothing else.
  void deadWritersTemporariesAreSwept() {
    QTemporaryDir dir;
    const std::string root = dir.path().toStdString();
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    QVERIFY(child > 0);
    QCOMPARE(::waitpid(child, nullptr, 0), child);  // a process that no longer exists
    const std::string dead = root + "/.m.safetensors.tmp-" + std::to_string(child) + "-42";
    const std::string alive = root + "/.n.safetensors.tmp-" + std::to_string(::getppid()) + "-7";
    const std::string other = root + "/.notes.tmp-abc";
    for (const auto& f : {dead, alive, other}) std::ofstream(f) << "partial";
    QVERIFY(writeFileAtomically(root + "/m.safetensors", std::string_view("whole")));
    QVERIFY(!QFile::exists(QString::fromStdString(dead)));
    QVERIFY(QFile::exists(QString::fromStdString(alive)));
    QVERIFY(QFile::exists(QString::fromStdString(other)));
    QCOMPARE(test::readFile(root + "/m.safetensors"), std::string("whole"));
  }

  void initTestCase() { QVERIFY(m_dir.isValid()); }

  void readsFileFromAnotherWriter() {
    auto file = SafetensorsFile::open(kRef);
    QVERIFY2(file, file ? "" : file.error().message().c_str());
    QCOMPARE(file->entries().size(), std::size_t(13));
    QCOMPARE(file->metadata().at("format"), std::string("pt"));
    QCOMPARE(file->metadata().at("tessera.note"), std::string("caf\u00e9 \u2014 written by make_fixtures.py"));

    auto all = file->loadAll();
    QVERIFY(all);
    auto& t = *all;
    for (int i = 0; i < 5; ++i) QCOMPARE(t["t_f64"][i].item<double>(), double(base(i)) / 4.0);
    for (int i = 0; i < 6; ++i) QCOMPARE(t["t_f32"][i].item<float>(), float(base(i)) / 4.0f - 1.0f);
    for (int i = 0; i < 4; ++i) QCOMPARE(t["t_i64"][i].item<std::int64_t>(), base(i) * 1000000000007LL - 5);
    for (int i = 0; i < 3; ++i) QCOMPARE(t["t_i32"][i].item<std::int32_t>(), std::int32_t(base(i) * 100000 - 7));
    for (int i = 0; i < 4; ++i) QCOMPARE(t["t_i16"][i].item<std::int16_t>(), std::int16_t(base(i) * 1000 - 4000));
    for (int i = 0; i < 5; ++i) QCOMPARE(t["t_i8"][i].item<std::int8_t>(), std::int8_t(base(i) * 11 - 60));
    for (int i = 0; i < 7; ++i) QCOMPARE(t["t_u8"][i].item<std::uint8_t>(), std::uint8_t(base(i) * 23));
    for (int i = 0; i < 6; ++i) QCOMPARE(t["t_bool"][i].item<bool>(), base(i) % 2 == 1);
    const float halves[] = {-3.f, -1.5f, 0.f, 1.5f};
    QCOMPARE(t["t_f16"].scalar_type(), at::kHalf);
    QCOMPARE(t["t_bf16"].scalar_type(), at::kBFloat16);
    QCOMPARE(t["t_f16"].sizes().vec(), (std::vector<std::int64_t>{2, 2}));
    for (int i = 0; i < 4; ++i) {
      QCOMPARE(t["t_f16"].flatten()[i].item<float>(), halves[i]);
      QCOMPARE(t["t_bf16"].flatten()[i].item<float>(), halves[i]);
    }
    QCOMPARE(t["scalar"].dim(), std::int64_t(0));
    QCOMPARE(t["scalar"].item<float>(), 2.5f);
    QCOMPARE(t["empty"].sizes().vec(), (std::vector<std::int64_t>{0, 3}));
    QCOMPARE(t["a_matrix"][1][2].item<float>(), 2.5f);
    QCOMPARE(file->parameterCount(), std::int64_t(5 + 6 + 4 + 3 + 4 + 5 + 7 + 6 + 4 + 4 + 6 + 1 + 0));
  }

  void writerIsByteExactWithReference() {
    // Rebuild the reference tensors in C++ (in a different order) and serialise them.
    auto file = SafetensorsFile::open(kRef);
    QVERIFY(file);
    auto all = file->loadAll();
    QVERIFY(all);
    NamedTensors tensors;
    for (auto it = all->rbegin(); it != all->rend(); ++it) tensors.emplace_back(it->first, it->second);
    auto bytes = serializeSafetensors(tensors, file->metadata());
    QVERIFY(bytes);
    QVERIFY2(*bytes == test::readFile(kRef), "serialised bytes differ from reference.safetensors");
  }

  void roundTrip_data() {
    QTest::addColumn<int>("scalarType");
    QTest::newRow("F64") << int(at::kDouble);
    QTest::newRow("F32") << int(at::kFloat);
    QTest::newRow("F16") << int(at::kHalf);
    QTest::newRow("BF16") << int(at::kBFloat16);
    QTest::newRow("I64") << int(at::kLong);
    QTest::newRow("I32") << int(at::kInt);
    QTest::newRow("I16") << int(at::kShort);
    QTest::newRow("I8") << int(at::kChar);
    QTest::newRow("U8") << int(at::kByte);
    QTest::newRow("BOOL") << int(at::kBool);
  }
  void roundTrip() {
    QFETCH(int, scalarType);
    const auto type = static_cast<at::ScalarType>(scalarType);
    at::manual_seed(7);
    at::Tensor src = (at::randn({3, 5, 2}) * 50).to(type);
    at::Tensor nonContiguous = src.transpose(0, 2);
    at::Tensor scalar = at::scalar_tensor(1, at::TensorOptions().dtype(type));
    at::Tensor empty = at::empty({0, 4}, at::TensorOptions().dtype(type));
    const std::string path = m_dir.filePath(QStringLiteral("rt.safetensors")).toStdString();
    auto ok = writeSafetensors(path, {{"x", src}, {"x_t", nonContiguous}, {"s", scalar}, {"e", empty}},
                               {{"k", "v"}, {"json", "{\"a\": [1, 2]}"}});
    QVERIFY2(ok, ok ? "" : ok.error().message().c_str());
    auto file = SafetensorsFile::open(path);
    QVERIFY2(file, file ? "" : file.error().message().c_str());
    QCOMPARE(file->metadata().at("json"), std::string("{\"a\": [1, 2]}"));
    for (const auto& [name, expected] : std::vector<std::pair<std::string, at::Tensor>>{
             {"x", src}, {"x_t", nonContiguous}, {"s", scalar}, {"e", empty}}) {
      auto t = file->load(name);
      QVERIFY2(t, t ? "" : t.error().message().c_str());
      QCOMPARE(t->scalar_type(), type);
      QCOMPARE(t->sizes().vec(), expected.sizes().vec());
      QVERIFY2(at::equal(*t, expected), name.c_str());
    }
  }

  void rejectsBadTensorsOnWrite() {
    const std::string path = m_dir.filePath(QStringLiteral("bad.safetensors")).toStdString();
    auto complex = writeSafetensors(path, {{"c", at::zeros({2}, at::kComplexFloat)}});
    QVERIFY(!complex);
    QVERIFY(complex.error().message().find("cannot be stored") != std::string::npos);
    auto dup = writeSafetensors(path, {{"a", at::zeros({1})}, {"a", at::ones({1})}});
    QVERIFY(!dup);
    QVERIFY(dup.error().message().find("twice") != std::string::npos);
    QVERIFY(!QFile::exists(QString::fromStdString(path)));  // nothing half-written
  }

  void writeReplacesAtomically() {
    const QString qpath = m_dir.filePath(QStringLiteral("atomic.safetensors"));
    const std::string path = qpath.toStdString();
    QVERIFY(writeSafetensors(path, {{"a", at::zeros({4})}}));
    QVERIFY(writeSafetensors(path, {{"a", at::ones({8})}}));
    auto file = SafetensorsFile::open(path);
    QVERIFY(file);
    QCOMPARE(file->load("a")->numel(), std::int64_t(8));
    // No temporary files are left beside the target.
    QCOMPARE(QDir(m_dir.path()).entryList({QStringLiteral(".atomic*")}, QDir::Hidden | QDir::Files).size(), 0);
  }

  void malformed_data() {
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<QString>("expected");
    auto row = [](const char* name, const std::string& bytes, const char* expected) {
      QTest::newRow(name) << QByteArray(bytes.data(), static_cast<int>(bytes.size())) << QString::fromUtf8(expected);
    };
    const std::string good = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    const std::string data8(8, '\0');
    row("empty file", "", "truncated");
    row("five bytes", "abcde", "truncated");
    row("header past end", le64(1000) + "{}", "runs past the end of the file");
    row("absurd header size", le64(1ull << 40) + "{}", "absurd");
    row("truncated data", makeFile(good, std::string(5, '\0')), "run past the end of the data");
    row("trailing bytes", makeFile(good, std::string(12, '\0')), "not described by the header");
    row("overlap", makeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data8),
        "overlaps");
    row("gap", makeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data8), "gap of 4 bytes");
    row("unknown dtype", makeFile(R"({"a":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", data8), "unknown dtype 'F8_E4M3'");
    row("shape/bytes mismatch", makeFile(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8), "needs 12 bytes");
    row("overflowing shape", makeFile(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data8), "more than 2^64");
    row("negative dim", makeFile(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8), "non-negative");
    row("offsets reversed", makeFile(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data8), "end before they begin");
    row("offsets arity", makeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8), "data_offsets");
    row("missing field", makeFile(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", data8), "lacks 'shape'");
    row("entry not object", makeFile(R"({"a":5})", ""), "must be an object");
    row("non-UTF-8 header", makeFile("{\"\xff\xfe\":{}}", ""), "not valid UTF-8");
    row("overlong UTF-8", makeFile("{\"\xc0\xaf\":{}}", ""), "not valid UTF-8");
    row("invalid JSON", makeFile(R"({"a":{"dtype":)", ""), "not valid JSON");
    row("not an object", makeFile("[1, 2, 3]", ""), "does not start with '{'");
    row("duplicate name", makeFile(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", data8),
        "names 'a' twice");
    row("metadata not strings", makeFile(R"({"__metadata__":{"epoch":3}})", ""), "must be a string");
    // Issue 22 (the training_config fuzz target found it in Config; the header parser had the
    // same hole): a number too large for a double escaped as an exception.
    row("number overflow", makeFile(R"({"a":{"dtype":"F32","shape":[1E6666],"data_offsets":[0,8]}})", data8),
        "number overflow");
  }
  void malformed() {
    QFETCH(QByteArray, bytes);
    QFETCH(QString, expected);
    const std::string path = m_dir.filePath(QStringLiteral("malformed.safetensors")).toStdString();
    writeAll(path, bytes.toStdString());
    auto file = SafetensorsFile::open(path);
    QVERIFY2(!file, "a malformed file was accepted");
    const QString message = QString::fromStdString(file.error().message());
    QVERIFY2(message.contains(expected), qPrintable(message));
    QVERIFY2(message.startsWith(QString::fromStdString(path)), qPrintable(message));  // names the file
  }

  void boolBytesAreChecked() {
    const std::string path = m_dir.filePath(QStringLiteral("bool.safetensors")).toStdString();
    writeAll(path, makeFile(R"({"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}      )", std::string("\x01\x02", 2)));
    auto file = SafetensorsFile::open(path);
    QVERIFY(file);
    auto t = file->load("m");
    QVERIFY(!t);
    QVERIFY(t.error().message().find("expected 0 or 1") != std::string::npos);
    QVERIFY(!file->load("nope"));
  }

  void randomDamageNeverCrashes() {
    // 3000 damaged copies of the reference file (byte flips, truncations, inserted
    // bytes): each one is rejected with an error or, if still well-formed, read fully.
    const std::string good = test::readFile(kRef);
    const std::string path = m_dir.filePath(QStringLiteral("fuzz.safetensors")).toStdString();
    std::mt19937 rng(42);
    int rejected = 0;
    for (int i = 0; i < 3000; ++i) {
      std::string bytes = good;
      switch (rng() % 4) {
        case 0: bytes[rng() % bytes.size()] = static_cast<char>(rng()); break;
        case 1: bytes.resize(rng() % bytes.size()); break;
        case 2: bytes.insert(rng() % bytes.size(), 1, static_cast<char>(rng())); break;
        default:  // damage the header length or the header itself
          bytes[rng() % std::min<std::size_t>(bytes.size(), 200)] = static_cast<char>(rng());
      }
      writeAll(path, bytes);
      auto file = SafetensorsFile::open(path);
      if (!file) {
        ++rejected;
        QVERIFY(!file.error().message().empty());
        continue;
      }
      auto all = file->loadAll();  // must not crash either way
      if (!all) ++rejected;
    }
    QVERIFY2(rejected > 1500, qPrintable(QString::number(rejected)));
  }

  void missingFile() {
    auto file = SafetensorsFile::open("/nonexistent/x.safetensors");
    QVERIFY(!file);
    QVERIFY(file.error().message().find("/nonexistent/x.safetensors") != std::string::npos);
  }

private:
  QTemporaryDir m_dir;
};

TESSERA_TEST_MAIN(TestSafetensors, Appless)
#include "test_safetensors.moc"
