// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/guidance/guidance.h"
#include "core/util/error.h"
#include "engine/model_file.h"

#include <string>

namespace tessera::cli {

/// `--model MODEL`: a model file, or the name of a shipped model ("dit-fashion"); loaded.
/// Fails naming the shipped models when neither exists, or with the loader's message.
Result<LoadedModel> loadModelArgument(const std::string& argument);

/// The guidance interval a command samples with: `--cfg-interval LO,HI` when given
/// (`option` not empty; progress from 0 = noise to 1 = data, 0 <= LO <= HI <= 1), else
/// the model's recorded default. Fails naming the expected form and range.
Result<void> setGuidanceInterval(const std::string& option, const SamplingDefaults& defaults, GuidanceConfig& guidance);

}  // namespace tessera::cli
