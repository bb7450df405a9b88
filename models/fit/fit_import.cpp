// SPDX-License-Identifier: Apache-2.0
#include "models/fit/fit_import.h"

#include "models/state_dict.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>

namespace tessera {
namespace {

struct Reader {
  std::map<std::string, at::Tensor> byName;
  std::string family;
  Result<at::Tensor> need(const std::string& key, std::int64_t dims) const {
    auto it = byName.find(key);
    if (it == byName.end()) return fail("not a " + family + " state dict: tensor '" + key + "' is missing");
    if (auto ok = checkImportShape(it->second, key, dims); !ok) return fail(ok.error());
    return it->second;
  }
  bool has(const std::string& key) const { return byName.count(key) > 0; }
  Result<std::int64_t> depth() const {
    std::vector<std::string> names;
    for (const auto& entry : byName) names.push_back(entry.first);
    return blockDepth(names, family);
  }
  /// Classes and null row from the label table.
  Result<std::pair<std::int64_t, double>> classes(const FlexImportOptions& o) const {
    auto table = need("y_embedder.embedding_table.weight", 2);
    if (!table) return fail(table.error());
    const std::int64_t rows = table->size(0);
    if (!o.numClasses) return std::make_pair(rows - 1, 0.1);
    if (rows == *o.numClasses + 1) return std::make_pair(*o.numClasses, 0.1);
    if (rows == *o.numClasses) return std::make_pair(*o.numClasses, 0.0);
    return fail("y_embedder.embedding_table.weight has " + std::to_string(rows) + " rows, which fits neither " +
                std::to_string(*o.numClasses) + " classes nor " + std::to_string(*o.numClasses) + " + a null class");
  }
};

template <typename C>
Result<std::int64_t> headsFrom(const FlexImportOptions& o, const std::optional<C>& preset, const std::string& hint) {
  if (o.heads) return *o.heads;
  if (preset) return preset->numHeads;
  return fail("the number of attention heads cannot be read from the weights: give --preset or --heads" + hint);
}

}  // namespace

Result<FiTImport> importFiTStateDict(const NamedTensors& raw, const FlexImportOptions& o) {
  Reader r{{}, "FiT"};
  const NamedTensors sd = stripWrapperPrefixes(raw);
  r.byName = std::map<std::string, at::Tensor>(sd.begin(), sd.end());
  FiTImport out;
  FiTConfig& c = out.config;
  std::optional<FiTConfig> preset;
  if (o.preset) {
    auto p = fitPreset(*o.preset);
    if (!p) return fail(p.error());
    preset = *p;
    c = *p;
  }
  auto embed = r.need("x_embedder.proj.weight", 2);
  if (!embed) return fail(embed.error());
  c.hiddenSize = embed->size(0);
  c.inChannels = o.inChannels.value_or(preset ? preset->inChannels : 4);
  if (c.inChannels < 1) return fail("--in-channels " + std::to_string(c.inChannels) + ": expected at least 1");
  const std::int64_t features = embed->size(1);
  const auto p = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(features) / static_cast<double>(c.inChannels))));
  if (p < 1 || p * p * c.inChannels != features)
    return fail("x_embedder.proj.weight takes " + std::to_string(features) + " features per token, not p²·" +
                std::to_string(c.inChannels) + " channels (give --in-channels)");
  c.patchSize = p;
  auto depth = r.depth();
  if (!depth) return fail(depth.error());
  c.depth = *depth;
  const bool lora = r.has("global_adaLN_modulation.1.weight") || r.has("blocks.0.adaLN_modulation.2.weight");
  c.adaLN = lora ? "lora" : "normal";
  if (lora) {
    auto down = r.need("blocks.0.adaLN_modulation.1.weight", 2);
    if (!down) return fail(down.error());
    c.adaLNRank = down->size(0);
  }
  // FiTv2 is the low-rank-adaLN form: q/k LayerNorm, velocity (SiT convention).
  if (!preset) {
    c.qkNorm = lora;
    c.prediction = lora ? Prediction::Velocity : Prediction::Epsilon;
  }
  c.cfgChannels = 3;
  if (r.has("blocks.0.mlp.fc1_g.weight")) {
    auto fc = r.need("blocks.0.mlp.fc1_g.weight", 2);
    if (!fc) return fail(fc.error());
    c.mlp = "swiglu";
    const std::int64_t hidden = fc->size(0);
    c.mlpRatio = 4.0;
    c.swigluLarge = hidden == 4 * c.hiddenSize;
    if (c.mlpHidden() != hidden) {
      c.swigluLarge = true;
      c.mlpRatio = static_cast<double>(hidden) / static_cast<double>(c.hiddenSize);
      if (c.mlpHidden() != hidden) return fail("blocks.0.mlp.fc1_g.weight: a SwiGLU width of " + std::to_string(hidden) + " that no MLP ratio gives");
    }
  } else {
    auto fc = r.need("blocks.0.mlp.fc1.weight", 2);
    if (!fc) return fail(fc.error());
    c.mlp = "gelu";
    c.mlpRatio = static_cast<double>(fc->size(0)) / static_cast<double>(c.hiddenSize);
  }
  auto cls = r.classes(o);
  if (!cls) return fail(cls.error());
  c.numClasses = cls->first;
  c.classDropoutProb = cls->second;
  auto fin = r.need("final_layer.linear.weight", 2);
  if (!fin) return fail(fin.error());
  const std::int64_t outC = fin->size(0) / (p * p);
  if (outC * p * p != fin->size(0) || (outC != c.inChannels && outC != 2 * c.inChannels))
    return fail("final_layer.linear.weight gives " + std::to_string(fin->size(0)) + " outputs per token, expected p²·" +
                std::to_string(c.inChannels) + " or twice that");
  c.learnSigma = outC == 2 * c.inChannels;
  if (preset) {
    std::string mismatch;
    if (preset->depth != c.depth) mismatch += " depth " + std::to_string(preset->depth) + " vs " + std::to_string(c.depth) + ";";
    if (preset->hiddenSize != c.hiddenSize) mismatch += " hidden " + std::to_string(preset->hiddenSize) + " vs " + std::to_string(c.hiddenSize) + ";";
    if (preset->adaLN != c.adaLN) mismatch += " adaLN " + preset->adaLN + " vs " + c.adaLN + ";";
    if (!mismatch.empty()) return fail("preset " + *o.preset + " does not fit the weights (preset vs weights):" + mismatch);
  }
  auto heads = headsFrom(o, preset, "");
  if (!heads) return fail(heads.error());
  c.numHeads = *heads;
  if (auto ok = c.validate(); !ok) return fail(ok.error());
  out.notes.push_back(std::string(lora ? "FiTv2" : "FiT v1") + " inferred from shapes: depth " + std::to_string(c.depth) + ", hidden " +
                      std::to_string(c.hiddenSize) + ", patch " + std::to_string(p) + ", " + c.mlp + " MLP " +
                      std::to_string(c.mlpHidden()) + ", adaLN " + c.adaLN + (lora ? " rank " + std::to_string(c.adaLNRank) : "") +
                      ", " + std::to_string(c.numClasses) + " classes, learned sigma " + (c.learnSigma ? "yes" : "no"));
  const auto shapes = fitStateShapes(c);
  if (auto ok = checkStateDictShapes(shapes, shapesOf(sd)); !ok) return fail(ok.error());
  for (const auto& [name, shape] : shapes) out.weights.emplace_back(name, r.byName.at(name).to(at::kFloat).contiguous());
  return out;
}

