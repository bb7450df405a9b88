// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>

#include <string>
#include <vector>

namespace tessera {

/// What the studio runs on. Plain data (no LibTorch types) so widgets can show it.
struct SystemInfo {
  std::string tesseraVersion;
  std::string torchVersion;
  int intraOpThreads = 0;
  int hardwareThreads = 0;
  std::string device;          ///< "CPU" or "CUDA (N devices)"
  int cudaDevices = 0;
  std::string cpuVendor;
  std::vector<std::string> cpuFeatures;  ///< the ones that matter for BLAS kernels
  std::string blasKernel;      ///< OpenBLAS core name, "" when not OpenBLAS
  std::string blasKernelSource;///< user, tessera, openblas, fallback, none
  std::string blasDetected;    ///< what OpenBLAS would pick on its own
  std::string blasConfig;
  int blasThreads = 0;
  bool blasVerified = false;
  double blasMaxRelError = 0.0;
  std::string blasWarning;
  double gemmGflops = -1.0;    ///< measured 1024^3 fp32 product, -1 when not measured
  std::string ompWaitPolicy;
};

/// Collects the facts; `measureGemm` adds a short (about 0.3 s) throughput measurement.
SystemInfo querySystemInfo(bool measureGemm = false);

/// Sets LibTorch's intra-op threads and OpenBLAS's pool to `threads` (clamped to >= 1).
void setThreadCount(int threads);
/// The number of hardware threads, at least 1.
int hardwareThreadCount();

/// The memory this process may still take, in bytes: the kernel's MemAvailable, or less
/// where a cgroup (a container, a systemd unit) sets a lower limit. 0 when unknown.
std::uint64_t availableMemoryBytes();

/// Peak resident memory of this process since start or the last resetPeakRss() (VmHWM), MiB.
double peakRssMiB();
/// Restarts the peak-memory measurement (/proc/self/clear_refs).
void resetPeakRss();

/// The info as a JSON object text (pretty when `indent` >= 0).
std::string systemInfoJson(const SystemInfo& info, int indent = 2);

}  // namespace tessera
