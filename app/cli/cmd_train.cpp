// SPDX-License-Identifier: Apache-2.0
// tessera-cli train --config CFG.json --out RUN_DIR [--resume] [--init MODEL] [--device D] [--nproc N] [--check]
//
// Events go to stdout as JSON lines; a progress bar goes to stderr on a terminal.
// SIGINT/SIGTERM finish the current step, write a checkpoint and stop (resume later);
// SIGUSR1 writes a sample grid after the current step (the studio's "sample now").
// --nproc N starts N ranks on this machine the way torchrun does (RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT) and waits for them.
#include "app/cli/command.h"
#include "core/config/config.h"
#include "core/system/system_info.h"
#include "core/train/distributed.h"
#include "core/util/progress.h"
#include "engine/trainer.h"
#include "engine/training.h"
#include "models/registry.h"

#include <filesystem>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <vector>

namespace tessera::cli {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_sampleNow{false};
std::vector<pid_t> g_children;

extern "C" void onStopSignal(int) { g_stop.store(true); }
extern "C" void onSampleSignal(int) { g_sampleNow.store(true); }
extern "C" void forwardSignal(int sig) {
  for (pid_t p : g_children) ::kill(p, sig);
}

struct TrainOptions {
  std::string config, out, init, device = "cpu";
  bool resume = false, check = false;
  int nproc = 1;
};

/// Runs `nproc` copies of this program (the same arguments without --nproc) as ranks.
CommandResult launchRanks(const TrainOptions& o, const GlobalOptions& global, int argc, char** argv) {
  const int port = freeLocalPort();
  const int threads = std::max(1, (global.threads > 0 ? global.threads : hardwareThreadCount()) / o.nproc);
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--nproc") {
      ++i;
      continue;
    }
    if (a.rfind("--nproc=", 0) == 0) continue;
    if (a == "--threads") {
      ++i;
      continue;
    }
    if (a.rfind("--threads=", 0) == 0) continue;
    args.push_back(a);
  }
  args.insert(args.begin() + 1, {"--threads", std::to_string(threads)});
  struct sigaction sa {};
  sa.sa_handler = forwardSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  for (int rank = 0; rank < o.nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) return runtimeFailure(std::string("--nproc: fork failed: ") + std::strerror(errno));
    if (pid == 0) {
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> cargs;
      for (auto& a : args) cargs.push_back(const_cast<char*>(a.c_str()));
      cargs.push_back(nullptr);
      ::execv("/proc/self/exe", cargs.data());
      std::perror("tessera-cli train --nproc: exec");
      ::_exit(127);
    }
    g_children.push_back(pid);
  }
  int firstFailure = 0;
  std::vector<pid_t> alive = g_children;
  std::chrono::steady_clock::time_point killAt{};
  while (!alive.empty()) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, firstFailure ? WNOHANG : 0);
    if (pid < 0) break;
    if (pid == 0) {
      // A rank failed: give the others 5 s to stop on their own (they usually fail the
      // same way and report it), then kill them, since they may be blocked in a
      // collective waiting for the failed one.
      if (std::chrono::steady_clock::now() >= killAt)
        for (pid_t p : alive) ::kill(p, SIGKILL);
      ::usleep(50000);
      continue;
    }
    alive.erase(std::remove(alive.begin(), alive.end(), pid), alive.end());
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && firstFailure == 0) {
      firstFailure = code;
      killAt = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    }
  }
  if (firstFailure != 0)
    return tl::unexpected(CommandError{firstFailure == kBadInput ? kBadInput : kRuntimeFailure,
                                       "train --nproc " + std::to_string(o.nproc) + ": a rank failed (exit " +
                                           std::to_string(firstFailure) + "); see its message above"});
  return {};
}

}  // namespace

