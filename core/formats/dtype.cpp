// SPDX-License-Identifier: Apache-2.0
#include "core/formats/dtype.h"

#include <array>

namespace tessera {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::size_t size;
  int layoutRank;  // position in safetensors' Dtype enum (BOOL < U8 < I8 < ... < I64)
  c10::ScalarType scalar;
};

constexpr std::array<DTypeInfo, 10> kTypes{{
    {DType::Bool, "BOOL", 1, 0, c10::ScalarType::Bool},
    {DType::U8, "U8", 1, 1, c10::ScalarType::Byte},
    {DType::I8, "I8", 1, 2, c10::ScalarType::Char},
    {DType::I16, "I16", 2, 5, c10::ScalarType::Short},
    {DType::F16, "F16", 2, 7, c10::ScalarType::Half},
    {DType::BF16, "BF16", 2, 8, c10::ScalarType::BFloat16},
    {DType::I32, "I32", 4, 9, c10::ScalarType::Int},
    {DType::F32, "F32", 4, 11, c10::ScalarType::Float},
    {DType::F64, "F64", 8, 12, c10::ScalarType::Double},
    {DType::I64, "I64", 8, 13, c10::ScalarType::Long},
}};

const DTypeInfo& info(DType dtype) {
  for (const auto& t : kTypes)
    if (t.dtype == dtype) return t;
  return kTypes[0];  // unreachable: every enumerator is in the table
}

}  // namespace

std::string_view dtypeName(DType dtype) { return info(dtype).name; }
std::size_t dtypeSize(DType dtype) { return info(dtype).size; }
int dtypeLayoutRank(DType dtype) { return info(dtype).layoutRank; }
c10::ScalarType toScalarType(DType dtype) { return info(dtype).scalar; }

std::optional<DType> dtypeFromName(std::string_view name) {
  for (const auto& t : kTypes)
    if (t.name == name) return t.dtype;
  return std::nullopt;
}

std::string supportedDTypeNames() {
  std::string out;
  for (const auto& t : kTypes) {
    if (!out.empty()) out += ", ";
    out += t.name;
  }
  return out;
}

Result<DType> fromScalarType(c10::ScalarType type) {
  for (const auto& t : kTypes)
    if (t.scalar == type) return t.dtype;
  return fail(std::string("tensor type ") + c10::toString(type) +
              " cannot be stored (supported: " + supportedDTypeNames() + ")");
}

}  // namespace tessera
