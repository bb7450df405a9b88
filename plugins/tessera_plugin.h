// SPDX-License-Identifier: Apache-2.0
// The interface a Tessera plugin is compiled against (see plugins/README.md). A plugin is
// a shared library exporting one C symbol, tessera_plugin_descriptor, that describes it
// and names the function adding its samplers and backbones through a PluginRegistrar.
// C++ types (std::string, std::function, at::Tensor, torch::nn::Module) cross the
// boundary as they are, so the host (engine/plugin_loader.h) checks the descriptor's
// interface number, LibTorch version and std::string ABI before it calls anything.
#pragma once

#include "core/samplers/sampler.h"
#include "core/samplers/steps.h"
#include "models/registry.h"

#include <c10/util/Exception.h>
#include <torch/version.h>

#include <cstdint>
#include <exception>
#include <string>

/// The plugin interface version. Bump it on any change to a type a plugin sees: this
/// header, and what it includes that plugins use (SamplerEntry, Sampler,
/// SamplingContext, Denoiser, SamplingSpace, samplers::OdeView, BackboneEntry and what
/// it holds (KindCapabilities, ConfigSchema, BackboneImporter), ConfigTable,
/// BackboneImpl, Capabilities, Prediction, BackboneInput/Output, Probe, Config, Result).
/// 2: SamplerEntry::evaluationsPerStep; BackboneEntry's capabilities, configuration
/// table, importer and scratch settings; one Prediction enum.
#define TESSERA_PLUGIN_ABI 2

/// The symbol the host looks up.
#define TESSERA_PLUGIN_ENTRY_POINT "tessera_plugin_descriptor"

#ifdef _GLIBCXX_USE_CXX11_ABI
#define TESSERA_PLUGIN_CXX11_ABI _GLIBCXX_USE_CXX11_ABI
#else
#define TESSERA_PLUGIN_CXX11_ABI -1  // not libstdc++
#endif

#ifdef TESSERA_VERSION_STRING
#define TESSERA_PLUGIN_TESSERA_VERSION TESSERA_VERSION_STRING
#else
#define TESSERA_PLUGIN_TESSERA_VERSION "unknown"
#endif

namespace tessera {

/// What a plugin adds. Abstract, so that the plugin reaches the host through the
/// vtable. Additions are staged: the loader commits them all only when every one was
/// accepted and registration returned success, so a refused plugin changes nothing.
class PluginRegistrar {
public:
  virtual ~PluginRegistrar() = default;
  /// Fails when the name or an alias is taken (built in, or by another plugin), or when
  /// the entry is incomplete (no factory, evaluationsPerStep below 0).
  virtual Result<void> addSampler(SamplerEntry entry) = 0;
  /// Fails when the name is taken.
  virtual Result<void> addBackbone(BackboneEntry entry) = 0;
};

namespace plugin_detail {

/// Runs a plugin's registration function and turns its failure or exception into a
/// message ("" on success), so that no exception leaves the plugin.
inline std::string runRegistration(Result<void> (*registerFn)(PluginRegistrar&), PluginRegistrar& registrar) noexcept {
  try {
    auto ok = registerFn(registrar);
    if (ok) return {};
    return ok.error().message().empty() ? std::string("registration failed") : ok.error().message();
  } catch (const c10::Error& e) {
    return std::string("registration threw: ") + e.what_without_backtrace();
  } catch (const std::exception& e) {
    return std::string("registration threw: ") + e.what();
  } catch (...) {
    return "registration threw an unknown exception";
  }
}

}  // namespace plugin_detail
}  // namespace tessera

/// A plugin's self-description. `abi`, `size` and `name` keep their place in every
/// interface version, so that a host can name a plugin built for another one.
struct TesseraPluginDescriptor {
  std::uint32_t abi;           ///< TESSERA_PLUGIN_ABI the plugin was built with
  std::uint32_t size;          ///< sizeof(TesseraPluginDescriptor) as the plugin saw it
  const char* name;            ///< unique among loaded plugins, e.g. "lms-sampler"
  const char* version;         ///< the plugin's own version
  const char* description;     ///< one line
  const char* torchVersion;    ///< TORCH_VERSION of the LibTorch headers the plugin was built with
  const char* tesseraVersion;  ///< the Tessera whose headers it was built against
  int cxx11Abi;                ///< _GLIBCXX_USE_CXX11_ABI (std::string's layout), -1 if not libstdc++
  /// Adds everything; returns null on success, else a message that stays valid until
  /// the next call. Must not throw (TESSERA_PLUGIN's wrapper catches; the host does too).
  const char* (*registerAll)(tessera::PluginRegistrar& registrar);
};

/// The entry point every plugin exports (defined by TESSERA_PLUGIN); the pointer stays
/// valid while the plugin is loaded.
extern "C" const TesseraPluginDescriptor* tessera_plugin_descriptor(void);
using TesseraPluginEntryPoint = const TesseraPluginDescriptor* (*)(void);

/// Defines the plugin's entry point, e.g. `TESSERA_PLUGIN("lms-sampler", "1.0",
/// "Adams–Bashforth sampler", registerLms)` with `tessera::Result<void>
/// registerLms(tessera::PluginRegistrar&)`. The interface, LibTorch and std::string ABI
/// fields come from the headers this file is compiled with. Use once per plugin.
#define TESSERA_PLUGIN(NAME, VERSION, DESCRIPTION, REGISTER_FN)                                              \
  namespace {                                                                                                \
  const char* tesseraPluginRegisterAll(::tessera::PluginRegistrar& registrar) noexcept {                     \
    static std::string message;                                                                              \
    message = ::tessera::plugin_detail::runRegistration(&REGISTER_FN, registrar);                            \
    return message.empty() ? nullptr : message.c_str();                                                      \
  }                                                                                                          \
  }                                                                                                          \
  extern "C" __attribute__((visibility("default"))) const TesseraPluginDescriptor* tessera_plugin_descriptor( \
      void) {                                                                                                \
    static const TesseraPluginDescriptor descriptor{TESSERA_PLUGIN_ABI,                                      \
                                                    static_cast<std::uint32_t>(sizeof(TesseraPluginDescriptor)), \
                                                    NAME,                                                    \
                                                    VERSION,                                                 \
                                                    DESCRIPTION,                                             \
                                                    TORCH_VERSION,                                           \
                                                    TESSERA_PLUGIN_TESSERA_VERSION,                          \
                                                    TESSERA_PLUGIN_CXX11_ABI,                                \
                                                    &tesseraPluginRegisterAll};                              \
    return &descriptor;                                                                                      \
  }
