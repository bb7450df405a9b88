// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"

#include <ATen/core/Tensor.h>

#include <string>

namespace tessera {

/// Largest payload an IDX file may declare (Fashion-MNIST's train images are 47 MB).
inline constexpr std::uint64_t kMaxIdxBytes = 4ull << 30;

/// Reads an IDX file (LeCun's MNIST format), gzip-compressed or not. The result has
/// the file's dimensions and element type (u8, i8, i16, i32, f32, f64), converted from
/// big-endian. Every malformed file (bad magic, unknown type, truncated or trailing
/// data, sizes that overflow) is an Error naming the file and the fault; memory is
/// only allocated for data that is actually present.
Result<at::Tensor> readIdx(const std::string& path);

}  // namespace tessera
