// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace tessera::cli {

/// Exit codes of DESIGN.md.
enum ExitCode : int { kOk = 0, kRuntimeFailure = 1, kBadInput = 2 };

/// Options every subcommand sees.
struct GlobalOptions {
  bool json = false;
  bool verbose = false;
  bool quiet = false;
  int threads = 0;  ///< 0: the hardware thread count
};

/// A failure with the exit code it maps to.
struct CommandError {
  ExitCode code;
  std::string message;
};

using CommandResult = tl::expected<void, CommandError>;

inline tl::unexpected<CommandError> badInput(std::string message) {
  return tl::unexpected<CommandError>(CommandError{kBadInput, std::move(message)});
}
inline tl::unexpected<CommandError> runtimeFailure(std::string message) {
  return tl::unexpected<CommandError>(CommandError{kRuntimeFailure, std::move(message)});
}

/// A subcommand: its CLI11 node and what runs when it was chosen. Each one registers
/// itself on the app in one call.
struct Command {
  CLI::App* node = nullptr;
  std::function<CommandResult()> run;
};
Command addInfoCommand(CLI::App& app, const GlobalOptions& global);
Command addBenchCommand(CLI::App& app, const GlobalOptions& global);
Command addImportCommand(CLI::App& app, const GlobalOptions& global);
Command addForwardCommand(CLI::App& app, const GlobalOptions& global);
Command addInspectCommand(CLI::App& app, const GlobalOptions& global);
Command addSampleCommand(CLI::App& app, const GlobalOptions& global);
/// train re-executes itself for --nproc, so it keeps the program's arguments.
Command addTrainCommand(CLI::App& app, const GlobalOptions& global, int argc, char** argv);
Command addEvalCommand(CLI::App& app, const GlobalOptions& global);

}  // namespace tessera::cli
