// SPDX-License-Identifier: Apache-2.0
#include "core/formats/safetensors.h"

#include "core/util/atomic_file.h"
#include "core/util/mapped_file.h"
#include "core/util/utf8.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

namespace tessera {
namespace {

using nlohmann::json;

std::string shapeString(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

bool isNonNegativeInteger(const json& j) {
  return j.is_number_unsigned() || (j.is_number_integer() && j.get<std::int64_t>() >= 0);
}

std::uint64_t readLE64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

Result<SafetensorsEntry> parseEntry(const std::string& name, const json& j) {
  auto bad = [&](const std::string& what) { return fail("tensor '" + name + "': " + what); };
  if (!j.is_object()) return bad("header entry must be an object with dtype, shape, data_offsets");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!j.contains(field)) return bad(std::string("header entry lacks '") + field + "'");
  SafetensorsEntry e;
  e.name = name;
  const json& dt = j.at("dtype");
  if (!dt.is_string()) return bad("'dtype' must be a string");
  const auto dtype = dtypeFromName(dt.get<std::string>());
  if (!dtype)
    return bad("unknown dtype '" + dt.get<std::string>() + "' (expected one of " +
               supportedDTypeNames() + ")");
  e.dtype = *dtype;
  const json& shape = j.at("shape");
  if (!shape.is_array()) return bad("'shape' must be an array of non-negative integers");
  std::uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : shape) {
    if (!isNonNegativeInteger(d)) return bad("'shape' must be an array of non-negative integers");
    const std::uint64_t v = d.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return bad("shape dimension " + std::to_string(v) + " is too large");
    e.shape.push_back(static_cast<std::int64_t>(v));
    overflow = overflow || __builtin_mul_overflow(numel, v, &numel);
  }
  const json& off = j.at("data_offsets");
  if (!off.is_array() || off.size() != 2 || !isNonNegativeInteger(off[0]) ||
      !isNonNegativeInteger(off[1]))
    return bad("'data_offsets' must be [begin, end] with non-negative integers");
  e.begin = off[0].get<std::uint64_t>();
  e.end = off[1].get<std::uint64_t>();
  if (e.end < e.begin)
    return bad("data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
               "] end before they begin");
  std::uint64_t bytes = 0;
  overflow = overflow || __builtin_mul_overflow(numel, dtypeSize(e.dtype), &bytes);
  if (overflow || bytes != e.end - e.begin)
    return bad("shape " + shapeString(e.shape) + " of " + std::string(dtypeName(e.dtype)) +
               " needs " + (overflow ? std::string("more than 2^64") : std::to_string(bytes)) +
               " bytes but data_offsets span " + std::to_string(e.end - e.begin));
  return e;
}

}  // namespace

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped) return fail(mapped.error());
  const auto& file = *mapped;
  auto bad = [&](const std::string& what) { return fail(path + ": " + what); };

  const std::uint64_t size = file->size();
  if (size < 8)
    return bad("truncated: " + std::to_string(size) +
               " bytes, but a safetensors file starts with an 8-byte header length");
  const std::uint64_t headerLen = readLE64(file->data());
  if (headerLen > kMaxHeaderSize)
    return bad("header length " + std::to_string(headerLen) + " is absurd (at most " +
               std::to_string(kMaxHeaderSize) + " bytes expected); not a safetensors file?");
  if (headerLen > size - 8)
    return bad("header length " + std::to_string(headerLen) + " runs past the end of the file (" +
               std::to_string(size) + " bytes): truncated or not a safetensors file");
  if (headerLen < 2) return bad("header of " + std::to_string(headerLen) + " bytes cannot hold a JSON object");
  const char* hbegin = reinterpret_cast<const char*>(file->data() + 8);
  const std::string_view header(hbegin, headerLen);
  if (const auto badAt = firstInvalidUtf8(header))
    return bad("header is not valid UTF-8 (bad byte at header offset " + std::to_string(*badAt) + ")");
  if (header.front() != '{') return bad("header does not start with '{': not a safetensors file");

  json root;
  std::set<std::string> topKeys;
  std::string duplicate;
  // Duplicate names would silently shadow each other: JSON parsers keep one of them.
  const json::parser_callback_t noDuplicates = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && !topKeys.insert(parsed.get<std::string>()).second &&
        duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  try {
    root = json::parse(header.begin(), header.end(), noDuplicates);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number such as 1E6666
    return bad(std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) return bad("header names '" + duplicate + "' twice");
  if (!root.is_object()) return bad("header must be a JSON object");

  SafetensorsFile out;
  out.m_file = file;
  out.m_dataStart = 8 + headerLen;
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return bad("'__metadata__' must be an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string())
          return bad("'__metadata__' entry '" + m.key() + "' must be a string, got " + m->type_name());
        out.m_metadata.emplace(m.key(), m->get<std::string>());
      }
      continue;
    }
    auto entry = parseEntry(it.key(), *it);
    if (!entry) return fail(entry.error().withContext(path));
    out.m_entries.push_back(std::move(*entry));
  }

  // The data area must be covered exactly: no overlaps, no gaps, nothing past the end.
  std::sort(out.m_entries.begin(), out.m_entries.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  const std::uint64_t dataSize = size - out.m_dataStart;
  std::uint64_t cursor = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const auto& e : out.m_entries) {
    if (e.end > dataSize)
      return bad("tensor '" + e.name + "': data_offsets [" + std::to_string(e.begin) + ", " +
                 std::to_string(e.end) + "] run past the end of the data (" +
                 std::to_string(dataSize) + " bytes): truncated file?");
    if (e.begin < cursor)
      return bad("tensor '" + e.name + "' overlaps tensor '" + previous->name + "' (offset " +
                 std::to_string(e.begin) + " < " + std::to_string(cursor) + ")");
    if (e.begin > cursor)
      return bad("gap of " + std::to_string(e.begin - cursor) + " bytes before tensor '" + e.name +
                 "' (offsets must be contiguous)");
    cursor = e.end;
    previous = &e;
  }
  if (cursor != dataSize)
    return bad(std::to_string(dataSize - cursor) +
               " bytes after the last tensor are not described by the header");
  return out;
}

