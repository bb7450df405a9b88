// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"

#include <CLI/CLI.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

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

/// An option and the path it names, as "--trajectory", "run/t.safetensors".
using PathOption = std::pair<std::string, std::string>;

/// Refuses an output that is one of the command's inputs, the same file by any path
/// (std::filesystem::equivalent): writing it would destroy what the command reads.
/// Empty paths and outputs that do not exist yet pass.
inline CommandResult refuseOverwritingInputs(const std::vector<PathOption>& outputs,
                                             const std::vector<PathOption>& inputs) {
  for (const auto& [outOption, outPath] : outputs) {
    if (outPath.empty()) continue;
    for (const auto& [inOption, inPath] : inputs) {
      std::error_code ec;
      if (!inPath.empty() && std::filesystem::equivalent(outPath, inPath, ec))
        return badInput(outOption + " " + outPath + " is the file " + inOption + " reads (" + inPath +
                        "); refusing to overwrite it: give another path");
    }
  }
  return {};
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
Command addEncodeCommand(CLI::App& app, const GlobalOptions& global);
Command addDecodeCommand(CLI::App& app, const GlobalOptions& global);
/// `--tile N --overlap M` of decode and bench decode.
void addDecodeTileOptions(CLI::App* sub, std::int64_t& tile, std::int64_t& overlap);

}  // namespace tessera::cli
