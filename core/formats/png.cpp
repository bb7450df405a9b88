// SPDX-License-Identifier: Apache-2.0
#include "core/formats/png.h"

#include "core/util/atomic_file.h"

#include <png.h>

#include <algorithm>
#include <cctype>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>

namespace tessera {
namespace {

struct ErrorState {
  std::string message;
};

void onError(png_structp png, png_const_charp message) {
  if (auto* s = static_cast<ErrorState*>(png_get_error_ptr(png))) s->message = message;
  png_longjmp(png, 1);
}
void onWarning(png_structp, png_const_charp) {}

int colorType(std::int64_t channels) {
  switch (channels) {
    case 1: return PNG_COLOR_TYPE_GRAY;
    case 3: return PNG_COLOR_TYPE_RGB;
    case 4: return PNG_COLOR_TYPE_RGB_ALPHA;
    default: return -1;
  }
}

}  // namespace

Result<std::string> encodePng(const Image8& image, const std::map<std::string, std::string>& text) {
  const int type = colorType(image.channels);
  if (type < 0) return fail("png: " + std::to_string(image.channels) + " channels (expected 1, 3 or 4)");
  if (image.width <= 0 || image.height <= 0 || image.width > (1 << 20) || image.height > (1 << 20))
    return fail("png: bad size " + std::to_string(image.width) + "x" + std::to_string(image.height));
  if (image.pixels.size() != static_cast<std::size_t>(image.width * image.height * image.channels))
    return fail("png: pixel buffer does not match " + std::to_string(image.width) + "x" + std::to_string(image.height));
  for (const auto& [key, value] : text)
    if (key.empty() || key.size() > 79) return fail("png: text keyword '" + key + "' must have 1 to 79 characters");

  ErrorState state;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, onError, onWarning);
  if (!png) return fail("png: cannot create a libpng writer");
  png_infop info = png_create_info_struct(png);
  std::string out;
  std::vector<png_text> chunks;
  std::vector<png_bytep> rows(static_cast<std::size_t>(image.height));
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return fail("png: " + state.message);
  }
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep data, png_size_t size) {
        static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<const char*>(data), size);
      },
      [](png_structp) {});
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width), static_cast<png_uint_32>(image.height), 8, type,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  for (const auto& [key, value] : text) {
    png_text t{};
    t.compression = PNG_TEXT_COMPRESSION_NONE;
    t.key = const_cast<png_charp>(key.c_str());
    t.text = const_cast<png_charp>(value.c_str());
    t.text_length = value.size();
    chunks.push_back(t);
  }
  if (!chunks.empty()) png_set_text(png, info, chunks.data(), static_cast<int>(chunks.size()));
  for (std::int64_t y = 0; y < image.height; ++y)
    rows[static_cast<std::size_t>(y)] = const_cast<png_bytep>(image.pixels.data() + y * image.width * image.channels);
  png_set_rows(png, info, rows.data());
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

Result<void> writePng(const std::string& path, const Image8& image, const std::map<std::string, std::string>& text) {
  auto bytes = encodePng(image, text);
  if (!bytes) return fail(path + ": " + bytes.error().message());
  return writeFileAtomically(path, *bytes);
}

namespace {

/// A chunk type as text when it is four letters (as every valid one is), else in hex.
std::string chunkName(const std::string& type) {
  const bool letters =
      std::all_of(type.begin(), type.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); });
  if (letters) return type;
  static const char* hex = "0123456789abcdef";
  std::string out = "0x";
  for (const char c : type)
    out += hex[static_cast<unsigned char>(c) >> 4], out += hex[static_cast<unsigned char>(c) & 15];
  return out;
}

}  // namespace

Result<DecodedPng> readPng(const std::string& path) {
  constexpr png_alloc_size_t kMaxPngChunkBytes = 16u << 20;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return fail(path + ": not a regular file; expected a PNG file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(path + ": cannot open");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 8 || png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8))
    return fail(path + ": not a PNG file");
  // Every chunk must lie within the file. libpng allocates what a text chunk claims before
  // it reads it, with no limit of its own: a 131-byte file whose tEXt claimed 2 GB once
  // took 2 GB (found by the png fuzz target).
  for (std::size_t at = 8; at < bytes.size();) {
    if (bytes.size() - at < 12)
      return fail(path + ": truncated PNG: the chunk at byte " + std::to_string(at) + " is cut off");
    std::uint32_t length = 0;
    for (int i = 0; i < 4; ++i)
      length = (length << 8) | static_cast<unsigned char>(bytes[at + static_cast<std::size_t>(i)]);
    const std::string type = bytes.substr(at + 4, 4);
    if (length > bytes.size() - at - 12)
      return fail(path + ": damaged PNG: chunk '" + chunkName(type) + "' at byte " + std::to_string(at) + " claims " +
                  std::to_string(length) + " bytes, more than the file holds");
    if (type == "IEND") break;
    at += 12 + length;
  }
  ErrorState state;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, onError, onWarning);
  if (!png) return fail("png: cannot create a libpng reader");
  png_infop info = png_create_info_struct(png);
  struct Reader {
    const std::string* bytes;
    std::size_t offset;
  } reader{&bytes, 0};
  DecodedPng result;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return fail(path + ": " + state.message);
  }
  // What libpng may allocate is bounded before it reads: a 131-byte file whose chunk claimed
  // 2 GB once had that allocated (found by the png fuzz target). No image is larger than
  // the largest Tessera makes, and no chunk (text included) larger than kMaxPngChunkBytes.
  png_set_user_limits(png, 16384, 16384);
  png_set_chunk_malloc_max(png, kMaxPngChunkBytes);
  png_set_read_fn(png, &reader, [](png_structp p, png_bytep data, png_size_t size) {
    auto* r = static_cast<Reader*>(png_get_io_ptr(p));
    if (r->offset + size > r->bytes->size()) png_error(p, "truncated file");
    std::memcpy(data, r->bytes->data() + r->offset, size);
    r->offset += size;
  });
  png_read_png(png, info, PNG_TRANSFORM_STRIP_16 | PNG_TRANSFORM_PACKING | PNG_TRANSFORM_EXPAND, nullptr);
  const auto w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  const int ch = png_get_channels(png, info);
  png_bytepp rows = png_get_rows(png, info);
  result.image.width = w;
  result.image.height = h;
  result.image.channels = ch;
  result.image.pixels.resize(static_cast<std::size_t>(w) * h * static_cast<std::size_t>(ch));
  for (png_uint_32 y = 0; y < h; ++y)
    std::memcpy(result.image.pixels.data() + static_cast<std::size_t>(y) * w * ch, rows[y], static_cast<std::size_t>(w) * ch);
  png_textp texts = nullptr;
  const int count = png_get_text(png, info, &texts, nullptr);
  for (int i = 0; i < count; ++i) result.text[texts[i].key] = std::string(texts[i].text, texts[i].text_length);
  png_destroy_read_struct(&png, &info, nullptr);
  return result;
}

}  // namespace tessera
