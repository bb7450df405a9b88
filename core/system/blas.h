// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

namespace tessera::blas {

/// The x86 features that decide OpenBLAS's best kernel (read with cpuid).
struct CpuFeatures {
  std::string vendor;
  bool avx = false, avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
};

CpuFeatures detectCpuFeatures();

/// OpenBLAS core type for these features: "SkylakeX" (AVX-512 F/BW/DQ/VL),
/// "Haswell" (AVX2+FMA), "Sandybridge" (AVX), or "" when no better kernel exists.
std::string kernelForFeatures(const CpuFeatures& features);

/// 3 for AVX-512 kernels, 2 for AVX2, 1 for AVX, 0 for SSE-only or unknown names.
int kernelRank(std::string_view coreName);

/// The kernel the loaded OpenBLAS runs (openblas_get_corename), or "" when the
/// process's BLAS is not OpenBLAS.
std::string activeCoreName();
/// openblas_get_config() or "".
std::string activeConfig();
/// Sets OpenBLAS's own thread pool size (no-op without OpenBLAS).
void setOpenBlasThreads(int threads);
int openBlasThreads();

/// Environment variables this module reads or sets.
inline constexpr const char* kCoreTypeEnv = "OPENBLAS_CORETYPE";
inline constexpr const char* kNoReexecEnv = "TESSERA_NO_BLAS_REEXEC";   // "1": never re-execute
inline constexpr const char* kChosenEnv = "TESSERA_BLAS_CHOSEN";        // set by the re-exec
inline constexpr const char* kDetectedEnv = "TESSERA_BLAS_DETECTED";    // OpenBLAS's own choice
inline constexpr const char* kFallbackEnv = "TESSERA_BLAS_FALLBACK";    // set after a failed check
inline constexpr const char* kReexecutedEnv = "TESSERA_REEXECUTED";     // set by the re-exec
/// Test hook: the start-up check treats this kernel as computing wrong products, so
/// the fallback path can be exercised on a machine whose BLAS is correct.
inline constexpr const char* kTestFaultEnv = "TESSERA_BLAS_TEST_FAULT";

/// What start-up decided, for `info --system`, benchmarks and the status bar.
struct KernelState {
  std::string active;     ///< kernel in use now
  std::string detected;   ///< what OpenBLAS picked on its own
  std::string chosen;     ///< what Tessera set, "" if nothing
  std::string source;     ///< "user" (env was set), "tessera", "openblas", "fallback", "none"
  bool verified = false;
  double maxRelError = 0.0;
  std::string warning;    ///< non-empty when something is off
};

/// First thing in main(): OpenBLAS reads OPENBLAS_CORETYPE and libgomp OMP_WAIT_POLICY
/// only when they load, before main. If the user has set neither and the loaded OpenBLAS
/// runs a weaker kernel than the CPU supports, set OPENBLAS_CORETYPE; if
/// OMP_WAIT_POLICY (or GOMP_SPINCOUNT) is unset, set it to PASSIVE so LibTorch's idle
/// OpenMP threads do not spin against OpenBLAS's pool. When anything was set, execute
/// the program again, once. Returns only when no re-execution happened.
void selectKernelOrReexec(char** argv);

/// Multiplies small odd-sized matrices through LibTorch (so through BLAS) and compares
/// them with a naive double-precision product. Returns the largest error relative to
/// the largest magnitude of the reference.
double gemmRelativeError();

/// After selectKernelOrReexec: verifies the kernel. If the product disagrees (relative
/// error above 1e-4) and Tessera chose the kernel, re-executes once with OpenBLAS's
/// own choice and records a warning; if the user chose it, only warns.
KernelState verifyOrFallback(char** argv);

/// The state recorded by verifyOrFallback(), or, in a program that did not call it,
/// the same inspection without any re-execution (computed once).
const KernelState& kernelState();

/// Measures single-precision matrix product throughput (n x n x n) in GFLOP/s: the
/// best of repeated runs lasting at least `minSeconds` in total.
double measureGemmGflops(int n, double minSeconds = 0.3);

}  // namespace tessera::blas
