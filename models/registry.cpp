// SPDX-License-Identifier: Apache-2.0
#include "models/registry.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

namespace tessera {

#define TESSERA_BACKBONE(name) void registerBackbone_##name(BackboneRegistry&);
#include "models/backbones.def"
#undef TESSERA_BACKBONE

namespace {

std::string joined(const std::vector<std::string>& words, const std::string& separator = ", ") {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : separator) + w;
  return out;
}

/// The lower-case alphanumeric words of a file name: "SiT-XL-2-256x256.pt" → sit, xl, 2, 256x256, pt.
std::set<std::string> wordsOf(const std::string& text) {
  std::set<std::string> words;
  std::string word;
  for (char ch : text + " ") {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c)) {
      word += static_cast<char>(std::tolower(c));
    } else if (!word.empty()) {
      words.insert(word);
      word.clear();
    }
  }
  return words;
}

}  // namespace

const std::vector<std::int64_t>* findShape(const TensorShapes& shapes, const std::string& key) {
  for (const auto& [name, shape] : shapes)
    if (name == key) return &shape;
  return nullptr;
}

nlohmann::json KindCapabilities::toJson() const {
  nlohmann::json p = nlohmann::json::array();
  for (Prediction x : predictions) p.push_back(predictionName(x));
  return {{"any_grid", anyGrid}, {"packed", packed}, {"learned_sigma", learnedSigma}, {"predictions", p}};
}

nlohmann::json BackboneEntry::toJson() const {
  return {{"name", name},
          {"description", description},
          {"capabilities", capabilities.toJson()},
          {"presets", presets},
          {"imports", static_cast<bool>(importer)},
          {"fields", config.toJson()}};
}

Result<void> BackboneRegistry::add(BackboneEntry entry) {
  if (entry.name.empty()) return fail("a backbone needs a name");
  if (!entry.factory) return fail("backbone '" + entry.name + "' has no factory");
  const std::string name = entry.name;
  if (!m_entries.emplace(name, std::move(entry)).second) return fail("backbone '" + name + "' is registered twice");
  m_order.push_back(name);
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
    const std::string known = joined(names());
    return fail("unknown backbone '" + name + "' (known: " + (known.empty() ? std::string("none") : known) + ")");
  }
  auto made = entry->factory(config, options);
  if (!made) return fail(made.error().withContext("backbone '" + name + "'"));
  return made;
}

const BackboneEntry* BackboneRegistry::findPreset(const std::string& preset) const {
  for (const auto& [name, entry] : m_entries)
    if (std::find(entry.presets.begin(), entry.presets.end(), preset) != entry.presets.end()) return &entry;
  return nullptr;
}

std::vector<std::string> BackboneRegistry::presetNames() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : m_entries) out.insert(out.end(), entry.presets.begin(), entry.presets.end());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> BackboneRegistry::importerNames() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : m_entries)
    if (entry.importer) out.push_back(name);
  return out;
}

std::vector<std::string> BackboneRegistry::importSourceNames() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : m_entries) {
    if (!entry.importer) continue;
    out.push_back(name);
    out.insert(out.end(), entry.importer.sources.begin(), entry.importer.sources.end());
  }
  return out;
}

const BackboneEntry* BackboneRegistry::findImportSource(const std::string& source) const {
  for (const auto& [name, entry] : m_entries) {
    if (!entry.importer) continue;
    if (name == source) return &entry;
    for (const auto& s : entry.importer.sources)
      if (s == source) return &entry;
  }
  return nullptr;
}

std::vector<std::string> BackboneRegistry::recognise(const TensorShapes& shapes, const std::string& fileName) const {
  std::vector<std::string> fits;
  for (const auto& [name, entry] : m_entries)
    if (entry.importer && entry.importer.recognises(shapes)) fits.push_back(name);
  if (fits.size() < 2) return fits;
  // The weights of kinds sharing a network cannot tell them apart; the reference
  // releases name their checkpoints after the family.
  const std::set<std::string> words = wordsOf(fileName);
  std::vector<std::string> named;
  for (const auto& n : fits)
    if (words.count(n)) named.push_back(n);
  return named.size() == 1 ? named : fits;
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

std::string backboneHelp(const BackboneRegistry& registry) {
  std::ostringstream out;
  for (const auto& name : registry.names()) {
    const BackboneEntry& e = *registry.find(name);
    out << name << ": " << e.description << "\n";
    const KindCapabilities& c = e.capabilities;
    std::vector<std::string> can;
    if (c.anyGrid) can.emplace_back("any grid");
    if (c.packed) can.emplace_back("packed sequences");
    if (c.learnedSigma) can.emplace_back("learned sigma");
    std::vector<std::string> predictions;
    for (Prediction p : c.predictions) predictions.emplace_back(predictionName(p));
    can.push_back("predicts " + joined(predictions, " | ") +
                  (predictions.empty() ? "" : " (default " + predictions.front() + ")"));
    out << "  capabilities: " << joined(can) << "\n";
    out << "  import: " << (e.importer ? "tessera-cli import --from " + name : std::string("no")) << "\n";
    if (!e.presets.empty()) out << "  presets: " << joined(e.presets) << "\n";
    if (e.config.fields.empty()) {
      out << "  fields: (not listed)\n";
    } else {
      out << "  fields (backbone.config):\n" << e.config.help("    ");
    }
    out << "\n";
  }
  return out.str();
}

}  // namespace tessera
