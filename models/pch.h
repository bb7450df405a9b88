// SPDX-License-Identifier: Apache-2.0
// Precompiled header of tessera_models: LibTorch's C++ frontend.
#pragma once

#include <torch/nn.h>
#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>
