// SPDX-License-Identifier: Apache-2.0
#include "core/formats/pickle.h"

#include "core/util/utf8.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_map>

namespace tessera::pickle {

ValuePtr Value::make(Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}
ValuePtr Value::makeString(std::string s) {
  auto v = make(Kind::String);
  v->text = std::move(s);
  return v;
}
ValuePtr Value::makeInt(std::int64_t i) {
  auto v = make(Kind::Int);
  v->integer = i;
  return v;
}

std::string_view Value::kindName() const {
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Tensor: return "tensor";
    case Kind::Storage: return "storage";
    case Kind::Global: return "global";
  }
  return "?";
}

const std::vector<std::string>& allowedGlobals() {
  static const std::vector<std::string> names = {
      "collections.OrderedDict",
      "argparse.Namespace",  // the `args` of the official DiT and SiT train.py checkpoints: plain data
      "torch._utils._rebuild_tensor",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_parameter_with_state",
      "torch._tensor._rebuild_from_type_v2",
      "torch.Tensor",
      "torch.nn.parameter.Parameter",
      "torch.DoubleStorage",
      "torch.FloatStorage",
      "torch.HalfStorage",
      "torch.BFloat16Storage",
      "torch.LongStorage",
      "torch.IntStorage",
      "torch.ShortStorage",
      "torch.CharStorage",
      "torch.ByteStorage",
      "torch.BoolStorage",
      "torch.UntypedStorage",
  };
  return names;
}

namespace {

using Kind = Value::Kind;

class Unpickler {
public:
  Unpickler(std::string_view data, const PersistentLoader& loader) : m_data(data), m_loader(loader) {}

  Result<ValuePtr> run() {
    while (true) {
      if (m_pos >= m_data.size()) return failHere("data ends before the STOP opcode");
      const std::size_t at = m_pos;
      const auto op = static_cast<std::uint8_t>(m_data[m_pos++]);
      if (op == '.') {  // STOP
        if (m_stack.size() != 1)
          return fail("pickle: STOP with " + std::to_string(m_stack.size()) + " values on the stack (expected 1)");
        return m_stack.back();
      }
      auto ok = step(op);
      if (!ok) return fail(ok.error().withContext("pickle: opcode 0x" + hex(op) + " at byte " + std::to_string(at)));
    }
  }

private:
  static std::string hex(std::uint8_t b) {
    static const char* digits = "0123456789abcdef";
    return {digits[b >> 4], digits[b & 15]};
  }
  tl::unexpected<Error> failHere(const std::string& what) const {
    return fail("pickle: " + what + " (at byte " + std::to_string(m_pos) + ")");
  }

  Result<std::string_view> take(std::uint64_t n) {
    if (n > m_data.size() - m_pos)
      return fail("needs " + std::to_string(n) + " bytes but only " + std::to_string(m_data.size() - m_pos) + " remain");
    std::string_view s = m_data.substr(m_pos, static_cast<std::size_t>(n));
    m_pos += static_cast<std::size_t>(n);
    return s;
  }
  Result<std::uint64_t> readUInt(int bytes) {
    auto s = take(static_cast<std::uint64_t>(bytes));
    if (!s) return fail(s.error());
    std::uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>((*s)[static_cast<std::size_t>(i)]);
    return v;
  }
  Result<std::string> readLine() {
    const auto end = m_data.find('\n', m_pos);
    if (end == std::string_view::npos) return fail("unterminated text line");
    std::string s(m_data.substr(m_pos, end - m_pos));
    m_pos = end + 1;
    return s;
  }

  Result<ValuePtr> pop() {
    if (m_stack.empty() || (!m_marks.empty() && m_stack.size() <= m_marks.back()))
      return fail("stack underflow");
    ValuePtr v = std::move(m_stack.back());
    m_stack.pop_back();
    return v;
  }
  Result<std::vector<ValuePtr>> popToMark() {
    if (m_marks.empty()) return fail("no MARK on the stack");
    const std::size_t mark = m_marks.back();
    m_marks.pop_back();
    std::vector<ValuePtr> items(m_stack.begin() + static_cast<std::ptrdiff_t>(mark), m_stack.end());
    m_stack.resize(mark);
    return items;
  }
  Result<ValuePtr> top() {
    if (m_stack.empty() || (!m_marks.empty() && m_stack.size() <= m_marks.back())) return fail("stack underflow");
    return m_stack.back();
  }

