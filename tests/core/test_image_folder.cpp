// SPDX-License-Identifier: Apache-2.0
// Image folders: classes from sub-folders, grey and colour images of any size, and
// corrupt or foreign files skipped with their names.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/data/image_folder.h"
#include "core/formats/png.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QTemporaryDir>
#include <QtTest>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#endif

using namespace tessera;

namespace {

void writeImage(const std::string& path, std::int64_t w, std::int64_t h, std::int64_t channels, std::uint8_t base) {
  Image8 img;
  img.width = w;
  img.height = h;
  img.channels = channels;
  img.pixels.resize(static_cast<std::size_t>(w * h * channels));
  for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<std::uint8_t>(base + i % 7);
  if (!writePng(path, img)) qFatal("cannot write %s", path.c_str());
}

/// A valid grey PNG of w × h black pixels, compressed as it is made (a 20000 × 20000 one is
/// a few hundred KB on disk and 400 MB decoded).
void writeLargeBlackPng(const std::string& path, std::uint32_t w, std::uint32_t h) {
  auto be32 = [](std::uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                       static_cast<char>(v)};
  };
  auto chunk = [&](const std::string& type, const std::string& data) {
    const std::string body = type + data;
    return be32(static_cast<std::uint32_t>(data.size())) + body +
           be32(static_cast<std::uint32_t>(
               crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
  };
  std::string idat;
  z_stream z{};
  deflateInit(&z, 9);
  const std::string row(w + 1, '\0');  // filter byte 0, then the pixels
  std::string buffer(1 << 16, '\0');
  for (std::uint32_t y = 0; y <= h; ++y) {
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(row.data()));
    z.avail_in = y < h ? static_cast<uInt>(row.size()) : 0;
    do {
      z.next_out = reinterpret_cast<Bytef*>(buffer.data());
      z.avail_out = static_cast<uInt>(buffer.size());
      deflate(&z, y < h ? Z_NO_FLUSH : Z_FINISH);
      idat.append(buffer.data(), buffer.size() - z.avail_out);
    } while (z.avail_out == 0);
  }
  deflateEnd(&z);
  std::ofstream out(path, std::ios::binary);
  out << std::string("\x89PNG\r\n\x1a\n", 8)
      << chunk("IHDR", be32(w) + be32(h) + std::string("\x08\x00\x00\x00\x00", 5)) << chunk("IDAT", idat)
      << chunk("IEND", "");
}

}  // namespace

class TestImageFolder : public QObject {
  Q_OBJECT

private Q_SLOTS:
  // Issue 22: one symbolic link loop ended `info --data` and `train` with an exception;
  // it is skipped and named instead.
  void symbolicLinkLoopsAreSkipped() {
    QTemporaryDir tmp;
    const std::string root = tmp.path().toStdString();
    std::filesystem::create_directories(root + "/cats");
    writeImage(root + "/cats/a.png", 4, 4, 1, 10);
    std::filesystem::create_symlink("loop", root + "/loop");         // a class folder that loops
    std::filesystem::create_symlink("again", root + "/cats/again");  // a file that loops
    auto set = loadImageFolder(root);
    QVERIFY2(set, set ? "" : set.error().message().c_str());
    QCOMPARE(set->classNames, (std::vector<std::string>{"cats"}));
    QCOMPARE(set->images.size(), std::size_t(1));
    QCOMPARE(set->skipped.size(), std::size_t(2));
    for (const auto& skipped : set->skipped)
      QVERIFY2(skipped.reason.find("symbolic links") != std::string::npos, skipped.reason.c_str());
  }

  // Issue 22: a 20000 x 20000 PNG in a training folder was decoded whole (3.2 GB in colour).
  // Its header is read first: more than 8192 x 8192 pixels is skipped, naming the size.
  void hugeImagesAreSkippedBeforeDecoding() {
    QTemporaryDir tmp;
    const std::string root = tmp.path().toStdString();
    std::filesystem::create_directories(root + "/cats");
    writeImage(root + "/cats/a.png", 4, 4, 1, 10);
    writeLargeBlackPng(root + "/cats/huge.png", 20000, 20000);
    auto set = loadImageFolder(root);
    QVERIFY2(set, set ? "" : set.error().message().c_str());
    QCOMPARE(set->images.size(), std::size_t(1));
    QCOMPARE(set->skipped.size(), std::size_t(1));
    QVERIFY2(set->skipped[0].reason.find("20000x20000 pixels, more than the 67 megapixels") != std::string::npos,
             set->skipped[0].reason.c_str());
  }

