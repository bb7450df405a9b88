// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"

#include <functional>
#include <ostream>
#include <string>
#include <string_view>

namespace tessera {

/// Writes a file so that readers see either the old content or the complete new one:
/// a temporary file beside the target, fsync, rename over the target, fsync of the
/// directory. `write` fills the stream; a failed stream or a false return abandons the
/// temporary file and leaves the target untouched.
Result<void> writeFileAtomically(const std::string& path,
                                 const std::function<bool(std::ostream&)>& write);

/// Convenience overload for a byte string.
Result<void> writeFileAtomically(const std::string& path, std::string_view bytes);

}  // namespace tessera