Command addTrainCommand(CLI::App& app, const GlobalOptions& global, int argc, char** argv) {
  auto o = std::make_shared<TrainOptions>();
  CLI::App* sub = app.add_subcommand("train", "Train or fine-tune a model (JSON-lines events on stdout)");
  sub->add_option("--config", o->config, "Training configuration (JSON); see docs/training.md")->check(CLI::ExistingFile);
  sub->add_option("--out", o->out, "Run directory: config.json, checkpoints/, samples/, model.safetensors")->required();
  sub->add_flag("--resume", o->resume, "Continue from the newest loadable checkpoint in --out");
  sub->add_option("--init", o->init, "Fine-tune from this model file (classes remapped by name)")->check(CLI::ExistingFile);
  sub->add_option("--device", o->device, "cpu, cuda or cuda:N");
  sub->add_option("--nproc", o->nproc, "Data-parallel ranks on this machine (c10d, Gloo)")->check(CLI::Range(1, 64));
  sub->add_flag("--check", o->check, "Validate the configuration and print it with defaults filled in; no training");
  // The configuration fields, from each backbone's config table (the same rows that read and check them).
  sub->footer([] {
    return "\nThe backbones a configuration's \"backbone\": {\"kind\", \"config\"} names, and their fields "
           "(a plugin's: info --backbones --plugin FILE):\n\n" +
           backboneHelp(backboneRegistry());
  });
  return {sub, [o, &global, argc, argv]() -> CommandResult {
            if (o->check) {
              if (o->config.empty()) return badInput("--check needs --config");
              auto c = Config::fromFile(o->config);
              if (!c) return badInput(c.error().message());
              auto resolved = checkTrainingConfig(*c, o->init);
              if (!resolved) return badInput(resolved.error().message());
              std::cout << resolved->dump(2) << std::endl;
              return {};
            }
            if (o->nproc > 1) {
              if (std::getenv("RANK")) return badInput("--nproc inside a rank (RANK is set): start ranks one way only");
              return launchRanks(*o, global, argc, argv);
            }
            struct sigaction sa {};
            sa.sa_handler = onStopSignal;
            sigaction(SIGINT, &sa, nullptr);
            sigaction(SIGTERM, &sa, nullptr);
            struct sigaction sample {};
            sample.sa_handler = onSampleSignal;
            sigaction(SIGUSR1, &sample, nullptr);
            // What a run writes into --out must not be what it reads: a fine-tune from the run's own
            // model.safetensors would replace the model it started from.
            const auto runFile = [&](const char* name) { return (std::filesystem::path(o->out) / name).string(); };
            if (auto ok = refuseOverwritingInputs(
                    {{"--out", o->out}, {"--out (its model.safetensors)", runFile("model.safetensors")}},
                    {{"--config", o->config}, {"--init", o->init}});
                !ok)
              return ok;
            TrainRequest r;
            r.configPath = o->config;
            r.outDir = o->out;
            r.resume = o->resume;
            r.initModel = o->init;
            r.device = o->device;
            r.progressBar = Progress::chooseMode(false, global.quiet) == Progress::Mode::Bar;
            r.events = &std::cout;
            r.stop = &g_stop;
            r.sampleNow = &g_sampleNow;
            // What stops the set-up is bad input (exit 2), but for the ranks that could not
            // join and a disk that took no more; what stops the loop (a loss that is not
            // finite, a checkpoint that cannot be written) is a failure of the run (exit 1).
            auto trainer = Trainer::create(r);
            if (!trainer) {
              const std::string& m = trainer.error().message();
              const bool runtime =
                  m.find("could not join") != std::string::npos || m.find(": writing failed") != std::string::npos;
              return tl::unexpected(CommandError{runtime ? kRuntimeFailure : kBadInput, m});
            }
            auto summary = (*trainer)->run();
            if (!summary) return runtimeFailure(summary.error().message());
            if (summary->stopped)
              std::cerr << "tessera-cli: training stopped at step " << summary->steps << "; continue with --resume --out "
                        << o->out << std::endl;
            return {};
          }};
}

}  // namespace tessera::cli
