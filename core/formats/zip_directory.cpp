// SPDX-License-Identifier: Apache-2.0
// The zip layout (PKWARE APPNOTE 6.3): the end-of-central-directory record (EOCD) in the
// last 64 KB + 22 bytes, for ZIP64 archives a locator before it pointing at the ZIP64
// EOCD, and the central directory's file headers, whose sizes saturated at 0xFFFFFFFF are
// given in the ZIP64 extra field (id 0x0001: uncompressed size, then compressed size, each
// present only where the header saturated).
#include "core/formats/zip_directory.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace tessera {
namespace {

std::uint64_t little(const std::string& b, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + static_cast<std::size_t>(i)]);
  return v;
}

/// Reads [offset, offset + size) of the file, or fails naming what was being read.
Result<std::string> readAt(std::ifstream& in, std::uint64_t offset, std::uint64_t size, std::uint64_t fileSize,
                           const std::string& what) {
  if (offset > fileSize || size > fileSize - offset) return fail(what + " lies outside the file");
  std::string out(size, '\0');
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(out.data(), static_cast<std::streamsize>(size));
  if (!in) return fail("cannot read " + what);
  return out;
}

}  // namespace

Result<std::vector<ZipRecord>> readZipDirectory(const std::string& path) {
  std::error_code ec;
  const std::uint64_t fileSize = std::filesystem::file_size(path, ec);
  if (ec) return fail(path + ": cannot read: " + ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(path + ": cannot open");
  auto wrap = [&](const Error& e) { return fail(e.withContext(path + ": zip directory")); };

  // The EOCD: signature PK\5\6, 22 bytes plus a comment of up to 65535.
  const std::uint64_t tailSize = std::min<std::uint64_t>(fileSize, 22 + 65535);
  auto tail = readAt(in, fileSize - tailSize, tailSize, fileSize, "the end of the archive");
  if (!tail) return wrap(tail.error());
  if (tailSize < 22) return fail(path + ": zip directory: too short for a zip archive");
  std::size_t eocd = std::string::npos;
  for (std::size_t i = tail->size() - 22 + 1; i-- > 0;)
    if (tail->compare(i, 4, "PK\x05\x06", 4) == 0) {
      eocd = i;
      break;
    }
  if (eocd == std::string::npos) return fail(path + ": zip directory: no end-of-directory record");
  std::uint64_t entries = little(*tail, eocd + 10, 2), dirSize = little(*tail, eocd + 12, 4),
                dirOffset = little(*tail, eocd + 16, 4);
  if (entries == 0xFFFF || dirSize == 0xFFFFFFFF || dirOffset == 0xFFFFFFFF) {
    // ZIP64: a 20-byte locator (PK\6\7) just before the EOCD gives the ZIP64 EOCD's offset.
    const std::uint64_t eocdAt = fileSize - tailSize + eocd;
    if (eocdAt < 20) return fail(path + ": zip directory: ZIP64 locator missing");
    auto locator = readAt(in, eocdAt - 20, 20, fileSize, "the ZIP64 locator");
    if (!locator) return wrap(locator.error());
    if (locator->compare(0, 4, "PK\x06\x07", 4) != 0) return fail(path + ": zip directory: ZIP64 locator missing");
    auto record = readAt(in, little(*locator, 8, 8), 56, fileSize, "the ZIP64 end-of-directory record");
    if (!record) return wrap(record.error());
    if (record->compare(0, 4, "PK\x06\x06", 4) != 0)
      return fail(path + ": zip directory: ZIP64 end-of-directory record missing");
    entries = little(*record, 32, 8), dirSize = little(*record, 40, 8), dirOffset = little(*record, 48, 8);
  }
  // Each file header takes at least 46 bytes: a count the directory cannot hold is a lie.
  if (entries > dirSize / 46)
    return fail(path + ": zip directory: " + std::to_string(entries) + " records claimed in " +
                std::to_string(dirSize) + " bytes");
  auto dir = readAt(in, dirOffset, dirSize, fileSize, "the central directory");
  if (!dir) return wrap(dir.error());

  std::vector<ZipRecord> records;
  records.reserve(static_cast<std::size_t>(entries));
  std::size_t at = 0;
  for (std::uint64_t n = 0; n < entries; ++n) {
    if (dir->size() - at < 46 || dir->compare(at, 4, "PK\x01\x02", 4) != 0)
      return fail(path + ": zip directory: file header " + std::to_string(n) + " is damaged");
    ZipRecord r;
    r.method = static_cast<std::uint16_t>(little(*dir, at + 10, 2));
    r.compressedSize = little(*dir, at + 20, 4);
    r.size = little(*dir, at + 24, 4);
    const std::size_t nameLength = little(*dir, at + 28, 2), extraLength = little(*dir, at + 30, 2),
                      commentLength = little(*dir, at + 32, 2);
    if (dir->size() - at - 46 < nameLength + extraLength + commentLength)
      return fail(path + ": zip directory: file header " + std::to_string(n) + " runs past the directory");
    r.name = dir->substr(at + 46, nameLength);
    // The ZIP64 extra field, for sizes that saturated.
    for (std::size_t e = at + 46 + nameLength, end = e + extraLength; end - e >= 4;) {
      const std::uint64_t id = little(*dir, e, 2), length = little(*dir, e + 2, 2);
      if (end - e - 4 < length) break;
      if (id == 0x0001) {
        std::size_t field = e + 4;
        const std::size_t fieldEnd = field + length;
        if (r.size == 0xFFFFFFFF && fieldEnd - field >= 8) r.size = little(*dir, field, 8), field += 8;
        if (r.compressedSize == 0xFFFFFFFF && fieldEnd - field >= 8) r.compressedSize = little(*dir, field, 8);
      }
      e += 4 + length;
    }
    records.push_back(std::move(r));
    at += 46 + nameLength + extraLength + commentLength;
  }
  return records;
}

}  // namespace tessera
