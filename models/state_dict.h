// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/formats/safetensors.h"
#include "core/util/error.h"

#include <torch/nn/module.h>

namespace tessera {

/// Parameters and buffers of `module` by their dotted names, in registration order.
NamedTensors stateDict(const torch::nn::Module& module);

/// Copies `tensors` into `module` by name. Strict: any missing, unexpected or wrongly
/// shaped tensor fails, and the error lists every offending key (with shapes).
/// Nothing is copied unless everything matches. Values are converted to the
/// parameter's dtype.
Result<void> loadStateDict(torch::nn::Module& module, const NamedTensors& tensors);

using TensorShapes = std::vector<std::pair<std::string, std::vector<std::int64_t>>>;

/// The names and shapes of `tensors`.
TensorShapes shapesOf(const NamedTensors& tensors);

/// Checks the names and shapes `given` against those a model expects, without building
/// it. The error lists every missing, unexpected or wrongly shaped key.
Result<void> checkStateDictShapes(const TensorShapes& expected, const TensorShapes& given);

/// Removes wrapper prefixes that training scripts leave on every key ("module." from
/// DistributedDataParallel, "_orig_mod." from torch.compile).
NamedTensors stripWrapperPrefixes(const NamedTensors& tensors);

}  // namespace tessera
