// SPDX-License-Identifier: Apache-2.0
#include "core/system/system_info.h"

#include "core/system/blas.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <fstream>
#include <cstdlib>
#include <string>
#include <thread>

namespace tessera {

int hardwareThreadCount() { return std::max(1u, std::thread::hardware_concurrency()); }

std::uint64_t availableMemoryBytes() {
  std::uint64_t available = 0;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    std::uint64_t kib = 0;
    meminfo >> kib;
    if (key == "MemAvailable:") {
      available = kib * 1024;
      break;
    }
    meminfo.ignore(256, '\n');
  }
  // cgroup v2: the limit less what the group already uses ("max": no limit).
  std::ifstream maxFile("/sys/fs/cgroup/memory.max"), currentFile("/sys/fs/cgroup/memory.current");
  std::string limit;
  std::uint64_t current = 0;
  if (maxFile >> limit && limit != "max" && currentFile >> current) {
    const std::uint64_t max = std::strtoull(limit.c_str(), nullptr, 10);
    const std::uint64_t left = max > current ? max - current : 0;
    if (available == 0 || left < available) available = left;
  }
  return available;
}

void setThreadCount(int threads) {
  threads = std::max(1, threads);
  at::set_num_threads(threads);
  blas::setOpenBlasThreads(threads);
}

SystemInfo querySystemInfo(bool measureGemm) {
  SystemInfo s;
  s.tesseraVersion = TESSERA_VERSION_STRING;
  s.torchVersion = TORCH_VERSION;
  s.intraOpThreads = at::get_num_threads();
  s.hardwareThreads = hardwareThreadCount();
  s.cudaDevices = static_cast<int>(torch::cuda::device_count());
  s.device = s.cudaDevices > 0 ? "CUDA (" + std::to_string(s.cudaDevices) + (s.cudaDevices == 1 ? " device)" : " devices)")
                               : std::string("CPU");
  const auto f = blas::detectCpuFeatures();
  s.cpuVendor = f.vendor;
  const std::pair<bool, const char*> flags[] = {{f.avx, "avx"},           {f.avx2, "avx2"},
                                                {f.fma, "fma"},           {f.avx512f, "avx512f"},
                                                {f.avx512bw, "avx512bw"}, {f.avx512dq, "avx512dq"},
                                                {f.avx512vl, "avx512vl"}};
  for (const auto& [on, name] : flags)
    if (on) s.cpuFeatures.emplace_back(name);
  const blas::KernelState k = blas::kernelState();
  s.blasKernel = k.active;
  s.blasKernelSource = k.source;
  s.blasDetected = k.detected;
  s.blasConfig = blas::activeConfig();
  s.blasThreads = blas::openBlasThreads();
  s.blasVerified = k.verified;
  s.blasMaxRelError = k.maxRelError;
  s.blasWarning = k.warning;
  if (const char* w = std::getenv("OMP_WAIT_POLICY")) s.ompWaitPolicy = w;
  if (measureGemm) s.gemmGflops = blas::measureGemmGflops(1024);
  return s;
}

std::string systemInfoJson(const SystemInfo& s, int indent) {
  nlohmann::ordered_json j;
  j["tessera_version"] = s.tesseraVersion;
  j["libtorch_version"] = s.torchVersion;
  j["device"] = s.device;
  j["cuda_devices"] = s.cudaDevices;
  j["intra_op_threads"] = s.intraOpThreads;
  j["hardware_threads"] = s.hardwareThreads;
  j["cpu"] = {{"vendor", s.cpuVendor}, {"features", s.cpuFeatures}};
  nlohmann::ordered_json b;
  b["kernel"] = s.blasKernel;
  b["kernel_source"] = s.blasKernelSource;
  b["detected_by_openblas"] = s.blasDetected;
  b["config"] = s.blasConfig;
  b["threads"] = s.blasThreads;
  b["verified"] = s.blasVerified;
  b["max_relative_error"] = s.blasMaxRelError;
  if (!s.blasWarning.empty()) b["warning"] = s.blasWarning;
  if (s.gemmGflops >= 0) b["gemm_1024_gflops"] = s.gemmGflops;
  j["blas"] = b;
  j["omp_wait_policy"] = s.ompWaitPolicy;
  return j.dump(indent);
}

double peakRssMiB() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

void resetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

}  // namespace tessera
