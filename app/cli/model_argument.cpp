// SPDX-License-Identifier: Apache-2.0
#include "app/cli/model_argument.h"

#include "core/system/resources.h"

#include <filesystem>

namespace tessera::cli {

Result<LoadedModel> loadModelArgument(const std::string& argument) {
  const std::string path = resolveModelArgument(argument);
  if (std::error_code ec; !std::filesystem::exists(path, ec)) return fail(missingModelMessage(argument));
  return loadModelFile(path);
}

}  // namespace tessera::cli
