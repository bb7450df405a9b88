// SPDX-License-Identifier: Apache-2.0
#include "models/unet/unet.h"

#include "models/common/attention.h"
#include "models/common/embeddings.h"
#include "models/dit/dit.h"  // checkClassLabels
#include "models/probe.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

namespace tessera {
namespace nn = torch::nn;

namespace {

// ---------------------------------------------------------------------------------
// The plan: the reference constructor's walk over levels, once, as data. The network
// and unetStateShapes both build from it, so the two cannot disagree.

struct UNetLayerSpec {
  enum class Kind { InputConv, Res, Attention, Transformer, Down, Up } kind;
  std::int64_t in = 0, out = 0;  ///< channels (Res: in → out; others: in = out = channels)
  UNetResBlock::Resample resample = UNetResBlock::Resample::None;
  bool conv = true;                     ///< Down / Up: learned convolution
  std::int64_t heads = 0, headDim = 0;  ///< Attention: heads; Transformer: heads and their width
};

struct UNetBlockSpec {
  std::vector<UNetLayerSpec> layers;
  std::int64_t factor = 1;  ///< down-sampling factor of the grid the block receives
};

struct UNetPlan {
  std::vector<UNetBlockSpec> input, output;
  UNetBlockSpec middle;
  std::int64_t outChannelsIn = 0;  ///< channels entering `out`
};

Result<UNetPlan> makeUNetPlan(const UNetConfig& c) {
  UNetPlan plan;
  std::int64_t numHeads = c.numHeads;  // the reference reassigns it while it walks
  const std::int64_t numHeadsUpsample = c.numHeadsUpsample == -1 ? c.numHeads : c.numHeadsUpsample;
  auto attention = [&](std::int64_t ch, bool upsample) -> Result<UNetLayerSpec> {
    std::int64_t dimHead = 0;
    if (c.numHeadChannels == -1) {
      if (numHeads < 1) return fail("num_heads must be >= 1 when num_head_channels is -1");
      dimHead = ch / numHeads;
    } else {
      numHeads = ch / c.numHeadChannels;
      dimHead = c.numHeadChannels;
    }
    if (c.legacy) dimHead = c.useSpatialTransformer ? ch / std::max<std::int64_t>(numHeads, 1) : c.numHeadChannels;
    UNetLayerSpec s;
    if (c.useSpatialTransformer) {
      s.kind = UNetLayerSpec::Kind::Transformer;
      s.heads = numHeads;
      s.headDim = dimHead;
      if (s.heads < 1 || s.headDim < 1)
        return fail("attention at " + std::to_string(ch) + " channels: " + std::to_string(s.heads) + " heads of " +
                    std::to_string(s.headDim) + " channels (num_head_channels " + std::to_string(c.numHeadChannels) +
                    " must not exceed the channels)");
    } else {
      s.kind = UNetLayerSpec::Kind::Attention;
      const std::int64_t headsArg = upsample ? numHeadsUpsample : numHeads;
      if (dimHead == -1) {
        if (headsArg < 1) return fail("num_heads must be >= 1 when num_head_channels is -1");
        s.heads = headsArg;
      } else {
        if (dimHead < 1 || ch % dimHead)
          return fail("attention at " + std::to_string(ch) + " channels: heads of " + std::to_string(dimHead) +
                      " channels do not divide them (num_heads " + std::to_string(c.numHeads) + ", num_head_channels " +
                      std::to_string(c.numHeadChannels) + ")");
        s.heads = ch / dimHead;
      }
      if (ch % (s.heads))
        return fail("attention at " + std::to_string(ch) + " channels: " + std::to_string(s.heads) +
                    " heads do not divide them");
    }
    s.in = s.out = ch;
    return s;
  };
  auto res = [&](std::int64_t in, std::int64_t out, UNetResBlock::Resample r = UNetResBlock::Resample::None) {
    UNetLayerSpec s;
    s.kind = UNetLayerSpec::Kind::Res;
    s.in = in;
    s.out = out;
    s.resample = r;
    return s;
  };
  const bool hasAttention = !c.attentionResolutions.empty();
  auto attends = [&](std::int64_t ds) {
    return hasAttention &&
           std::find(c.attentionResolutions.begin(), c.attentionResolutions.end(), ds) != c.attentionResolutions.end();
  };

  std::int64_t ch = c.levelChannels(0);
  {
    UNetLayerSpec conv;
    conv.kind = UNetLayerSpec::Kind::InputConv;
    conv.in = c.inChannels;
    conv.out = ch;
    plan.input.push_back({{conv}, 1});
  }
  std::vector<std::int64_t> chans{ch};
  std::int64_t ds = 1;
  for (std::int64_t level = 0; level < c.levels(); ++level) {
    for (std::int64_t r = 0; r < c.numResBlocks; ++r) {
      UNetBlockSpec b;
      b.factor = ds;
      b.layers.push_back(res(ch, c.levelChannels(level)));
      ch = c.levelChannels(level);
      if (attends(ds)) {
        auto a = attention(ch, false);
        if (!a) return fail(a.error());
        b.layers.push_back(*a);
      }
      plan.input.push_back(b);
      chans.push_back(ch);
    }
    if (level != c.levels() - 1) {
      UNetBlockSpec b;
      b.factor = ds;
      if (c.resblockUpdown) {
        b.layers.push_back(res(ch, ch, UNetResBlock::Resample::Down));
      } else {
        UNetLayerSpec d;
        d.kind = UNetLayerSpec::Kind::Down;
        d.in = d.out = ch;
        d.conv = c.convResample;
        b.layers.push_back(d);
      }
      plan.input.push_back(b);
      chans.push_back(ch);
      ds *= 2;
    }
  }
  plan.middle.factor = ds;
  plan.middle.layers.push_back(res(ch, ch));
  {
    auto a = attention(ch, false);
    if (!a) return fail(a.error());
    plan.middle.layers.push_back(*a);
  }
  plan.middle.layers.push_back(res(ch, ch));
  for (std::int64_t level = c.levels() - 1; level >= 0; --level) {
    for (std::int64_t i = 0; i <= c.numResBlocks; ++i) {
      const std::int64_t ich = chans.back();
      chans.pop_back();
      UNetBlockSpec b;
      b.factor = ds;
      b.layers.push_back(res(ch + ich, c.levelChannels(level)));
      ch = c.levelChannels(level);
      if (attends(ds)) {
        auto a = attention(ch, true);
        if (!a) return fail(a.error());
        b.layers.push_back(*a);
      }
      if (level && i == c.numResBlocks) {
        if (c.resblockUpdown) {
          b.layers.push_back(res(ch, ch, UNetResBlock::Resample::Up));
        } else {
          UNetLayerSpec u;
          u.kind = UNetLayerSpec::Kind::Up;
          u.in = u.out = ch;
          u.conv = c.convResample;
          b.layers.push_back(u);
        }
        ds /= 2;
      }
      plan.output.push_back(b);
    }
  }
  plan.outChannelsIn = ch;
  return plan;
}

using UNetShapes = std::vector<std::pair<std::string, std::vector<std::int64_t>>>;

void unetLayerShapes(const UNetConfig& c, const UNetLayerSpec& s, const std::string& p, UNetShapes& out) {
  auto add = [&](const std::string& key, std::vector<std::int64_t> shape) {
    out.push_back({p + key, std::move(shape)});
  };
  switch (s.kind) {
    case UNetLayerSpec::Kind::InputConv:
      add("weight", {s.out, s.in, 3, 3});
      add("bias", {s.out});
      break;
    case UNetLayerSpec::Kind::Res:
      add("in_layers.0.weight", {s.in});
      add("in_layers.0.bias", {s.in});
      add("in_layers.2.weight", {s.out, s.in, 3, 3});
      add("in_layers.2.bias", {s.out});
      add("emb_layers.1.weight", {(c.useScaleShiftNorm ? 2 : 1) * s.out, c.timeEmbedDim()});
      add("emb_layers.1.bias", {(c.useScaleShiftNorm ? 2 : 1) * s.out});
      add("out_layers.0.weight", {s.out});
      add("out_layers.0.bias", {s.out});
      add("out_layers.3.weight", {s.out, s.out, 3, 3});
      add("out_layers.3.bias", {s.out});
      if (s.in != s.out) {
        add("skip_connection.weight", {s.out, s.in, 1, 1});
        add("skip_connection.bias", {s.out});
      }
      break;
    case UNetLayerSpec::Kind::Attention:
      add("norm.weight", {s.in});
      add("norm.bias", {s.in});
      add("qkv.weight", {3 * s.in, s.in, 1});
      add("qkv.bias", {3 * s.in});
      add("proj_out.weight", {s.in, s.in, 1});
      add("proj_out.bias", {s.in});
      break;
    case UNetLayerSpec::Kind::Transformer: {
      const std::int64_t inner = s.heads * s.headDim, ctx = c.contextDim > 0 ? c.contextDim : inner;
      add("norm.weight", {s.in});
      add("norm.bias", {s.in});
      add("proj_in.weight", {inner, s.in, 1, 1});
      add("proj_in.bias", {inner});
      for (std::int64_t d = 0; d < c.transformerDepth; ++d) {
        const std::string b = "transformer_blocks." + std::to_string(d) + ".";
        for (const char* attn : {"attn1", "attn2"}) {
          const std::int64_t kv = std::string(attn) == "attn1" ? inner : ctx;
          add(b + attn + ".to_q.weight", {inner, inner});
          add(b + attn + ".to_k.weight", {inner, kv});
          add(b + attn + ".to_v.weight", {inner, kv});
          add(b + attn + ".to_out.0.weight", {inner, inner});
          add(b + attn + ".to_out.0.bias", {inner});
        }
        add(b + "ff.net.0.proj.weight", {inner * 8, inner});
        add(b + "ff.net.0.proj.bias", {inner * 8});
        add(b + "ff.net.2.weight", {inner, inner * 4});
        add(b + "ff.net.2.bias", {inner});
        for (const char* norm : {"norm1", "norm2", "norm3"}) {
          add(b + norm + ".weight", {inner});
          add(b + norm + ".bias", {inner});
        }
      }
      add("proj_out.weight", {s.in, inner, 1, 1});
      add("proj_out.bias", {s.in});
      break;
    }
    case UNetLayerSpec::Kind::Down:
      if (s.conv) {
        add("op.weight", {s.in, s.in, 3, 3});
        add("op.bias", {s.in});
      }
      break;
    case UNetLayerSpec::Kind::Up:
      if (s.conv) {
        add("conv.weight", {s.in, s.in, 3, 3});
        add("conv.bias", {s.in});
      }
      break;
  }
}

std::string unetGridName(const char* stage, std::int64_t h, std::int64_t w) {
  return std::string(stage) + " " + std::to_string(h) + "×" + std::to_string(w);
}

/// Sums block times and keeps the last activation per stage name, in the order of first
/// appearance, and hands them to the probe at the end of a forward.
class UNetStageRecorder {
public:
  explicit UNetStageRecorder(Probe* probe)
      : m_probe(probe), m_timings(probe && probe->wantsTimings()), m_stats(probe && probe->wantsStats()) {}
  bool active() const { return m_timings || m_stats; }
  void begin() {
    if (m_timings) m_start = std::chrono::steady_clock::now();
  }
  void end(const std::string& stage, const at::Tensor& h) {
    if (!active()) return;
    auto it = std::find_if(m_entries.begin(), m_entries.end(), [&](const Entry& e) { return e.name == stage; });
    if (it == m_entries.end()) it = m_entries.insert(m_entries.end(), Entry{stage, 0.0, {}});
    if (m_timings)
      it->milliseconds += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - m_start).count();
    if (m_stats) it->last = h;
  }
  void finish() {
    for (const auto& e : m_entries) {
      if (m_timings) m_probe->recordTime(e.name, e.milliseconds);
      if (m_stats) m_probe->tap(e.name, e.last);
    }
  }

private:
  struct Entry {
    std::string name;
    double milliseconds;
    at::Tensor last;
  };
  Probe* m_probe;
  bool m_timings, m_stats;
  std::vector<Entry> m_entries;
  std::chrono::steady_clock::time_point m_start;
};

}  // namespace

