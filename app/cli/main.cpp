// SPDX-License-Identifier: Apache-2.0
// tessera-cli: the headless contract of DESIGN.md.
#include "app/cli/command.h"
#include "core/system/allocator.h"
#include "core/system/blas.h"
#include "core/system/system_info.h"

#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <iostream>

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
  tessera::blas::selectKernelOrReexec(argv);
  tessera::system::tuneAllocator();

  CLI::App app{"Tessera: class-conditional diffusion models, headless.", "tessera-cli"};
  app.set_version_flag("--version", std::string("tessera-cli ") + TESSERA_VERSION_STRING + " (LibTorch " +
                                        TORCH_VERSION + ")");
  GlobalOptions global;
  app.add_flag("--json", global.json, "Machine-readable output: JSON documents and JSON-lines progress");
  app.add_flag("-v,--verbose", global.verbose, "Log debugging detail to stderr");
  app.add_flag("-q,--quiet", global.quiet, "Only errors on stderr, no progress bar");
  app.add_option("--threads", global.threads, "LibTorch and OpenBLAS threads (default: all hardware threads)")
      ->check(CLI::Range(1, 1024))
      ->envname("TESSERA_THREADS");

  const Command commands[] = {
      addInfoCommand(app, global),
      addImportCommand(app, global),
      addForwardCommand(app, global),
      addInspectCommand(app, global),
      addSampleCommand(app, global),
      addTrainCommand(app, global, argc, argv),
      addEvalCommand(app, global),
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
