// SPDX-License-Identifier: Apache-2.0
// Broken plugins for test_plugins, one per definition: TESSERA_BAD_PLUGIN_ABI was built
// for another plugin interface; TESSERA_BAD_PLUGIN_THROWS stages a sampler, then its
// registration throws past any wrapper, into the host; TESSERA_BAD_PLUGIN_COLLIDES stages
// a sampler, then adds a backbone whose name is taken and ignores the refusal;
// TESSERA_BAD_PLUGIN_NO_ENTRY is a shared library without the entry point;
// TESSERA_BAD_PLUGIN_CRASHES crashes and TESSERA_BAD_PLUGIN_HANGS hangs as it is loaded (in
// a static initialiser, before the loader could check anything).
#include "plugins/tessera_plugin.h"

#include <csignal>
#include <memory>
#include <stdexcept>

#include <unistd.h>
#include <string>

namespace {

using namespace tessera;

class Identity final : public Sampler {
public:
  at::Tensor run(SamplingContext&, at::Tensor x) const override { return x; }
};

[[maybe_unused]] SamplerEntry identitySampler(const std::string& name) {
  SamplerEntry e;
  e.name = name;
  e.description = "returns its input (test)";
  e.family = SamplerFamily::Ode;
  e.make = [] { return std::make_unique<Identity>(); };
  return e;
}

#if defined(TESSERA_BAD_PLUGIN_COLLIDES)
Result<void> registerColliding(PluginRegistrar& registrar) {
  if (auto ok = registrar.addSampler(identitySampler("collide-staged")); !ok) return ok;
  BackboneEntry e;
  e.name = "dit";
  e.description = "takes a built-in name";
  e.factory = [](const Config&, const BuildOptions&) -> Result<std::shared_ptr<BackboneImpl>> { return fail("never built"); };
  (void)registrar.addBackbone(std::move(e));  // ignores the refusal: the loader must not
  return {};
}
#elif defined(TESSERA_BAD_PLUGIN_ABI) || defined(TESSERA_BAD_PLUGIN_THROWS)
const char* registerThrowing(PluginRegistrar& registrar) {
  (void)registrar.addSampler(identitySampler("thrown-staged"));
  throw std::runtime_error("bad plugin: registration throws");
}
#endif

}  // namespace

#if defined(TESSERA_BAD_PLUGIN_COLLIDES)
TESSERA_PLUGIN("bad-collides", "0", "adds a backbone name that is taken", registerColliding)
#elif defined(TESSERA_BAD_PLUGIN_ABI) || defined(TESSERA_BAD_PLUGIN_THROWS)
// Written out rather than through TESSERA_PLUGIN: a wrong interface number, and a
// registration function without the wrapper that catches.
extern "C" __attribute__((visibility("default"))) const TesseraPluginDescriptor* tessera_plugin_descriptor(void) {
  static const TesseraPluginDescriptor descriptor{
#if defined(TESSERA_BAD_PLUGIN_ABI)
      999, static_cast<std::uint32_t>(sizeof(TesseraPluginDescriptor)), "bad-abi",
#else
      TESSERA_PLUGIN_ABI, static_cast<std::uint32_t>(sizeof(TesseraPluginDescriptor)), "bad-throws",
#endif
      "0", "a broken plugin (test)", TORCH_VERSION, TESSERA_PLUGIN_TESSERA_VERSION, TESSERA_PLUGIN_CXX11_ABI,
      &registerThrowing};
  return &descriptor;
}
#elif defined(TESSERA_BAD_PLUGIN_NO_ENTRY)
extern "C" __attribute__((visibility("default"))) int tessera_test_not_a_plugin(void) { return 1; }
#elif defined(TESSERA_BAD_PLUGIN_CRASHES) || defined(TESSERA_BAD_PLUGIN_HANGS)
namespace {
Result<void> registerNothing(PluginRegistrar&) { return {}; }
[[maybe_unused]] const int g_atLoad = [] {
#if defined(TESSERA_BAD_PLUGIN_CRASHES)
  std::raise(SIGSEGV);
#else
  close(1);  // and says nothing more: the host must not wait for its output to end
  close(2);
  for (;;) pause();
#endif
  return 0;
}();
}  // namespace
TESSERA_PLUGIN("bad-at-load", "0", "crashes or hangs as it is loaded", registerNothing)
#else
#error "define one of TESSERA_BAD_PLUGIN_ABI, _THROWS, _COLLIDES, _NO_ENTRY, _CRASHES, _HANGS"
#endif
