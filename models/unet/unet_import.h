// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/formats/safetensors.h"
#include "core/util/error.h"
#include "models/registry.h"
#include "models/unet/unet.h"

#include <optional>
#include <string>
#include <vector>

namespace tessera {

/// The DDPM schedule an LDM checkpoint records in its `betas` buffer.
struct UNetImportedSchedule {
  std::string schedule = "linear";  ///< scaled_linear (LDM's "linear"), linear (ADM's) or cosine
  double betaStart = 0, betaEnd = 0;
  std::int64_t steps = 1000;
  bool fromCheckpoint = false;  ///< read from the checkpoint's buffer (else the reference's default)
};

struct UNetImport {
  UNetConfig config;
  NamedTensors weights;  ///< keys as the network names them
  std::vector<std::string> notes;
  bool ldmLayout = false;      ///< model.diffusion_model.* (an LDM LatentDiffusion checkpoint)
  bool hasFirstStage = false;  ///< first_stage_model.* tensors are present
  UNetImportedSchedule schedule;
};

/// Whether these tensors (wrapper prefixes stripped) are a U-Net state dict: an LDM
/// checkpoint (model.diffusion_model.*) or a bare UNetModel (guided-diffusion's).
bool recognisesUNet(const TensorShapes& shapes);

/// Derives the configuration from the shapes: widths, levels, residual blocks, where the
/// attention is and of which kind, scale-shift norm, resampling, classes, learned sigma;
/// heads and the rest from `request` (its U-Net options; `source` "ldm" insists on an LDM
/// checkpoint) or a preset whose structure the weights match. Fails listing the offending
/// tensors when some are missing, extra or mis-shaped.
Result<UNetImport> importUNetStateDict(const NamedTensors& stateDict, const ImportRequest& request);

}  // namespace tessera
