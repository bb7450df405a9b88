// SPDX-License-Identifier: Apache-2.0
// Configurations read from the shapes of official FiT / FiTv2 and NiT state dicts.
#pragma once

#include "core/formats/safetensors.h"
#include "core/util/error.h"
#include "models/fit/fit.h"
#include "models/nit/nit.h"
#include "models/registry.h"

#include <optional>
#include <string>
#include <vector>

namespace tessera {

struct FlexImportOptions {
  std::optional<std::string> preset;       ///< "FiTv2-XL/2", "NiT-XL": the heads and settings shapes cannot tell
  std::optional<std::int64_t> heads;
  std::optional<std::int64_t> numClasses;  ///< classes without the null row (default: rows − 1)
  std::optional<std::int64_t> inChannels;  ///< FiT: latent channels (default 4: p² · C = the token width)

  /// The options of an import through the registry (`tessera-cli import`).
  static FlexImportOptions from(const ImportRequest& request) {
    return {request.preset, request.heads, request.numClasses, request.inChannels};
  }
};

struct FiTImport {
  FiTConfig config;
  NamedTensors weights;
  std::vector<std::string> notes;
};
/// FiT v1 or FiTv2 from shapes: depth, width, MLP kind and size, adaLN kind and rank,
/// learned sigma, classes. FiTv2 (low-rank adaLN) gets q/k norm, velocity prediction
/// and SiT's time convention; v1 DDPM ε with learned σ. The q/k norms have no weights,
/// so the version is read from the adaLN form (or the preset).
Result<FiTImport> importFiTStateDict(const NamedTensors& stateDict, const FlexImportOptions& options);

struct NiTImport {
  NiTConfig config;
  NamedTensors weights;
  std::vector<std::string> notes;  ///< e.g. the REPA projector left out
};
/// NiT from shapes; RoPE positions as NiT's code assigns them (ropePositions "reference").
Result<NiTImport> importNiTStateDict(const NamedTensors& stateDict, const FlexImportOptions& options);

}  // namespace tessera
