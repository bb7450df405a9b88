// SPDX-License-Identifier: Apache-2.0
// A backbone configuration as a table: one row per field (JSON key, member, bounds or
// choices, doc) from which the configuration is read, written, checked and listed.
// A family lists its fields once, in a .def file of lines
//
//   TESSERA_FIELD(type, member, default, "json_key", (constraint), "doc")
//
// included twice: inside the struct, where each line declares `type member = default;`,
// and where the table is built, where each line adds a row (see models/dit/dit_config.def).
#pragma once

#include "core/config/config.h"
#include "core/process/prediction.h"
#include "core/util/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tessera {

/// One field of a kind's configuration as generic code sees it (listings, the New job
/// dialog, tests).
struct ConfigFieldInfo {
  std::string key;                   ///< the JSON key, "hidden_size"
  std::string type;                  ///< integer | number | boolean | string | object
  nlohmann::json defaultValue;       ///< as written
  std::string doc;                   ///< one line
  nlohmann::json minimum, maximum;   ///< bounds of integer and number fields (null otherwise)
  std::vector<std::string> choices;  ///< the words a string field takes (empty: any)

  nlohmann::json toJson() const;
};

/// A kind's configuration without its C++ type: the registry entry's view of its table.
struct ConfigSchema {
  std::vector<ConfigFieldInfo> fields;
  /// Reads a configuration (the "backbone.config" object; a "preset" key starts from that
  /// preset) and returns every field in its written form; fails where building would.
  std::function<Result<nlohmann::json>(const Config& config)> complete;

  /// The field with JSON key `key`, or null.
  const ConfigFieldInfo* find(const std::string& key) const;
  /// The defaults of every field, as a configuration object.
  nlohmann::json defaults() const;
  nlohmann::json toJson() const;
  /// A --help-style listing, one field a line: key, type, default, bounds, doc.
  std::string help(const std::string& indent = "  ") const;
};

/// Bounds of an integer field.
struct IntRange {
  std::int64_t min, max;
};
/// Bounds of a number field.
struct NumberRange {
  double min, max;
};
/// No constraint (boolean fields).
struct AnyValue {};
/// A list of integers: its length and each element's inclusive bounds.
struct IntList {
  std::size_t minCount, maxCount;
  std::int64_t min, max;
};
/// A list of numbers: its length and each element's inclusive bounds.
struct NumberList {
  std::size_t minCount, maxCount;
  double min, max;
};
/// The words a string field takes (empty: any).
struct Choices {
  std::vector<std::string> words;
};
/// The predictions a Prediction field takes, written with predictionName().
struct Predictions {
  std::vector<Prediction> allowed;
};
/// How an object field (a struct of its own) is read and written.
template <typename T>
struct ObjectField {
  std::function<Result<T>(const Config& config, const std::string& path)> read;
  std::function<nlohmann::json(const T& value)> write;
};

/// The rows of configuration struct C.
template <typename C>
class ConfigTable {
public:
  /// An integer field with inclusive bounds.
  ConfigTable& field(std::string key, std::int64_t C::*member, IntRange range, std::string doc) {
    ConfigFieldInfo info{std::move(key), "integer", {}, std::move(doc), range.min, range.max, {}};
    return add(std::move(info), member, [range](const Config& config, const std::string& path, std::int64_t fallback) {
      return config.integer(path, fallback, range.min, range.max);
    });
  }
  /// A number field with inclusive bounds.
  ConfigTable& field(std::string key, double C::*member, NumberRange range, std::string doc) {
    ConfigFieldInfo info{std::move(key), "number", {}, std::move(doc), range.min, range.max, {}};
    return add(std::move(info), member, [range](const Config& config, const std::string& path, double fallback) {
      return config.number(path, fallback, range.min, range.max);
    });
  }
  /// A list-of-integers field (U-Net's attention_resolutions).
  ConfigTable& field(std::string key, std::vector<std::int64_t> C::*member, IntList list, std::string doc) {
    ConfigFieldInfo info{std::move(key), "integer list", {}, std::move(doc), list.min, list.max, {}};
    return add(std::move(info), member,
               [list](const Config& config, const std::string& path, const std::vector<std::int64_t>& fallback) {
                 return config.integerList(path, fallback, list.minCount, list.maxCount, list.min, list.max);
               });
  }
  /// A list-of-numbers field (U-Net's channel_mult, where ADM-512 has 0.5).
  ConfigTable& field(std::string key, std::vector<double> C::*member, NumberList list, std::string doc) {
    ConfigFieldInfo info{std::move(key), "number list", {}, std::move(doc), list.min, list.max, {}};
    return add(std::move(info), member,
               [list](const Config& config, const std::string& path, const std::vector<double>& fallback) {
                 return config.numberList(path, fallback, list.minCount, list.maxCount, list.min, list.max);
               });
  }
  /// A boolean field.
  ConfigTable& field(std::string key, bool C::*member, AnyValue, std::string doc) {
    ConfigFieldInfo info{std::move(key), "boolean", {}, std::move(doc), nullptr, nullptr, {}};
    return add(std::move(info), member, [](const Config& config, const std::string& path, bool fallback) {
      return config.boolean(path, fallback);
    });
  }
  /// A string field, one of `choices` unless they are empty.
  ConfigTable& field(std::string key, std::string C::*member, Choices choices, std::string doc) {
    ConfigFieldInfo info{std::move(key), "string", {}, std::move(doc), nullptr, nullptr, choices.words};
    return add(std::move(info), member,
               [words = choices.words](const Config& config, const std::string& path, const std::string& fallback) {
                 return config.string(path, fallback, words);
               });
  }
  /// What the network predicts, written as predictionName() and read with every
  /// spelling parsePrediction knows.
  ConfigTable& field(std::string key, Prediction C::*member, Predictions predictions, std::string doc) {
    ConfigFieldInfo info{
        std::move(key), "string", {}, std::move(doc), nullptr, nullptr, predictionSpellings(predictions.allowed)};
    std::vector<std::string> words = info.choices;
    Row row;
    row.info = std::move(info);
    row.read = [member, words](const Config& config, const std::string& path, C& c) -> Result<void> {
      auto v = config.string(path, std::string(predictionName(c.*member)), words);
      if (!v) return fail(v.error());
      c.*member = *parsePrediction(*v);
      return {};
    };
    row.write = [member](const C& c) { return nlohmann::json(predictionName(c.*member)); };
    m_rows.push_back(std::move(row));
    return *this;
  }
  /// An object field: read only where the configuration has it (then in full, not merged
  /// with the default), always written.
  template <typename T>
  ConfigTable& field(std::string key, T C::*member, ObjectField<T> codec, std::string doc) {
    Row row;
    row.info = ConfigFieldInfo{std::move(key), "object", {}, std::move(doc), nullptr, nullptr, {}};
    row.read = [member, codec](const Config& config, const std::string& path, C& c) -> Result<void> {
      if (!config.has(path)) return {};
      auto v = codec.read(config, path);
      if (!v) return fail(v.error());
      c.*member = std::move(*v);
      return {};
    };
    row.write = [member, codec](const C& c) { return codec.write(c.*member); };
    m_rows.push_back(std::move(row));
    return *this;
  }

