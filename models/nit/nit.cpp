// SPDX-License-Identifier: Apache-2.0
#include "models/nit/nit.h"

#include "core/process/process.h"
#include "models/common/adaln.h"
#include "models/common/attention.h"
#include "models/fit/fit_import.h"
#include "models/probe.h"
#include "models/registry.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>

#include <algorithm>

namespace tessera {
namespace nn = torch::nn;

namespace {

/// x·(1 + scale) + shift with per-token (L, D) scale and shift.
at::Tensor modulateTokens(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale) {
  return at::addcmul(x + shift, x, scale);
}

}  // namespace

// ---------------------------------------------------------------------------------
// Config

std::vector<std::pair<std::string, std::vector<std::int64_t>>> nitStateShapes(const NiTConfig& c) {
  const std::int64_t D = c.hiddenSize, p = c.patchSize, H = c.mlpHidden(), d = c.headDim();
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> s = {
      {"x_embedder.proj.weight", {D, c.inChannels, p, p}},
      {"x_embedder.proj.bias", {D}},
      {"t_embedder.mlp.0.weight", {D, 256}},
      {"t_embedder.mlp.0.bias", {D}},
      {"t_embedder.mlp.2.weight", {D, D}},
      {"t_embedder.mlp.2.bias", {D}},
      {"y_embedder.embedding_table.weight", {c.numClasses + (c.classDropoutProb > 0 ? 1 : 0), D}},
  };
  for (std::int64_t i = 0; i < c.depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    s.push_back({b + "attn.qkv.weight", {3 * D, D}});
    s.push_back({b + "attn.qkv.bias", {3 * D}});
    if (c.qkNorm) {
      s.push_back({b + "attn.q_norm.weight", {d}});
      s.push_back({b + "attn.q_norm.bias", {d}});
      s.push_back({b + "attn.k_norm.weight", {d}});
      s.push_back({b + "attn.k_norm.bias", {d}});
    }
    s.push_back({b + "attn.proj.weight", {D, D}});
    s.push_back({b + "attn.proj.bias", {D}});
    s.push_back({b + "mlp.fc1.weight", {H, D}});
    s.push_back({b + "mlp.fc1.bias", {H}});
    s.push_back({b + "mlp.fc2.weight", {D, H}});
    s.push_back({b + "mlp.fc2.bias", {D}});
    if (c.adaLN == "lora") {
      s.push_back({b + "adaLN_modulation.1.weight", {c.adaLNRank, D}});
      s.push_back({b + "adaLN_modulation.1.bias", {c.adaLNRank}});
      s.push_back({b + "adaLN_modulation.2.weight", {6 * D, c.adaLNRank}});
      s.push_back({b + "adaLN_modulation.2.bias", {6 * D}});
    } else {
      s.push_back({b + "adaLN_modulation.1.weight", {6 * D, D}});
      s.push_back({b + "adaLN_modulation.1.bias", {6 * D}});
    }
  }
  s.push_back({"final_layer.linear.weight", {p * p * c.outChannels(), D}});
  s.push_back({"final_layer.linear.bias", {p * p * c.outChannels()}});
  s.push_back({"final_layer.adaLN_modulation.1.weight", {2 * D, D}});
  s.push_back({"final_layer.adaLN_modulation.1.bias", {2 * D}});
  return s;
}

std::int64_t NiTConfig::parameterCount() const { return parameterCountOf(nitStateShapes(*this)); }

Result<void> NiTConfig::validate() const {
  auto bad = [](const std::string& m) { return fail("NiT config: " + m); };
  if (patchSize < 1) return bad("patch_size must be >= 1");
  if (inputSize < patchSize || inputSize % patchSize)
    return bad("input_size " + std::to_string(inputSize) + " must be a positive multiple of patch_size " + std::to_string(patchSize));
  if (inChannels < 1) return bad("in_channels must be >= 1");
  if (numHeads < 1 || hiddenSize % numHeads)
    return bad("num_heads " + std::to_string(numHeads) + " must divide hidden_size " + std::to_string(hiddenSize));
  if (headDim() % 4)
    return bad("the head dimension " + std::to_string(headDim()) + " must be a multiple of 4 (2-D RoPE rotates pairs in two halves)");
  if (depth < 1) return bad("depth must be >= 1");
  if (!(mlpRatio > 0)) return bad("mlp_ratio must be > 0");
  if (numClasses < 1) return bad("num_classes must be >= 1");
  if (adaLN != "normal" && adaLN != "lora") return bad("adaln must be normal or lora, got " + adaLN);
  if (adaLN == "lora" && adaLNRank < 1) return bad("adaln_rank must be >= 1 with adaln lora");
  if (ropePositions != "reference" && ropePositions != "grid") return bad("rope_positions must be reference or grid");
  if (cfgChannels < 0 || cfgChannels > outChannels()) return bad("cfg_channels must be in [0, out channels]");
  if (auto ok = extrapolation.validate(); !ok) return fail(ok.error().withContext("NiT config"));
  return {};
}

const ConfigTable<NiTConfig>& NiTConfig::table() {
  static const ConfigTable<NiTConfig> table = [] {
    ConfigTable<NiTConfig> t;
#define TESSERA_FIELD(type, member, value, key, constraint, doc) t.field(key, &NiTConfig::member, constraint, doc);
#include "models/nit/nit_config.def"
#undef TESSERA_FIELD
    t.accept("preset").check([](const NiTConfig& c) { return c.validate(); });
    return t;
  }();
  return table;
}

nlohmann::json NiTConfig::toJson() const { return table().write(*this); }

Result<NiTConfig> NiTConfig::fromConfig(const Config& config, const std::string& path, const NiTConfig& defaults) {
  return table().read(config, path, defaults);
}

// ---------------------------------------------------------------------------------
// Modules

NiTAttentionImpl::NiTAttentionImpl(std::int64_t hidden, std::int64_t heads_, bool qkNorm) : heads(heads_) {
  qkv = register_module("qkv", nn::Linear(nn::LinearOptions(hidden, 3 * hidden).bias(true)));
  if (qkNorm) {
    const std::int64_t d = hidden / heads;
    q_norm = register_module("q_norm", nn::LayerNorm(nn::LayerNormOptions({d}).eps(1e-5)));
    k_norm = register_module("k_norm", nn::LayerNorm(nn::LayerNormOptions({d}).eps(1e-5)));
  }
  proj = register_module("proj", nn::Linear(hidden, hidden));
}

at::Tensor NiTAttentionImpl::forward(const at::Tensor& x, const RopeTables& rope, const at::Tensor& cuSeqlens, Probe* probe, int layer) {
  const std::int64_t L = x.size(0), D = x.size(1), d = D / heads;
  const at::Tensor qkvOut = qkv->forward(x).reshape({L, 3, heads, d});
  at::Tensor q = qkvOut.select(1, 0), k = qkvOut.select(1, 1), v = qkvOut.select(1, 2);  // (L, h, d)
  if (!q_norm.is_empty()) {
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  const at::Tensor cos = rope.cos.unsqueeze(1), sin = rope.sin.unsqueeze(1);  // (L, 1, d)
  q = applyRope(q, cos, sin).to(v.scalar_type());
  k = applyRope(k, cos, sin).to(v.scalar_type());
  if (probe && probe->wantsAttention(layer)) {
    // The same attention image by image, with its probabilities kept.
    const at::Tensor cu = cuSeqlens.to(at::kCPU, at::kLong).contiguous();
    at::Tensor out = at::empty_like(v);
    for (std::int64_t i = 0; i + 1 < cu.size(0); ++i) {
      const std::int64_t b = cu[i].item<std::int64_t>(), e = cu[i + 1].item<std::int64_t>();
      const at::Tensor qi = q.slice(0, b, e).transpose(0, 1), ki = k.slice(0, b, e).transpose(0, 1);  // (h, len, d)
      const at::Tensor probs = attentionProbabilities(qi, ki);  // (h, len, len)
      probe->recordAttentionRow(layer, probs);
      out.slice(0, b, e).copy_(at::matmul(probs, v.slice(0, b, e).transpose(0, 1)).transpose(0, 1));
    }
    return proj->forward(out.reshape({L, D}));
  }
  const at::Tensor out = varlenAttention(q.contiguous(), k.contiguous(), v.contiguous(), cuSeqlens);  // (L, h, d)
  return proj->forward(out.reshape({L, D}));
}

NiTBlockImpl::NiTBlockImpl(const NiTConfig& c) {
  const std::int64_t D = c.hiddenSize;
  norm1 = register_module("norm1", plainLayerNorm(D));
  attn = register_module("attn", NiTAttention(D, c.numHeads, c.qkNorm));
  norm2 = register_module("norm2", plainLayerNorm(D));
  mlp = register_module("mlp", Mlp(D, c.mlpHidden()));
  if (c.adaLN == "lora")
    adaLN_modulation = register_module(
        "adaLN_modulation", nn::Sequential(nn::SiLU(), nn::Linear(nn::LinearOptions(D, c.adaLNRank).bias(true)),
                                           nn::Linear(nn::LinearOptions(c.adaLNRank, 6 * D).bias(true))));
  else
    adaLN_modulation = register_module("adaLN_modulation", nn::Sequential(nn::SiLU(), nn::Linear(nn::LinearOptions(D, 6 * D).bias(true))));
}

at::Tensor NiTBlockImpl::modulation(const at::Tensor& cond) { return adaLN_modulation->forward(cond); }

at::Tensor NiTBlockImpl::forward(const at::Tensor& x, const at::Tensor& mod, const RopeTables& rope, const at::Tensor& cuSeqlens,
                                 Probe* probe, int layer) {
  const auto m = mod.chunk(6, 1);  // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp: (L, D)
  at::Tensor h = x + m[2] * attn->forward(modulateTokens(norm1->forward(x), m[0], m[1]), rope, cuSeqlens, probe, layer);
  return h + m[5] * mlp->forward(modulateTokens(norm2->forward(h), m[3], m[4]));
}

// ---------------------------------------------------------------------------------
// NiT

NiTImpl::NiTImpl(NiTConfig config, bool initialize) : m_config(std::move(config)) {
  const auto& c = m_config;
  x_embedder = register_module("x_embedder", PatchEmbed(c.inChannels, c.hiddenSize, c.patchSize));
  t_embedder = register_module("t_embedder", TimestepEmbedder(c.hiddenSize));
  y_embedder = register_module("y_embedder", LabelEmbedder(c.numClasses, c.hiddenSize, c.classDropoutProb));
  blocks = register_module("blocks", nn::ModuleList());
  for (std::int64_t i = 0; i < c.depth; ++i) blocks->push_back(NiTBlock(c));
  final_layer = register_module("final_layer", FinalLayer(c.hiddenSize, c.patchSize, c.outChannels()));
  if (initialize) initializeWeights();
}

void NiTImpl::initializeWeights() {
  std::vector<nn::Sequential> adaLNs;
  for (const auto& block : *blocks) adaLNs.push_back(block->as<NiTBlockImpl>()->adaLN_modulation);
  initializeDiTFamily(*this, *y_embedder, *t_embedder, *final_layer, adaLNs, x_embedder.get());
}

Result<void> NiTImpl::setSizeExtrapolation(const std::string& method, bool decouple) {
  RopeExtrapolation e;
  e.method = method;
  e.decouple = decouple;
  if (auto ok = e.validate(); !ok) return fail(ok.error());
  setExtrapolation(e);
  return {};
}

void NiTImpl::setExtrapolation(const RopeExtrapolation& e) {
  std::lock_guard<std::mutex> lock(m_ropeMutex);
  m_config.extrapolation = e;
  m_ropeCache.clear();
}

std::pair<at::Tensor, at::Tensor> NiTImpl::ropePositions(std::int64_t h, std::int64_t w) const {
  const at::Tensor k = at::arange(h * w, at::kLong);
  if (m_config.ropePositions == "reference") return {k.remainder(h), k.div(h, "floor")};  // NiT's get_rope
  return {k.remainder(w), k.div(w, "floor")};  // (column, row)
}

RopeTables NiTImpl::ropeFor(const GridSizes& grids, std::pair<double, double> peLength) {
  const auto& c = m_config;
  const double trained = static_cast<double>(c.inputSize / c.patchSize);
  std::vector<at::Tensor> cos, sin;
  std::lock_guard<std::mutex> lock(m_ropeMutex);
  for (const auto& [h, w] : grids) {
    auto& cached = m_ropeCache[{h, w, peLength.first, peLength.second}];
    if (!cached.cos.defined()) {
      RopeExtrapolation e = c.extrapolation;
      if (e.trainedLength <= 0) e.trainedLength = trained;
      const double lenH = peLength.first > 0 ? peLength.first : static_cast<double>(h);
      const double lenW = peLength.second > 0 ? peLength.second : static_cast<double>(w);
      const double maxSide = std::max(lenH, lenW), area = lenH * lenW;
      // NiT's code gives the first half the frequencies of max_pe_len_h with its first
      // coordinate (k mod h); with true positions the first half is the column.
      const bool reference = c.ropePositions == "reference";
      const double lenA = reference ? lenH : lenW, lenB = reference ? lenW : lenH;
      const std::int64_t axisDim = c.headDim() / 2;
      const RopeAxis a = ropeAxis(axisDim, c.ropeTheta, e, e.decouple ? lenA : maxSide, maxSide, area);
      const RopeAxis b = ropeAxis(axisDim, c.ropeTheta, e, e.decouple ? lenB : maxSide, maxSide, area);
      auto [pa, pb] = ropePositions(h, w);
      cached = ropeTables(pa, pb, a, b);
    }
    cos.push_back(cached.cos);
    sin.push_back(cached.sin);
  }
  if (cos.size() == 1) return {cos[0], sin[0]};
  return {at::cat(cos, 0), at::cat(sin, 0)};
}

at::Tensor NiTImpl::forwardPacked(const at::Tensor& x, const GridSizes& grids, const at::Tensor& t, const at::Tensor& y,
                                  std::pair<double, double> peLength, Probe* probe) {
  const auto& c = m_config;
  const std::int64_t B = static_cast<std::int64_t>(grids.size()), L = totalTokens(grids), p = c.patchSize;
  TORCH_CHECK(x.dim() == 4 && x.size(0) == L && x.size(1) == c.inChannels && x.size(2) == p && x.size(3) == p,
              "nit: expected packed tokens of shape (", L, ", ", c.inChannels, ", ", p, ", ", p, "), got ", x.sizes());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == B, "nit: expected t with one entry per image (", B, "), got ", t.sizes());
  TORCH_CHECK(y.dim() == 1 && y.size(0) == B, "nit: expected y with one entry per image (", B, "), got ", y.sizes());
  checkClassLabels(y, c.numClasses, c.classDropoutProb > 0, "nit");
  const at::Tensor& pw = x_embedder->proj->weight;
  at::Tensor h = at::linear(x.reshape({L, -1}), pw.reshape({pw.size(0), -1}), x_embedder->proj->bias);  // (L, D)
  const bool stats = probe && probe->wantsStats();
  if (stats) probe->tap("x_embedder", h);
  const at::Tensor cond = t_embedder->forward(t) + y_embedder->forward(y.to(at::kLong), is_training());  // (B, D)
  const at::Tensor tokenImage = tokenImageIndex(grids).to(x.device());
  const at::Tensor cu = cumulativeLengths(grids);
  RopeTables rope = ropeFor(grids, peLength);
  rope.cos = rope.cos.to(h.device(), h.scalar_type());
  rope.sin = rope.sin.to(h.device(), h.scalar_type());
  const bool oneImage = B == 1;
  auto perToken = [&](const at::Tensor& perImage) {  // (B, K) → (L, K)
    return oneImage ? perImage.expand({L, perImage.size(1)}) : perImage.index_select(0, tokenImage);
  };
  for (std::size_t i = 0; i < blocks->size(); ++i) {
    auto* block = blocks[i]->as<NiTBlockImpl>();
    ProbeTimer timer(probe, "blocks", static_cast<int>(i));
    h = block->forward(h, perToken(block->modulation(cond)), rope, cu, probe, static_cast<int>(i));
    if (stats) probe->tap("blocks." + std::to_string(i), h);
  }
  {
    ProbeTimer timer(probe, "final_layer");
    const auto m = perToken(final_layer->adaLN_modulation->forward(cond)).chunk(2, 1);  // shift, scale
    h = final_layer->linear->forward(modulateTokens(final_layer->norm_final->forward(h), m[0], m[1]));
  }
  if (stats) probe->tap("final_layer", h);
  return h.reshape({L, c.outChannels(), p, p});  // features ordered (c, p1, p2)
}

BackboneOutput NiTImpl::forward(const BackboneInput& input) {
  const std::int64_t p = m_config.patchSize;
  if (input.sizes) {
    const GridSizes grids = gridsFromSizes(*input.sizes, p);
    return {forwardPacked(input.x, grids, input.t, input.y, {0, 0}, input.probe), std::nullopt};
  }
  const at::Tensor& x = input.x;
  TORCH_CHECK(x.dim() == 4, "nit: expected images (N, C, H, W) or packed tokens with per-image sizes, got ", x.sizes());
  TORCH_CHECK(x.size(1) == m_config.inChannels, "nit: expected ", m_config.inChannels, " input channels, got ", x.size(1));
  TORCH_CHECK(x.size(2) % p == 0 && x.size(3) % p == 0 && x.size(2) > 0 && x.size(3) > 0,
              "nit: height and width must be positive multiples of the patch size ", p, ", got ", x.size(2), "x", x.size(3));
  const std::int64_t N = x.size(0), gh = x.size(2) / p, gw = x.size(3) / p;
  const GridSizes grids(static_cast<std::size_t>(N), {gh, gw});
  const at::Tensor out = forwardPacked(patchify(x, p), grids, input.t, input.y, {0, 0}, input.probe);
  return {unpatchifyBatch(out, N, gh, gw), std::nullopt};
}

Capabilities NiTImpl::capabilities() const {
  Capabilities caps;
  caps.fixedGrid = false;
  caps.anyGrid = true;
  caps.packed = true;
  caps.learnedSigma = m_config.learnSigma;
  caps.prediction = m_config.prediction;
  caps.inChannels = m_config.inChannels;
  caps.sizeMultiple = m_config.patchSize;
  caps.trainedHeight = caps.trainedWidth = m_config.inputSize;
  caps.numClasses = m_config.numClasses;
  caps.nullClass = m_config.classDropoutProb > 0;
  caps.guidedChannels = m_config.cfgChannels >= m_config.inChannels ? 0 : m_config.cfgChannels;
  return caps;
}

}  // namespace tessera

