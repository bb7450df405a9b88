// SPDX-License-Identifier: Apache-2.0
// Example backbone plugin "convnet": a small convolutional network on any grid. A 3×3
// input convolution, residual blocks (GroupNorm, SiLU, 3×3 convolution, twice) to which
// the timestep embedding (sinusoidal, then an MLP, as DiT's) plus the class embedding
// (with DiT's null-class row for guidance) is added, and a 3×3 output convolution
// initialised to zero, as DiT's final layer, so that a new network predicts exactly 0.
// Its configuration reads DiT's keys for what the trainer and the generation pipeline
// set or look at (in_channels, input_size, num_classes, class_dropout_prob,
// learn_sigma, cfg_channels, prediction), so it trains and samples as DiT does: DDPM
// with learned sigma by default, an interpolant with "prediction": "velocity" and
// "learn_sigma": false (SiT's setting).
#include "models/probe.h"
#include "plugins/tessera_plugin.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/utils.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace tessera;
namespace nn = torch::nn;

constexpr std::int64_t kFrequencyDim = 256;  // DiT's timestep embedding width

// ConvNetConfig's fields, one line each, as the built-in backbones list theirs (see
// models/config_table.h): the struct and its table (read, write, listing) both come
// from this list. FIELD(type, member, default, "key", (constraint), "doc")
#define CONVNET_FIELDS(FIELD)                                                                                       \
  FIELD(std::int64_t, inChannels, 4, "in_channels", (IntRange{1, 1024}), "channels of the input")                   \
  FIELD(std::int64_t, inputSize, 32, "input_size", (IntRange{1, 1 << 16}),                                          \
        "the trained grid's side: the default sample size (any grid works)")                                        \
  FIELD(std::int64_t, width, 128, "width", (IntRange{1, 1 << 14}), "channels inside the blocks")                    \
  FIELD(std::int64_t, blocks, 4, "blocks", (IntRange{1, 256}), "residual blocks")                                   \
  FIELD(std::int64_t, groups, 32, "groups", (IntRange{1, 1 << 14}), "GroupNorm groups (divide width)")              \
  FIELD(std::int64_t, numClasses, 1000, "num_classes", (IntRange{1, 1 << 24}), "class labels 0 … num_classes − 1")  \
  FIELD(double, classDropoutProb, 0.1, "class_dropout_prob", (NumberRange{0.0, 0.999}),                             \
        "> 0 adds the null-class row guidance needs (the trainer drops the labels itself)")                         \
  FIELD(bool, learnSigma, true, "learn_sigma", (AnyValue{}), "the output carries 2·C channels (the DDPM variance)") \
  FIELD(std::int64_t, cfgChannels, 0, "cfg_channels", (IntRange{0, 1024}),                                          \
        "channels guidance guides; 0 = all (the trainer sets in_channels)")                                         \
  FIELD(Prediction, prediction, Prediction::Epsilon, "prediction",                                                  \
        (Predictions{{Prediction::Epsilon, Prediction::Velocity, Prediction::Score, Prediction::Sample}}),          \
        "what the outputs mean")

struct ConvNetConfig {
#define CONVNET_MEMBER(type, member, value, key, constraint, doc) type member = value;
  CONVNET_FIELDS(CONVNET_MEMBER)
#undef CONVNET_MEMBER

  std::int64_t outChannels() const { return learnSigma ? 2 * inChannels : inChannels; }
  std::int64_t embedDim() const { return 4 * width; }  // DDPM's U-Net: 4× the base width
};

Result<void> validate(const ConvNetConfig& c) {
  auto bad = [](const std::string& m) { return fail("ConvNet config: " + m); };
  if (c.width % c.groups)
    return bad("groups " + std::to_string(c.groups) + " must divide width " + std::to_string(c.width));
  if (c.cfgChannels > c.outChannels()) return bad("cfg_channels must be at most the output channels");
  return {};
}

const ConfigTable<ConvNetConfig>& table() {
  static const ConfigTable<ConvNetConfig> table = [] {
    ConfigTable<ConvNetConfig> t;
#define CONVNET_ROW(type, member, value, key, constraint, doc) t.field(key, &ConvNetConfig::member, constraint, doc);
    CONVNET_FIELDS(CONVNET_ROW)
#undef CONVNET_ROW
    t.accept("preset").check(validate);
    return t;
  }();
  return table;
}