  /// A key the reader accepts without storing it (e.g. "preset", which picks the defaults).
  ConfigTable& accept(std::string key) {
    m_accepted.push_back(std::move(key));
    return *this;
  }
  /// The checks across fields, run after every read.
  ConfigTable& check(std::function<Result<void>(const C&)> validate) {
    m_validate = std::move(validate);
    return *this;
  }

  /// Reads the object at `path` ("" = root) of `config`: unknown keys fail (with the
  /// nearest known one), absent fields keep the values of `defaults`.
  Result<C> read(const Config& config, const std::string& path, const C& defaults) const {
    std::vector<std::string> known = m_accepted;
    for (const auto& row : m_rows) known.push_back(row.info.key);
    if (auto ok = config.rejectUnknown(path, known); !ok) return fail(ok.error());
    const std::string at = path.empty() ? "" : path + ".";
    C c = defaults;
    for (const auto& row : m_rows)
      if (auto ok = row.read(config, at + row.info.key, c); !ok) return fail(ok.error());
    if (m_validate)
      if (auto ok = m_validate(c); !ok) return fail(ok.error().withContext(config.source()));
    return c;
  }

  /// Every field of `c`, as read() reads them.
  nlohmann::json write(const C& c) const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& row : m_rows) out[row.info.key] = row.write(c);
    return out;
  }

  /// The rows with the values of `defaults` as their defaults.
  std::vector<ConfigFieldInfo> describe(const C& defaults) const {
    std::vector<ConfigFieldInfo> out;
    for (const auto& row : m_rows) {
      out.push_back(row.info);
      out.back().defaultValue = row.write(defaults);
    }
    return out;
  }

  /// The registry's view: fields with `defaults`, and `read` (which resolves presets)
  /// followed by write(). The table must outlive the schema (tables are function statics).
  ConfigSchema schema(const C& defaults, std::function<Result<C>(const Config&)> read) const {
    ConfigSchema s;
    s.fields = describe(defaults);
    s.complete = [this, read = std::move(read)](const Config& config) -> Result<nlohmann::json> {
      auto c = read(config);
      if (!c) return fail(c.error());
      return write(*c);
    };
    return s;
  }

private:
  struct Row {
    ConfigFieldInfo info;
    std::function<Result<void>(const Config&, const std::string&, C&)> read;
    std::function<nlohmann::json(const C&)> write;
  };

  template <typename T, typename Getter>
  ConfigTable& add(ConfigFieldInfo info, T C::*member, Getter get) {
    Row row;
    row.info = std::move(info);
    row.read = [member, get](const Config& config, const std::string& path, C& c) -> Result<void> {
      auto v = get(config, path, c.*member);
      if (!v) return fail(v.error());
      c.*member = *v;
      return {};
    };
    row.write = [member](const C& c) { return nlohmann::json(c.*member); };
    m_rows.push_back(std::move(row));
    return *this;
  }

  std::vector<Row> m_rows;
  std::vector<std::string> m_accepted;
  std::function<Result<void>(const C&)> m_validate;
};

/// The configuration `config` describes for a kind with `defaults` and presets: a
/// "preset" key starts from `preset(name)` instead. Then `table` reads the rest.
template <typename C>
Result<C> readWithPreset(const ConfigTable<C>& table, const Config& config, const C& defaults,
                         const std::function<Result<C>(const std::string&)>& preset) {
  C start = defaults;
  if (config.has("preset")) {
    auto name = config.string("preset");
    if (!name) return fail(name.error());
    auto p = preset(*name);
    if (!p) return fail(p.error());
    start = *p;
  }
  return table.read(config, "", start);
}

}  // namespace tessera