  // Issue 22, found by the png fuzz target: a 131-byte PNG whose tEXt chunk claims 2 GB
  // had libpng allocate the 2 GB. A chunk longer than the rest of the file is refused first.
  void pngChunksLongerThanTheFileAreRefused() {
    auto png = readPng(TESSERA_SOURCE_DIR "/tests/fuzz/findings/png/oom-chunk-claims-2gb.png");
    QVERIFY(!png);
    QVERIFY2(png.error().message().find("chunk 'tEXt' at byte 33 claims 2046820391 bytes, more than the file holds") !=
                 std::string::npos,
             png.error().message().c_str());
  }

  void classesImagesAndSkippedFiles() {
    QTemporaryDir tmp;
    const std::string root = tmp.path().toStdString();
    std::filesystem::create_directories(root + "/dogs");
    std::filesystem::create_directories(root + "/cats");
    writeImage(root + "/cats/a.png", 12, 9, 1, 10);
    writeImage(root + "/cats/b.png", 5, 20, 1, 50);
    writeImage(root + "/dogs/c.png", 7, 6, 3, 100);
    std::ofstream(root + "/dogs/broken.png") << "\x89PNG\r\n\x1a\n this is not really a png";
    std::ofstream(root + "/dogs/notes.txt") << "hello";
    std::ofstream(root + "/dogs/.hidden") << "ignored";

    auto set = loadImageFolder(root);
    QVERIFY2(set, set ? "" : set.error().message().c_str());
    QCOMPARE(set->classNames, (std::vector<std::string>{"cats", "dogs"}));
    QCOMPARE(set->images.size(), std::size_t(3));
    QCOMPARE(set->labels, (std::vector<std::int64_t>{0, 0, 1}));
    QCOMPARE(set->channels, 3);  // one colour image: everything becomes RGB
    QCOMPARE(set->images[1].sizes().vec(), (std::vector<std::int64_t>{3, 20, 5}));
    QCOMPARE(set->images[2].sizes().vec(), (std::vector<std::int64_t>{3, 6, 7}));
    // RGB order: the first pixel of c.png was written as (100, 101, 102)
    QCOMPARE(set->images[2][0][0][0].item<int>(), 100);
    QCOMPARE(set->images[2][1][0][0].item<int>(), 101);
    QCOMPARE(set->images[2][2][0][0].item<int>(), 102);
    QCOMPARE(set->skipped.size(), std::size_t(2));
    QVERIFY(set->skipped[0].path.find("broken.png") != std::string::npos);
    QVERIFY(set->skipped[1].path.find("notes.txt") != std::string::npos);
    const auto summary = set->summary();
    QCOMPARE(summary["skipped"].get<int>(), 2);
    QCOMPARE(summary["classes"][0]["images"].get<int>(), 2);

    ImageFolderOptions grey;
    grey.channels = 1;
    auto g = loadImageFolder(root, grey);
    QVERIFY(g);
    QCOMPARE(g->images[2].sizes().vec(), (std::vector<std::int64_t>{1, 6, 7}));
  }

  void badFolders() {
    QTemporaryDir tmp;
    const std::string root = tmp.path().toStdString();
    auto r = loadImageFolder(root + "/missing");
    QVERIFY(!r && r.error().message().find("not a folder") != std::string::npos);
    r = loadImageFolder(root);
    QVERIFY(!r && r.error().message().find("no class sub-folders") != std::string::npos);
    std::filesystem::create_directories(root + "/only");
    std::ofstream(root + "/only/x.jpg") << "garbage";
    r = loadImageFolder(root);
    QVERIFY(!r && r.error().message().find("no readable image") != std::string::npos);
    ImageFolderOptions bad;
    bad.channels = 2;
    QVERIFY(!loadImageFolder(root, bad));
  }
};

TESSERA_TEST_MAIN(TestImageFolder, Appless)
#include "test_image_folder.moc"
