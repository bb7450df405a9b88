// SPDX-License-Identifier: Apache-2.0
#include "core/config/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace tessera {
namespace {

std::size_t editDistance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string shortDump(const nlohmann::json& j) {
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

}  // namespace

Result<Config> Config::fromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return fromString(ss.str(), path);
}

Result<Config> Config::fromString(const std::string& text, const std::string& sourceName) {
  try {
    return fromJson(nlohmann::json::parse(text), sourceName);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number too large for a double (1E6666), which
    // escaped as an exception until the training_config fuzz target found it.
    return fail(sourceName + ": not valid JSON: " + e.what());
  }
}

Config Config::fromJson(nlohmann::json json, std::string sourceName) {
  Config c;
  c.m_json = std::move(json);
  c.m_source = std::move(sourceName);
  return c;
}

const nlohmann::json* Config::lookup(const std::string& path) const {
  const nlohmann::json* node = &m_json;
  std::size_t start = 0;
  while (start <= path.size()) {
    const auto dot = path.find('.', start);
    const std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object()) return nullptr;
    auto it = node->find(key);
    if (it == node->end()) return nullptr;
    node = &*it;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return node;
}

bool Config::has(const std::string& path) const { return lookup(path) != nullptr; }

tl::unexpected<Error> Config::fieldError(const std::string& path, const std::string& expected,
                                         const nlohmann::json* got) const {
  return fail(m_source + ": field '" + path + "': expected " + expected +
              (got ? ", got " + shortDump(*got) : std::string(", but it is missing")));
}

Result<std::int64_t> Config::integer(const std::string& path, std::optional<std::int64_t> fallback,
                                     std::int64_t min, std::int64_t max) const {
  const std::string expected = (min == INT64_MIN && max == INT64_MAX)
                                   ? std::string("an integer")
                                   : "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  const nlohmann::json* j = lookup(path);
  if (!j) {
    if (fallback) return *fallback;
    return fieldError(path, expected, nullptr);
  }
  std::int64_t v = 0;
  if (j->is_number_integer() && !(j->is_number_unsigned() && j->get<std::uint64_t>() > INT64_MAX)) v = j->get<std::int64_t>();
  else if (j->is_number_float() && std::isfinite(j->get<double>()) && std::floor(j->get<double>()) == j->get<double>() &&
           std::fabs(j->get<double>()) < 9.2e18) v = static_cast<std::int64_t>(j->get<double>());
  else return fieldError(path, expected, j);
  if (v < min || v > max) return fieldError(path, expected, j);
  return v;
}

Result<double> Config::number(const std::string& path, std::optional<double> fallback, double min, double max) const {
  std::ostringstream expected;
  expected << "a finite number";
  if (min > -1e308 || max < 1e308) expected << " in [" << min << ", " << max << "]";
  const nlohmann::json* j = lookup(path);
  if (!j) {
    if (fallback) return *fallback;
    return fieldError(path, expected.str(), nullptr);
  }
  if (!j->is_number()) return fieldError(path, expected.str(), j);
  const double v = j->get<double>();
  if (!std::isfinite(v) || v < min || v > max) return fieldError(path, expected.str(), j);
  return v;
}

Result<bool> Config::boolean(const std::string& path, std::optional<bool> fallback) const {
  const nlohmann::json* j = lookup(path);
  if (!j) {
    if (fallback) return *fallback;
    return fieldError(path, "true or false", nullptr);
  }
  if (!j->is_boolean()) return fieldError(path, "true or false", j);
  return j->get<bool>();
}

