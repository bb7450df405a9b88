// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"
#include "models/model_file.h"

#include <string>
#include <utility>

namespace tessera::cli {

/// `--model MODEL`: a model file, or the name of a shipped model ("dit-fashion"); loaded.
/// Fails naming the shipped models when neither exists, or with the loader's message.
Result<LoadedModel> loadModelArgument(const std::string& argument);

/// `--cfg-interval LO,HI`: the guidance interval in progress (0 = noise … 1 = data);
/// fails naming the expected form and range.
Result<std::pair<double, double>> parseGuidanceInterval(const std::string& text);

}  // namespace tessera::cli