// ---------------------------------------------------------------------------------
// Presets and registry

namespace tessera {

std::vector<std::string> nitPresetNames() { return {"NiT-S", "NiT-B", "NiT-L", "NiT-XL", "NiT-XXL"}; }

Result<NiTConfig> nitPreset(const std::string& name) {
  struct Size {
    const char* name;
    std::int64_t depth, hidden, heads, rank;
  };
  const Size sizes[] = {{"NiT-S", 12, 384, 6, 0}, {"NiT-B", 12, 768, 12, 0}, {"NiT-L", 24, 1024, 16, 0},
                        {"NiT-XL", 28, 1152, 16, 0}, {"NiT-XXL", 40, 1536, 24, 512}};
  for (const auto& s : sizes) {
    if (name != s.name) continue;
    NiTConfig c;  // DC-AE f32c32 latents, patch 1, 256 px = 8×8 latent cells
    c.inputSize = 8;
    c.depth = s.depth, c.hiddenSize = s.hidden, c.numHeads = s.heads;
    if (s.rank) c.adaLN = "lora", c.adaLNRank = s.rank;
    c.ropePositions = "reference";
    return c;
  }
  std::string known;
  for (const auto& n : nitPresetNames()) known += (known.empty() ? "" : ", ") + n;
  return fail("unknown preset '" + name + "' (known: " + known + ")");
}

namespace {

/// NiT's process: a linear path seen with t = 0 the data, the network predicting the
/// velocity noise − data, logit-normal training times (P_mean 0, P_std 1).
nlohmann::json nitProcess(const nlohmann::json&) {
  InterpolantConfig i = InterpolantConfig::defaultsFor("linear", "velocity");
  i.modelTime = "data_at_0";
  i.trainTime = "logit-normal";
  return i.toJson();
}

/// A NiT state dict: a convolutional patch embedding and no stored position table.
bool recognisesNiT(const TensorShapes& shapes) {
  auto dims = [&](const std::string& key) -> std::size_t {
    const auto* shape = findShape(shapes, key);
    return shape ? shape->size() : 0;
  };
  return dims("x_embedder.proj.weight") == 4 && dims("pos_embed") == 0 && dims("blocks.0.attn.qkv.weight") == 2 &&
         dims("final_layer.linear.weight") == 2;
}

}  // namespace

void registerBackbone_nit(BackboneRegistry& registry) {
  auto read = [](const Config& config) {
    return readWithPreset<NiTConfig>(NiTConfig::table(), config, NiTConfig(), nitPreset);
  };
  BackboneEntry e;
  e.name = "nit";
  e.description = "NiT: native-resolution transformer on packed variable-length sequences (varlen attention, 2-D RoPE)";
  e.factory = factoryFromTable<NiTImpl>(read);
  e.presets = nitPresetNames();
  const nlohmann::json tinyConfig = {{"input_size", 8}, {"patch_size", 2}, {"in_channels", 4}, {"hidden_size", 32},
                                     {"depth", 2},      {"num_heads", 2},  {"num_classes", 10}};
  e.tiny = {{"config", tinyConfig}, {"input", {{"channels", 4}, {"height", 12}, {"width", 8}, {"t_scale", 1}}}};
  e.capabilities.anyGrid = true;
  e.capabilities.packed = true;
  e.capabilities.learnedSigma = true;
  e.capabilities.predictions = {Prediction::Velocity, Prediction::Epsilon, Prediction::Score, Prediction::Sample};
  e.config = NiTConfig::table().schema(NiTConfig(), read);
  e.importer.recognises = recognisesNiT;
  e.importer.process = nitProcess;
  e.importer.convert = [](const NamedTensors& sd, const ImportRequest& request) -> Result<ImportedBackbone> {
    auto imported = importNiTStateDict(sd, FlexImportOptions::from(request));
    if (!imported) return fail(imported.error());
    return toImportedBackbone(std::move(*imported), nitProcess);
  };
  (void)registry.add(std::move(e));
}

}  // namespace tessera
