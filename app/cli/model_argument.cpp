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

Result<void> setGuidanceInterval(const std::string& text, const SamplingDefaults& defaults, GuidanceConfig& guidance) {
  if (text.empty()) {
    guidance.low = defaults.cfgLow, guidance.high = defaults.cfgHigh;
    return {};
  }
  const std::string expected = "--cfg-interval: expected LO,HI with 0 <= LO <= HI <= 1 (progress from 0 = noise to 1 = data), got '" + text + "'";
  const auto comma = text.find(',');
  if (comma == std::string::npos || text.find(',', comma + 1) != std::string::npos) return fail(expected);
  double lo = 0, hi = 0;
  try {
    std::size_t a = 0, b = 0;
    const std::string first = text.substr(0, comma), second = text.substr(comma + 1);
    lo = std::stod(first, &a);
    hi = std::stod(second, &b);
    if (a != first.size() || b != second.size()) return fail(expected);
  } catch (const std::exception&) {
    return fail(expected);
  }
  if (!(0.0 <= lo && lo <= hi && hi <= 1.0)) return fail(expected);
  guidance.low = lo, guidance.high = hi;
  return {};
}

}  // namespace tessera::cli
