// SPDX-License-Identifier: Apache-2.0
// The one precompiled header: LibTorch's tensors and C++ frontend, JSON and the standard
// containers. Built once by the tessera_pch target (core/CMakeLists.txt) and reused by every
// target that compiles LibTorch code (tessera_use_pch()).
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/nn.h>
#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>
