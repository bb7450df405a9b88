// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace tessera {

/// Offset of the first byte that breaks UTF-8 (overlong forms, surrogates and code
/// points past U+10FFFF included), or nullopt when the whole text is valid.
std::optional<std::size_t> firstInvalidUtf8(std::string_view text);

}  // namespace tessera
