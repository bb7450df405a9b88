// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tessera {

struct ImageDimensions {
  std::int64_t width = 0, height = 0;
};

/// The width and height a PNG (IHDR) or JPEG (its first SOF segment) declares, read from
/// the first bytes of the file without decoding anything: what a reader checks before it
/// lets a decoder allocate. Nothing for other formats, or when the header is not within
/// `head`.
std::optional<ImageDimensions> readImageDimensions(std::string_view head);

}  // namespace tessera
