// SPDX-License-Identifier: Apache-2.0
#pragma once
// Constants C++17's <cmath> lacks (std::numbers is C++20).

namespace tessera {

inline constexpr double kPi = 3.14159265358979323846;

}  // namespace tessera
