// SPDX-License-Identifier: Apache-2.0
#include "models/config_table.h"

#include <sstream>

namespace tessera {

nlohmann::json ConfigFieldInfo::toJson() const {
  nlohmann::json j{{"key", key}, {"type", type}, {"default", defaultValue}, {"doc", doc}};
  if (!minimum.is_null()) j["minimum"] = minimum;
  if (!maximum.is_null()) j["maximum"] = maximum;
  if (!choices.empty()) j["choices"] = choices;
  return j;
}

const ConfigFieldInfo* ConfigSchema::find(const std::string& key) const {
  for (const auto& f : fields)
    if (f.key == key) return &f;
  return nullptr;
}

nlohmann::json ConfigSchema::defaults() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& f : fields) out[f.key] = f.defaultValue;
  return out;
}

nlohmann::json ConfigSchema::toJson() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& f : fields) out.push_back(f.toJson());
  return out;
}

std::string ConfigSchema::help(const std::string& indent) const {
  std::size_t width = 0;
  for (const auto& f : fields) width = std::max(width, f.key.size());
  std::ostringstream out;
  for (const auto& f : fields) {
    out << indent << f.key << std::string(width - f.key.size() + 2, ' ') << f.type << " = " << f.defaultValue.dump();
    if (!f.minimum.is_null() && !f.maximum.is_null())
      out << " in [" << f.minimum.dump() << ", " << f.maximum.dump() << "]";
    if (!f.choices.empty()) {
      out << " (";
      for (std::size_t i = 0; i < f.choices.size(); ++i) out << (i ? " | " : "") << f.choices[i];
      out << ")";
    }
    out << ": " << f.doc << "\n";
  }
  return out.str();
}

}  // namespace tessera
