// SPDX-License-Identifier: Apache-2.0
#include "models/fit/fit.h"

#include "core/process/process.h"
#include "models/common/adaln.h"
#include "models/common/attention.h"
#include "models/fit/fit_import.h"
#include "models/probe.h"
#include "models/registry.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

namespace tessera {
namespace nn = torch::nn;

namespace {

}  // namespace

// ---------------------------------------------------------------------------------
// Config

std::int64_t FiTConfig::mlpHidden() const {
  const auto inner = static_cast<std::int64_t>(static_cast<double>(hiddenSize) * mlpRatio);
  return mlp == "swiglu" && !swigluLarge ? (inner * 2) / 3 : inner;
}

std::vector<std::pair<std::string, std::vector<std::int64_t>>> fitStateShapes(const FiTConfig& c) {
  const std::int64_t D = c.hiddenSize, p = c.patchSize, H = c.mlpHidden();
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> s = {
      {"x_embedder.proj.weight", {D, c.inChannels * p * p}},
      {"x_embedder.proj.bias", {D}},
      {"t_embedder.mlp.0.weight", {D, 256}},
      {"t_embedder.mlp.0.bias", {D}},
      {"t_embedder.mlp.2.weight", {D, D}},
      {"t_embedder.mlp.2.bias", {D}},
      {"y_embedder.embedding_table.weight", {c.numClasses + (c.classDropoutProb > 0 ? 1 : 0), D}},
  };
  if (c.adaLN == "lora") {
    s.push_back({"global_adaLN_modulation.1.weight", {6 * D, D}});
    s.push_back({"global_adaLN_modulation.1.bias", {6 * D}});
  }
  for (std::int64_t i = 0; i < c.depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    s.push_back({b + "attn.qkv.weight", {3 * D, D}});
    s.push_back({b + "attn.qkv.bias", {3 * D}});
    s.push_back({b + "attn.proj.weight", {D, D}});
    s.push_back({b + "attn.proj.bias", {D}});
    if (c.mlp == "swiglu") {
      s.push_back({b + "mlp.fc1_g.weight", {H, D}});
      s.push_back({b + "mlp.fc1_g.bias", {H}});
      s.push_back({b + "mlp.fc1_x.weight", {H, D}});
      s.push_back({b + "mlp.fc1_x.bias", {H}});
    } else {
      s.push_back({b + "mlp.fc1.weight", {H, D}});
      s.push_back({b + "mlp.fc1.bias", {H}});
    }
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

std::int64_t FiTConfig::parameterCount() const { return parameterCountOf(fitStateShapes(*this)); }

Result<void> FiTConfig::validate() const {
  auto bad = [](const std::string& m) { return fail("FiT config: " + m); };
  if (patchSize < 1) return bad("patch_size must be >= 1");
  if (inputSize < patchSize || inputSize % patchSize)
    return bad("input_size " + std::to_string(inputSize) + " must be a positive multiple of patch_size " + std::to_string(patchSize));
  if (contextSize < 1) return bad("context_size must be >= 1");
  if (inChannels < 1) return bad("in_channels must be >= 1");
  if (numHeads < 1 || hiddenSize % numHeads)
    return bad("num_heads " + std::to_string(numHeads) + " must divide hidden_size " + std::to_string(hiddenSize));
  if (headDim() % 4) return bad("the head dimension " + std::to_string(headDim()) + " must be a multiple of 4 (2-D RoPE)");
  if (depth < 1) return bad("depth must be >= 1");
  if (!(mlpRatio > 0)) return bad("mlp_ratio must be > 0");
  if (mlp != "swiglu" && mlp != "gelu") return bad("mlp must be swiglu or gelu, got " + mlp);
  if (adaLN != "normal" && adaLN != "lora") return bad("adaln must be normal or lora, got " + adaLN);
  if (adaLN == "lora" && adaLNRank < 1) return bad("adaln_rank must be >= 1 with adaln lora");
  if (numClasses < 1) return bad("num_classes must be >= 1");
  if (!(timeShifting > 0)) return bad("time_shifting must be > 0");
  if (cfgChannels < 0 || cfgChannels > outChannels()) return bad("cfg_channels must be in [0, out channels]");
  if (auto ok = extrapolation.validate(); !ok) return fail(ok.error().withContext("FiT config"));
  return {};
}

const ConfigTable<FiTConfig>& FiTConfig::table() {
  static const ConfigTable<FiTConfig> table = [] {
    ConfigTable<FiTConfig> t;
#define TESSERA_FIELD(type, member, value, key, constraint, doc) t.field(key, &FiTConfig::member, constraint, doc);
#include "models/fit/fit_config.def"
#undef TESSERA_FIELD
    t.accept("preset").check([](const FiTConfig& c) { return c.validate(); });
    return t;
  }();
  return table;
}

nlohmann::json FiTConfig::toJson() const { return table().write(*this); }

Result<FiTConfig> FiTConfig::fromConfig(const Config& config, const std::string& path, const FiTConfig& defaults) {
  return table().read(config, path, defaults);
}

std::vector<std::string> fitPresetNames() { return {"FiT-XL/2", "FiTv2-XL/2", "FiTv2-3B/2", "FiTv2-HR-XL/2", "FiTv2-HR-3B/2"}; }

Result<FiTConfig> fitPreset(const std::string& name) {
  FiTConfig c;  // 256-px SD-VAE latents: 32×32×4, patch 2, 256 tokens
  if (name == "FiT-XL/2") {
    c.depth = 28, c.hiddenSize = 1152, c.numHeads = 16, c.swigluLarge = true, c.learnSigma = true;
    c.prediction = Prediction::Epsilon, c.cfgChannels = 3;
    return c;
  }
  const bool hr = name.rfind("FiTv2-HR-", 0) == 0;
  const std::string size = hr ? name.substr(9) : name.rfind("FiTv2-", 0) == 0 ? name.substr(6) : "";
  if (size == "XL/2" || size == "3B/2") {
    const bool xl = size == "XL/2";
    c.depth = xl ? 36 : 40, c.hiddenSize = xl ? 1152 : 2304, c.numHeads = xl ? 16 : 24;
    c.qkNorm = true, c.adaLN = "lora", c.adaLNRank = xl ? 288 : 576, c.learnSigma = false;
    c.prediction = Prediction::Velocity, c.cfgChannels = 3;
    if (hr) {
      c.contextSize = 1024;
      c.extrapolation.method = "ntk";
      c.extrapolation.decouple = true;
      c.extrapolation.trainedLength = 16;
    }
    return c;
  }
  std::string known;
  for (const auto& n : fitPresetNames()) known += (known.empty() ? "" : ", ") + n;
  return fail("unknown preset '" + name + "' (known: " + known + ")");
}

// ---------------------------------------------------------------------------------
// Modules

TokenEmbedImpl::TokenEmbedImpl(std::int64_t features, std::int64_t hidden) {
  proj = register_module("proj", nn::Linear(features, hidden));
}

SwiGLUImpl::SwiGLUImpl(std::int64_t hidden, std::int64_t inner) {
  fc1_g = register_module("fc1_g", nn::Linear(hidden, inner));
  fc1_x = register_module("fc1_x", nn::Linear(hidden, inner));
  fc2 = register_module("fc2", nn::Linear(inner, hidden));
}

at::Tensor SwiGLUImpl::forward(const at::Tensor& x) { return fc2->forward(at::silu(fc1_g->forward(x)) * fc1_x->forward(x)); }

FiTAttentionImpl::FiTAttentionImpl(std::int64_t hidden, std::int64_t heads_, bool qkNorm_) : qkNorm(qkNorm_), heads(heads_) {
  qkv = register_module("qkv", nn::Linear(nn::LinearOptions(hidden, 3 * hidden).bias(true)));
  proj = register_module("proj", nn::Linear(hidden, hidden));
}

at::Tensor FiTAttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& valid,
                                     Probe* probe, int layer) {
  const std::int64_t B = x.size(0), N = x.size(1), D = x.size(2), d = D / heads;
  const at::Tensor qkvOut = qkv->forward(x).reshape({B, N, 3, heads, d}).permute({2, 0, 3, 1, 4});  // (3, B, h, N, d)
  at::Tensor q = qkvOut[0], k = qkvOut[1], v = qkvOut[2];
  if (qkNorm) {
    q = at::layer_norm(q, {d}, {}, {}, 1e-6);
    k = at::layer_norm(k, {d}, {}, {}, 1e-6);
  }
  q = applyRope(q, cos, sin);
  k = applyRope(k, cos, sin);
  at::Tensor out;
  if (probe && probe->wantsAttention(layer)) {
    // The same attention, with its probabilities kept: each row's valid tokens only.
    at::Tensor logits = at::matmul(q * (1.0 / std::sqrt(static_cast<double>(d))), k.transpose(-2, -1));  // (B, h, N, N)
    if (valid.defined()) {
      const at::Tensor allowed = at::eq(valid.unsqueeze(2), valid.unsqueeze(1)).unsqueeze(1);
      logits = logits.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
    }
    const at::Tensor probs = at::softmax(logits, -1);
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t len = valid.defined() ? valid[b].sum().item<std::int64_t>() : N;  // padding sits at the end
      probe->recordAttentionRow(layer, probs[b].slice(1, 0, len).slice(2, 0, len));
    }
    out = at::matmul(probs, v);
  } else {
    out = valid.defined() ? maskedAttention(q, k, v, valid) : scaledDotProductAttention(q, k, v);  // (B, h, N, d)
  }
  out = out.transpose(1, 2).reshape({B, N, D});
  if (valid.defined()) out = out * valid.unsqueeze(-1).to(out.scalar_type());
  return proj->forward(out);
}

FiTBlockImpl::FiTBlockImpl(const FiTConfig& c) {
  const std::int64_t D = c.hiddenSize;
  norm1 = register_module("norm1", plainLayerNorm(D));
  norm2 = register_module("norm2", plainLayerNorm(D));
  attn = register_module("attn", FiTAttention(D, c.numHeads, c.qkNorm));
  if (c.mlp == "swiglu") swiglu = register_module("mlp", SwiGLU(D, c.mlpHidden()));
  else gelu = register_module("mlp", Mlp(D, c.mlpHidden()));
  if (c.adaLN == "lora")
    adaLN_modulation = register_module(
        "adaLN_modulation", nn::Sequential(nn::SiLU(), nn::Linear(nn::LinearOptions(D, c.adaLNRank).bias(true)),
                                           nn::Linear(nn::LinearOptions(c.adaLNRank, 6 * D).bias(true))));
  else
    adaLN_modulation = register_module("adaLN_modulation", nn::Sequential(nn::SiLU(), nn::Linear(D, 6 * D)));
}

at::Tensor FiTBlockImpl::forward(const at::Tensor& x, const at::Tensor& mod, const at::Tensor& cos, const at::Tensor& sin,
                                 const at::Tensor& valid,
                                 Probe* probe, int layer) {
  const auto m = mod.chunk(6, 1);
  at::Tensor h = x + m[2].unsqueeze(1) * attn->forward(modulate(norm1->forward(x), m[0], m[1]), cos, sin, valid, probe, layer);
  const at::Tensor in = modulate(norm2->forward(h), m[3], m[4]);
  return h + m[5].unsqueeze(1) * (swiglu ? swiglu->forward(in) : gelu->forward(in));
}

// ---------------------------------------------------------------------------------
// FiT

FiTImpl::FiTImpl(FiTConfig config, bool initialize) : m_config(std::move(config)) {
  const auto& c = m_config;
  x_embedder = register_module("x_embedder", TokenEmbed(c.inChannels * c.patchSize * c.patchSize, c.hiddenSize));
  t_embedder = register_module("t_embedder", TimestepEmbedder(c.hiddenSize));
  y_embedder = register_module("y_embedder", LabelEmbedder(c.numClasses, c.hiddenSize, c.classDropoutProb));
  if (c.adaLN == "lora")
    global_adaLN_modulation =
        register_module("global_adaLN_modulation", nn::Sequential(nn::SiLU(), nn::Linear(c.hiddenSize, 6 * c.hiddenSize)));
  blocks = register_module("blocks", nn::ModuleList());
  for (std::int64_t i = 0; i < c.depth; ++i) blocks->push_back(FiTBlock(c));
  final_layer = register_module("final_layer", FinalLayer(c.hiddenSize, c.patchSize, c.outChannels()));
  if (initialize) initializeWeights();
}

void FiTImpl::initializeWeights() {
  // FiT's token embedding is a Linear: the shared xavier initialisation covers it.
  std::vector<nn::Sequential> adaLNs;
  for (const auto& block : *blocks) adaLNs.push_back(block->as<FiTBlockImpl>()->adaLN_modulation);
  if (global_adaLN_modulation) adaLNs.push_back(global_adaLN_modulation);
  initializeDiTFamily(*this, *y_embedder, *t_embedder, *final_layer, adaLNs);
}

Result<void> FiTImpl::setSizeExtrapolation(const std::string& method, bool decouple) {
  RopeExtrapolation e;
  e.method = method;
  e.decouple = decouple;
  if (auto ok = e.validate(); !ok) return fail(ok.error());
  setExtrapolation(e);
  return {};
}

RopeTables FiTImpl::ropeFor(const at::Tensor& rows, const at::Tensor& cols, double lengthH, double lengthW) const {
  const auto& c = m_config;
  RopeExtrapolation e = c.extrapolation;
  if (e.trainedLength <= 0) e.trainedLength = static_cast<double>(c.inputSize / c.patchSize);
  const double maxSide = std::max(lengthH, lengthW);
  const std::int64_t axisDim = c.headDim() / 2;
  const RopeAxis axisH = ropeAxis(axisDim, c.ropeTheta, e, e.decouple ? lengthH : maxSide, maxSide, lengthH * lengthW);
  const RopeAxis axisW = ropeAxis(axisDim, c.ropeTheta, e, e.decouple ? lengthW : maxSide, maxSide, lengthH * lengthW);
  return ropeTables(rows, cols, axisH, axisW);  // the first half rotates with the row (FiT's freqs_h)
}

at::Tensor FiTImpl::run(const at::Tensor& tokens, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& valid,
                        const at::Tensor& tIn, const at::Tensor& y, Probe* probe) {
  const auto& c = m_config;
  const std::int64_t B = tokens.size(0);
  TORCH_CHECK(tIn.dim() == 1 && tIn.size(0) == B, "fit: expected t with one entry per image (", B, "), got ", tIn.sizes());
  TORCH_CHECK(y.dim() == 1 && y.size(0) == B, "fit: expected y with one entry per image (", B, "), got ", y.sizes());
  checkClassLabels(y, c.numClasses, c.classDropoutProb > 0, "fit");
  at::Tensor t = tIn.to(at::kFloat);
  if (c.timeShifting != 1.0) t = (c.timeShifting * t / (1 + (c.timeShifting - 1) * t)).clamp_max(1.0);
  at::Tensor h = x_embedder->proj->forward(tokens);  // (B, N, D)
  const bool stats = probe && probe->wantsStats();
  if (stats) probe->tap("x_embedder", h);
  const at::Tensor cond = t_embedder->forward(t) + y_embedder->forward(y.to(at::kLong), is_training());  // (B, D)
  const at::Tensor global = global_adaLN_modulation ? global_adaLN_modulation->forward(cond) : at::Tensor();
  const at::Tensor cosB = cos.unsqueeze(1).to(h.scalar_type()), sinB = sin.unsqueeze(1).to(h.scalar_type());  // (B, 1, N, d)
  for (std::size_t i = 0; i < blocks->size(); ++i) {
    auto* block = blocks[i]->as<FiTBlockImpl>();
    at::Tensor mod = block->adaLN_modulation->forward(cond);
    if (global.defined()) mod = mod + global;
    ProbeTimer timer(probe, "blocks", static_cast<int>(i));
    h = block->forward(h, mod, cosB, sinB, valid, probe, static_cast<int>(i));
    if (stats) probe->tap("blocks." + std::to_string(i), h);
  }
  {
    ProbeTimer timer(probe, "final_layer");
    h = final_layer->forward(h, cond);  // (B, N, p²C_out)
  }
  if (stats) probe->tap("final_layer", h);
  if (valid.defined()) h = h * valid.unsqueeze(-1).to(h.scalar_type());
  return h;
}

at::Tensor FiTImpl::forwardTokens(const at::Tensor& x, const at::Tensor& grid, const at::Tensor& mask, const at::Tensor& t,
                                  const at::Tensor& y, std::pair<double, double> peLength) {
  const auto& c = m_config;
  const std::int64_t F = c.inChannels * c.patchSize * c.patchSize;
  TORCH_CHECK(x.dim() == 3 && x.size(2) == F, "fit: expected tokens (B, N, ", F, "), got ", x.sizes());
  const std::int64_t B = x.size(0), N = x.size(1);
  TORCH_CHECK(grid.dim() == 3 && grid.size(0) == B && grid.size(1) == 2 && grid.size(2) == N, "fit: expected grid (", B, ", 2, ", N,
              "), got ", grid.sizes());
  TORCH_CHECK(mask.dim() == 2 && mask.size(0) == B && mask.size(1) == N, "fit: expected mask (", B, ", ", N, "), got ", mask.sizes());
  const at::Tensor valid = mask.to(at::kBool);
  const at::Tensor g = grid.to(at::kCPU, at::kLong);
  std::vector<at::Tensor> cos, sin;
  for (std::int64_t b = 0; b < B; ++b) {
    const at::Tensor cols = g[b][0], rows = g[b][1];
    double lh = peLength.first, lw = peLength.second;
    if (lh <= 0 || lw <= 0) {
      const at::Tensor v = valid[b].to(at::kCPU);
      lh = static_cast<double>(rows.masked_select(v).max().item<std::int64_t>() + 1);
      lw = static_cast<double>(cols.masked_select(v).max().item<std::int64_t>() + 1);
    }
    RopeTables r = ropeFor(rows, cols, lh, lw);
    cos.push_back(r.cos);
    sin.push_back(r.sin);
  }
  return run(x, at::stack(cos).to(x.device()), at::stack(sin).to(x.device()), valid, t, y);
}

BackboneOutput FiTImpl::forward(const BackboneInput& input) {
  const auto& c = m_config;
  const std::int64_t p = c.patchSize;
  GridSizes grids;
  at::Tensor rows;  // packed (L, p²C) token features
  const bool packed = input.sizes.has_value();
  std::int64_t N = 0, gh = 0, gw = 0;
  if (packed) {
    grids = gridsFromSizes(*input.sizes, p);
    const std::int64_t L = totalTokens(grids);
    TORCH_CHECK(input.x.dim() == 4 && input.x.size(0) == L && input.x.size(1) == c.inChannels && input.x.size(2) == p &&
                    input.x.size(3) == p,
                "fit: expected packed tokens of shape (", L, ", ", c.inChannels, ", ", p, ", ", p, "), got ", input.x.sizes());
    rows = input.x.reshape({L, -1});
  } else {
    const at::Tensor& x = input.x;
    TORCH_CHECK(x.dim() == 4, "fit: expected images (N, C, H, W) or packed tokens with per-image sizes, got ", x.sizes());
    TORCH_CHECK(x.size(1) == c.inChannels, "fit: expected ", c.inChannels, " input channels, got ", x.size(1));
    TORCH_CHECK(x.size(2) % p == 0 && x.size(3) % p == 0 && x.size(2) > 0 && x.size(3) > 0,
                "fit: height and width must be positive multiples of the patch size ", p, ", got ", x.size(2), "x", x.size(3));
    N = x.size(0), gh = x.size(2) / p, gw = x.size(3) / p;
    grids.assign(static_cast<std::size_t>(N), {gh, gw});
    rows = patchify(x, p).reshape({N * gh * gw, -1});
  }
  std::int64_t maxTokens = 0;
  bool uniform = true;
  for (const auto& g : grids) {
    maxTokens = std::max(maxTokens, g.first * g.second);
    uniform = uniform && g == grids.front();
  }
  // Per-image RoPE tables, each for its own grid (FiT's online RoPE; for a batch of one
  // size the same as the reference's offline tables for that size).
  std::vector<at::Tensor> cos, sin;
  for (const auto& [h, w] : grids) {
    const at::Tensor k = at::arange(h * w, at::kLong);
    RopeTables r = ropeFor(k.div(w, "floor"), k.remainder(w), static_cast<double>(h), static_cast<double>(w));
    const std::int64_t pad = maxTokens - h * w;
    cos.push_back(pad ? at::constant_pad_nd(r.cos, {0, 0, 0, pad}) : r.cos);
    sin.push_back(pad ? at::constant_pad_nd(r.sin, {0, 0, 0, pad}) : r.sin);
    if (uniform) break;
  }
  const std::int64_t B = static_cast<std::int64_t>(grids.size());
  at::Tensor cosB = uniform ? cos[0].unsqueeze(0).expand({B, maxTokens, cos[0].size(1)}) : at::stack(cos);
  at::Tensor sinB = uniform ? sin[0].unsqueeze(0).expand({B, maxTokens, sin[0].size(1)}) : at::stack(sin);
  cosB = cosB.to(rows.device()), sinB = sinB.to(rows.device());
  const at::Tensor tokens = uniform ? rows.reshape({B, maxTokens, -1}) : padPacked(rows, grids, maxTokens);
  const at::Tensor valid = uniform ? at::Tensor() : paddingMask(grids, maxTokens).to(rows.device());
  const at::Tensor out = run(tokens, cosB, sinB, valid, input.t, input.y, input.probe);  // (B, N, p²C_out)
  const std::int64_t Cout = c.outChannels();
  const at::Tensor outRows = uniform ? out.reshape({B * maxTokens, Cout, p, p}) : unpadToPacked(out, grids).reshape({-1, Cout, p, p});
  if (packed) return {outRows, std::nullopt};
  return {unpatchifyBatch(outRows, N, gh, gw), std::nullopt};
}

Capabilities FiTImpl::capabilities() const {
  Capabilities caps;
  caps.fixedGrid = false;
  caps.anyGrid = true;
  caps.packed = true;
  caps.padsPacks = true;
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

// ---------------------------------------------------------------------------------
// Registry

namespace {

/// The reference's processes: FiTv2 (velocity) SiT's transport, a linear path with
/// logit-normal training times; FiT v1 DiT's diffusion (improved-diffusion's copy).
nlohmann::json fitProcess(const nlohmann::json& config) {
  if (parsePrediction(config.value("prediction", std::string("eps"))) == Prediction::Velocity) {
    InterpolantConfig i = InterpolantConfig::defaultsFor("linear", "velocity");
    i.trainTime = "logit-normal";
    return i.toJson();
  }
  GaussianDiffusionConfig d;
  d.learnSigma = config.value("learn_sigma", true);
  return d.toJson();
}

/// A FiT state dict: a linear embedding of pre-patchified tokens.
bool recognisesFiT(const TensorShapes& shapes) {
  auto dims = [&](const std::string& key) -> std::size_t {
    const auto* shape = findShape(shapes, key);
    return shape ? shape->size() : 0;
  };
  return dims("x_embedder.proj.weight") == 2 && dims("blocks.0.attn.qkv.weight") == 2 &&
         dims("final_layer.linear.weight") == 2;
}

}  // namespace

void registerBackbone_fit(BackboneRegistry& registry) {
  auto read = [](const Config& config) {
    return readWithPreset<FiTConfig>(FiTConfig::table(), config, FiTConfig(), fitPreset);
  };
  BackboneEntry e;
  e.name = "fit";
  e.description =
      "FiT / FiTv2: flexible-size transformer on padded token sequences with 2-D RoPE (resolution extrapolation)";
  e.factory = factoryFromTable<FiTImpl>(read);
  e.presets = fitPresetNames();
  const nlohmann::json tinyConfig = {{"input_size", 8}, {"patch_size", 2}, {"hidden_size", 32}, {"depth", 2},
                                     {"num_heads", 2},  {"num_classes", 10}, {"qk_norm", true},   {"adaln", "lora"},
                                     {"adaln_rank", 8}, {"learn_sigma", false}, {"prediction", "velocity"}};
  e.tiny = {{"config", tinyConfig}, {"input", {{"channels", 4}, {"height", 8}, {"width", 12}, {"t_scale", 1}}}};
  e.capabilities.anyGrid = true;
  e.capabilities.packed = true;
  e.capabilities.learnedSigma = true;
  e.capabilities.predictions = {Prediction::Epsilon, Prediction::Velocity, Prediction::Score, Prediction::Sample};
  e.config = FiTConfig::table().schema(FiTConfig(), read);
  e.scratch = {{"qk_norm", true}};  // new FiT models here are FiTv2-style: q/k LayerNorm
  e.importer.recognises = recognisesFiT;
  e.importer.process = fitProcess;
  e.importer.convert = [](const NamedTensors& sd, const ImportRequest& request) -> Result<ImportedBackbone> {
    auto imported = importFiTStateDict(sd, FlexImportOptions::from(request));
    if (!imported) return fail(imported.error());
    return toImportedBackbone(std::move(*imported), fitProcess);
  };
  (void)registry.add(std::move(e));
}

}  // namespace tessera
