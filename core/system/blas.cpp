// SPDX-License-Identifier: Apache-2.0
#include "core/system/blas.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <mutex>
#include <random>
#include <unistd.h>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace tessera::blas {
namespace {

KernelState g_state;

template <class Fn>
Fn openblasSymbol(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

[[noreturn]] void reexec(char** argv) {
  ::execv("/proc/self/exe", argv);
  // execv only returns on failure; a missing /proc is worth one more try by name.
  ::execvp(argv[0], argv);
  std::fprintf(stderr, "tessera: cannot re-execute to select the BLAS kernel: %s\n", std::strerror(errno));
  std::_Exit(1);
}

}  // namespace

CpuFeatures detectCpuFeatures() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &c, &d)) {
    char vendor[13] = {};
    std::memcpy(vendor, &b, 4);
    std::memcpy(vendor + 4, &d, 4);
    std::memcpy(vendor + 8, &c, 4);
    f.vendor = vendor;
  }
  const unsigned maxLeaf = a;
  bool osAvx = false, osAvx512 = false;
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    f.fma = c & (1u << 12);
    const bool osxsave = c & (1u << 27);
    f.avx = c & (1u << 28);
    if (osxsave) {
      unsigned lo = 0, hi = 0;
      __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      osAvx = (lo & 0x6) == 0x6;         // XMM and YMM state enabled by the OS
      osAvx512 = (lo & 0xE6) == 0xE6;    // plus opmask and ZMM state
    }
  }
  f.avx = f.avx && osAvx;
  f.fma = f.fma && osAvx;
  if (maxLeaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = osAvx && (b & (1u << 5));
    f.avx512f = osAvx512 && (b & (1u << 16));
    f.avx512dq = osAvx512 && (b & (1u << 17));
    f.avx512bw = osAvx512 && (b & (1u << 30));
    f.avx512vl = osAvx512 && (b & (1u << 31));
  }
#endif
  return f;
}

std::string kernelForFeatures(const CpuFeatures& f) {
  if (f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl) return "SkylakeX";
  if (f.avx2 && f.fma) return "Haswell";
  if (f.avx) return "Sandybridge";
  return "";
}

int kernelRank(std::string_view name) {
  std::string n(name);
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char ch) { return std::tolower(ch); });
  for (const char* k : {"skylakex", "cooperlake", "sapphirerapids"})
    if (n == k) return 3;
  for (const char* k : {"haswell", "zen", "skylake"})
    if (n == k) return 2;
  for (const char* k : {"sandybridge", "bulldozer", "piledriver", "steamroller", "excavator"})
    if (n == k) return 1;
  return 0;
}

std::string activeCoreName() {
  auto fn = openblasSymbol<char* (*)()>("openblas_get_corename");
  const char* name = fn ? fn() : nullptr;
  return name ? std::string(name) : std::string();
}

std::string activeConfig() {
  auto fn = openblasSymbol<char* (*)()>("openblas_get_config");
  const char* cfg = fn ? fn() : nullptr;
  return cfg ? std::string(cfg) : std::string();
}

void setOpenBlasThreads(int threads) {
  if (auto fn = openblasSymbol<void (*)(int)>("openblas_set_num_threads")) fn(threads);
}

int openBlasThreads() {
  auto fn = openblasSymbol<int (*)()>("openblas_get_num_threads");
  return fn ? fn() : 0;
}

void selectKernelOrReexec(char** argv) {
  if (const char* no = env(kNoReexecEnv); no && std::strcmp(no, "0") != 0) return;
  if (env(kReexecutedEnv)) return;  // once only
  bool changed = false;
  if (!env(kCoreTypeEnv) && !env(kFallbackEnv)) {
    const std::string detected = activeCoreName();
    const std::string best = kernelForFeatures(detectCpuFeatures());
    if (!detected.empty() && !best.empty() && kernelRank(best) > kernelRank(detected)) {
      ::setenv(kCoreTypeEnv, best.c_str(), 1);
      ::setenv(kChosenEnv, best.c_str(), 1);
      ::setenv(kDetectedEnv, detected.c_str(), 1);
      changed = true;
    }
  }
  // LibTorch's idle OpenMP workers spin while OpenBLAS's own pool works: measured here,
  // a DiT-XL/2 forward pass takes 1.6x as long. libgomp reads the policy when it loads.
  if (!env("OMP_WAIT_POLICY") && !env("GOMP_SPINCOUNT")) {
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    changed = true;
  }
  if (!changed) return;
  ::setenv(kReexecutedEnv, "1", 1);
  reexec(argv);
}