// ---------------------------------------------------------------------------------
// Config

std::int64_t UNetConfig::levelChannels(std::int64_t level) const {
  return static_cast<std::int64_t>(channelMult.at(static_cast<std::size_t>(level)) *
                                   static_cast<double>(modelChannels));
}

Result<void> UNetConfig::validate() const {
  auto bad = [](const std::string& m) { return fail("U-Net config: " + m); };
  if (channelMult.empty() || channelMult.size() > 12)
    return bad("channel_mult needs 1 to 12 levels, has " + std::to_string(channelMult.size()));
  if (modelChannels < 1) return bad("model_channels must be >= 1");
  for (std::int64_t l = 0; l < levels(); ++l) {
    const std::int64_t ch = levelChannels(l);
    if (ch < normGroups || ch % normGroups)
      return bad("level " + std::to_string(l) + " has " + std::to_string(ch) +
                 " channels (model_channels × channel_mult): GroupNorm's " + std::to_string(normGroups) +
                 " groups (norm_groups) need a positive multiple of " + std::to_string(normGroups));
  }
  if (numHeadChannels == 0) return bad("num_head_channels must be -1 or >= 1");
  if (numHeadChannels == -1 && numHeads < 1) return bad("give num_heads (>= 1) or num_head_channels");
  if (numHeadsUpsample == 0) return bad("num_heads_upsample must be -1 or >= 1");
  for (auto ds : attentionResolutions)
    if (ds < 1 || (ds & (ds - 1)) || ds > sizeMultiple())
      return bad("attention_resolutions holds down-sampling factors 1, 2, 4, … up to " +
                 std::to_string(sizeMultiple()) + " (" + std::to_string(levels()) + " levels), got " +
                 std::to_string(ds));
  if (outChannels > 0 && learnSigma && outChannels != 2 * inChannels)
    return bad("learn_sigma needs out_channels = 2 × in_channels = " + std::to_string(2 * inChannels) + ", got " +
               std::to_string(outChannels));
  if (outChannels > 0 && !learnSigma && outChannels != inChannels)
    return bad("out_channels " + std::to_string(outChannels) + " must equal in_channels " + std::to_string(inChannels) +
               " (or 2 × in_channels with learn_sigma)");
  if (classConditioning == "cross_attention") {
    if (!useSpatialTransformer) return bad("class_conditioning cross_attention needs use_spatial_transformer");
    if (contextDim < 1)
      return bad("class_conditioning cross_attention needs context_dim (the class embedding's width)");
  }
  if (contextDim > 0 && !useSpatialTransformer)
    return bad("context_dim " + std::to_string(contextDim) + " needs use_spatial_transformer (set it to 0 without)");
  if (contextDim > 0 && classConditioning != "cross_attention")
    return bad("context_dim " + std::to_string(contextDim) +
               " needs a context, which only class_conditioning cross_attention (LDM's class embedder) gives; "
               "0 makes the transformers' second attention a self-attention");
  if (imageSize % sizeMultiple())
    return bad("image_size " + std::to_string(imageSize) + " must be a multiple of " + std::to_string(sizeMultiple()) +
               " (2^(levels − 1))");
  if (auto plan = makeUNetPlan(*this); !plan) return bad(plan.error().message());
  return {};
}

