// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/util/error.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::pickle {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

/// The part of Python's object model that a state dict needs. Anything else cannot be
/// built: the unpickler refuses every global outside its allowlist, so a checkpoint
/// can never run code (the spirit of torch.load(weights_only=True)).
struct Value {
  enum class Kind { None, Bool, Int, Float, String, Bytes, List, Tuple, Dict, Tensor, Storage, Global };
  Kind kind = Kind::None;
  bool boolean = false;
  std::int64_t integer = 0;
  double real = 0.0;
  std::string text;                                   // String, Bytes, Global ("module.name")
  std::vector<ValuePtr> items;                        // List, Tuple
  std::vector<std::pair<ValuePtr, ValuePtr>> entries; // Dict, in insertion order
  at::Tensor tensor;                                  // Tensor; Storage: 1-D typed buffer
  int depth = 1;        ///< nesting depth of this value (1 for a leaf or empty container)
  bool sealed = false;  ///< stored inside another container: no longer mutable

  static ValuePtr make(Kind kind);
  static ValuePtr makeString(std::string s);
  static ValuePtr makeInt(std::int64_t v);
  /// "dict", "tensor", ... for messages.
  std::string_view kindName() const;
};

/// Resolves a persistent id (torch.save: ('storage', StorageType, key, location, numel))
/// to a Storage value.
using PersistentLoader = std::function<Result<ValuePtr>(const Value& pid)>;

/// Deepest nesting of containers the unpickler builds. Containers are sealed once they
/// are stored in another one, so recursive (cyclic) structures cannot be built.
inline constexpr int kMaxPickleDepth = 200;

/// Globals the unpickler will construct (module.name).
const std::vector<std::string>& allowedGlobals();

/// Unpickles protocol 2-5 data limited to the state-dict subset: containers, numbers,
/// strings, OrderedDict, tensor/parameter rebuilds and storages.
Result<ValuePtr> unpickle(std::string_view data, const PersistentLoader& persistentLoad);

}  // namespace tessera::pickle
