// SPDX-License-Identifier: Apache-2.0
#include "core/formats/torch_checkpoint.h"

#include "core/formats/pickle.h"
#include "core/formats/tensor_file.h"
#include "core/formats/zip_directory.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

namespace tessera {
namespace {

using pickle::Value;
using pickle::ValuePtr;
using Kind = pickle::Value::Kind;

Result<c10::ScalarType> storageScalarType(const std::string& global) {
  static const std::map<std::string, c10::ScalarType> types = {
      {"torch.DoubleStorage", c10::ScalarType::Double}, {"torch.FloatStorage", c10::ScalarType::Float},
      {"torch.HalfStorage", c10::ScalarType::Half},     {"torch.BFloat16Storage", c10::ScalarType::BFloat16},
      {"torch.LongStorage", c10::ScalarType::Long},     {"torch.IntStorage", c10::ScalarType::Int},
      {"torch.ShortStorage", c10::ScalarType::Short},   {"torch.CharStorage", c10::ScalarType::Char},
      {"torch.ByteStorage", c10::ScalarType::Byte},     {"torch.BoolStorage", c10::ScalarType::Bool},
      {"torch.UntypedStorage", c10::ScalarType::Byte},
  };
  auto it = types.find(global);
  if (it == types.end()) return fail("'" + global + "' is not a storage type");
  return it->second;
}

std::string keyText(const Value& key) {
  switch (key.kind) {
    case Kind::String: return key.text;
    case Kind::Int: return std::to_string(key.integer);
    default: return "<" + std::string(key.kindName()) + ">";
  }
}

/// Walks what the unpickler built and lists every tensor and scalar by its key path. The
/// memo lets a pickle store one container under many keys, and those under many more: a
/// 1 KB pickle can name a list 2^30 ways, or give a 1 MB key to a thousand children. The
/// walk is therefore metered in the characters of the key paths it makes (a state dict
/// spends a few times its pickle's size) and refused beyond a budget linear in it.
class Flattener {
public:
  Flattener(TorchCheckpoint& out, std::size_t pickleBytes) : m_out(out), m_budget(64 * pickleBytes + (1u << 20)) {}