const ConfigTable<UNetConfig>& UNetConfig::table() {
  static const ConfigTable<UNetConfig> table = [] {
    ConfigTable<UNetConfig> t;
#define TESSERA_FIELD(type, member, value, key, constraint, doc) t.field(key, &UNetConfig::member, constraint, doc);
#include "models/unet/unet_config.def"
#undef TESSERA_FIELD
    t.accept("preset").check([](const UNetConfig& c) { return c.validate(); });
    return t;
  }();
  return table;
}

nlohmann::json UNetConfig::toJson() const { return table().write(*this); }

Result<UNetConfig> UNetConfig::fromConfig(const Config& config, const std::string& path, const UNetConfig& defaults) {
  return table().read(config, path, defaults);
}

std::vector<std::pair<std::string, std::vector<std::int64_t>>> unetStateShapes(const UNetConfig& c) {
  UNetShapes s;
  auto plan = makeUNetPlan(c);
  if (!plan) return s;
  const std::int64_t ted = c.timeEmbedDim();
  s.push_back({"time_embed.0.weight", {ted, c.modelChannels}});
  s.push_back({"time_embed.0.bias", {ted}});
  s.push_back({"time_embed.2.weight", {ted, ted}});
  s.push_back({"time_embed.2.bias", {ted}});
  if (c.classConditioning == "label_emb") s.push_back({"label_emb.weight", {c.classRows(), ted}});
  if (c.classConditioning == "cross_attention")
    s.push_back({"cond_stage_model.embedding.weight", {c.classRows(), c.contextDim}});
  for (std::size_t i = 0; i < plan->input.size(); ++i)
    for (std::size_t j = 0; j < plan->input[i].layers.size(); ++j)
      unetLayerShapes(c, plan->input[i].layers[j], "input_blocks." + std::to_string(i) + "." + std::to_string(j) + ".",
                      s);
  for (std::size_t j = 0; j < plan->middle.layers.size(); ++j)
    unetLayerShapes(c, plan->middle.layers[j], "middle_block." + std::to_string(j) + ".", s);
  for (std::size_t i = 0; i < plan->output.size(); ++i)
    for (std::size_t j = 0; j < plan->output[i].layers.size(); ++j)
      unetLayerShapes(c, plan->output[i].layers[j],
                      "output_blocks." + std::to_string(i) + "." + std::to_string(j) + ".", s);
  s.push_back({"out.0.weight", {plan->outChannelsIn}});
  s.push_back({"out.0.bias", {plan->outChannelsIn}});
  s.push_back({"out.2.weight", {c.outputChannels(), plan->outChannelsIn, 3, 3}});
  s.push_back({"out.2.bias", {c.outputChannels()}});
  return s;
}

