// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/formats/safetensors.h"
#include "core/util/error.h"

#include <torch/nn/module.h>

#include <cstdint>
#include <string>
#include <vector>

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

/// The depth of a transformer state dict: its tensors named "blocks.N." must number their
/// blocks 0 … depth − 1 without gaps. Fails naming what is wrong, also for indices too
/// large to be real (more than six digits) that would overflow a number.
Result<std::int64_t> blockDepth(const std::vector<std::string>& tensorNames, const std::string& family);

/// `tensor` (named `key`) has `dims` dimensions, each at least 1: an importer may divide by
/// any size it reads.
Result<void> checkImportShape(const at::Tensor& tensor, const std::string& key, std::int64_t dims);

}  // namespace tessera