  Result<void> walk(const ValuePtr& v, const std::string& container, const std::string& key) {
    const std::string prefix = container.empty() ? key : key.empty() ? container : container + "." + key;
    m_spent += prefix.size() + 1 + (v->kind == Kind::String ? v->text.size() : 0);  // the path, and a copied text
    if (m_spent > m_budget)
      return fail(
          "its containers are shared under so many keys that listing them would make more than " +
          std::to_string(m_budget / 1000) +
          " KB of key paths and copies (a pickle makes that with its memo; torch.save never does): refusing it");
    auto children = [&](const std::vector<std::pair<std::string, ValuePtr>>& items) -> Result<void> {
      bool holdsTensors = false;
      for (const auto& [k, item] : items) holdsTensors = holdsTensors || item->kind == Kind::Tensor;
      if (holdsTensors) m_out.stateDictPaths.push_back(prefix);
      for (const auto& [k, item] : items)
        if (auto ok = walk(item, prefix, k); !ok) return ok;
      return {};
    };
    switch (v->kind) {
      case Kind::Tensor:
        m_out.tensors.push_back({container, key, v->tensor});
        break;
      case Kind::Dict: {
        std::vector<std::pair<std::string, ValuePtr>> items;
        for (const auto& [k, item] : v->entries) items.emplace_back(keyText(*k), item);
        return children(items);
      }
      case Kind::List:
      case Kind::Tuple: {
        std::vector<std::pair<std::string, ValuePtr>> items;
        for (std::size_t i = 0; i < v->items.size(); ++i) items.emplace_back(std::to_string(i), v->items[i]);
        return children(items);
      }
      case Kind::Int:
        m_out.scalars[prefix] = std::to_string(v->integer);
        break;
      case Kind::Float:
        m_out.scalars[prefix] = std::to_string(v->real);
        break;
      case Kind::Bool:
        m_out.scalars[prefix] = v->boolean ? "true" : "false";
        break;
      case Kind::String:
        m_out.scalars[prefix] = v->text;
        break;
      case Kind::None:
        m_out.scalars[prefix] = "None";
        break;
      default:
        break;  // bytes, storages and globals carry nothing a user reads
    }
    return {};
  }

private:
  TorchCheckpoint& m_out;
  std::size_t m_budget, m_spent = 0;
};

Result<void> checkFormat(const std::string& path) {
  if (!std::filesystem::exists(path)) return fail(path + ": cannot open");
  if (std::filesystem::file_size(path) < 4) return fail(path + ": truncated: too short for a torch.save archive");
  switch (detectTensorFileFormat(path)) {
    case TensorFileFormat::TorchZip: return {};
    case TensorFileFormat::LegacyTorch:
      return fail(path + ": legacy torch.save format (PyTorch < 1.6) is not supported; re-save it with a recent "
                         "PyTorch (torch.save(torch.load(f), f2))");
    default: return fail(path + ": not a torch.save zip archive (expected the bytes 'PK\\x03\\x04' at the start)");
  }
}

}  // namespace

const std::vector<std::string>& preferredStateDictKeys() {
  static const std::vector<std::string> keys = {"ema", "model_ema", "model", "state_dict", "module", "net"};
  return keys;
}

Result<TorchCheckpoint> readTorchCheckpoint(const std::string& path) {
  if (auto ok = checkFormat(path); !ok) return fail(ok.error());
  const auto fileSize = static_cast<std::uint64_t>(std::filesystem::file_size(path));
  // torch.save stores its records uncompressed, so together they hold less than the archive.
  // The zip reader allocates what a record claims before inflating it (a 2 MB record once
  // claimed 2 GiB and was read whole): claims beyond that are refused before any is read.
  auto directory = readZipDirectory(path);
  if (!directory) return fail(directory.error());
  std::uint64_t inflated = 0;
  for (const auto& record : *directory)
    if (record.size > fileSize || (inflated += record.size) > fileSize)
      return fail(path + ": record '" + record.name + "' inflates to " + std::to_string(record.size) +
                  " bytes, and the records together to more than the archive's " + std::to_string(fileSize) +
                  " bytes: torch.save stores records uncompressed, so this archive was compressed again or is "
                  "hostile (load it in PyTorch and torch.save it again)");
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    if (!reader.hasRecord("data.pkl")) {
      if (reader.hasRecord("constants.pkl"))
        return fail(path + ": a TorchScript archive (torch.jit.save), not a torch.save state dict");
      return fail(path + ": zip archive without data.pkl: not a torch.save file");
    }
    if (reader.hasRecord("byteorder")) {
      auto [ptr, n] = reader.getRecord("byteorder");
      const std::string order(static_cast<const char*>(ptr.get()), n);
      if (order != "little") return fail(path + ": byte order '" + order + "' is not supported (expected little)");
    }
    auto [pkl, pklSize] = reader.getRecord("data.pkl");
    const std::string_view pklData(static_cast<const char*>(pkl.get()), pklSize);

    std::map<std::string, at::Tensor> storages;
    pickle::PersistentLoader loader = [&](const Value& pid) -> Result<ValuePtr> {
      // ('storage', StorageType, key, location, numel)
      if (pid.kind != Kind::Tuple || pid.items.size() != 5 || pid.items[0]->kind != Kind::String ||
          pid.items[0]->text != "storage" || pid.items[1]->kind != Kind::Global ||
          pid.items[2]->kind != Kind::String || pid.items[4]->kind != Kind::Int)
        return fail("persistent id is not ('storage', type, key, location, numel)");
      auto type = storageScalarType(pid.items[1]->text);
      if (!type) return fail(type.error());
      const std::string& key = pid.items[2]->text;
      const std::int64_t numel = pid.items[4]->integer;
      if (numel < 0) return fail("storage '" + key + "' has a negative size");
      const auto elem = static_cast<std::uint64_t>(c10::elementSize(*type));
      std::uint64_t bytes = 0;
      if (__builtin_mul_overflow(static_cast<std::uint64_t>(numel), elem, &bytes) || bytes > fileSize)
        return fail("storage '" + key + "' claims " + std::to_string(numel) + " elements, more than the file holds");
      auto v = Value::make(Kind::Storage);
      if (auto it = storages.find(key); it != storages.end()) {
        if (it->second.scalar_type() != *type) return fail("storage '" + key + "' is used with two element types");
        v->tensor = it->second;
        return v;
      }
      const std::string record = "data/" + key;
      if (!reader.hasRecord(record)) return fail("record '" + record + "' is missing from the archive");
      auto [data, size] = reader.getRecord(record);
      if (size < bytes)
        return fail("record '" + record + "' has " + std::to_string(size) + " bytes, " + std::to_string(bytes) +
                    " expected for " + std::to_string(numel) + " elements of " + c10::toString(*type));
      auto holder = std::make_shared<at::DataPtr>(std::move(data));
      at::Tensor storage = at::from_blob(
          holder->get(), {numel}, [holder](void*) mutable { holder.reset(); },
          at::TensorOptions().dtype(*type));
      if (*type == c10::ScalarType::Bool) {
        const auto* b = static_cast<const std::uint8_t*>(holder->get());
        for (std::int64_t i = 0; i < numel; ++i)
          if (b[i] > 1) return fail("storage '" + key + "': bool element with byte value " + std::to_string(b[i]));
      }
      storages.emplace(key, storage);
      v->tensor = storage;
      return v;
    };

    auto root = pickle::unpickle(pklData, loader);
    if (!root) return fail(root.error().withContext(path + ": data.pkl"));
    TorchCheckpoint out;
    out.path = path;
    if (auto ok = Flattener(out, pklSize).walk(*root, "", ""); !ok)
      return fail(ok.error().withContext(path + ": data.pkl"));
    for (auto& e : out.tensors)
      if (!e.tensor.is_contiguous()) e.tensor = e.tensor.contiguous();
    return out;
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);  // drop LibTorch's backtrace
    return fail(path + ": cannot read torch.save archive: " + what);
  }
}

Result<std::string> chooseStateDict(const TorchCheckpoint& checkpoint, const std::string& key) {
  const auto& paths = checkpoint.stateDictPaths;
  auto has = [&](const std::string& p) { return std::find(paths.begin(), paths.end(), p) != paths.end(); };
  std::string available;
  for (const auto& p : paths)
    available += (available.empty() ? "" : ", ") + (p.empty() ? std::string("<top level>") : "'" + p + "'");
  if (available.empty()) return fail(checkpoint.path + ": holds no tensors");
  if (!key.empty()) {
    if (!has(key)) return fail(checkpoint.path + ": no state dict under '" + key + "' (found: " + available + ")");
    return key;
  }
  if (has("")) return std::string();
  for (const auto& k : preferredStateDictKeys())
    if (has(k)) return k;
  return fail(checkpoint.path + ": cannot tell which state dict to use (found: " + available + "); name one");
}

Result<NamedTensors> extractStateDict(const TorchCheckpoint& checkpoint, const std::string& key) {
  auto container = chooseStateDict(checkpoint, key);
  if (!container) return fail(container.error());
  NamedTensors out;
  for (const auto& e : checkpoint.tensors)
    if (e.container == *container) out.emplace_back(e.key, e.tensor);
  return out;
}

}  // namespace tessera