// ---------------------------------------------------------------------------------
// Layers

at::Tensor GroupNorm32Impl::forward(const at::Tensor& x) {
  if (x.scalar_type() == at::kFloat) return GroupNormImpl::forward(x);
  return GroupNormImpl::forward(x.to(at::kFloat)).to(x.scalar_type());
}

namespace {

nn::Conv2d unetConv3(std::int64_t in, std::int64_t out, std::int64_t stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}

at::Tensor unetUpsampleNearest(const at::Tensor& x) {
  return at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2});
}

at::Tensor unetAvgPool(const at::Tensor& x) { return at::avg_pool2d(x, {2, 2}, {2, 2}); }

}  // namespace

UNetResBlock::UNetResBlock(std::int64_t channels, std::int64_t embChannels, double dropout_, std::int64_t outChannels,
                           bool useScaleShiftNorm, Resample resample_, std::int64_t groups)
    : dropout(dropout_), scaleShift(useScaleShiftNorm), resample(resample_) {
  auto in = register_module("in_layers", Slots());
  inNorm = in->set(0, GroupNorm32(channels, 1e-5, groups));
  inConv = in->set(2, unetConv3(channels, outChannels));
  auto emb = register_module("emb_layers", Slots());
  embLinear = emb->set(1, nn::Linear(embChannels, (useScaleShiftNorm ? 2 : 1) * outChannels));
  auto out = register_module("out_layers", Slots());
  outNorm = out->set(0, GroupNorm32(outChannels, 1e-5, groups));
  outConv = out->set(3, unetConv3(outChannels, outChannels));
  if (outChannels != channels)
    skip = register_module("skip_connection", nn::Conv2d(nn::Conv2dOptions(channels, outChannels, 1)));
}

at::Tensor UNetResBlock::forward(const at::Tensor& x_, const at::Tensor& emb, const at::Tensor&, Probe*) {
  at::Tensor x = x_;
  at::Tensor h = at::silu(inNorm->forward(x));
  if (resample == Resample::Up) {
    h = unetUpsampleNearest(h);
    x = unetUpsampleNearest(x);
  } else if (resample == Resample::Down) {
    h = unetAvgPool(h);
    x = unetAvgPool(x);
  }
  h = inConv->forward(h);
  const at::Tensor e = embLinear->forward(at::silu(emb)).to(h.scalar_type()).unsqueeze(-1).unsqueeze(-1);
  if (scaleShift) {
    const auto parts = e.chunk(2, 1);  // scale, shift
    h = outNorm->forward(h) * (1 + parts[0]) + parts[1];
  } else {
    h = outNorm->forward(h + e);
  }
  h = at::dropout(at::silu(h), dropout, is_training());
  h = outConv->forward(h);
  return (skip ? skip->forward(x) : x) + h;
}

UNetAttentionBlock::UNetAttentionBlock(std::int64_t channels, std::int64_t heads_, bool newOrder_, int layer_,
                                       std::int64_t groups)
    : heads(heads_), newOrder(newOrder_), layer(layer_) {
  norm = register_module("norm", GroupNorm32(channels, 1e-5, groups));
  qkv = register_module("qkv", nn::Conv1d(nn::Conv1dOptions(channels, 3 * channels, 1)));
  proj_out = register_module("proj_out", nn::Conv1d(nn::Conv1dOptions(channels, channels, 1)));
}

at::Tensor UNetAttentionBlock::forward(const at::Tensor& x, const at::Tensor&, const at::Tensor&, Probe* probe) {
  const auto N = x.size(0), C = x.size(1), T = x.size(2) * x.size(3);
  const at::Tensor flat = x.reshape({N, C, T});
  const at::Tensor qkvOut = qkv->forward(norm->forward(flat));  // (N, 3C, T)
  const std::int64_t d = C / heads;
  at::Tensor q, k, v;  // (N, heads, d, T)
  if (newOrder) {
    // QKVAttention: q, k, v first, then each split into heads.
    const auto parts = qkvOut.chunk(3, 1);
    q = parts[0].reshape({N, heads, d, T});
    k = parts[1].reshape({N, heads, d, T});
    v = parts[2].reshape({N, heads, d, T});
  } else {
    // QKVAttentionLegacy: heads first, each holding its q, k and v.
    const auto parts = qkvOut.reshape({N, heads, 3 * d, T}).split(d, 2);
    q = parts[0];
    k = parts[1];
    v = parts[2];
  }
  q = q.transpose(2, 3);  // (N, heads, T, d)
  k = k.transpose(2, 3);
  v = v.transpose(2, 3);
  at::Tensor a;
  if (probe && probe->wantsAttention(layer)) {
    const at::Tensor probs = attentionProbabilities(q, k);
    probe->recordAttention(layer, probs);
    a = at::matmul(probs, v);
  } else {
    a = scaledDotProductAttention(q, k, v);  // (N, heads, T, d)
  }
  const at::Tensor h = proj_out->forward(a.transpose(2, 3).reshape({N, C, T}));
  return (flat + h).reshape(x.sizes());
}

