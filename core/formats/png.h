// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tessera {

/// An 8-bit image, rows top to bottom, channels interleaved (1 grey, 3 RGB, 4 RGBA).
struct Image8 {
  std::int64_t width = 0, height = 0, channels = 0;
  std::vector<std::uint8_t> pixels;
};

/// Encodes a PNG (libpng) with uncompressed tEXt chunks, one per entry of `text`
/// (keywords of 1–79 Latin-1 characters; values are stored as given, e.g. UTF-8 JSON).
Result<std::string> encodePng(const Image8& image, const std::map<std::string, std::string>& text = {});
/// encodePng, written atomically.
Result<void> writePng(const std::string& path, const Image8& image, const std::map<std::string, std::string>& text = {});

struct DecodedPng {
  Image8 image;
  std::map<std::string, std::string> text;
};
/// Reads a PNG written by writePng (8-bit grey, RGB or RGBA) and its text chunks. Images
/// larger than 16384 x 16384 and chunks over 16 MB are refused before anything is
/// allocated for them.
Result<DecodedPng> readPng(const std::string& path);

}  // namespace tessera