  void push(ValuePtr v) { m_stack.push_back(std::move(v)); }

  /// Records that `child` is stored in `parent`: seals the child, tracks depth, and
  /// refuses changes to a container that is already stored somewhere (which is the
  /// only way to build a cycle) and nesting deeper than kMaxPickleDepth.
  static Result<void> adopt(Value& parent, const ValuePtr& child) {
    if (&parent == child.get()) return fail("a " + std::string(parent.kindName()) + " contains itself (recursive structure)");
    if (parent.sealed) return fail("a " + std::string(parent.kindName()) + " is changed after it was stored (recursive structure?)");
    child->sealed = true;
    parent.depth = std::max(parent.depth, child->depth + 1);
    if (parent.depth > kMaxPickleDepth) return fail("containers nested deeper than " + std::to_string(kMaxPickleDepth));
    return {};
  }

  Result<ValuePtr> makeTuple(std::vector<ValuePtr> items) {
    auto v = Value::make(Kind::Tuple);
    for (const auto& i : items)
      if (auto ok = adopt(*v, i); !ok) return fail(ok.error());
    v->items = std::move(items);
    return v;
  }

  Result<void> pushString(std::string_view s, Kind kind) {
    if (kind == Kind::String) {
      if (auto bad = firstInvalidUtf8(s)) return fail("string is not valid UTF-8 at offset " + std::to_string(*bad));
    }
    auto v = Value::make(kind);
    v->text = std::string(s);
    push(std::move(v));
    return {};
  }

  Result<void> memoPut(std::uint64_t index) {
    auto v = top();
    if (!v) return fail(v.error());
    m_memo[index] = *v;
    return {};
  }

  Result<void> setItems(const ValuePtr& dict, const std::vector<ValuePtr>& kv) {
    if (dict->kind != Kind::Dict) return fail("SETITEM(S) on a " + std::string(dict->kindName()) + ", expected a dict");
    if (kv.size() % 2) return fail("SETITEMS with an odd number of values");
    for (std::size_t i = 0; i < kv.size(); i += 2) {
      if (auto ok = adopt(*dict, kv[i]); !ok) return fail(ok.error());
      if (auto ok = adopt(*dict, kv[i + 1]); !ok) return fail(ok.error());
      // A string key set again replaces its value, as in Python; found through an index, so
      // that a dict of n keys costs n steps, not n² (a linear scan once did).
      if (kv[i]->kind == Kind::String) {
        auto& [owner, index] = m_stringKeys[dict.get()];
        owner = dict;  // held, so that no other dict is ever made at this address
        const auto [it, added] = index.emplace(kv[i]->text, dict->entries.size());
        if (!added) {
          dict->entries[it->second].second = kv[i + 1];
          continue;
        }
      }
      dict->entries.emplace_back(kv[i], kv[i + 1]);
    }
    return {};
  }

  Result<ValuePtr> makeGlobal(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    for (const auto& allowed : allowedGlobals()) {
      if (allowed == full) {
        auto v = Value::make(Kind::Global);
        v->text = full;
        return v;
      }
    }
    return fail("refusing global '" + full +
                "': a checkpoint may only contain tensors, numbers, strings and containers "
                "(like torch.load(weights_only=True)), and loading it could run code");
  }

  static Result<std::vector<std::int64_t>> intTuple(const Value& v, const char* what) {
    if (v.kind != Kind::Tuple && v.kind != Kind::List) return fail(std::string(what) + " must be a tuple of ints");
    std::vector<std::int64_t> out;
    for (const auto& i : v.items) {
      if (i->kind != Kind::Int) return fail(std::string(what) + " must be a tuple of ints");
      out.push_back(i->integer);
    }
    return out;
  }