CrossAttentionImpl::CrossAttentionImpl(std::int64_t queryDim, std::int64_t contextDim, std::int64_t heads_,
                                       std::int64_t headDim)
    : heads(heads_) {
  const std::int64_t inner = heads * headDim;
  to_q = register_module("to_q", nn::Linear(nn::LinearOptions(queryDim, inner).bias(false)));
  to_k = register_module("to_k", nn::Linear(nn::LinearOptions(contextDim, inner).bias(false)));
  to_v = register_module("to_v", nn::Linear(nn::LinearOptions(contextDim, inner).bias(false)));
  auto out = register_module("to_out", Slots());
  to_out = out->set(0, nn::Linear(inner, queryDim));
}

at::Tensor CrossAttentionImpl::forward(const at::Tensor& x, const at::Tensor& context, Probe* probe, int layer) {
  const at::Tensor& c = context.defined() ? context : x;
  const auto N = x.size(0), T = x.size(1), S = c.size(1);
  const at::Tensor q0 = to_q->forward(x);
  const std::int64_t d = q0.size(2) / heads;
  const at::Tensor q = q0.reshape({N, T, heads, d}).transpose(1, 2);  // (N, heads, T, d)
  const at::Tensor k = to_k->forward(c).reshape({N, S, heads, d}).transpose(1, 2);
  const at::Tensor v = to_v->forward(c).reshape({N, S, heads, d}).transpose(1, 2);
  at::Tensor out;
  if (probe && layer >= 0 && probe->wantsAttention(layer)) {
    const at::Tensor probs = attentionProbabilities(q, k);
    probe->recordAttention(layer, probs);
    out = at::matmul(probs, v);
  } else {
    out = scaledDotProductAttention(q, k, v);
  }
  return to_out->forward(out.transpose(1, 2).reshape({N, T, heads * d}));
}

UNetTransformerBlockImpl::UNetTransformerBlockImpl(std::int64_t dim, std::int64_t heads, std::int64_t headDim,
                                                   std::int64_t contextDim) {
  attn1 = register_module("attn1", CrossAttention(dim, dim, heads, headDim));
  auto ff = register_module("ff", Slots());
  auto net = ff->register_module("net", Slots());  // ff.net
  auto geglu = net->set(0, Slots());               // ff.net.0 (GEGLU)
  ffIn = geglu->register_module("proj", nn::Linear(dim, dim * 8));
  ffOut = net->set(2, nn::Linear(dim * 4, dim));
  attn2 = register_module("attn2", CrossAttention(dim, contextDim > 0 ? contextDim : dim, heads, headDim));
  norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({dim})));
  norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({dim})));
  norm3 = register_module("norm3", nn::LayerNorm(nn::LayerNormOptions({dim})));
}

at::Tensor UNetTransformerBlockImpl::forward(const at::Tensor& x_, const at::Tensor& context, Probe* probe, int layer) {
  at::Tensor x = attn1->forward(norm1->forward(x_), at::Tensor(), probe, layer) + x_;
  x = attn2->forward(norm2->forward(x), context, nullptr, -1) + x;
  const auto parts = ffIn->forward(norm3->forward(x)).chunk(2, -1);  // GEGLU: value, gate
  return ffOut->forward(parts[0] * at::gelu(parts[1])) + x;
}

UNetSpatialTransformer::UNetSpatialTransformer(std::int64_t channels, std::int64_t heads, std::int64_t headDim,
                                               std::int64_t depth, std::int64_t contextDim, int firstLayer_,
                                               std::int64_t groups)
    : firstLayer(firstLayer_) {
  const std::int64_t inner = heads * headDim;
  norm = register_module("norm", nn::GroupNorm(nn::GroupNormOptions(groups, channels).eps(1e-6)));
  proj_in = register_module("proj_in", nn::Conv2d(nn::Conv2dOptions(channels, inner, 1)));
  transformer_blocks = register_module("transformer_blocks", nn::ModuleList());
  for (std::int64_t d = 0; d < depth; ++d)
    transformer_blocks->push_back(UNetTransformerBlock(inner, heads, headDim, contextDim));
  proj_out = register_module("proj_out", nn::Conv2d(nn::Conv2dOptions(inner, channels, 1)));
}

at::Tensor UNetSpatialTransformer::forward(const at::Tensor& x, const at::Tensor&, const at::Tensor& context,
                                           Probe* probe) {
  const auto N = x.size(0), H = x.size(2), W = x.size(3);
  at::Tensor h = proj_in->forward(norm->forward(x));
  const auto inner = h.size(1);
  h = h.flatten(2).transpose(1, 2);  // (N, H·W, inner)
  for (std::size_t d = 0; d < transformer_blocks->size(); ++d)
    h = transformer_blocks[d]->as<UNetTransformerBlockImpl>()->forward(h, context, probe,
                                                                       firstLayer + static_cast<int>(d));
  h = h.transpose(1, 2).reshape({N, inner, H, W});
  return proj_out->forward(h) + x;
}

UNetDownsample::UNetDownsample(std::int64_t channels, bool useConv) {
  if (useConv) op = register_module("op", unetConv3(channels, channels, 2));
}

at::Tensor UNetDownsample::forward(const at::Tensor& x, const at::Tensor&, const at::Tensor&, Probe*) {
  return op ? op->forward(x) : unetAvgPool(x);
}

UNetUpsample::UNetUpsample(std::int64_t channels, bool useConv) {
  if (useConv) conv = register_module("conv", unetConv3(channels, channels));
}

