// SPDX-License-Identifier: Apache-2.0
#include "models/registry.h"

namespace tessera {

#define TESSERA_BACKBONE(name) void registerBackbone_##name(BackboneRegistry&);
#include "models/backbones.def"
#undef TESSERA_BACKBONE

Result<void> BackboneRegistry::add(BackboneEntry entry) {
  if (entry.name.empty()) return fail("a backbone needs a name");
  if (!entry.factory) return fail("backbone '" + entry.name + "' has no factory");
  const std::string name = entry.name;
  if (!m_entries.emplace(name, std::move(entry)).second) return fail("backbone '" + name + "' is registered twice");
  return {};
}

const BackboneEntry* BackboneRegistry::find(const std::string& name) const {
  auto it = m_entries.find(name);
  return it == m_entries.end() ? nullptr : &it->second;
}

std::vector<std::string> BackboneRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : m_entries) out.push_back(name);
  return out;
}

Result<std::shared_ptr<BackboneImpl>> BackboneRegistry::create(const std::string& name, const Config& config,
                                                                const BuildOptions& options) const {
  const BackboneEntry* entry = find(name);
  if (!entry) {
    std::string known;
    for (const auto& n : names()) known += (known.empty() ? "" : ", ") + n;
    return fail("unknown backbone '" + name + "' (known: " + (known.empty() ? std::string("none") : known) + ")");
  }
  auto made = entry->factory(config, options);
  if (!made) return fail(made.error().withContext("backbone '" + name + "'"));
  return made;
}

namespace {

// Mutable only through addPluginBackbone, at start-up; everything else sees it const.
BackboneRegistry& registryInstance() {
  static BackboneRegistry registry = [] {
    BackboneRegistry r;
#define TESSERA_BACKBONE(name) registerBackbone_##name(r);
#include "models/backbones.def"
#undef TESSERA_BACKBONE
    return r;
  }();
  return registry;
}

}  // namespace

const BackboneRegistry& backboneRegistry() { return registryInstance(); }

Result<void> addPluginBackbone(BackboneEntry entry) { return registryInstance().add(std::move(entry)); }

}  // namespace tessera