struct Preset {
  const char* name;
  std::int64_t width, blocks;
};
const std::vector<Preset> kPresets{{"ConvNet-S", 64, 4}, {"ConvNet-B", 128, 8}};

std::vector<std::string> presetNames() {
  std::vector<std::string> names;
  for (const auto& p : kPresets) names.emplace_back(p.name);
  return names;
}

/// DiT's sinusoidal embedding: [cos(t f), sin(t f)], f_i = 10000^(−i/half).
at::Tensor sinusoidal(const at::Tensor& t, std::int64_t dim) {
  const std::int64_t half = dim / 2;
  const at::Tensor freqs =
      at::exp(at::arange(half, t.options().dtype(at::kFloat)) * (-std::log(10000.0) / static_cast<double>(half)));  // (half)
  const at::Tensor args = t.to(at::kFloat).unsqueeze(1) * freqs.unsqueeze(0);                                        // (N, half)
  return at::cat({at::cos(args), at::sin(args)}, 1);                                                                 // (N, dim)
}

class ResBlockImpl : public nn::Module {
public:
  ResBlockImpl(std::int64_t width, std::int64_t groups, std::int64_t embedDim) {
    norm1 = register_module("norm1", nn::GroupNorm(nn::GroupNormOptions(groups, width)));
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(width, width, 3).padding(1)));
    emb = register_module("emb", nn::Linear(embedDim, width));
    norm2 = register_module("norm2", nn::GroupNorm(nn::GroupNormOptions(groups, width)));
    conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(width, width, 3).padding(1)));
  }

  at::Tensor forward(const at::Tensor& x, const at::Tensor& c) {  // (N, W, H, W'), (N, E)
    at::Tensor h = conv1->forward(at::silu(norm1->forward(x)));  // (N, W, H, W')
    h = h + emb->forward(at::silu(c)).unsqueeze(-1).unsqueeze(-1);  // (N, W, 1, 1) over the grid
    h = conv2->forward(at::silu(norm2->forward(h)));
    return x + h;
  }

  nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::Linear emb{nullptr};
};
TORCH_MODULE(ResBlock);

class ConvNetImpl final : public BackboneImpl {
public:
  ConvNetImpl(ConvNetConfig config, bool initialize) : m_config(std::move(config)) {
    const auto& c = m_config;
    const std::int64_t E = c.embedDim();
    conv_in = register_module("conv_in", nn::Conv2d(nn::Conv2dOptions(c.inChannels, c.width, 3).padding(1)));
    t_embedder = register_module(
        "t_embedder", nn::Sequential(nn::Linear(kFrequencyDim, E), nn::SiLU(), nn::Linear(E, E)));
    y_embedder = register_module("y_embedder", nn::Embedding(c.numClasses + (c.classDropoutProb > 0 ? 1 : 0), E));
    blocks = register_module("blocks", nn::ModuleList());
    for (std::int64_t i = 0; i < c.blocks; ++i) blocks->push_back(ResBlock(c.width, c.groups, E));
    norm_out = register_module("norm_out", nn::GroupNorm(nn::GroupNormOptions(c.groups, c.width)));
    conv_out = register_module("conv_out", nn::Conv2d(nn::Conv2dOptions(c.width, c.outChannels(), 3).padding(1)));
    if (initialize) initializeWeights();
  }

  BackboneOutput forward(const BackboneInput& input) override {
    const auto& c = m_config;
    const at::Tensor& x = input.x;
    TORCH_CHECK(x.dim() == 4, "convnet: expected x of shape (N, C, H, W), got ", x.sizes());
    TORCH_CHECK(x.size(1) == c.inChannels, "convnet: expected ", c.inChannels, " input channels, got ", x.size(1));
    TORCH_CHECK(input.t.dim() == 1 && input.t.size(0) == x.size(0), "convnet: expected t of shape (", x.size(0), "), got ",
                input.t.sizes());
    TORCH_CHECK(input.y.dim() == 1 && input.y.size(0) == x.size(0), "convnet: expected y of shape (", x.size(0), "), got ",
                input.y.sizes());
    const std::int64_t maxLabel = c.classDropoutProb > 0 ? c.numClasses : c.numClasses - 1;
    TORCH_CHECK(!input.y.numel() || (input.y.min().item<std::int64_t>() >= 0 && input.y.max().item<std::int64_t>() <= maxLabel),
                "convnet: class labels must lie in [0, ", maxLabel, "]");
    Probe* probe = input.probe;
    const bool stats = probe && probe->wantsStats();

    const at::Tensor cond = t_embedder->forward(sinusoidal(input.t, kFrequencyDim)) +
                            y_embedder->forward(input.y.to(at::kLong));  // (N, E)
    at::Tensor h = conv_in->forward(x);                                  // (N, W, H, W')
    if (stats) probe->tap("conv_in", h);
    for (std::size_t i = 0; i < blocks->size(); ++i) {
      h = blocks[i]->as<ResBlockImpl>()->forward(h, cond);  // (N, W, H, W')
      if (stats) probe->tap("blocks." + std::to_string(i), h);
    }
    at::Tensor out = conv_out->forward(at::silu(norm_out->forward(h)));  // (N, outC, H, W')
    if (stats) probe->tap("conv_out", out);
    return {out, std::nullopt};
  }

