// SPDX-License-Identifier: Apache-2.0
// tessera-cli: the headless contract of DESIGN.md.
#include "app/cli/command.h"
#include "core/system/allocator.h"
#include "core/system/blas.h"
#include "core/system/system_info.h"
#include "engine/plugin_loader.h"

#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace {

using namespace tessera::cli;

int reportError(const GlobalOptions& global, ExitCode code, const std::string& message) {
  if (global.json) {
    nlohmann::json j{{"event", "error"}, {"exit_code", static_cast<int>(code)}, {"message", message}};
    std::cerr << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  } else {
    std::string line = message;
    for (char& c : line)
      if (c == '\n') c = ' ';
    std::cerr << "tessera-cli: error: " << line << std::endl;
  }
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  // A plugin is tried in a child process of this program before it is loaded here
  // (engine/plugin_loader.h): this is the child.
  if (argc == 3 && std::strcmp(argv[1], "--vet-plugin") == 0) return tessera::vetPluginMain(argv[2]);
  {
    const char* seconds = std::getenv("TESSERA_PLUGIN_VET_SECONDS");  // how long a plugin may take to load
    tessera::setPluginVetter({"/proc/self/exe", "--vet-plugin"}, seconds ? std::atoi(seconds) : 30);
  }
  tessera::blas::selectKernelOrReexec(argv);
  tessera::system::tuneAllocator();

  CLI::App app{"Tessera: class-conditional diffusion models, headless.", "tessera-cli"};
  app.set_version_flag("--version", std::string("tessera-cli ") + TESSERA_VERSION_STRING + " (LibTorch " +
                                        TORCH_VERSION + ")");
  GlobalOptions global;
  app.add_flag("--json", global.json, "Machine-readable output: JSON documents and JSON-lines progress");
  app.add_flag("-v,--verbose", global.verbose, "Log debugging detail to stderr");
  app.add_flag("-q,--quiet", global.quiet, "Only errors on stderr, no progress bar");
  // More threads than 4 a hardware thread only oversubscribe the cores (1024 took 57 s to start).
  const int maxThreads = 4 * std::max(1, tessera::hardwareThreadCount());
  app.add_option("--threads", global.threads,
                 "LibTorch and OpenBLAS threads (default: all hardware threads; at most 4 a hardware thread, " +
                     std::to_string(maxThreads) + " here)")
      ->check(CLI::Range(1, maxThreads))
      ->envname("TESSERA_THREADS");
  std::vector<std::string> plugins;
  // One path per --plugin: a vector option would otherwise swallow the subcommand's name.
  app.add_option("--plugin", plugins,
                 "Load a plugin (.so) that adds samplers or backbones; repeatable. Plugins in TESSERA_PLUGIN_PATH "
                 "and <prefix>/lib/tessera/plugins load by themselves")
      ->type_name("PATH")
      ->allow_extra_args(false);

  const Command commands[] = {
      addInfoCommand(app, global),    addImportCommand(app, global), addForwardCommand(app, global),
      addInspectCommand(app, global), addSampleCommand(app, global), addTrainCommand(app, global, argc, argv),
      addEvalCommand(app, global),    addEncodeCommand(app, global), addDecodeCommand(app, global),
      addBenchCommand(app, global),
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    return reportError(global, kBadInput, std::string(e.what()) + " (run 'tessera-cli --help')");
  }

  auto logger = spdlog::stderr_color_mt("tessera");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%^[%l]%$ %v");
  spdlog::set_level(global.quiet ? spdlog::level::err : global.verbose ? spdlog::level::debug : spdlog::level::info);

  const auto kernel = tessera::blas::verifyOrFallback(argv);
  if (!kernel.warning.empty()) spdlog::warn("{}", kernel.warning);
  spdlog::debug("BLAS kernel {} ({}), max relative error {:.2e}", kernel.active, kernel.source, kernel.maxRelError);
  tessera::setThreadCount(global.threads > 0 ? global.threads : tessera::hardwareThreadCount());

  // Before any command, which may start threads that read the registries. The ones asked
  // for come first, so that they win a name against the search path's; a search-path
  // plugin that cannot load is only a warning, as the user did not ask for it here.
  for (const std::string& path : plugins) {
    auto loaded = tessera::loadPlugin(path);
    if (!loaded) return reportError(global, kBadInput, "--plugin: " + loaded.error().message());
    spdlog::debug("plugin {} {} from {}", loaded->name, loaded->version, loaded->path);
  }
  for (const auto& r : tessera::loadPluginsFrom(tessera::pluginSearchPath())) {
    if (!r.plugin) spdlog::warn("{} (skipped)", r.plugin.error().message());
    else spdlog::debug("plugin {} {} from {}", r.plugin->name, r.plugin->version, r.plugin->path);
  }

  for (const Command& command : commands) {
    if (!command.node->parsed()) continue;
    try {
      auto result = command.run();
      if (!result) return reportError(global, result.error().code, result.error().message);
      return kOk;
    } catch (const std::exception& e) {
      std::string what = e.what();
      if (auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
      return reportError(global, kRuntimeFailure, what);
    }
  }
  return reportError(global, kBadInput, "no subcommand given (expected one of: info, import, forward, inspect, sample, train, eval, bench; run 'tessera-cli --help')");
}