at::Tensor UNetUpsample::forward(const at::Tensor& x, const at::Tensor&, const at::Tensor&, Probe*) {
  const at::Tensor up = unetUpsampleNearest(x);
  return conv ? conv->forward(up) : up;
}

UNetInputConv::UNetInputConv(std::int64_t in, std::int64_t out) : conv(unetConv3(in, out)) {}

at::Tensor UNetInputConv::forward(const at::Tensor& x, const at::Tensor&, const at::Tensor&, Probe*) {
  return conv->forward(x);
}

void UNetBlockImpl::add(std::shared_ptr<UNetLayer> layer) {
  if (auto* input = dynamic_cast<UNetInputConv*>(layer.get())) {
    // TimestepEmbedSequential(conv): the convolution itself is child "0".
    register_module(std::to_string(layers.size()), input->conv);
  } else {
    register_module(std::to_string(layers.size()), layer);
  }
  layers.push_back(std::move(layer));
}

at::Tensor UNetBlockImpl::forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& context, Probe* probe) {
  at::Tensor h = x;
  for (const auto& layer : layers) h = layer->forward(h, emb, context, probe);
  return h;
}

ClassEmbedderImpl::ClassEmbedderImpl(std::int64_t rows, std::int64_t dim) {
  embedding = register_module("embedding", nn::Embedding(rows, dim));
}

at::Tensor ClassEmbedderImpl::forward(const at::Tensor& labels) { return embedding->forward(labels.unsqueeze(1)); }

// ---------------------------------------------------------------------------------
// The network

UNetImpl::UNetImpl(UNetConfig config, bool initialize) : m_config(std::move(config)) {
  const auto& c = m_config;
  auto plan = makeUNetPlan(c);
  TORCH_CHECK(plan, "unet: ", plan ? std::string() : plan.error().message());
  const std::int64_t ted = c.timeEmbedDim();
  auto timeEmbed = register_module("time_embed", Slots());
  timeEmbed0 = timeEmbed->set(0, nn::Linear(c.modelChannels, ted));
  timeEmbed2 = timeEmbed->set(2, nn::Linear(ted, ted));
  if (c.classConditioning == "label_emb") label_emb = register_module("label_emb", nn::Embedding(c.classRows(), ted));
  if (c.classConditioning == "cross_attention")
    cond_stage_model = register_module("cond_stage_model", ClassEmbedder(c.classRows(), c.contextDim));

  int nextLayer = 0;
  auto build = [&](const UNetBlockSpec& spec, const char* stage) {
    UNetBlock block;
    for (const auto& s : spec.layers) {
      switch (s.kind) {
        case UNetLayerSpec::Kind::InputConv:
          block->add(std::make_shared<UNetInputConv>(s.in, s.out));
          break;
        case UNetLayerSpec::Kind::Res:
          block->add(std::make_shared<UNetResBlock>(s.in, ted, c.dropout, s.out, c.useScaleShiftNorm, s.resample,
                                                    c.normGroups));
          break;
        case UNetLayerSpec::Kind::Attention:
          m_sites.push_back({"", stage, spec.factor, s.heads});
          block->add(
              std::make_shared<UNetAttentionBlock>(s.in, s.heads, c.useNewAttentionOrder, nextLayer++, c.normGroups));
          break;
        case UNetLayerSpec::Kind::Transformer:
          for (std::int64_t d = 0; d < c.transformerDepth; ++d) m_sites.push_back({"", stage, spec.factor, s.heads});
          block->add(std::make_shared<UNetSpatialTransformer>(s.in, s.heads, s.headDim, c.transformerDepth,
                                                              c.contextDim, nextLayer, c.normGroups));
          nextLayer += static_cast<int>(c.transformerDepth);
          break;
        case UNetLayerSpec::Kind::Down:
          block->add(std::make_shared<UNetDownsample>(s.in, s.conv));
          break;
        case UNetLayerSpec::Kind::Up:
          block->add(std::make_shared<UNetUpsample>(s.in, s.conv));
          break;
      }
    }
    return block;
  };
  auto siteNames = [&](std::size_t from, const std::string& block) {
    for (std::size_t i = from; i < m_sites.size(); ++i) m_sites[i].block = block;
  };
  input_blocks = register_module("input_blocks", nn::ModuleList());
  for (std::size_t i = 0; i < plan->input.size(); ++i) {
    const std::size_t from = m_sites.size();
    input_blocks->push_back(build(plan->input[i], "input"));
    siteNames(from, "input_blocks." + std::to_string(i));
    m_inputFactor.push_back(plan->input[i].factor);
  }
  {
    const std::size_t from = m_sites.size();
    middle_block = register_module("middle_block", build(plan->middle, "middle"));
    siteNames(from, "middle_block");
  }
  output_blocks = register_module("output_blocks", nn::ModuleList());
  for (std::size_t i = 0; i < plan->output.size(); ++i) {
    const std::size_t from = m_sites.size();
    output_blocks->push_back(build(plan->output[i], "output"));
    siteNames(from, "output_blocks." + std::to_string(i));
    m_outputFactor.push_back(plan->output[i].factor);
  }
  auto out = register_module("out", Slots());
  outNorm = out->set(0, GroupNorm32(plan->outChannelsIn, 1e-5, m_config.normGroups));
  outConv = out->set(2, unetConv3(plan->outChannelsIn, c.outputChannels()));
  if (initialize) initializeWeights();
}

