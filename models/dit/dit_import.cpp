// SPDX-License-Identifier: Apache-2.0
#include "models/dit/dit_import.h"

#include "models/state_dict.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace tessera {

Result<DiTImport> importDiTStateDict(const NamedTensors& raw, const DiTImportOptions& options) {
  if (options.family != "dit" && options.family != "sit")
    return fail("unknown family '" + options.family + "' (expected dit or sit)");
  const NamedTensors sd = stripWrapperPrefixes(raw);
  std::map<std::string, at::Tensor> byName(sd.begin(), sd.end());
  auto need = [&](const std::string& key, std::int64_t dims) -> Result<at::Tensor> {
    auto it = byName.find(key);
    if (it == byName.end()) return fail("not a " + options.family + " state dict: tensor '" + key + "' is missing");
    if (auto ok = checkImportShape(it->second, key, dims); !ok) return fail(ok.error());
    return it->second;
  };

  DiTImport out;
  DiTConfig& c = out.config;
  if (options.family == "sit") {
    c.dropSigmaOutput = true;
    c.prediction = Prediction::Velocity;
  }
  auto patch = need("x_embedder.proj.weight", 4);
  if (!patch) return fail(patch.error());
  c.hiddenSize = patch->size(0);
  c.inChannels = patch->size(1);
  c.patchSize = patch->size(2);
  if (patch->size(3) != c.patchSize) return fail("x_embedder.proj.weight: non-square patch " + std::to_string(patch->size(2)) + "x" + std::to_string(patch->size(3)));

  std::vector<std::string> names;
  for (const auto& entry : sd) names.push_back(entry.first);
  auto depth = blockDepth(names, options.family);
  if (!depth) return fail(depth.error());
  c.depth = *depth;

  auto fc1 = need("blocks.0.mlp.fc1.weight", 2);
  if (!fc1) return fail(fc1.error());
  c.mlpRatio = static_cast<double>(fc1->size(0)) / static_cast<double>(c.hiddenSize);

  auto table = need("y_embedder.embedding_table.weight", 2);
  if (!table) return fail(table.error());
  const std::int64_t rows = table->size(0);
  if (options.numClasses) {
    c.numClasses = *options.numClasses;
    if (rows == c.numClasses + 1) c.classDropoutProb = 0.1;
    else if (rows == c.numClasses) c.classDropoutProb = 0.0;
    else return fail("y_embedder.embedding_table.weight has " + std::to_string(rows) + " rows, which fits neither " +
                     std::to_string(c.numClasses) + " classes nor " + std::to_string(c.numClasses) + " + a null class");
  } else {
    c.numClasses = rows - 1;  // the reference always trains with label dropout: the last row is the null class
    c.classDropoutProb = 0.1;
  }

  auto finalLinear = need("final_layer.linear.weight", 2);
  if (!finalLinear) return fail(finalLinear.error());
  const std::int64_t pp = c.patchSize * c.patchSize;
  if (finalLinear->size(0) % pp) return fail("final_layer.linear.weight rows are not a multiple of patch²");
  const std::int64_t outC = finalLinear->size(0) / pp;
  if (outC == 2 * c.inChannels) c.learnSigma = true;
  else if (outC == c.inChannels) c.learnSigma = false;
  else return fail("final_layer.linear.weight gives " + std::to_string(outC) + " output channels, expected " +
                   std::to_string(c.inChannels) + " or " + std::to_string(2 * c.inChannels));
  // The reference's forward_with_cfg guides model_out[:, :3]: all of the output channels
  // when there are fewer than three (a 1- or 2-channel model's import failed on this).
  c.cfgChannels = std::min<std::int64_t>(3, c.outChannels());

  auto pos = need("pos_embed", 3);
  if (!pos) return fail(pos.error());
  const auto side = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(pos->size(1)))));
  if (side * side != pos->size(1)) return fail("pos_embed has " + std::to_string(pos->size(1)) + " tokens, not a square grid");
  c.inputSize = side * c.patchSize;

  out.notes.push_back("inferred from shapes: depth " + std::to_string(c.depth) + ", hidden " + std::to_string(c.hiddenSize) +
                      ", patch " + std::to_string(c.patchSize) + ", " + std::to_string(c.inChannels) + " channels, " +
                      std::to_string(c.numClasses) + " classes" + (c.classDropoutProb > 0 ? " + null class" : "") +
                      ", learned sigma " + (c.learnSigma ? "yes" : "no") + ", grid " + std::to_string(side) + "x" +
                      std::to_string(side) + ", mlp ratio " + std::to_string(c.mlpRatio));

  if (options.preset) {
    auto preset = ditPreset(*options.preset);
    if (!preset) return fail(preset.error());
    std::string mismatch;
    if (preset->depth != c.depth) mismatch += " depth " + std::to_string(preset->depth) + " vs " + std::to_string(c.depth) + ";";
    if (preset->hiddenSize != c.hiddenSize) mismatch += " hidden " + std::to_string(preset->hiddenSize) + " vs " + std::to_string(c.hiddenSize) + ";";
    if (preset->patchSize != c.patchSize) mismatch += " patch " + std::to_string(preset->patchSize) + " vs " + std::to_string(c.patchSize) + ";";
    if (!mismatch.empty()) return fail("preset " + *options.preset + " does not fit the weights (preset vs weights):" + mismatch);
    c.numHeads = preset->numHeads;
  }
  if (options.heads) c.numHeads = *options.heads;
  if (!options.preset && !options.heads) {
    std::string hint;
    for (const auto& name : ditPresetNames()) {
      auto p = ditPreset(name);
      if (name.rfind(options.family == "sit" ? "SiT" : "DiT", 0) == 0 && p->hiddenSize == c.hiddenSize &&
          p->depth == c.depth && p->patchSize == c.patchSize)
        hint = " (the weights fit --preset " + name + ")";
    }
    return fail("the number of attention heads cannot be read from the weights: give --preset or --heads" + hint);
  }
  if (auto ok = c.validate(); !ok) return fail(ok.error());

  // Check every tensor against the configuration without building the network (an
  // XL model would cost 2.7 GB and its initialisation), then keep float32 copies in
  // the network's key order.
  const auto shapes = ditStateShapes(c);
  if (auto ok = checkStateDictShapes(shapes, shapesOf(sd)); !ok) return fail(ok.error());
  for (const auto& [name, shape] : shapes) out.weights.emplace_back(name, byName.at(name).to(at::kFloat).contiguous());
  return out;
}

}  // namespace tessera
