// SPDX-License-Identifier: Apache-2.0
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/formats/idx.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QTemporaryDir>
#include <QtTest>
#include <zlib.h>

#include <fstream>
#endif

using namespace tessera;

namespace {

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

std::string header(std::uint8_t type, const std::vector<std::uint32_t>& dims) {
  std::string h{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (auto d : dims) h += be32(d);
  return h;
}

}  // namespace

class TestIdx : public QObject {
  Q_OBJECT

  std::string write(const std::string& name, const std::string& bytes, bool gzip) {
    const std::string path = m_dir.filePath(QString::fromStdString(name)).toStdString();
    if (gzip) {
      gzFile f = gzopen(path.c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    return path;
  }

private Q_SLOTS:
  void initTestCase() { QVERIFY(m_dir.isValid()); }

  void types_data() {
    QTest::addColumn<bool>("gzip");
    QTest::newRow("plain") << false;
    QTest::newRow("gzip") << true;
  }
  void types() {
    QFETCH(bool, gzip);
    // u8 2x3
    auto u8 = readIdx(write("u8.idx", header(0x08, {2, 3}) + std::string("\x00\x01\x02\xfd\xfe\xff", 6), gzip));
    QVERIFY2(u8, u8 ? "" : u8.error().message().c_str());
    QCOMPARE(u8->scalar_type(), at::kByte);
    QCOMPARE(u8->sizes().vec(), (std::vector<std::int64_t>{2, 3}));
    QCOMPARE((*u8)[1][2].item<int>(), 255);
    // i16, big-endian: 0x0102 = 258, 0xfffe = -2
    auto i16 = readIdx(write("i16.idx", header(0x0B, {2}) + std::string("\x01\x02\xff\xfe", 4), gzip));
    QVERIFY(i16);
    QCOMPARE((*i16)[0].item<int>(), 258);
    QCOMPARE((*i16)[1].item<int>(), -2);
    // i32: 0x01020304
    auto i32 = readIdx(write("i32.idx", header(0x0C, {1}) + std::string("\x01\x02\x03\x04", 4), gzip));
    QVERIFY(i32);
    QCOMPARE((*i32)[0].item<int>(), 0x01020304);
    // f32 1.5 = 0x3fc00000 ; f64 -2.25 = 0xc002000000000000
    auto f32 = readIdx(write("f32.idx", header(0x0D, {1}) + std::string("\x3f\xc0\x00\x00", 4), gzip));
    QVERIFY(f32);
    QCOMPARE((*f32)[0].item<float>(), 1.5f);
    auto f64 = readIdx(write("f64.idx", header(0x0E, {1, 1}) + std::string("\xc0\x02\x00\x00\x00\x00\x00\x00", 8), gzip));
    QVERIFY(f64);
    QCOMPARE((*f64)[0][0].item<double>(), -2.25);
    auto i8 = readIdx(write("i8.idx", header(0x09, {1}) + std::string("\xff", 1), gzip));
    QVERIFY(i8);
    QCOMPARE((*i8)[0].item<int>(), -1);
    auto empty = readIdx(write("empty.idx", header(0x08, {0, 28}), gzip));
    QVERIFY(empty);
    QCOMPARE(empty->numel(), std::int64_t(0));
  }

  void malformed_data() {
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<bool>("gzip");
    QTest::addColumn<QString>("expected");
    auto row = [](const char* name, const std::string& b, bool gz, const char* expected) {
      QTest::newRow(name) << QByteArray(b.data(), static_cast<int>(b.size())) << gz << QString::fromUtf8(expected);
    };
    row("empty", "", false, "truncated");
    row("bad magic", std::string("\x01\x00\x08\x01", 4) + be32(1) + "x", false, "bad magic");
    row("unknown type", header(0x07, {1}) + "x", false, "unknown element type code 7");
    row("zero dims", std::string("\x00\x00\x08\x00", 4), false, "declares 0 dimensions");
    row("too many dims", std::string("\x00\x00\x08\x09", 4), false, "declares 9 dimensions");
    row("truncated dims", header(0x08, {3, 3}).substr(0, 9), false, "dimension list");
    row("truncated data", header(0x08, {3, 3}) + "abc", false, "declares 9 data bytes, the file has 3");
    row("truncated data gz", header(0x08, {3, 3}) + "abc", true, "declares 9 data bytes");
    row("trailing data", header(0x08, {2}) + "abc", false, "trailing data");
    row("huge declared size", header(0x0E, {0xffffffffu, 0xffffffffu, 0xffffffffu}), false, "overflow");
    row("huge but not overflowing", header(0x0E, {60000, 60000, 60000}), false, "more than the 4 GiB");
    row("lying header", header(0x08, {100000, 1000}) + std::string(100, 'x'), false, "declares 100000000 data bytes, the file has 100");
  }
  void malformed() {
    QFETCH(QByteArray, bytes);
    QFETCH(bool, gzip);
    QFETCH(QString, expected);
    const std::string path = write("bad.idx", bytes.toStdString(), gzip);
    auto t = readIdx(path);
    QVERIFY2(!t, "a malformed file was accepted");
    const QString m = QString::fromStdString(t.error().message());
    QVERIFY2(m.contains(expected), qPrintable(m));
    QVERIFY2(m.startsWith(QString::fromStdString(path)), qPrintable(m));
  }

  void corruptGzipStream() {
    // A valid gzip file with its compressed middle damaged.
    const std::string payload = header(0x08, {4096}) + std::string(4096, '\x5a');
    const std::string path = write("corrupt.gz", payload, true);
    std::string bytes;
    {
      std::ifstream in(path, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    bytes.resize(bytes.size() - 12);  // cut the tail: deflate stream ends early
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    auto t = readIdx(path);
    QVERIFY(!t);
  }

  void missingFile() {
    auto t = readIdx("/nonexistent/file.idx");
    QVERIFY(!t);
    QVERIFY(t.error().message().find("/nonexistent/file.idx") != std::string::npos);
  }

private:
  QTemporaryDir m_dir;
};

TESSERA_TEST_MAIN(TestIdx, Appless)
#include "test_idx.moc"