  Capabilities capabilities() const override {
    const auto& c = m_config;
    Capabilities caps;
    caps.fixedGrid = false;
    caps.anyGrid = true;
    caps.sizeMultiple = 1;
    caps.learnedSigma = c.learnSigma;
    caps.prediction = c.prediction;
    caps.inChannels = c.inChannels;
    caps.trainedHeight = caps.trainedWidth = c.inputSize;
    caps.numClasses = c.numClasses;
    caps.nullClass = c.classDropoutProb > 0;
    caps.guidedChannels = c.cfgChannels == 0 || c.cfgChannels >= c.inChannels ? 0 : c.cfgChannels;
    return caps;
  }

  std::string kind() const override { return "convnet"; }

  nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  nn::Sequential t_embedder{nullptr};
  nn::Embedding y_embedder{nullptr};
  nn::ModuleList blocks{nullptr};
  nn::GroupNorm norm_out{nullptr};

private:
  /// LibTorch's default initialisation for the convolutions and linears, DiT's N(0, 0.02)
  /// for the embeddings, and zero for the output convolution.
  void initializeWeights() {
    torch::NoGradGuard noGrad;
    nn::init::normal_(y_embedder->weight, 0.0, 0.02);
    nn::init::normal_(t_embedder[0]->as<nn::Linear>()->weight, 0.0, 0.02);
    nn::init::normal_(t_embedder[2]->as<nn::Linear>()->weight, 0.0, 0.02);
    nn::init::zeros_(conv_out->weight);
    nn::init::zeros_(conv_out->bias);
  }

  ConvNetConfig m_config;
};

Result<ConvNetConfig> presetConfig(const std::string& name) {
  for (const auto& p : kPresets) {
    if (name != p.name) continue;
    ConvNetConfig c;
    c.width = p.width;
    c.blocks = p.blocks;
    return c;
  }
  std::string known;
  for (const auto& n : presetNames()) known += (known.empty() ? "" : ", ") + n;
  return fail("unknown preset '" + name + "' (known: " + known + ")");
}

Result<ConvNetConfig> readConfig(const Config& config) {
  return readWithPreset<ConvNetConfig>(table(), config, ConvNetConfig(), presetConfig);
}

Result<std::shared_ptr<BackboneImpl>> build(const Config& config, const BuildOptions& options) {
  auto c = readConfig(config);
  if (!c) return fail(c.error());
  return std::shared_ptr<BackboneImpl>(std::make_shared<ConvNetImpl>(*c, options.initialize));
}

Result<void> registerConvNet(PluginRegistrar& registrar) {
  BackboneEntry e;
  e.name = "convnet";
  e.description = "ConvNet: residual 3×3 convolutions with timestep and class embeddings, any grid (plugin)";
  e.factory = build;
  e.presets = presetNames();
  e.tiny = {{"config", {{"input_size", 8}, {"width", 32}, {"blocks", 2}, {"groups", 8}, {"num_classes", 10}}},
            {"input", {{"channels", 4}, {"height", 8}, {"width", 12}, {"t_scale", 999}}}};
  e.capabilities.anyGrid = true;
  e.capabilities.learnedSigma = true;
  e.capabilities.predictions = {Prediction::Epsilon, Prediction::Velocity, Prediction::Score, Prediction::Sample};
  e.config = table().schema(ConvNetConfig(), readConfig);
  // No importer: it has no reference checkpoints.
  return registrar.addBackbone(std::move(e));
}

}  // namespace

TESSERA_PLUGIN("tiny-convnet", "1.0.0", "Example backbone: a small residual convolutional network on any grid",
               registerConvNet)
