// SPDX-License-Identifier: Apache-2.0
#include "models/dit/dit.h"

#include "models/common/adaln.h"
#include "models/common/attention.h"
#include "models/common/embeddings.h"
#include "models/probe.h"

#include <c10/core/InferenceMode.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>

#include <cmath>

namespace tessera {
namespace nn = torch::nn;

namespace {

/// tanh-approximated GELU. Without autograd, the same function as x·sigmoid(2z) with
/// z = √(2/π)(x + 0.044715 x³), computed in place on the linear layer's fresh output:
/// LibTorch 1.13's gelu(tanh) kernel takes about 1.3× as long (256×1536, 2 threads).
at::Tensor geluTanh(at::Tensor x) {
  if (!c10::InferenceMode::is_enabled()) return at::gelu(x, "tanh");
  constexpr double k = 1.5957691216057308;  // 2·√(2/π)
  at::Tensor z = x * x;
  z.mul_(0.044715 * k).add_(k).mul_(x).sigmoid_();
  return x.mul_(z);
}

nn::Sequential adaLN(std::int64_t hidden, std::int64_t chunks) {
  return nn::Sequential(nn::SiLU(), nn::Linear(nn::LinearOptions(hidden, chunks * hidden).bias(true)));
}

}  // namespace

// ---------------------------------------------------------------------------------
// Config

std::int64_t DiTConfig::parameterCount() const {
  const std::int64_t D = hiddenSize, p = patchSize, C = inChannels, H = mlpHidden();
  const std::int64_t tokens = (inputSize / p) * (inputSize / p);
  const std::int64_t block = (D * 3 * D + 3 * D) + (D * D + D) + (D * H + H) + (H * D + D) + (D * 6 * D + 6 * D);
  const std::int64_t embed = (C * p * p * D + D) + (256 * D + D + D * D + D) +
                             (numClasses + (classDropoutProb > 0 ? 1 : 0)) * D + tokens * D;
  const std::int64_t finalLayer = (D * 2 * D + 2 * D) + (D * p * p * outChannels() + p * p * outChannels());
  return embed + depth * block + finalLayer;
}

std::vector<std::pair<std::string, std::vector<std::int64_t>>> ditStateShapes(const DiTConfig& c) {
  const std::int64_t D = c.hiddenSize, p = c.patchSize, H = c.mlpHidden(), g = c.inputSize / c.patchSize;
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> s = {
      {"x_embedder.proj.weight", {D, c.inChannels, p, p}},
      {"x_embedder.proj.bias", {D}},
      {"t_embedder.mlp.0.weight", {D, 256}},
      {"t_embedder.mlp.0.bias", {D}},
      {"t_embedder.mlp.2.weight", {D, D}},
      {"t_embedder.mlp.2.bias", {D}},
      {"y_embedder.embedding_table.weight", {c.numClasses + (c.classDropoutProb > 0 ? 1 : 0), D}},
      {"pos_embed", {1, g * g, D}},
  };
  for (std::int64_t i = 0; i < c.depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    s.push_back({b + "attn.qkv.weight", {3 * D, D}});
    s.push_back({b + "attn.qkv.bias", {3 * D}});
    s.push_back({b + "attn.proj.weight", {D, D}});
    s.push_back({b + "attn.proj.bias", {D}});
    s.push_back({b + "mlp.fc1.weight", {H, D}});
    s.push_back({b + "mlp.fc1.bias", {H}});
    s.push_back({b + "mlp.fc2.weight", {D, H}});
    s.push_back({b + "mlp.fc2.bias", {D}});
    s.push_back({b + "adaLN_modulation.1.weight", {6 * D, D}});
    s.push_back({b + "adaLN_modulation.1.bias", {6 * D}});
  }
  s.push_back({"final_layer.linear.weight", {p * p * c.outChannels(), D}});
  s.push_back({"final_layer.linear.bias", {p * p * c.outChannels()}});
  s.push_back({"final_layer.adaLN_modulation.1.weight", {2 * D, D}});
  s.push_back({"final_layer.adaLN_modulation.1.bias", {2 * D}});
  return s;
}

Result<void> DiTConfig::validate() const {
  auto bad = [](const std::string& m) { return fail("DiT config: " + m); };
  if (patchSize < 1) return bad("patch_size must be >= 1, got " + std::to_string(patchSize));
  if (inputSize < patchSize || inputSize % patchSize)
    return bad("input_size " + std::to_string(inputSize) + " must be a positive multiple of patch_size " + std::to_string(patchSize));
  if (inChannels < 1) return bad("in_channels must be >= 1");
  if (hiddenSize < 4 || hiddenSize % 4) return bad("hidden_size " + std::to_string(hiddenSize) + " must be a positive multiple of 4");
  if (numHeads < 1 || hiddenSize % numHeads)
    return bad("num_heads " + std::to_string(numHeads) + " must divide hidden_size " + std::to_string(hiddenSize));
  if (depth < 1) return bad("depth must be >= 1");
  if (!(mlpRatio > 0)) return bad("mlp_ratio must be > 0");
  if (!(classDropoutProb >= 0 && classDropoutProb < 1)) return bad("class_dropout_prob must be in [0, 1)");
  if (numClasses < 1) return bad("num_classes must be >= 1");
  if (cfgChannels < 1 || cfgChannels > outChannels()) return bad("cfg_channels must be in [1, out channels]");
  return {};
}

const ConfigTable<DiTConfig>& DiTConfig::table() {
  static const ConfigTable<DiTConfig> table = [] {
    ConfigTable<DiTConfig> t;
#define TESSERA_FIELD(type, member, value, key, constraint, doc) t.field(key, &DiTConfig::member, constraint, doc);
#include "models/dit/dit_config.def"
#undef TESSERA_FIELD
    t.accept("preset").check([](const DiTConfig& c) { return c.validate(); });
    return t;
  }();
  return table;
}

nlohmann::json DiTConfig::toJson() const { return table().write(*this); }

Result<DiTConfig> DiTConfig::fromConfig(const Config& config, const std::string& path, const DiTConfig& defaults) {
  return table().read(config, path, defaults);
}

// ---------------------------------------------------------------------------------
// Modules

TimestepEmbedderImpl::TimestepEmbedderImpl(std::int64_t hidden, std::int64_t frequencyDim_) : frequencyDim(frequencyDim_) {
  mlp = register_module("mlp", nn::Sequential(nn::Linear(frequencyDim, hidden), nn::SiLU(), nn::Linear(hidden, hidden)));
}

at::Tensor TimestepEmbedderImpl::forward(const at::Tensor& t) {
  return mlp->forward(timestepEmbedding(t, frequencyDim));  // (N, 256) -> (N, D)
}

LabelEmbedderImpl::LabelEmbedderImpl(std::int64_t numClasses_, std::int64_t hidden, double dropoutProb_)
    : numClasses(numClasses_), dropoutProb(dropoutProb_) {
  embedding_table = register_module("embedding_table", nn::Embedding(numClasses + (dropoutProb > 0 ? 1 : 0), hidden));
}

at::Tensor LabelEmbedderImpl::forward(const at::Tensor& labels, bool train) {
  at::Tensor y = labels;
  if (train && dropoutProb > 0) {
    const at::Tensor drop = at::rand({labels.size(0)}, labels.options().dtype(at::kFloat)) < dropoutProb;
    y = at::where(drop, at::full_like(labels, numClasses), labels);
  }
  return embedding_table->forward(y);
}

PatchEmbedImpl::PatchEmbedImpl(std::int64_t inChannels, std::int64_t hidden, std::int64_t patch) {
  proj = register_module("proj", nn::Conv2d(nn::Conv2dOptions(inChannels, hidden, patch).stride(patch).bias(true)));
}

at::Tensor PatchEmbedImpl::forward(const at::Tensor& x) {
  return proj->forward(x).flatten(2).transpose(1, 2);  // (N, D, h, w) -> (N, h*w, D)
}

AttentionImpl::AttentionImpl(std::int64_t hidden, std::int64_t heads_) : heads(heads_) {
  qkv = register_module("qkv", nn::Linear(nn::LinearOptions(hidden, 3 * hidden).bias(true)));
  proj = register_module("proj", nn::Linear(hidden, hidden));
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, Probe* probe, int layer) {
  const auto N = x.size(0), T = x.size(1), D = x.size(2);
  const at::Tensor qkvOut = qkv->forward(x).reshape({N, T, 3, heads, D / heads}).permute({2, 0, 3, 1, 4});  // (3, N, h, T, d)
  const at::Tensor q = qkvOut[0], k = qkvOut[1], v = qkvOut[2];
  at::Tensor out;
  if (probe && probe->wantsAttention(layer)) {
    const at::Tensor probs = attentionProbabilities(q, k);  // (N, h, T, T)
    probe->recordAttention(layer, probs);
    out = at::matmul(probs, v);
  } else {
    out = scaledDotProductAttention(q, k, v);  // (N, h, T, d)
  }
  return proj->forward(out.transpose(1, 2).reshape({N, T, D}));
}

MlpImpl::MlpImpl(std::int64_t hidden, std::int64_t inner) {
  fc1 = register_module("fc1", nn::Linear(hidden, inner));
  fc2 = register_module("fc2", nn::Linear(inner, hidden));
}

at::Tensor MlpImpl::forward(const at::Tensor& x) { return fc2->forward(geluTanh(fc1->forward(x))); }

DiTBlockImpl::DiTBlockImpl(std::int64_t hidden, std::int64_t heads, std::int64_t mlpHidden) {
  norm1 = register_module("norm1", plainLayerNorm(hidden));
  attn = register_module("attn", Attention(hidden, heads));
  norm2 = register_module("norm2", plainLayerNorm(hidden));
  mlp = register_module("mlp", Mlp(hidden, mlpHidden));
  adaLN_modulation = register_module("adaLN_modulation", adaLN(hidden, 6));
}

at::Tensor DiTBlockImpl::forward(const at::Tensor& x, const at::Tensor& c, Probe* probe, int layer) {
  // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp: each (N, D)
  const auto m = adaLN_modulation->forward(c).chunk(6, 1);
  at::Tensor h = x + m[2].unsqueeze(1) * attn->forward(modulate(norm1->forward(x), m[0], m[1]), probe, layer);
  return h + m[5].unsqueeze(1) * mlp->forward(modulate(norm2->forward(h), m[3], m[4]));  // (N, T, D)
}

FinalLayerImpl::FinalLayerImpl(std::int64_t hidden, std::int64_t patch, std::int64_t outChannels) {
  norm_final = register_module("norm_final", plainLayerNorm(hidden));
  linear = register_module("linear", nn::Linear(hidden, patch * patch * outChannels));
  adaLN_modulation = register_module("adaLN_modulation", adaLN(hidden, 2));
}

at::Tensor FinalLayerImpl::forward(const at::Tensor& x, const at::Tensor& c) {
  const auto m = adaLN_modulation->forward(c).chunk(2, 1);  // shift, scale
  return linear->forward(modulate(norm_final->forward(x), m[0], m[1]));
}

// ---------------------------------------------------------------------------------
// DiT

DiTImpl::DiTImpl(DiTConfig config, bool initialize) : m_config(std::move(config)) {
  const auto& c = m_config;
  x_embedder = register_module("x_embedder", PatchEmbed(c.inChannels, c.hiddenSize, c.patchSize));
  t_embedder = register_module("t_embedder", TimestepEmbedder(c.hiddenSize));
  y_embedder = register_module("y_embedder", LabelEmbedder(c.numClasses, c.hiddenSize, c.classDropoutProb));
  const std::int64_t grid = c.inputSize / c.patchSize;
  pos_embed = register_parameter("pos_embed", sincosPosEmbed2d(c.hiddenSize, grid, grid).unsqueeze(0), /*requires_grad=*/false);
  blocks = register_module("blocks", nn::ModuleList());
  for (std::int64_t i = 0; i < c.depth; ++i) blocks->push_back(DiTBlock(c.hiddenSize, c.numHeads, c.mlpHidden()));
  final_layer = register_module("final_layer", FinalLayer(c.hiddenSize, c.patchSize, c.outChannels()));
  if (initialize) initializeWeights();
}

void initializeDiTFamily(torch::nn::Module& root, LabelEmbedderImpl& labels, TimestepEmbedderImpl& time,
                         FinalLayerImpl& finalLayer, const std::vector<nn::Sequential>& zeroLast, PatchEmbedImpl* patchEmbed) {
  torch::NoGradGuard noGrad;
  for (auto& module : root.modules(/*include_self=*/false)) {
    if (auto* linear = module->as<nn::Linear>()) {
      nn::init::xavier_uniform_(linear->weight);
      if (linear->bias.defined()) nn::init::zeros_(linear->bias);
    }
  }
  if (patchEmbed) {
    at::Tensor w = patchEmbed->proj->weight;
    nn::init::xavier_uniform_(w.view({w.size(0), -1}));
    nn::init::zeros_(patchEmbed->proj->bias);
  }
  nn::init::normal_(labels.embedding_table->weight, 0.0, 0.02);
  nn::init::normal_(time.mlp[0]->as<nn::Linear>()->weight, 0.0, 0.02);
  nn::init::normal_(time.mlp[2]->as<nn::Linear>()->weight, 0.0, 0.02);
  std::vector<nn::Sequential> zeroed = zeroLast;
  zeroed.push_back(finalLayer.adaLN_modulation);
  for (auto& seq : zeroed) {
    auto* last = seq[seq->size() - 1]->as<nn::Linear>();
    nn::init::zeros_(last->weight);
    nn::init::zeros_(last->bias);
  }
  nn::init::zeros_(finalLayer.linear->weight);
  nn::init::zeros_(finalLayer.linear->bias);
}

void checkClassLabels(const at::Tensor& y, std::int64_t numClasses, bool nullClass, const std::string& who) {
  if (!y.numel()) return;
  const std::int64_t maxLabel = nullClass ? numClasses : numClasses - 1;
  TORCH_CHECK(y.min().item<std::int64_t>() >= 0 && y.max().item<std::int64_t>() <= maxLabel, who,
              ": class labels must lie in [0, ", maxLabel, "] (", numClasses, " classes",
              nullClass ? std::string(", ") + std::to_string(numClasses) + " = null class" : std::string(), ")");
}

std::int64_t parameterCountOf(const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& shapes) {
  std::int64_t n = 0;
  for (const auto& [name, shape] : shapes) {
    std::int64_t k = 1;
    for (auto v : shape) k *= v;
    n += k;
  }
  return n;
}

void DiTImpl::initializeWeights() {
  std::vector<nn::Sequential> adaLNs;
  for (const auto& block : *blocks) adaLNs.push_back(block->as<DiTBlockImpl>()->adaLN_modulation);
  initializeDiTFamily(*this, *y_embedder, *t_embedder, *final_layer, adaLNs, x_embedder.get());
  torch::NoGradGuard noGrad;
  const std::int64_t grid = m_config.inputSize / m_config.patchSize;
  pos_embed.copy_(sincosPosEmbed2d(m_config.hiddenSize, grid, grid).unsqueeze(0));
}

Result<void> DiTImpl::setSizeExtrapolation(const std::string& method, bool decouple) {
  if (method != "none" && method != "interpolate")
    return fail("the " + kind() + " backbone has sin-cos positions: expected none or interpolate, got '" + method +
                "'");
  if (decouple) return fail("decoupled scales apply to RoPE backbones only");
  setPositionInterpolation(method == "interpolate");
  return {};
}

void DiTImpl::setPositionInterpolation(bool on) {
  std::lock_guard<std::mutex> lock(m_posMutex);
  m_interpolate = on;
  m_posCache.clear();
}

at::Tensor DiTImpl::positionEmbedding(std::int64_t gridH, std::int64_t gridW) {
  const std::int64_t stored = m_config.inputSize / m_config.patchSize;
  if (gridH == stored && gridW == stored) return pos_embed;  // (1, T, D): the checkpoint's own
  std::lock_guard<std::mutex> lock(m_posMutex);
  auto& cached = m_posCache[{gridH, gridW}];
  if (!cached.defined() || cached.device() != pos_embed.device() || cached.scalar_type() != pos_embed.scalar_type())
    cached = sincosPosEmbed2d(m_config.hiddenSize, gridH, gridW,
                              m_interpolate ? std::min(1.0, double(stored) / double(gridH)) : 1.0,
                              m_interpolate ? std::min(1.0, double(stored) / double(gridW)) : 1.0)
                 .unsqueeze(0)
                 .to(pos_embed.options());
  return cached;
}

at::Tensor DiTImpl::forwardTensors(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y, Probe* probe) {
  const auto& c = m_config;
  TORCH_CHECK(x.dim() == 4, kind(), ": expected x of shape (N, C, H, W), got ", x.sizes());
  TORCH_CHECK(x.size(1) == c.inChannels, kind(), ": expected ", c.inChannels, " input channels, got ", x.size(1));
  TORCH_CHECK(x.size(2) % c.patchSize == 0 && x.size(3) % c.patchSize == 0 && x.size(2) > 0 && x.size(3) > 0, kind(),
              ": height and width must be positive multiples of the patch size ", c.patchSize, ", got ", x.size(2), "x", x.size(3));
  TORCH_CHECK(t.dim() == 1 && t.size(0) == x.size(0), kind(), ": expected t of shape (", x.size(0), "), got ", t.sizes());
  TORCH_CHECK(y.dim() == 1 && y.size(0) == x.size(0), kind(), ": expected y of shape (", x.size(0), "), got ", y.sizes());
  checkClassLabels(y, c.numClasses, c.classDropoutProb > 0, kind());
  const std::int64_t gridH = x.size(2) / c.patchSize, gridW = x.size(3) / c.patchSize;
  const std::int64_t p = c.patchSize, C = c.outChannels(), N = x.size(0);

  at::Tensor h = x_embedder->forward(x) + positionEmbedding(gridH, gridW);  // (N, T, D)
  const at::Tensor cond = t_embedder->forward(t) + y_embedder->forward(y.to(at::kLong), is_training());  // (N, D)
  const bool stats = probe && probe->wantsStats();
  if (stats) probe->tap("x_embedder", h);
  for (std::size_t i = 0; i < blocks->size(); ++i) {
    ProbeTimer timer(probe, "blocks", static_cast<int>(i));
    h = blocks[i]->as<DiTBlockImpl>()->forward(h, cond, probe, static_cast<int>(i));  // (N, T, D)
    if (stats) probe->tap("blocks." + std::to_string(i), h);
  }
  {
    ProbeTimer timer(probe, "final_layer");
    h = final_layer->forward(h, cond);  // (N, T, p*p*C), features ordered (p_row, p_col, c)
  }
  if (stats) probe->tap("final_layer", h);
  at::Tensor out = h.reshape({N, gridH, gridW, p, p, C})
                       .permute({0, 5, 1, 3, 2, 4})  // nhwpqc -> nchpwq
                       .reshape({N, C, gridH * p, gridW * p});
  if (c.learnSigma && c.dropSigmaOutput) out = out.chunk(2, 1)[0];
  return out;
}

at::Tensor DiTImpl::forwardWithCfg(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y, double scale) {
  TORCH_CHECK(x.size(0) % 2 == 0, kind(), ": forward with guidance needs an even batch ([cond; uncond]), got ", x.size(0));
  const at::Tensor half = x.narrow(0, 0, x.size(0) / 2);
  const at::Tensor out = forwardTensors(at::cat({half, half}, 0), t, y);
  const std::int64_t g = m_config.cfgChannels;
  const at::Tensor guided = out.narrow(1, 0, g), rest = out.narrow(1, g, out.size(1) - g);
  const auto parts = guided.chunk(2, 0);  // cond, uncond
  const at::Tensor halfGuided = parts[1] + scale * (parts[0] - parts[1]);
  return at::cat({at::cat({halfGuided, halfGuided}, 0), rest}, 1);
}

BackboneOutput DiTImpl::forward(const BackboneInput& input) {
  return {forwardTensors(input.x, input.t, input.y, input.probe), std::nullopt};
}

Capabilities DiTImpl::capabilities() const {
  Capabilities caps;
  caps.fixedGrid = false;
  caps.anyGrid = true;
  caps.learnedSigma = m_config.learnSigma && !m_config.dropSigmaOutput;
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