  static Result<ValuePtr> rebuildTensor(const std::vector<ValuePtr>& args) {
    if (args.size() < 4) return fail("tensor rebuild needs (storage, offset, size, stride, ...)");
    if (args[0]->kind != Kind::Storage) return fail("tensor rebuild: first argument is not a storage");
    if (args[1]->kind != Kind::Int) return fail("tensor rebuild: storage offset is not an int");
    auto size = intTuple(*args[2], "tensor size");
    if (!size) return fail(size.error());
    auto stride = intTuple(*args[3], "tensor stride");
    if (!stride) return fail(stride.error());
    if (size->size() != stride->size())
      return fail("tensor rebuild: size has " + std::to_string(size->size()) + " dims but stride " +
                  std::to_string(stride->size()));
    const at::Tensor& storage = args[0]->tensor;
    const std::int64_t offset = args[1]->integer;
    const std::int64_t available = storage.numel();
    // Bounds check before as_strided: the largest element index must lie in the storage.
    bool empty = false;
    std::int64_t last = offset;
    for (std::size_t i = 0; i < size->size(); ++i) {
      if ((*size)[i] < 0 || (*stride)[i] < 0) return fail("tensor rebuild: negative size or stride");
      if ((*size)[i] == 0) empty = true;
    }
    if (offset < 0) return fail("tensor rebuild: negative storage offset");
    if (!empty) {
      for (std::size_t i = 0; i < size->size(); ++i) {
        std::int64_t span = 0;
        if (__builtin_mul_overflow((*size)[i] - 1, (*stride)[i], &span) || __builtin_add_overflow(last, span, &last))
          return fail("tensor rebuild: size/stride overflow");
      }
      if (last >= available)
        return fail("tensor rebuild: view reaches element " + std::to_string(last) + " of a storage with " +
                    std::to_string(available) + " elements");
    }
    auto v = Value::make(Kind::Tensor);
    v->tensor = empty ? at::empty(*size, storage.options()) : storage.as_strided(*size, *stride, offset);
    return v;
  }

  Result<ValuePtr> call(const ValuePtr& callable, const ValuePtr& argsValue) {
    if (callable->kind != Kind::Global) return fail("REDUCE on a " + std::string(callable->kindName()) + ", not a callable");
    if (argsValue->kind != Kind::Tuple) return fail("REDUCE arguments are not a tuple");
    const auto& args = argsValue->items;
    const std::string& f = callable->text;
    if (f == "collections.OrderedDict") {
      if (!args.empty()) return fail("OrderedDict(...) with arguments is not supported");
      return Value::make(Kind::Dict);
    }
    if (f == "torch._utils._rebuild_tensor_v2" || f == "torch._utils._rebuild_tensor") return rebuildTensor(args);
    if (f == "torch._utils._rebuild_parameter" || f == "torch._utils._rebuild_parameter_with_state") {
      if (args.empty() || args[0]->kind != Kind::Tensor) return fail(f + ": first argument is not a tensor");
      return args[0];
    }
    if (f == "torch._tensor._rebuild_from_type_v2") {
      // (func, type, args, state): only plain tensors and parameters, whose state is dropped.
      if (args.size() != 4 || args[0]->kind != Kind::Global || args[1]->kind != Kind::Global)
        return fail(f + ": unexpected arguments");
      if (args[1]->text != "torch.Tensor" && args[1]->text != "torch.nn.parameter.Parameter")
        return fail(f + ": tensor subclass " + args[1]->text + " is not supported");
      return call(args[0], args[2]);
    }
    return fail("global '" + f + "' cannot be called");
  }

