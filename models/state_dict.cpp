// SPDX-License-Identifier: Apache-2.0
#include "models/state_dict.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace tessera {
namespace {

std::string shapeText(at::IntArrayRef s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

std::string joinLimited(const std::vector<std::string>& items, std::size_t limit = 12) {
  std::string out;
  for (std::size_t i = 0; i < items.size() && i < limit; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > limit) out += ", … (" + std::to_string(items.size() - limit) + " more)";
  return out;
}

}  // namespace

NamedTensors stateDict(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  return out;
}

TensorShapes shapesOf(const NamedTensors& tensors) {
  TensorShapes out;
  for (const auto& [name, t] : tensors) out.emplace_back(name, t.sizes().vec());
  return out;
}

Result<void> checkStateDictShapes(const TensorShapes& expected, const TensorShapes& givenShapes) {
  std::map<std::string, std::vector<std::int64_t>> given(givenShapes.begin(), givenShapes.end());
  std::vector<std::string> missing, wrongShape, unexpected;
  for (const auto& [name, shape] : expected) {
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name + " " + shapeText(shape));
      continue;
    }
    if (it->second != shape)
      wrongShape.push_back(name + " (expected " + shapeText(shape) + ", got " + shapeText(it->second) + ")");
    given.erase(it);
  }
  for (const auto& [name, shape] : given) unexpected.push_back(name + " " + shapeText(shape));
  if (missing.empty() && wrongShape.empty() && unexpected.empty()) return {};
  std::string m = "state dict does not fit the model:";
  if (!missing.empty()) m += " missing " + std::to_string(missing.size()) + ": " + joinLimited(missing) + ";";
  if (!wrongShape.empty()) m += " wrong shape " + std::to_string(wrongShape.size()) + ": " + joinLimited(wrongShape) + ";";
  if (!unexpected.empty()) m += " unexpected " + std::to_string(unexpected.size()) + ": " + joinLimited(unexpected) + ";";
  m.pop_back();
  return fail(m);
}

Result<void> loadStateDict(torch::nn::Module& module, const NamedTensors& tensors) {
  const NamedTensors targets = stateDict(module);
  if (auto ok = checkStateDictShapes(shapesOf(targets), shapesOf(tensors)); !ok) return ok;
  std::map<std::string, at::Tensor> given(tensors.begin(), tensors.end());
  torch::NoGradGuard noGrad;
  for (const auto& [name, target] : targets) {
    at::Tensor t = target;  // shares the parameter's storage
    t.copy_(given.at(name).to(target.options()));
  }
  return {};
}

NamedTensors stripWrapperPrefixes(const NamedTensors& tensors) {
  NamedTensors out;
  for (const auto& [name, t] : tensors) {
    std::string n = name;
    for (const std::string prefix : {"module.", "_orig_mod."})
      while (n.rfind(prefix, 0) == 0) n = n.substr(prefix.size());
    out.emplace_back(n, t);
  }
  return out;
}

Result<std::int64_t> blockDepth(const std::vector<std::string>& tensorNames, const std::string& family) {
  std::set<std::int64_t> ids;
  const std::regex blockKey("^blocks\\.(\\d+)\\.");
  for (const auto& name : tensorNames) {
    std::smatch m;
    if (!std::regex_search(name, m, blockKey)) continue;
    if (m[1].length() > 6)
      return fail("tensor '" + name + "': block index " + m[1].str() + " is out of range (expected 0 … 999999)");
    ids.insert(std::stoll(m[1]));
  }
  if (ids.empty()) return fail("not a " + family + " state dict: no 'blocks.N.' tensors");
  const std::int64_t depth = *ids.rbegin() + 1;
  if (static_cast<std::int64_t>(ids.size()) != depth)
    return fail("blocks are not numbered 0.." + std::to_string(depth - 1) + " without gaps");
  return depth;
}

Result<void> checkImportShape(const at::Tensor& tensor, const std::string& key, std::int64_t dims) {
  if (tensor.dim() != dims)
    return fail("tensor '" + key + "' has " + std::to_string(tensor.dim()) + " dimensions, expected " +
                std::to_string(dims));
  for (std::int64_t d = 0; d < dims; ++d)
    if (tensor.size(d) < 1) {
      std::ostringstream shape;
      shape << tensor.sizes();
      return fail("tensor '" + key + "' has shape " + shape.str() + ": expected every size to be at least 1");
    }
  return {};
}

}  // namespace tessera
