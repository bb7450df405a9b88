// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tessera {

/// Typed, validating access to a JSON configuration. Fields are addressed by dotted
/// paths ("model.depth"); every failure names the source, the field and what was
/// expected, e.g. `run.json: field 'model.depth': expected an integer in [1, 64], got "x"`.
class Config {
public:
  static Result<Config> fromFile(const std::string& path);
  static Result<Config> fromString(const std::string& text, const std::string& sourceName);
  static Config fromJson(nlohmann::json json, std::string sourceName);

  const nlohmann::json& json() const { return m_json; }
  const std::string& source() const { return m_source; }
  bool has(const std::string& path) const;

  /// Missing field: `fallback` if given, else an error.
  Result<std::int64_t> integer(const std::string& path, std::optional<std::int64_t> fallback = std::nullopt,
                               std::int64_t min = INT64_MIN, std::int64_t max = INT64_MAX) const;
  Result<double> number(const std::string& path, std::optional<double> fallback = std::nullopt,
                        double min = -1e308, double max = 1e308) const;
  Result<bool> boolean(const std::string& path, std::optional<bool> fallback = std::nullopt) const;
  /// With `choices`, the value must be one of them.
  Result<std::string> string(const std::string& path, std::optional<std::string> fallback = std::nullopt,
                             const std::vector<std::string>& choices = {}) const;
  Result<std::vector<std::string>> strings(const std::string& path) const;
  /// A list of `minCount` … `maxCount` integers (numbers), each in [min, max]; absent: `fallback`.
  Result<std::vector<std::int64_t>> integerList(const std::string& path, std::vector<std::int64_t> fallback,
                                                std::size_t minCount, std::size_t maxCount, std::int64_t min,
                                                std::int64_t max) const;
  Result<std::vector<double>> numberList(const std::string& path, std::vector<double> fallback, std::size_t minCount,
                                         std::size_t maxCount, double min, double max) const;

  /// Fails on the first key of the object at `path` ("" = root) that is not in
  /// `known`, suggesting the nearest known key: typos must not be silently ignored.
  Result<void> rejectUnknown(const std::string& path, const std::vector<std::string>& known) const;

private:
  const nlohmann::json* lookup(const std::string& path) const;
  tl::unexpected<Error> fieldError(const std::string& path, const std::string& expected,
                                   const nlohmann::json* got) const;

  nlohmann::json m_json;
  std::string m_source;
};

}  // namespace tessera