void UNetImpl::initializeWeights() {
  // The modules were built with PyTorch's default initialisation (LibTorch uses the same
  // rules); the reference then zeroes the last layer of every residual branch.
  torch::NoGradGuard noGrad;
  auto zero = [](nn::Module& m) {
    for (auto& p : m.parameters()) p.zero_();
  };
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* res = dynamic_cast<UNetResBlock*>(module.get())) zero(*res->outConv);
    if (auto* attn = dynamic_cast<UNetAttentionBlock*>(module.get())) zero(*attn->proj_out);
    if (auto* st = dynamic_cast<UNetSpatialTransformer*>(module.get())) zero(*st->proj_out);
  }
  zero(*outConv);
}

at::Tensor UNetImpl::dropLabels(const at::Tensor& y) {
  if (!is_training() || !m_config.hasNullClass()) return y;
  const at::Tensor drop = at::rand({y.size(0)}, y.options().dtype(at::kFloat)) < m_config.classDropoutProb;
  return at::where(drop, at::full_like(y, m_config.numClasses), y);
}

at::Tensor UNetImpl::classContext(const at::Tensor& y) {
  TORCH_CHECK(cond_stage_model, "unet: this configuration has no class embedder (class_conditioning is ",
              m_config.classConditioning, ")");
  return cond_stage_model->forward(y);
}

at::Tensor UNetImpl::forwardTensors(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y, Probe* probe) {
  const auto& c = m_config;
  TORCH_CHECK(y.dim() == 1 && y.size(0) == x.size(0), "unet: expected y of shape (", x.size(0), "), got ", y.sizes());
  at::Tensor labels = y.to(at::kLong);
  if (c.classConditioning != "none") checkClassLabels(labels, c.numClasses, c.hasNullClass(), "unet");
  labels = dropLabels(labels);
  const at::Tensor context = c.classConditioning == "cross_attention" ? classContext(labels) : at::Tensor();
  return forwardWithContext(x, t, context, labels, probe);
}

at::Tensor UNetImpl::forwardWithContext(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                                        const at::Tensor& y, Probe* probe) {
  const auto& c = m_config;
  TORCH_CHECK(x.dim() == 4, "unet: expected x of shape (N, C, H, W), got ", x.sizes());
  TORCH_CHECK(x.size(1) == c.inChannels, "unet: expected ", c.inChannels, " input channels, got ", x.size(1));
  const std::int64_t m = c.sizeMultiple(), H = x.size(2), W = x.size(3);
  if (H < 1 || W < 1 || H % m || W % m) {
    auto near = [m](std::int64_t v) {
      const std::int64_t lo = std::max<std::int64_t>(m, v / m * m), hi = (v + m - 1) / m * m;
      return lo == hi ? std::to_string(lo) : std::to_string(lo) + " or " + std::to_string(hi);
    };
    TORCH_CHECK(false, "unet: height and width must be multiples of ", m, " (", c.levels() - 1,
                " down-samplings by 2), got ", H, "x", W, "; the nearest valid sizes are ", near(H), " (height) and ",
                near(W), " (width)");
  }
  TORCH_CHECK(t.dim() == 1 && t.size(0) == x.size(0), "unet: expected t of shape (", x.size(0), "), got ", t.sizes());
  if (context.defined())
    TORCH_CHECK(context.dim() == 3 && context.size(0) == x.size(0) && context.size(2) == c.contextDim,
                "unet: expected a context of shape (", x.size(0), ", S, ", c.contextDim, "), got ", context.sizes());

  at::Tensor emb = timeEmbed2->forward(at::silu(timeEmbed0->forward(timestepEmbedding(t, c.modelChannels))));
  if (label_emb) emb = emb + label_emb->forward(y.to(at::kLong));
  const at::Tensor ctx = context.defined() ? context.to(x.scalar_type()) : context;

  UNetStageRecorder stages(probe);
  std::vector<at::Tensor> hs;
  at::Tensor h = x;
  for (std::size_t i = 0; i < input_blocks->size(); ++i) {
    const std::int64_t f = m_inputFactor[i];
    stages.begin();
    h = input_blocks[i]->as<UNetBlockImpl>()->forward(h, emb, ctx, probe);
    if (stages.active()) stages.end(unetGridName("input", H / f, W / f), h);
    hs.push_back(h);
  }
  {
    const std::int64_t f = c.sizeMultiple();
    stages.begin();
    h = middle_block->forward(h, emb, ctx, probe);
    if (stages.active()) stages.end(unetGridName("middle", H / f, W / f), h);
  }
  for (std::size_t i = 0; i < output_blocks->size(); ++i) {
    const std::int64_t f = m_outputFactor[i];
    stages.begin();
    h = at::cat({h, hs.back()}, 1);
    hs.pop_back();
    h = output_blocks[i]->as<UNetBlockImpl>()->forward(h, emb, ctx, probe);
    if (stages.active()) stages.end(unetGridName("output", H / f, W / f), h);
  }
  stages.begin();
  h = outConv->forward(at::silu(outNorm->forward(h)));
  if (stages.active()) stages.end("out", h);
  stages.finish();
  return h;
}

BackboneOutput UNetImpl::forward(const BackboneInput& input) {
  return {forwardTensors(input.x, input.t, input.y, input.probe), std::nullopt};
}

