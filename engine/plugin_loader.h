// SPDX-License-Identifier: Apache-2.0
// Loads plugins (plugins/tessera_plugin.h): shared libraries that add samplers and
// backbones to the registries the CLI and the studio use. It lives in models rather
// than core because a plugin may add backbones, which core cannot name; core only
// offers addPluginSampler.
#pragma once

#include "core/util/error.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

struct TesseraPluginDescriptor;

namespace tessera {

/// Checks a plugin's descriptor field by field (interface version and size, LibTorch
/// version, std::string ABI, a registration function), naming the plugin `name`.
Result<void> checkPluginDescriptor(const TesseraPluginDescriptor& d, const std::string& name);

/// A loaded plugin, as its descriptor describes it, and what it added.
struct PluginInfo {
  std::string path;  ///< canonical
  std::string name, version, description;
  std::string torchVersion, tesseraVersion;  ///< what it was built against
  std::vector<std::string> samplers, backbones;
  nlohmann::json toJson() const;
};

/// One file's outcome: the plugin, or why it was refused.
struct PluginLoadResult {
  std::string path;
  Result<PluginInfo> plugin;
};

/// Loads one plugin and adds what it registers to samplerRegistry() and
/// backboneRegistry(). Refuses, with a message naming the file and the cause, a file
/// that is no shared library or has unresolved symbols, one without the entry point,
/// one built for another plugin interface, LibTorch or std::string ABI, one whose
/// registration fails or throws, and one that adds a name already taken; a refused
/// plugin is unloaded and the registries are left as they were. Loading a file again
/// returns what the first load found. The registries are read without locks: call this
/// at start-up, before other threads sample or build models.
Result<PluginInfo> loadPlugin(const std::string& path);

/// Where a plugin is tried before it is loaded into this process: a plugin's code runs as
/// soon as it is loaded (its static initialisers, then its entry point and registration),
/// before any check can refuse it. With a vetter set, loadPlugin first runs
/// `command... PATH` as a child process and loads the plugin here only when the child
/// loaded it and exited 0 within `seconds`; a plugin that crashes, hangs or is refused
/// there is refused here with what happened, and this process never runs its code. The
/// programs set `<tessera-cli> --vet-plugin` (vetPluginMain). Empty: no vetting.
void setPluginVetter(std::vector<std::string> command, int seconds = 30);

/// The child's side: loads the plugin at `path` without vetting, prints its refusal to
/// stderr; returns the exit code (0 loaded, 2 refused).
int vetPluginMain(const std::string& path);

/// Loads every `*.so` directly inside each directory, in name order (directories that
/// do not exist are skipped); one file's refusal never stops the others.
std::vector<PluginLoadResult> loadPluginsFrom(const std::vector<std::string>& directories);

/// Where plugins are looked for: the directories of TESSERA_PLUGIN_PATH
/// (colon-separated), then <executable's folder>/../lib/tessera/plugins (the installed
/// layout, /usr/lib/tessera/plugins for the Debian package).
std::vector<std::string> pluginSearchPath();

/// The plugins loaded so far, in load order.
std::vector<PluginInfo> loadedPlugins();

/// Every load attempted so far, refusals included, the latest per file (for the
/// studio's System page).
std::vector<PluginLoadResult> pluginLoadReport();

}  // namespace tessera
