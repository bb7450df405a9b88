// SPDX-License-Identifier: Apache-2.0
#include "core/system/resources.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>

namespace tessera {
namespace fs = std::filesystem;

std::vector<std::string> resourceDirs() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("TESSERA_RESOURCES"); env && *env) dirs.emplace_back(env);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back((exe.parent_path().parent_path() / "share" / "tessera").string());
#ifdef TESSERA_SOURCE_RESOURCES
  dirs.emplace_back(TESSERA_SOURCE_RESOURCES);
#endif
  return dirs;
}

std::string findResource(const std::string& relative) {
  std::error_code ec;
  for (const auto& dir : resourceDirs()) {
    const fs::path p = fs::path(dir) / relative;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  return {};
}

std::string resolveModelArgument(const std::string& argument) {
  std::error_code ec;
  if (argument.empty() || fs::exists(argument, ec) || argument.find('/') != std::string::npos) return argument;
  const std::string found = findResource("models/" + argument + ".safetensors");
  return found.empty() ? argument : found;
}

std::string missingModelMessage(const std::string& argument) {
  std::string names;
  for (const auto& n : shippedModelNames()) names += (names.empty() ? "" : ", ") + n;
  return "--model " + argument + ": no such file, and no shipped model of that name (shipped: " +
         (names.empty() ? std::string("none found") : names) + ")";
}

std::vector<std::string> shippedModelNames() {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& dir : resourceDirs()) {
    const fs::path models = fs::path(dir) / "models";
    if (!fs::is_directory(models, ec)) continue;
    for (const auto& e : fs::directory_iterator(models, ec)) {
      const fs::path p = e.path();
      if (p.extension() == ".safetensors" && p.stem().string().find("evaluator") == std::string::npos)
        names.insert(p.stem().string());
    }
  }
  return {names.begin(), names.end()};
}

}  // namespace tessera