std::optional<double> UNetImpl::forwardFlops(std::int64_t height, std::int64_t width) const {
  const auto& c = m_config;
  auto plan = makeUNetPlan(c);
  if (!plan) return std::nullopt;
  double flops = 2.0 * (static_cast<double>(c.modelChannels) * c.timeEmbedDim() +
                        static_cast<double>(c.timeEmbedDim()) * c.timeEmbedDim());  // time embedding MLP
  auto conv = [](double cin, double cout, double k, double cells) { return 2.0 * cin * cout * k * k * cells; };
  auto layerFlops = [&](const UNetLayerSpec& s, std::int64_t factor) {
    const double cells = static_cast<double>(height / factor) * static_cast<double>(width / factor);
    switch (s.kind) {
      case UNetLayerSpec::Kind::InputConv:
        return conv(static_cast<double>(s.in), static_cast<double>(s.out), 3, cells);
      case UNetLayerSpec::Kind::Res: {
        const double outCells = s.resample == UNetResBlock::Resample::Up     ? cells * 4
                                : s.resample == UNetResBlock::Resample::Down ? cells / 4
                                                                             : cells;
        double f = conv(static_cast<double>(s.in), static_cast<double>(s.out), 3, outCells) +
                   conv(static_cast<double>(s.out), static_cast<double>(s.out), 3, outCells) +
                   2.0 * c.timeEmbedDim() * (c.useScaleShiftNorm ? 2 : 1) * static_cast<double>(s.out);
        if (s.in != s.out) f += conv(static_cast<double>(s.in), static_cast<double>(s.out), 1, outCells);
        return f;
      }
      case UNetLayerSpec::Kind::Attention: {
        const double C = static_cast<double>(s.in);
        return 2.0 * cells * C * 4 * C + 2.0 * 2.0 * cells * cells * C;  // qkv + proj, QKᵀ and ·V
      }
      case UNetLayerSpec::Kind::Transformer: {
        const double C = static_cast<double>(s.in), D = static_cast<double>(s.heads * s.headDim);
        const double ctx = c.contextDim > 0 ? static_cast<double>(c.contextDim) : D;
        const double tokens = c.contextDim > 0 ? 1.0 : cells;                    // the class embedder's single token
        double block = 2.0 * cells * D * 4 * D + 2.0 * 2.0 * cells * cells * D;  // self-attention
        block += 2.0 * cells * D * 2 * D + 2.0 * tokens * ctx * 2 * D + 2.0 * 2.0 * cells * tokens * D;  // cross
        block += 2.0 * cells * (D * 8 * D + 4 * D * D);  // GEGLU feed-forward
        return 2.0 * cells * C * D * 2 + static_cast<double>(c.transformerDepth) * block;
      }
      case UNetLayerSpec::Kind::Down:
        return s.conv ? conv(static_cast<double>(s.in), static_cast<double>(s.in), 3, cells / 4) : cells * s.in;
      case UNetLayerSpec::Kind::Up:
        return s.conv ? conv(static_cast<double>(s.in), static_cast<double>(s.in), 3, cells * 4) : 0.0;
    }
    return 0.0;
  };
  for (const auto& b : plan->input)
    for (const auto& s : b.layers) flops += layerFlops(s, b.factor);
  for (const auto& s : plan->middle.layers) flops += layerFlops(s, plan->middle.factor);
  for (const auto& b : plan->output)
    for (const auto& s : b.layers) flops += layerFlops(s, b.factor);
  flops += conv(static_cast<double>(plan->outChannelsIn), static_cast<double>(c.outputChannels()), 3,
                static_cast<double>(height) * static_cast<double>(width));
  return flops;
}

std::optional<double> UNetImpl::activationValues(std::int64_t height, std::int64_t width) const {
  auto plan = makeUNetPlan(m_config);
  if (!plan) return std::nullopt;
  auto cells = [&](std::int64_t factor) {
    return static_cast<double>(height / factor) * static_cast<double>(width / factor);
  };
  // Every input block's output is kept until its output block takes it (the skips); the
  // layer working on the most values needs a few more tensors of its size at once (its
  // input with the skip concatenated, the normalised input, the convolution's output, the
  // residual sum): six, counted on its larger side.
  double skips = 0, work = 0;
  for (const auto& b : plan->input) {
    std::int64_t channels = 0, outFactor = b.factor;
    for (const auto& s : b.layers) {
      const bool res = s.kind == UNetLayerSpec::Kind::Res || s.kind == UNetLayerSpec::Kind::InputConv;
      channels = res ? s.out : s.in;
      if (s.kind == UNetLayerSpec::Kind::Down || s.resample == UNetResBlock::Resample::Down) outFactor = b.factor * 2;
      work = std::max(work, 6.0 * static_cast<double>(std::max(s.in, s.out)) * cells(b.factor));
    }
    skips += static_cast<double>(channels) * cells(outFactor);
  }
  auto working = [&](const UNetBlockSpec& b) {
    for (const auto& s : b.layers) {
      const bool up = s.kind == UNetLayerSpec::Kind::Up || s.resample == UNetResBlock::Resample::Up;
      const double grid = up && b.factor > 1 ? cells(b.factor / 2) : cells(b.factor);
      work = std::max(work, 6.0 * static_cast<double>(std::max(s.in, s.out)) * grid);
    }
  };
  working(plan->middle);
  for (const auto& b : plan->output) working(b);
  return skips + work;
}

std::vector<AttentionLayerInfo> UNetImpl::attentionLayers(std::int64_t height, std::int64_t width) const {
  std::vector<AttentionLayerInfo> out;
  for (const auto& s : m_sites) {
    AttentionLayerInfo info;
    info.gridH = height / s.factor;
    info.gridW = width / s.factor;
    info.heads = s.heads;
    info.name = unetGridName(s.stage.c_str(), info.gridH, info.gridW) + " (" + s.block + ")";
    out.push_back(std::move(info));
  }
  return out;
}

Capabilities UNetImpl::capabilities() const {
  Capabilities caps;
  caps.fixedGrid = false;
  caps.anyGrid = true;
  caps.learnedSigma = m_config.learnSigma;
  caps.prediction = m_config.prediction;
  caps.inChannels = m_config.inChannels;
  caps.sizeMultiple = m_config.sizeMultiple();
  caps.trainedHeight = caps.trainedWidth = m_config.imageSize;
  caps.numClasses = m_config.numClasses;
  caps.nullClass = m_config.hasNullClass();
  return caps;
}

}  // namespace tessera
