// SPDX-License-Identifier: Apache-2.0
// tessera-cli bench blas: matrix-product throughput as JSON lines, one per size and kernel.
// bench sample, train and decode live in cmd_bench_*.cpp.
#include "app/cli/command.h"
#include "core/system/blas.h"
#include "core/system/system_info.h"
#include "core/util/progress.h"

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <regex>

namespace tessera::cli {

/// Adds `bench sample` (cmd_bench_sample.cpp); run() is called when it was chosen.
Command addBenchSample(CLI::App& bench, const GlobalOptions& global);
Command addBenchTrain(CLI::App& bench, const GlobalOptions& global);
Command addBenchDecode(CLI::App& bench, const GlobalOptions& global);

namespace {

struct BenchOptions {
  std::vector<int> sizes{256, 512, 1024, 2048};
  std::vector<std::string> kernels;  // empty: the current one only
  double seconds = 0.5;
};

nlohmann::ordered_json gemmLine(int n, double gflops) {
  const auto& k = blas::kernelState();
  nlohmann::ordered_json j;
  j["bench"] = "gemm_f32";
  j["n"] = n;
  j["gflops"] = std::round(gflops * 10.0) / 10.0;
  j["kernel"] = k.active;
  j["kernel_source"] = k.source;
  j["verified"] = k.verified;
  j["torch_threads"] = at::get_num_threads();
  j["blas_threads"] = blas::openBlasThreads();
  j["cpu"] = blas::detectCpuFeatures().vendor;
  return j;
}

CommandResult runBlas(const BenchOptions& o, const GlobalOptions& global) {
  for (int n : o.sizes)
    if (n < 1 || n > 16384) return badInput("bench blas: size " + std::to_string(n) + " is out of range (expected 1..16384)");
  if (!(o.seconds > 0 && o.seconds <= 60)) return badInput("bench blas: --seconds must be in (0, 60]");
  static const std::regex kernelName("^[A-Za-z0-9]+$");
  for (const auto& k : o.kernels)
    if (!std::regex_match(k, kernelName)) return badInput("bench blas: kernel name '" + k + "' is not an OpenBLAS core name");

  if (o.kernels.empty()) {
    Progress progress("gemm", static_cast<std::int64_t>(o.sizes.size()),
                      Progress::chooseMode(false, global.quiet), std::cerr);
    std::int64_t done = 0;
    for (int n : o.sizes) {
      const double gflops = blas::measureGemmGflops(n, o.seconds);
      progress.update(++done, std::to_string(n) + "^3");
      std::cout << gemmLine(n, gflops).dump() << std::endl;
    }
    return {};
  }
  // Several kernels: OpenBLAS fixes its kernel when it loads, so each one runs in a
  // child process of this program with OPENBLAS_CORETYPE set. Sequential, never in
  // parallel: they would compete for the same cores.
  // /proc/self/exe would name the shell that popen starts: resolve our own path first.
  std::error_code ec;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) return runtimeFailure("bench blas: cannot find this program's path: " + ec.message());
  std::string sizes;
  for (int n : o.sizes) sizes += (sizes.empty() ? "" : ",") + std::to_string(n);
  for (const auto& kernel : o.kernels) {
    const std::string threads = global.threads > 0 ? " --threads " + std::to_string(global.threads) : "";
    const std::string cmd = "OPENBLAS_CORETYPE=" + kernel + " '" + self + "' --quiet" + threads +
                            " bench blas --sizes " + sizes + " --seconds " + std::to_string(o.seconds);
    FILE* pipe = ::popen(cmd.c_str(), "r");
    if (!pipe) return runtimeFailure("bench blas: cannot start a child process for kernel " + kernel);
    char line[4096];
    while (std::fgets(line, sizeof line, pipe)) std::cout << line << std::flush;
    if (::pclose(pipe) != 0) return runtimeFailure("bench blas: the run with kernel " + kernel + " failed");
  }
  return {};
}

}  // namespace

Command addBenchCommand(CLI::App& app, const GlobalOptions& global) {
  auto* sub = app.add_subcommand("bench", "Speed measurements as JSON lines");
  sub->require_subcommand(1);
  auto options = std::make_shared<BenchOptions>();
  auto* blasCmd = sub->add_subcommand("blas", "fp32 matrix products (n x n x n) through LibTorch and the system BLAS");
  blasCmd->add_option("--sizes", options->sizes, "Matrix sizes")->delimiter(',')->capture_default_str();
  blasCmd->add_option("--kernels", options->kernels,
                      "OpenBLAS kernels to compare, each in its own process (e.g. Prescott,Haswell,SkylakeX)")
      ->delimiter(',');
  blasCmd->add_option("--seconds", options->seconds, "Minimum measuring time per size")->capture_default_str();
  const Command sample = addBenchSample(*sub, global);
  const Command train = addBenchTrain(*sub, global);
  const Command decode = addBenchDecode(*sub, global);
  return {sub, [options, blasCmd, sample, train, decode, &global]() -> CommandResult {
            if (blasCmd->parsed()) return runBlas(*options, global);
            if (sample.node->parsed()) return sample.run();
            if (train.node->parsed()) return train.run();
            if (decode.node->parsed()) return decode.run();
            return badInput("bench: name a benchmark (blas, sample, train, decode)");
          }};
}

}  // namespace tessera::cli