Result<NiTImport> importNiTStateDict(const NamedTensors& raw, const FlexImportOptions& o) {
  Reader r{{}, "NiT"};
  NamedTensors sd;
  NiTImport out;
  std::int64_t dropped = 0;
  for (auto& [name, t] : stripWrapperPrefixes(raw)) {
    if (name.rfind("projector.", 0) == 0) {
      ++dropped;
      continue;
    }
    sd.emplace_back(name, t);
  }
  if (dropped) out.notes.push_back("left out the REPA projector (" + std::to_string(dropped) + " tensors; used only in training)");
  r.byName = std::map<std::string, at::Tensor>(sd.begin(), sd.end());
  NiTConfig& c = out.config;
  std::optional<NiTConfig> preset;
  if (o.preset) {
    auto p = nitPreset(*o.preset);
    if (!p) return fail(p.error());
    preset = *p;
    c = *p;
  } else {
    c.inputSize = 8;  // 256 px through DC-AE f32
  }
  c.ropePositions = "reference";
  auto embed = r.need("x_embedder.proj.weight", 4);
  if (!embed) return fail(embed.error());
  c.hiddenSize = embed->size(0);
  c.inChannels = embed->size(1);
  c.patchSize = embed->size(2);
  if (embed->size(3) != c.patchSize) return fail("x_embedder.proj.weight: non-square patch");
  if (c.inputSize % c.patchSize) c.inputSize = c.patchSize * std::max<std::int64_t>(1, c.inputSize / c.patchSize);
  auto depth = r.depth();
  if (!depth) return fail(depth.error());
  c.depth = *depth;
  c.qkNorm = r.has("blocks.0.attn.q_norm.weight");
  const bool lora = r.has("blocks.0.adaLN_modulation.2.weight");
  c.adaLN = lora ? "lora" : "normal";
  if (lora) {
    auto down = r.need("blocks.0.adaLN_modulation.1.weight", 2);
    if (!down) return fail(down.error());
    c.adaLNRank = down->size(0);
  }
  auto fc1 = r.need("blocks.0.mlp.fc1.weight", 2);
  if (!fc1) return fail(fc1.error());
  c.mlpRatio = static_cast<double>(fc1->size(0)) / static_cast<double>(c.hiddenSize);
  auto cls = r.classes(o);
  if (!cls) return fail(cls.error());
  c.numClasses = cls->first;
  c.classDropoutProb = cls->second;
  auto fin = r.need("final_layer.linear.weight", 2);
  if (!fin) return fail(fin.error());
  const std::int64_t pp = c.patchSize * c.patchSize;
  if (fin->size(0) != pp * c.inChannels && fin->size(0) != 2 * pp * c.inChannels)
    return fail("final_layer.linear.weight gives " + std::to_string(fin->size(0)) + " outputs per token, expected " +
                std::to_string(pp * c.inChannels));
  c.learnSigma = fin->size(0) == 2 * pp * c.inChannels;
  if (preset && (preset->depth != c.depth || preset->hiddenSize != c.hiddenSize))
    return fail("preset " + *o.preset + " does not fit the weights: depth " + std::to_string(preset->depth) + " vs " +
                std::to_string(c.depth) + ", hidden " + std::to_string(preset->hiddenSize) + " vs " + std::to_string(c.hiddenSize));
  std::string hint;
  for (const auto& name : nitPresetNames()) {
    auto pr = nitPreset(name);
    if (pr && pr->hiddenSize == c.hiddenSize && pr->depth == c.depth) hint = " (the weights fit --preset " + name + ")";
  }
  auto heads = headsFrom(o, preset, hint);
  if (!heads) return fail(heads.error());
  c.numHeads = *heads;
  if (auto ok = c.validate(); !ok) return fail(ok.error());
  out.notes.push_back("NiT inferred from shapes: depth " + std::to_string(c.depth) + ", hidden " + std::to_string(c.hiddenSize) +
                      ", patch " + std::to_string(c.patchSize) + ", " + std::to_string(c.inChannels) + " channels, q/k norm " +
                      (c.qkNorm ? "yes" : "no") + ", adaLN " + c.adaLN + ", " + std::to_string(c.numClasses) +
                      " classes; RoPE positions as NiT's code assigns them");
  const auto shapes = nitStateShapes(c);
  if (auto ok = checkStateDictShapes(shapes, shapesOf(sd)); !ok) return fail(ok.error());
  for (const auto& [name, shape] : shapes) out.weights.emplace_back(name, r.byName.at(name).to(at::kFloat).contiguous());
  return out;
}

}  // namespace tessera
