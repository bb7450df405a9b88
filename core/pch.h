// SPDX-License-Identifier: Apache-2.0
// Precompiled header of the LibTorch-heavy targets (core, models, tessera-cli).
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>
