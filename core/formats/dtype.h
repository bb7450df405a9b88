// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"

#include <c10/core/ScalarType.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace tessera {

/// The element types our tensor files carry, with safetensors' names.
enum class DType { Bool, U8, I8, I16, F16, BF16, I32, F32, F64, I64 };

/// "F32", "BF16", ... as safetensors spells them.
std::string_view dtypeName(DType dtype);
/// Parses a safetensors dtype name; nullopt for anything we do not read.
std::optional<DType> dtypeFromName(std::string_view name);
/// Bytes per element.
std::size_t dtypeSize(DType dtype);
/// Order used by the reference safetensors writer (its Dtype enum order): tensors are
/// laid out by descending rank, then by name.
int dtypeLayoutRank(DType dtype);
/// The comma-separated list of supported names, for error messages.
std::string supportedDTypeNames();

c10::ScalarType toScalarType(DType dtype);
Result<DType> fromScalarType(c10::ScalarType type);

}  // namespace tessera