const std::string& SafetensorsFile::path() const { return m_file->path(); }

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  for (const auto& e : m_entries)
    if (e.name == name) return &e;
  return nullptr;
}

std::int64_t SafetensorsFile::parameterCount() const {
  std::int64_t n = 0;
  for (const auto& e : m_entries) {
    std::int64_t k = 1;
    for (auto d : e.shape) k *= d;
    n += k;
  }
  return n;
}

Result<at::Tensor> SafetensorsFile::load(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) return fail(path() + ": no tensor named '" + name + "'");
  at::Tensor t = at::empty(e->shape, at::TensorOptions().dtype(toScalarType(e->dtype)));
  const std::uint8_t* src = m_file->data() + m_dataStart + e->begin;
  const std::uint64_t bytes = e->end - e->begin;
  if (e->dtype == DType::Bool) {
    for (std::uint64_t i = 0; i < bytes; ++i)
      if (src[i] > 1)
        return fail(path() + ": tensor '" + name + "': BOOL element " + std::to_string(i) +
                    " has byte value " + std::to_string(src[i]) + " (expected 0 or 1)");
  }
  if (bytes) std::memcpy(t.data_ptr(), src, bytes);
  return t;
}

Result<void> SafetensorsFile::readInto(const std::string& name, at::Tensor& target) const {
  const SafetensorsEntry* e = find(name);
  if (!e) return fail(path() + ": no tensor named '" + name + "'");
  if (target.sizes() != at::IntArrayRef(e->shape))
    return fail(path() + ": tensor '" + name + "' has shape " + shapeString(e->shape) + ", expected " +
                shapeString(target.sizes().vec()));
  if (e->dtype != DType::Bool && toScalarType(e->dtype) == target.scalar_type() && target.is_contiguous() &&
      target.device().is_cpu()) {
    const std::uint8_t* src = m_file->data() + m_dataStart + e->begin;
    if (e->end > e->begin) std::memcpy(target.data_ptr(), src, e->end - e->begin);
    return {};
  }
  auto t = load(name);
  if (!t) return fail(t.error());
  target.copy_(*t);
  return {};
}

Result<std::map<std::string, at::Tensor>> SafetensorsFile::loadAll() const {
  std::map<std::string, at::Tensor> out;
  for (const auto& e : m_entries) {
    auto t = load(e.name);
    if (!t) return fail(t.error());
    out.emplace(e.name, std::move(*t));
  }
  return out;
}

namespace {

struct Layout {
  std::string header;  ///< length prefix + padded JSON
  std::vector<at::Tensor> data;  ///< contiguous CPU tensors in file order
};

Result<Layout> layout(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  struct Item {
    const std::string* name;
    at::Tensor data;
    DType dtype;
  };
  std::vector<Item> items;
  std::set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") return fail("a tensor cannot be named '__metadata__'");
    if (!seen.insert(name).second) return fail("tensor name '" + name + "' appears twice");
    if (!tensor.defined()) return fail("tensor '" + name + "' is undefined");
    auto dtype = fromScalarType(tensor.scalar_type());
    if (!dtype) return fail(dtype.error().withContext("tensor '" + name + "'"));
    items.push_back({&name, tensor.to(at::kCPU).contiguous(), *dtype});
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    const int ra = dtypeLayoutRank(a.dtype), rb = dtypeLayoutRank(b.dtype);
    return ra != rb ? ra > rb : *a.name < *b.name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::uint64_t offset = 0;
  Layout out;
  for (auto& it : items) {
    const std::uint64_t bytes = static_cast<std::uint64_t>(it.data.nbytes());
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = std::string(dtypeName(it.dtype));
    entry["shape"] = it.data.sizes().vec();
    entry["data_offsets"] = {offset, offset + bytes};
    header[*it.name] = std::move(entry);
    offset += bytes;
    out.data.push_back(std::move(it.data));
  }
  std::string text;
  try {
    text = header.dump();  // compact, UTF-8 kept as is, like serde_json
  } catch (const nlohmann::json::type_error& e) {
    return fail(std::string("metadata or tensor names are not valid UTF-8: ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.header.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out.header += text;
  return out;
}

}  // namespace

Result<std::string> serializeSafetensors(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  auto l = layout(tensors, metadata);
  if (!l) return fail(l.error());
  std::string out = l->header;
  for (const auto& t : l->data) out.append(static_cast<const char*>(t.data_ptr()), static_cast<std::size_t>(t.nbytes()));
  return out;
}

Result<void> writeSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata) {
  auto l = layout(tensors, metadata);
  if (!l) return fail(l.error().withContext(path));
  // Streamed tensor by tensor: a model file is never held twice in memory.
  return writeFileAtomically(path, [&](std::ostream& out) {
    out.write(l->header.data(), static_cast<std::streamsize>(l->header.size()));
    for (const auto& t : l->data) out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
    return static_cast<bool>(out);
  });
}

}  // namespace tessera
