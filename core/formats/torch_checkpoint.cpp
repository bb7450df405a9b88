// SPDX-License-Identifier: Apache-2.0
#include "core/formats/torch_checkpoint.h"

#include "core/formats/pickle.h"
#include "core/formats/tensor_file.h"

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

void flatten(const ValuePtr& v, const std::string& container, const std::string& key, TorchCheckpoint& out) {
  const std::string prefix = container.empty() ? key : key.empty() ? container : container + "." + key;
  auto children = [&](const std::vector<std::pair<std::string, ValuePtr>>& items) {
    bool holdsTensors = false;
    for (const auto& [k, item] : items) holdsTensors = holdsTensors || item->kind == Kind::Tensor;
    if (holdsTensors) out.stateDictPaths.push_back(prefix);
    for (const auto& [k, item] : items) flatten(item, prefix, k, out);
  };
  switch (v->kind) {
    case Kind::Tensor: out.tensors.push_back({container, key, v->tensor}); break;
    case Kind::Dict: {
      std::vector<std::pair<std::string, ValuePtr>> items;
      for (const auto& [k, item] : v->entries) items.emplace_back(keyText(*k), item);
      children(items);
      break;
    }
    case Kind::List:
    case Kind::Tuple: {
      std::vector<std::pair<std::string, ValuePtr>> items;
      for (std::size_t i = 0; i < v->items.size(); ++i) items.emplace_back(std::to_string(i), v->items[i]);
      children(items);
      break;
    }
    case Kind::Int: out.scalars[prefix] = std::to_string(v->integer); break;
    case Kind::Float: out.scalars[prefix] = std::to_string(v->real); break;
    case Kind::Bool: out.scalars[prefix] = v->boolean ? "true" : "false"; break;
    case Kind::String: out.scalars[prefix] = v->text; break;
    case Kind::None: out.scalars[prefix] = "None"; break;
    default: break;  // bytes, storages and globals carry nothing a user reads
  }
}

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
    flatten(*root, "", "", out);
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
