// SPDX-License-Identifier: Apache-2.0
// PNG: the 8-byte signature, then the IHDR chunk (length 13, "IHDR", width and height as
// big-endian 32-bit numbers). JPEG (ITU T.81, annex B): FF D8, then segments FF <marker>
// <16-bit length including itself> <payload>; a start-of-frame (C0-CF except C4 DHT, C8 JPG
// and CC DAC) holds precision, height, width; the scan (DA) comes after it.
#include "core/formats/image_header.h"

namespace tessera {
namespace {

std::uint32_t big(std::string_view b, std::size_t at, int bytes) {
  std::uint32_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(b[at + static_cast<std::size_t>(i)]);
  return v;
}

std::optional<ImageDimensions> png(std::string_view b) {
  if (b.size() < 24 || b.substr(12, 4) != "IHDR") return std::nullopt;
  return ImageDimensions{big(b, 16, 4), big(b, 20, 4)};
}

std::optional<ImageDimensions> jpeg(std::string_view b) {
  std::size_t at = 2;
  while (at + 4 <= b.size()) {
    if (static_cast<unsigned char>(b[at]) != 0xFF) return std::nullopt;
    const auto marker = static_cast<unsigned char>(b[at + 1]);
    if (marker == 0xFF) {  // fill byte
      ++at;
      continue;
    }
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {  // no length
      at += 2;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) return std::nullopt;  // the scan, or the end, before any frame
    const std::uint32_t length = big(b, at + 2, 2);
    if (length < 2) return std::nullopt;
    const bool frame = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame) {
      if (length < 7 || at + 9 > b.size()) return std::nullopt;
      return ImageDimensions{big(b, at + 7, 2), big(b, at + 5, 2)};
    }
    at += 2 + length;
  }
  return std::nullopt;
}

}  // namespace

std::optional<ImageDimensions> readImageDimensions(std::string_view head) {
  if (head.size() >= 8 && head.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8)) return png(head);
  if (head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0xFF && static_cast<unsigned char>(head[1]) == 0xD8)
    return jpeg(head);
  return std::nullopt;
}

}  // namespace tessera