  Result<void> step(std::uint8_t op) {
    switch (op) {
      case 0x80: {  // PROTO
        auto p = readUInt(1);
        if (!p) return fail(p.error());
        if (*p > 5) return fail("pickle protocol " + std::to_string(*p) + " is newer than 5");
        return {};
      }
      case 0x95: {  // FRAME: a length we do not need
        auto n = readUInt(8);
        if (!n) return fail(n.error());
        return {};
      }
      case '}': push(Value::make(Kind::Dict)); return {};
      case ']': push(Value::make(Kind::List)); return {};
      case ')': push(Value::make(Kind::Tuple)); return {};
      case '(': m_marks.push_back(m_stack.size()); return {};
      case 'N': push(Value::make(Kind::None)); return {};
      case 0x88:
      case 0x89: {
        auto v = Value::make(Kind::Bool);
        v->boolean = op == 0x88;
        push(v);
        return {};
      }
      case 'K': case 'M': case 'J': {  // BININT1, BININT2, BININT
        const int bytes = op == 'K' ? 1 : op == 'M' ? 2 : 4;
        auto u = readUInt(bytes);
        if (!u) return fail(u.error());
        push(Value::makeInt(op == 'J' ? static_cast<std::int64_t>(static_cast<std::int32_t>(*u))
                                      : static_cast<std::int64_t>(*u)));
        return {};
      }
      case 0x8a: case 0x8b: {  // LONG1, LONG4: little-endian two's complement
        auto n = readUInt(op == 0x8a ? 1 : 4);
        if (!n) return fail(n.error());
        if (*n > 8) return fail("integer of " + std::to_string(*n) + " bytes does not fit in 64 bits");
        auto s = take(*n);
        if (!s) return fail(s.error());
        std::uint64_t u = 0;
        for (std::size_t i = s->size(); i-- > 0;) u = (u << 8) | static_cast<std::uint8_t>((*s)[i]);
        if (!s->empty() && *n < 8 && (static_cast<std::uint8_t>(s->back()) & 0x80)) u |= ~std::uint64_t{0} << (8 * *n);
        push(Value::makeInt(static_cast<std::int64_t>(u)));
        return {};
      }
      case 'G': {  // BINFLOAT, big-endian
        auto s = take(8);
        if (!s) return fail(s.error());
        std::uint64_t u = 0;
        for (char c : *s) u = (u << 8) | static_cast<std::uint8_t>(c);
        auto v = Value::make(Kind::Float);
        std::memcpy(&v->real, &u, 8);
        push(v);
        return {};
      }
      case 'X': case 0x8c: case 0x8d:  // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
      case 'T': case 'U':              // BINSTRING, SHORT_BINSTRING (Python 2 str)
      case 'B': case 'C': case 0x8e: { // BINBYTES, SHORT_BINBYTES, BINBYTES8
        const int lenBytes = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
        auto n = readUInt(lenBytes);
        if (!n) return fail(n.error());
        auto s = take(*n);
        if (!s) return fail(s.error());
        const bool bytes = op == 'B' || op == 'C' || op == 0x8e;
        return pushString(*s, bytes ? Kind::Bytes : Kind::String);
      }
      case 'q': case 'r': {  // BINPUT, LONG_BINPUT
        auto i = readUInt(op == 'q' ? 1 : 4);
        if (!i) return fail(i.error());
        return memoPut(*i);
      }
      case 0x94:  // MEMOIZE
        return memoPut(m_memo.size());
      case 'h': case 'j': {  // BINGET, LONG_BINGET
        auto i = readUInt(op == 'h' ? 1 : 4);
        if (!i) return fail(i.error());
        auto it = m_memo.find(*i);
        if (it == m_memo.end()) return fail("memo entry " + std::to_string(*i) + " was never stored");
        push(it->second);
        return {};
      }
      case 'c': {  // GLOBAL "module\nname\n"
        auto module = readLine();
        if (!module) return fail(module.error());
        auto name = readLine();
        if (!name) return fail(name.error());
        auto g = makeGlobal(*module, *name);
        if (!g) return fail(g.error());
        push(*g);
        return {};
      }
      case 0x93: {  // STACK_GLOBAL
        auto name = pop();
        if (!name) return fail(name.error());
        auto module = pop();
        if (!module) return fail(module.error());
        if ((*name)->kind != Kind::String || (*module)->kind != Kind::String)
          return fail("STACK_GLOBAL needs two strings");
        auto g = makeGlobal((*module)->text, (*name)->text);
        if (!g) return fail(g.error());
        push(*g);
        return {};
      }
      case 't': {  // TUPLE
        auto items = popToMark();
        if (!items) return fail(items.error());
        auto v = makeTuple(std::move(*items));
        if (!v) return fail(v.error());
        push(*v);
        return {};
      }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        const int n = op - 0x84;
        std::vector<ValuePtr> items(static_cast<std::size_t>(n));
        for (int i = n - 1; i >= 0; --i) {
          auto item = pop();
          if (!item) return fail(item.error());
          items[static_cast<std::size_t>(i)] = *item;
        }
        auto v = makeTuple(std::move(items));
        if (!v) return fail(v.error());
        push(*v);
        return {};
      }
      case 'a': {  // APPEND
        auto item = pop();
        if (!item) return fail(item.error());
        auto list = top();
        if (!list) return fail(list.error());
        if ((*list)->kind != Kind::List) return fail("APPEND to a " + std::string((*list)->kindName()));
        if (auto ok = adopt(**list, *item); !ok) return fail(ok.error());
        (*list)->items.push_back(*item);
        return {};
      }
      case 'e': {  // APPENDS
        auto items = popToMark();
        if (!items) return fail(items.error());
        auto list = top();
        if (!list) return fail(list.error());
        if ((*list)->kind != Kind::List) return fail("APPENDS to a " + std::string((*list)->kindName()));
        for (auto& i : *items) {
          if (auto ok = adopt(**list, i); !ok) return fail(ok.error());
          (*list)->items.push_back(i);
        }
        return {};
      }
      case 's': {  // SETITEM
        auto value = pop();
        if (!value) return fail(value.error());
        auto key = pop();
        if (!key) return fail(key.error());
        auto dict = top();
        if (!dict) return fail(dict.error());
        return setItems(*dict, {*key, *value});
      }
      case 'u': {  // SETITEMS
        auto kv = popToMark();
        if (!kv) return fail(kv.error());
        auto dict = top();
        if (!dict) return fail(dict.error());
        return setItems(*dict, *kv);
      }
      case 'R': {  // REDUCE
        auto args = pop();
        if (!args) return fail(args.error());
        auto callable = pop();
        if (!callable) return fail(callable.error());
        auto result = call(*callable, *args);
        if (!result) return fail(result.error());
        push(*result);
        return {};
      }
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args); OrderedDict and argparse.Namespace
        auto args = pop();
        if (!args) return fail(args.error());
        auto cls = pop();
        if (!cls) return fail(cls.error());
        const bool known = (*cls)->kind == Kind::Global &&
                           ((*cls)->text == "collections.OrderedDict" || (*cls)->text == "argparse.Namespace");
        if (!known)
          return fail("NEWOBJ of " + std::string((*cls)->kind == Kind::Global ? (*cls)->text : "a non-class"));
        if ((*args)->kind != Kind::Tuple || !(*args)->items.empty())
          return fail("NEWOBJ of " + (*cls)->text + " with arguments is not supported");
        // A Namespace is read as the dict of its attributes, which BUILD fills; `text` marks it.
        auto object = Value::make(Kind::Dict);
        if ((*cls)->text == "argparse.Namespace") object->text = "argparse.Namespace";
        push(object);
        return {};
      }
      case 'b': {  // BUILD: state for the object below it
        auto state = pop();
        if (!state) return fail(state.error());
        auto obj = top();
        if (!obj) return fail(obj.error());
        // A Namespace's state is its attributes: a dict of names to plain values.
        if ((*obj)->kind == Kind::Dict && (*obj)->text == "argparse.Namespace") {
          if ((*state)->kind != Kind::Dict)
            return fail("BUILD of an argparse.Namespace with a " + std::string((*state)->kindName()) +
                        ", expected a dict");
          std::vector<ValuePtr> kv;
          for (const auto& [key, value] : (*state)->entries) {
            if (key->kind != Kind::String) return fail("an argparse.Namespace attribute name is not a string");
            kv.push_back(key), kv.push_back(value);
          }
          (*obj)->text.clear();  // built once
          return setItems(*obj, kv);
        }
        // A state dict's OrderedDict carries `_metadata` (module versions); tensors may
        // carry Python attributes. Neither affects the weights, so the state is dropped.
        if ((*obj)->kind == Kind::Dict || (*obj)->kind == Kind::Tensor) return {};
        return fail("BUILD on a " + std::string((*obj)->kindName()));
      }
      case 'Q': {  // BINPERSID
        auto pid = pop();
        if (!pid) return fail(pid.error());
        if (!m_loader) return fail("persistent id without a loader");
        auto storage = m_loader(**pid);
        if (!storage) return fail(storage.error());
        push(*storage);
        return {};
      }
      default:
        return fail("unsupported opcode (not used by torch.save state dicts)");
    }
  }

  std::string_view m_data;
  const PersistentLoader& m_loader;
  std::size_t m_pos = 0;
  std::vector<ValuePtr> m_stack;
  std::vector<std::size_t> m_marks;
  std::map<std::uint64_t, ValuePtr> m_memo;
  /// Each dict's string keys and their entry's position (setItems).
  std::unordered_map<const Value*, std::pair<ValuePtr, std::unordered_map<std::string, std::size_t>>> m_stringKeys;
};

}  // namespace

Result<ValuePtr> unpickle(std::string_view data, const PersistentLoader& persistentLoad) {
  Unpickler u(data, persistentLoad);
  return u.run();
}

}  // namespace tessera::pickle
