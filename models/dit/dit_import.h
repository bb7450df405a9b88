// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/formats/safetensors.h"
#include "core/util/error.h"
#include "models/dit/dit.h"

#include <optional>
#include <string>
#include <vector>

namespace tessera {

struct DiTImportOptions {
  std::string family = "dit";               ///< "dit" or "sit"
  std::optional<std::string> preset;        ///< "DiT-XL/2": supplies the heads, checked against shapes
  std::optional<std::int64_t> heads;        ///< what shapes cannot tell
  std::optional<std::int64_t> numClasses;   ///< to tell a table without a null row (else rows - 1)
};

struct DiTImport {
  DiTConfig config;
  NamedTensors weights;            ///< keys as the model names them
  std::vector<std::string> notes;  ///< what was inferred, for the user
};

/// Infers a DiT/SiT configuration from the tensor shapes of an official state dict
/// (depth, width, patch, channels, classes, learned sigma, grid, MLP ratio); the heads
/// come from `preset` or `heads`. Fails with the list of offending keys when tensors
/// are missing, extra or wrongly shaped.
Result<DiTImport> importDiTStateDict(const NamedTensors& stateDict, const DiTImportOptions& options);

}  // namespace tessera
