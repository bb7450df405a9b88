// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/formats/safetensors.h"
#include "core/util/error.h"

#include <map>
#include <string>
#include <vector>

namespace tessera {

/// The contents of a `torch.save` zip archive, flattened: every tensor with its dotted
/// key path (`ema.x_embedder.proj.weight`), and other scalar leaves as text.
struct TorchCheckpoint {
  /// A tensor and where it sits: the key path of its container and its key there.
  struct Entry {
    std::string container;  ///< "" for the top level, "ema", "model", ...
    std::string key;        ///< "x_embedder.proj.weight"
    at::Tensor tensor;
    std::string fullName() const { return container.empty() ? key : container + "." + key; }
  };
  std::string path;
  std::vector<Entry> tensors;                 ///< in the order the archive lists them
  std::map<std::string, std::string> scalars; ///< e.g. "epoch" -> "10"
  /// Key paths of the dicts that hold tensors directly ("" for the top level).
  std::vector<std::string> stateDictPaths;
};

/// Reads a `torch.save` file (the zip format of PyTorch >= 1.6) without running any
/// Python: the pickle is interpreted with an allowlist (see core/formats/pickle.h).
Result<TorchCheckpoint> readTorchCheckpoint(const std::string& path);

/// Keys under which training scripts nest a state dict, in order of preference
/// (EMA weights first: they are what the reference repositories sample with).
const std::vector<std::string>& preferredStateDictKeys();

/// Which container holds the state dict: `key` when given and present; otherwise the
/// top level ("") if it holds tensors, else the first of preferredStateDictKeys().
Result<std::string> chooseStateDict(const TorchCheckpoint& checkpoint, const std::string& key = {});

/// The state dict of a checkpoint: the one at `key` when given; otherwise the top
/// level if it holds tensors, else the first of preferredStateDictKeys() present.
/// Names are relative to that dict.
Result<NamedTensors> extractStateDict(const TorchCheckpoint& checkpoint, const std::string& key = {});

}  // namespace tessera
