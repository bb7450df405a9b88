// SPDX-License-Identifier: Apache-2.0
#pragma once
// Small helpers the test programs share.
#include "core/util/error.h"

#include <QtGlobal>

#include <fstream>
#include <sstream>
#include <string>

namespace tessera::test {

/// The value of a successful result; ends the test program, with the error, on a failed one.
template <typename T>
T must(const Result<T>& r) {
  if (!r) qFatal("%s", r.error().message().c_str());
  return r.value();
}

/// The bytes of the file at `path` ("" when it cannot be read).
inline std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace tessera::test
