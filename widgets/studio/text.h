// SPDX-License-Identifier: Apache-2.0
#pragma once
// UTF-8 std::string → QString, the one conversion the panels and services repeat.
#include <QString>

#include <string>

namespace tessera {

inline QString qs(const std::string& s) { return QString::fromStdString(s); }

}  // namespace tessera