Result<std::string> Config::string(const std::string& path, std::optional<std::string> fallback,
                                   const std::vector<std::string>& choices) const {
  std::string expected = "a string";
  if (!choices.empty()) {
    expected = "one of ";
    for (std::size_t i = 0; i < choices.size(); ++i) expected += (i ? ", \"" : "\"") + choices[i] + "\"";
  }
  const nlohmann::json* j = lookup(path);
  if (!j) {
    if (fallback) return *fallback;
    return fieldError(path, expected, nullptr);
  }
  if (!j->is_string()) return fieldError(path, expected, j);
  std::string v = j->get<std::string>();
  if (!choices.empty() && std::find(choices.begin(), choices.end(), v) == choices.end())
    return fieldError(path, expected, j);
  return v;
}

Result<std::vector<std::string>> Config::strings(const std::string& path) const {
  const nlohmann::json* j = lookup(path);
  if (!j) return fieldError(path, "an array of strings", nullptr);
  if (!j->is_array()) return fieldError(path, "an array of strings", j);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < j->size(); ++i) {
    if (!(*j)[i].is_string()) return fieldError(path + "[" + std::to_string(i) + "]", "a string", &(*j)[i]);
    out.push_back((*j)[i].get<std::string>());
  }
  return out;
}

Result<void> Config::rejectUnknown(const std::string& path, const std::vector<std::string>& known) const {
  const nlohmann::json* j = path.empty() ? &m_json : lookup(path);
  if (!j) return {};
  if (!j->is_object()) return fieldError(path.empty() ? std::string("<root>") : path, "an object", j);
  for (auto it = j->begin(); it != j->end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) != known.end()) continue;
    const std::string full = path.empty() ? it.key() : path + "." + it.key();
    std::string hint;
    std::size_t best = 3;
    for (const auto& k : known) {
      const std::size_t d = editDistance(it.key(), k);
      if (d < best) best = d, hint = k;
    }
    return fail(m_source + ": unknown field '" + full + "'" +
                (hint.empty() ? std::string() : " (did you mean '" + (path.empty() ? hint : path + "." + hint) + "'?)"));
  }
  return {};
}

}  // namespace tessera

namespace tessera {
namespace {

template <typename T>
std::string listExpectation(std::size_t minCount, std::size_t maxCount, T min, T max, const char* what) {
  return "a list of " + std::to_string(minCount) + " to " + std::to_string(maxCount) + " " + what + " in [" +
         nlohmann::json(min).dump() + ", " + nlohmann::json(max).dump() + "]";
}

}  // namespace

Result<std::vector<std::int64_t>> Config::integerList(const std::string& path, std::vector<std::int64_t> fallback,
                                                      std::size_t minCount, std::size_t maxCount, std::int64_t min,
                                                      std::int64_t max) const {
  const nlohmann::json* j = lookup(path);
  if (!j) return fallback;
  const std::string expected = listExpectation(minCount, maxCount, min, max, "integers");
  if (!j->is_array() || j->size() < minCount || j->size() > maxCount) return fieldError(path, expected, j);
  std::vector<std::int64_t> out;
  for (const auto& e : *j) {
    if (!e.is_number_integer() || (e.is_number_unsigned() && e.get<std::uint64_t>() > INT64_MAX))
      return fieldError(path, expected, j);
    const auto v = e.get<std::int64_t>();
    if (v < min || v > max) return fieldError(path, expected, j);
    out.push_back(v);
  }
  return out;
}

Result<std::vector<double>> Config::numberList(const std::string& path, std::vector<double> fallback,
                                               std::size_t minCount, std::size_t maxCount, double min,
                                               double max) const {
  const nlohmann::json* j = lookup(path);
  if (!j) return fallback;
  const std::string expected = listExpectation(minCount, maxCount, min, max, "numbers");
  if (!j->is_array() || j->size() < minCount || j->size() > maxCount) return fieldError(path, expected, j);
  std::vector<double> out;
  for (const auto& e : *j) {
    if (!e.is_number()) return fieldError(path, expected, j);
    const auto v = e.get<double>();
    if (!std::isfinite(v) || v < min || v > max) return fieldError(path, expected, j);
    out.push_back(v);
  }
  return out;
}

}  // namespace tessera