double gemmRelativeError() {
  // Odd sizes exercise the kernels' edge paths; a transposed operand their other layout.
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  const int m = 67, k = 129, n = 53;
  std::vector<float> a(static_cast<std::size_t>(m * k)), b(static_cast<std::size_t>(k * n));
  for (auto& v : a) v = uni(rng);
  for (auto& v : b) v = uni(rng);
  at::Tensor ta = at::from_blob(a.data(), {m, k}, at::kFloat);
  at::Tensor tb = at::from_blob(b.data(), {k, n}, at::kFloat);
  const at::Tensor c1 = at::mm(ta, tb).contiguous();
  const at::Tensor c2 = at::mm(ta.t().contiguous().t(), tb.t().contiguous().t()).contiguous();
  double maxRef = 0, maxErr = 0;
  const float* p1 = c1.data_ptr<float>();
  const float* p2 = c2.data_ptr<float>();
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double ref = 0;
      for (int l = 0; l < k; ++l) ref += double(a[static_cast<std::size_t>(i * k + l)]) * b[static_cast<std::size_t>(l * n + j)];
      maxRef = std::max(maxRef, std::fabs(ref));
      const double e1 = std::fabs(p1[i * n + j] - ref), e2 = std::fabs(p2[i * n + j] - ref);
      maxErr = std::max({maxErr, std::isfinite(e1) ? e1 : INFINITY, std::isfinite(e2) ? e2 : INFINITY});
    }
  }
  return maxRef > 0 ? maxErr / maxRef : maxErr;
}

namespace {

/// Who chose the active kernel (from the environment the re-exec leaves) and whether it
/// computes correct products.
KernelState inspectKernel() {
  KernelState s;
  s.active = activeCoreName();
  if (const char* chosen = env(kChosenEnv)) {
    s.chosen = chosen;
    s.source = "tessera";
  } else if (env(kFallbackEnv)) {
    s.source = "fallback";
  } else if (env(kCoreTypeEnv)) {
    s.source = "user";
  } else {
    s.source = s.active.empty() ? "none" : "openblas";
  }
  s.detected = env(kDetectedEnv) ? env(kDetectedEnv) : (s.source == "openblas" ? s.active : "");
  s.maxRelError = gemmRelativeError();
  if (const char* fault = env(kTestFaultEnv); fault && s.active == fault) s.maxRelError = 1.0;
  s.verified = s.maxRelError <= 1e-4;
  if (!s.verified)
    s.warning = "BLAS kernel '" + s.active + "' computes wrong matrix products (relative error " +
                std::to_string(s.maxRelError) + "); results will be wrong";
  else if (s.source == "fallback")
    s.warning = std::string("BLAS kernel '") + env(kFallbackEnv) + "' failed its start-up check; using '" + s.active +
                "' instead (slower)";
  return s;
}

std::mutex g_stateMutex;
bool g_stateKnown = false;

}  // namespace

KernelState verifyOrFallback(char** argv) {
  KernelState s = inspectKernel();
  if (!s.verified && s.source == "tessera" && argv) {
    // Our choice computes wrong products: go back to OpenBLAS's own kernel.
    ::setenv(kCoreTypeEnv, s.detected.empty() ? "Prescott" : s.detected.c_str(), 1);
    ::setenv(kFallbackEnv, s.chosen.c_str(), 1);
    ::unsetenv(kChosenEnv);
    reexec(argv);
  }
  std::lock_guard<std::mutex> lock(g_stateMutex);
  g_state = s;
  g_stateKnown = true;
  return s;
}

const KernelState& kernelState() {
  std::lock_guard<std::mutex> lock(g_stateMutex);
  if (!g_stateKnown) {  // a program that did not run verifyOrFallback (tests, tools)
    g_state = inspectKernel();
    g_stateKnown = true;
  }
  return g_state;
}

double measureGemmGflops(int n, double minSeconds) {
  at::Tensor a = at::rand({n, n}), b = at::rand({n, n});
  at::Tensor c = at::mm(a, b);  // warm-up: thread pools, page faults
  double best = 0, total = 0;
  int runs = 0;
  while (total < minSeconds || runs < 3) {
    const auto t0 = std::chrono::steady_clock::now();
    at::mm_out(c, a, b);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    total += s;
    ++runs;
    best = std::max(best, 2.0 * n * n * n / s / 1e9);
    if (runs > 1000) break;
  }
  return best;
}

}  // namespace tessera::blas
