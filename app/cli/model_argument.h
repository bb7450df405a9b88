// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"
#include "models/model_file.h"

#include <string>

namespace tessera::cli {

/// `--model MODEL`: a model file, or the name of a shipped model ("dit-fashion"); loaded.
/// Fails naming the shipped models when neither exists, or with the loader's message.
Result<LoadedModel> loadModelArgument(const std::string& argument);

}  // namespace tessera::cli
