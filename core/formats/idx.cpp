// SPDX-License-Identifier: Apache-2.0
#include "core/formats/idx.h"

#include <ATen/ATen.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace tessera {
namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

struct IdxType {
  std::uint8_t code;
  const char* name;
  c10::ScalarType scalar;
  std::size_t size;
};

constexpr IdxType kIdxTypes[] = {
    {0x08, "unsigned byte", c10::ScalarType::Byte, 1}, {0x09, "signed byte", c10::ScalarType::Char, 1},
    {0x0B, "short", c10::ScalarType::Short, 2},        {0x0C, "int", c10::ScalarType::Int, 4},
    {0x0D, "float", c10::ScalarType::Float, 4},        {0x0E, "double", c10::ScalarType::Double, 8},
};

}  // namespace

Result<at::Tensor> readIdx(const std::string& path) {
  // gzread reads plain files unchanged, so one path serves both forms.
  std::unique_ptr<gzFile_s, GzCloser> gz(gzopen(path.c_str(), "rb"));
  if (!gz) return fail(path + ": cannot open: " + std::strerror(errno));
  auto bad = [&](const std::string& what) { return fail(path + ": " + what); };
  auto readExactly = [&](void* dst, std::size_t n) -> std::size_t {
    std::size_t got = 0;
    auto* out = static_cast<char*>(dst);
    while (got < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - got, 1u << 30));
      const int r = gzread(gz.get(), out + got, chunk);
      if (r <= 0) break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  };
  auto gzFault = [&]() -> std::string {
    int code = Z_OK;
    const char* msg = gzerror(gz.get(), &code);
    return (code != Z_OK && code != Z_STREAM_END && msg && *msg) ? std::string(" (") + msg + ")" : std::string();
  };

  std::uint8_t magic[4];
  if (readExactly(magic, 4) != 4) return bad("truncated: fewer than 4 bytes, an IDX file starts with a 4-byte magic" + gzFault());
  if (magic[0] != 0 || magic[1] != 0)
    return bad("bad magic: the first two bytes must be zero (got 0x" + std::to_string(magic[0]) + ", 0x" +
               std::to_string(magic[1]) + "): not an IDX file");
  const IdxType* type = nullptr;
  for (const auto& t : kIdxTypes)
    if (t.code == magic[2]) type = &t;
  if (!type)
    return bad("unknown element type code " + std::to_string(magic[2]) +
               " (expected 8, 9, 11, 12, 13 or 14)");
  const int ndims = magic[3];
  if (ndims < 1 || ndims > 8) return bad("declares " + std::to_string(ndims) + " dimensions (expected 1 to 8)");

  std::vector<std::int64_t> dims;
  std::uint64_t count = 1;
  for (int i = 0; i < ndims; ++i) {
    std::uint8_t b[4];
    if (readExactly(b, 4) != 4) return bad("truncated in the dimension list" + gzFault());
    const std::uint32_t d = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
    dims.push_back(d);
    if (__builtin_mul_overflow(count, d, &count)) return bad("dimensions overflow");
  }
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(count, type->size, &bytes) || bytes > kMaxIdxBytes)
    return bad("declares " + std::to_string(count) + " elements, more than the " +
               std::to_string(kMaxIdxBytes >> 30) + " GiB an IDX file may hold");

  // Grow the buffer as data actually arrives, so a lying header cannot make us
  // allocate memory the file does not back: from 64 KB, doubling up to 8 MB a read.
  std::vector<std::uint8_t> buffer;
  constexpr std::size_t kMaxChunk = 8u << 20;
  std::size_t chunk = 64u << 10;
  while (buffer.size() < bytes) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, bytes - buffer.size()));
    chunk = std::min(chunk * 2, kMaxChunk);
    const std::size_t old = buffer.size();
    buffer.resize(old + want);
    const std::size_t got = readExactly(buffer.data() + old, want);
    if (got != want)
      return bad("truncated: the header declares " + std::to_string(bytes) + " data bytes, the file has " +
                 std::to_string(old + got) + gzFault());
  }
  std::uint8_t extra;
  if (readExactly(&extra, 1) != 0) return bad("trailing data after the " + std::to_string(bytes) + " declared bytes");
  if (!gzFault().empty()) return bad("corrupt compressed data" + gzFault());

  if (type->size > 1) {  // big-endian to host order
    for (std::size_t i = 0; i < buffer.size(); i += type->size)
      std::reverse(buffer.begin() + static_cast<std::ptrdiff_t>(i),
                   buffer.begin() + static_cast<std::ptrdiff_t>(i + type->size));
  }
  at::Tensor out = at::empty(dims, at::TensorOptions().dtype(type->scalar));
  if (bytes) std::memcpy(out.data_ptr(), buffer.data(), buffer.size());
  return out;
}

}  // namespace tessera
