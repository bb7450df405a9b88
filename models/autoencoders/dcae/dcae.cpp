// SPDX-License-Identifier: Apache-2.0
#include "models/autoencoders/dcae/dcae.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace tessera {

namespace {

using torch::nn::Module;

enum class DcAct { None, Relu, Silu };

DcAct dcAct(const std::string& name) {
  if (name == "relu") return DcAct::Relu;
  if (name == "silu") return DcAct::Silu;
  return DcAct::None;
}

at::Tensor applyAct(const at::Tensor& x, DcAct act) {
  switch (act) {
    case DcAct::Relu:
      return at::relu(x);
    case DcAct::Silu:
      return at::silu(x);
    case DcAct::None:
      break;
  }
  return x;
}

/// trms2d (weight, bias) or bn2d (weight, bias, running statistics; evaluation mode only).
struct DcNormImpl : Module {
  bool batch = false;
  at::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  DcNormImpl(const std::string& kind, std::int64_t channels) : batch(kind == "bn2d") {
    weight = register_parameter("weight", at::ones({channels}));
    bias = register_parameter("bias", at::zeros({channels}));
    if (batch) {
      running_mean = register_buffer("running_mean", at::zeros({channels}));
      running_var = register_buffer("running_var", at::ones({channels}));
      num_batches_tracked = register_buffer("num_batches_tracked", at::zeros({}, at::kLong));
    }
  }
  at::Tensor forward(const at::Tensor& x) {
    if (!batch) return dcRmsNorm2d(x, weight, bias);
    return at::batch_norm(x, weight, bias, running_mean, running_var, /*training=*/false, 0.1, 1e-5,
                          /*cudnn_enabled=*/true);
  }
};
TORCH_MODULE(DcNorm);

/// The official ConvLayer: conv ("conv", padding k//2), then norm ("norm") and act when given.
struct DcConvLayerImpl : Module {
  torch::nn::Conv2d conv{nullptr};
  DcNorm norm{nullptr};
  DcAct act = DcAct::None;
  DcConvLayerImpl(std::int64_t in, std::int64_t out, std::int64_t kernel, bool bias, const std::string& normKind = "",
                  const std::string& actKind = "", std::int64_t stride = 1, std::int64_t groups = 1)
      : act(dcAct(actKind)) {
    conv = register_module(
        "conv",
        torch::nn::Conv2d(
            torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).groups(groups).bias(bias)));
    if (!normKind.empty()) norm = register_module("norm", DcNorm(normKind, out));
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h = conv(x);
    if (!norm.is_empty()) h = norm(h);
    return applyAct(h, act);
  }
};
TORCH_MODULE(DcConvLayer);

/// ResidualBlock(ResBlock, identity): x + norm(conv2(act(conv1(x)))), keys main.conv1/conv2.
struct DcResBlockImpl : Module {
  DcConvLayer conv1{nullptr}, conv2{nullptr};
  DcResBlockImpl(std::int64_t width, const DcAeStage& s) {
    auto main = register_module("main", std::make_shared<Module>());
    conv1 = main->register_module("conv1", DcConvLayer(width, width, 3, true, "", s.act));
    conv2 = main->register_module("conv2", DcConvLayer(width, width, 3, false, s.norm, ""));
  }
  at::Tensor forward(const at::Tensor& x) { return x + conv2(conv1(x)); }
};
TORCH_MODULE(DcResBlock);

/// EfficientViTBlock: x += LiteMLA(x) (context_module.main), then x += GLUMBConv(x)
/// (local_module.main).
struct DcEvitBlockImpl : Module {
  std::int64_t dim, heads, total;
  DcConvLayer qkv{nullptr}, proj{nullptr};
  std::vector<std::pair<torch::nn::Conv2d, torch::nn::Conv2d>> aggreg;
  DcConvLayer inverted{nullptr}, depth{nullptr}, point{nullptr};
  DcAct gateAct;
  DcEvitBlockImpl(std::int64_t width, const DcAeStage& s, std::int64_t headDim)
      : dim(headDim), heads(width / headDim), total(width / headDim * headDim), gateAct(dcAct(s.act)) {
    auto context = register_module("context_module", std::make_shared<Module>());
    auto mla = context->register_module("main", std::make_shared<Module>());
    qkv = mla->register_module("qkv", DcConvLayer(width, 3 * total, 1, false));
    auto list = mla->register_module("aggreg", torch::nn::ModuleList());
    std::vector<std::int64_t> scales;
    if (s.block == "EViTS5_GLU") scales.push_back(5);
    for (std::int64_t k : scales) {
      auto seq = std::make_shared<Module>();
      auto dw = seq->register_module(
          "0", torch::nn::Conv2d(
                   torch::nn::Conv2dOptions(3 * total, 3 * total, k).padding(k / 2).groups(3 * total).bias(false)));
      auto pw = seq->register_module(
          "1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3 * total, 3 * total, 1).groups(3 * heads).bias(false)));
      list->push_back(seq);
      aggreg.emplace_back(dw, pw);
    }
    proj = mla->register_module(
        "proj", DcConvLayer(total * static_cast<std::int64_t>(1 + scales.size()), width, 1, false, s.norm, ""));
    auto local = register_module("local_module", std::make_shared<Module>());
    auto glu = local->register_module("main", std::make_shared<Module>());
    const std::int64_t mid = 4 * width;  // expand_ratio 4
    inverted = glu->register_module("inverted_conv", DcConvLayer(width, 2 * mid, 1, true, "", s.act));
    depth = glu->register_module("depth_conv", DcConvLayer(2 * mid, 2 * mid, 3, true, "", "", 1, 2 * mid));
    point = glu->register_module("point_conv", DcConvLayer(mid, width, 1, false, s.norm, ""));
  }
  at::Tensor forward(at::Tensor x) {
    const at::Tensor q = qkv(x);
    std::vector<at::Tensor> parts{q};
    for (auto& [dw, pw] : aggreg) parts.push_back(pw(dw(q)));
    const at::Tensor all = parts.size() == 1 ? q : at::cat(parts, 1);
    const bool quadratic = all.size(2) * all.size(3) <= dim;
    x = x + proj(dcReluLinearAttention(all, dim, quadratic));
    const at::Tensor u = depth(inverted(x));
    auto halves = u.chunk(2, 1);
    return x + point(halves[0] * applyAct(halves[1], gateAct));
  }
};
TORCH_MODULE(DcEvitBlock);

/// A change of resolution in a stage ("main" holding the convolution) with the
/// parameter-free shortcut around it.
struct DcResampleImpl : Module {
  bool down, shuffle, withShortcut;
  std::int64_t out;
  DcConvLayer conv{nullptr};
  /// Keys: a stride-2 Conv is itself a ConvLayer ("conv.*"); the other three hold one
  /// ("conv.conv.*"). With the shortcut, both sit under "main" (ResidualBlock).
  DcResampleImpl(bool isDown, const std::string& type, std::int64_t in, std::int64_t outChannels, bool shortcut)
      : down(isDown),
        shuffle(type == "ConvPixelUnshuffle" || type == "ConvPixelShuffle"),
        withShortcut(shortcut),
        out(outChannels) {
    const bool strided = down && !shuffle;
    const std::int64_t convOut = !shuffle ? outChannels : down ? outChannels / 4 : outChannels * 4;
    conv = DcConvLayer(in, convOut, 3, true, "", "", strided ? 2 : 1);
    if (shortcut && strided) {
      register_module("main", conv);
    } else if (shortcut) {
      register_module("main", std::make_shared<Module>())->register_module("conv", conv);
    } else if (strided) {
      register_module("conv", conv->conv);
    } else {
      register_module("conv", conv);
    }
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h;
    if (down)
      h = shuffle ? at::pixel_unshuffle(conv(x), 2) : conv(x);
    else
      h = shuffle ? at::pixel_shuffle(conv(x), 2) : conv(at::upsample_nearest2d(x, {2 * x.size(2), 2 * x.size(3)}));
    if (!withShortcut) return h;
    return h + (down ? dcAverageShortcut(x, out, 2) : dcDuplicateShortcut(x, out, 2));
  }
};
TORCH_MODULE(DcResample);

at::Tensor runOps(const torch::nn::ModuleList& ops, at::Tensor h) {
  for (const auto& op : *ops) {
    if (auto* r = op->as<DcResBlockImpl>())
      h = r->forward(h);
    else if (auto* e = op->as<DcEvitBlockImpl>())
      h = e->forward(h);
    else
      h = op->as<DcResampleImpl>()->forward(h);
  }
  return h;
}

/// A stage's blocks in op_list, appended to `ops`.
void addBlocks(torch::nn::ModuleList& ops, const DcAeStage& s, std::int64_t headDim) {
  for (std::int64_t j = 0; j < s.depth; ++j) {
    if (s.block == "ResBlock")
      ops->push_back(DcResBlock(s.width, s));
    else
      ops->push_back(DcEvitBlock(s.width, s, headDim));
  }
}

torch::nn::ModuleList stageOps(torch::nn::ModuleList& stages) {
  auto stage = std::make_shared<Module>();
  auto ops = stage->register_module("op_list", torch::nn::ModuleList());
  stages->push_back(stage);
  return ops;
}

}  // namespace

// --- functions -------------------------------------------------------------------------

at::Tensor dcAverageShortcut(const at::Tensor& x, std::int64_t outChannels, std::int64_t factor) {
  const at::Tensor u = factor == 1 ? x : at::pixel_unshuffle(x, factor);
  const std::int64_t group = u.size(1) / outChannels;
  return u.reshape({u.size(0), outChannels, group, u.size(2), u.size(3)}).mean(2);
}

at::Tensor dcDuplicateShortcut(const at::Tensor& x, std::int64_t outChannels, std::int64_t factor) {
  const std::int64_t repeats = outChannels * factor * factor / x.size(1);
  const at::Tensor r = x.repeat_interleave(repeats, 1);
  return factor == 1 ? r : at::pixel_shuffle(r, factor);
}

at::Tensor dcRmsNorm2d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor rrms = at::rsqrt(xf.pow(2).mean(1, true) + eps);
  const at::Tensor y = xf * rrms * weight.to(at::kFloat).view({1, -1, 1, 1}) + bias.to(at::kFloat).view({1, -1, 1, 1});
  return y.to(x.scalar_type());
}

at::Tensor dcReluLinearAttention(const at::Tensor& qkv, std::int64_t dim, bool quadratic) {
  const std::int64_t b = qkv.size(0), h = qkv.size(2), w = qkv.size(3);
  const at::Tensor t = qkv.to(at::kFloat).reshape({b, -1, 3 * dim, h * w});
  const at::Tensor q = at::relu(t.narrow(2, 0, dim));
  const at::Tensor k = at::relu(t.narrow(2, dim, dim));
  const at::Tensor v = t.narrow(2, 2 * dim, dim);
  constexpr double eps = 1e-15;
  at::Tensor out;
  if (quadratic) {
    at::Tensor map = at::matmul(k.transpose(-1, -2), q);  // (b, g, n, n): keys × queries
    map = map / (map.sum(2, true) + eps);
    out = at::matmul(v, map);
  } else {
    // v with a row of ones: the last row of (v'kᵀ)q is the normaliser Σ_m k_m·q_n.
    const at::Tensor vp = at::constant_pad_nd(v, {0, 0, 0, 1}, 1.0);
    const at::Tensor o = at::matmul(at::matmul(vp, k.transpose(-1, -2)), q);
    out = o.narrow(2, 0, dim) / (o.narrow(2, dim, 1) + eps);
  }
  return out.reshape({b, -1, h, w}).to(qkv.scalar_type());
}

// --- configuration -----------------------------------------------------------------------

namespace {

bool oneOf(const std::string& v, std::initializer_list<const char*> options) {
  return std::any_of(options.begin(), options.end(), [&](const char* o) { return v == o; });
}

Result<void> validateStages(const std::vector<DcAeStage>& stages, const char* side, std::int64_t headDim) {
  for (std::size_t i = 0; i < stages.size(); ++i) {
    const DcAeStage& s = stages[i];
    const std::string where = std::string(side) + " stage " + std::to_string(i);
    if (s.width < 1 || s.width > 16384)
      return fail(where + ": width " + std::to_string(s.width) + " (expected 1-16384)");
    if (s.depth < (i == 0 ? 0 : 1) || s.depth > 64)
      return fail(where + ": depth " + std::to_string(s.depth) + " (expected " + (i == 0 ? "0" : "1") +
                  "-64: only the first stage may be empty)");
    if (!oneOf(s.block, {"ResBlock", "EViT_GLU", "EViTS5_GLU"}))
      return fail(where + ": block_type '" + s.block + "' (expected ResBlock, EViT_GLU or EViTS5_GLU)");
    if (!oneOf(s.norm, {"trms2d", "bn2d"})) return fail(where + ": norm '" + s.norm + "' (expected trms2d or bn2d)");
    if (!oneOf(s.act, {"silu", "relu"})) return fail(where + ": act '" + s.act + "' (expected silu or relu)");
    if (s.block != "ResBlock" && s.depth > 0 && s.width < headDim)
      return fail(where + ": an EfficientViT stage of width " + std::to_string(s.width) +
                  " is narrower than head_dim " + std::to_string(headDim));
  }
  return {};
}

}  // namespace

double DcAeConfig::minimumWeights() const {
  double total = 0;
  for (const auto* side : {&encoder, &decoder})
    for (const auto& s : *side)
      total += static_cast<double>(s.depth) * 10.0 * static_cast<double>(s.width) * static_cast<double>(s.width);
  return total;
}

Result<void> DcAeConfig::validate() const {
  if (inChannels < 1 || inChannels > 64) return fail("in_channels must be 1-64");
  if (latentChannels < 1 || latentChannels > 4096) return fail("latent_channels must be 1-4096");
  if (headDim < 1 || headDim > 1024) return fail("head_dim must be 1-1024");
  if (encoder.empty() || encoder.size() > 10)
    return fail("the encoder needs 1-10 stages, has " + std::to_string(encoder.size()));
  if (decoder.size() != encoder.size())
    return fail("the decoder has " + std::to_string(decoder.size()) + " stages and the encoder " +
                std::to_string(encoder.size()) + " (expected the same number)");
  if (auto ok = validateStages(encoder, "encoder", headDim); !ok) return ok;
  if (auto ok = validateStages(decoder, "decoder", headDim); !ok) return ok;
  if (!oneOf(downsample, {"Conv", "ConvPixelUnshuffle"}))
    return fail("downsample_block_type '" + downsample + "' (expected Conv or ConvPixelUnshuffle)");
  if (!oneOf(upsample, {"InterpolateConv", "ConvPixelShuffle"}))
    return fail("upsample_block_type '" + upsample + "' (expected InterpolateConv or ConvPixelShuffle)");
  if (!oneOf(outNorm, {"trms2d", "bn2d"})) return fail("decoder out_norm '" + outNorm + "' (expected trms2d or bn2d)");
  if (!oneOf(outAct, {"silu", "relu"})) return fail("decoder out_act '" + outAct + "' (expected silu or relu)");
  const std::size_t n = encoder.size();
  if (n == 1 && (encoder[0].depth == 0 || decoder[0].depth == 0))
    return fail("a one-stage DC-AE needs blocks in its stage");
  // The shortcuts average or repeat whole channel groups: the widths must divide.
  auto divides = [](std::int64_t a, std::int64_t b) { return a > 0 && b % a == 0; };
  for (std::size_t i = 0; i + 1 < n; ++i) {
    const std::int64_t a = encoder[i].width, b = encoder[i + 1].width;
    if ((i > 0 || encoder[0].depth > 0) && !divides(b, 4 * a))
      return fail("encoder stage " + std::to_string(i) + ": its averaging shortcut needs 4 × width " +
                  std::to_string(a) + " to be a multiple of the next width " + std::to_string(b));
    const std::int64_t c = decoder[i].width, d = decoder[i + 1].width;
    if ((i > 0 || decoder[0].depth > 0) && !divides(d, 4 * c))
      return fail("decoder stage " + std::to_string(i) + ": its duplicating shortcut needs 4 × width " +
                  std::to_string(c) + " to be a multiple of the width above " + std::to_string(d));
  }
  if (downsample == "ConvPixelUnshuffle")
    for (std::size_t i = 0; i + 1 < n; ++i)
      if (encoder[i + 1].width % 4) return fail("pixel unshuffle needs widths that are multiples of 4");
  if (!divides(latentChannels, encoder.back().width))
    return fail("the encoder's last width " + std::to_string(encoder.back().width) +
                " must be a multiple of latent_channels " + std::to_string(latentChannels) + " (averaging shortcut)");
  if (!divides(latentChannels, decoder.back().width))
    return fail("the decoder's last width " + std::to_string(decoder.back().width) +
                " must be a multiple of latent_channels " + std::to_string(latentChannels) + " (duplicating shortcut)");
  return {};
}

nlohmann::json DcAeConfig::toJson() const {
  auto side = [](const std::vector<DcAeStage>& stages) {
    nlohmann::json j{{"width_list", nlohmann::json::array()},
                     {"depth_list", nlohmann::json::array()},
                     {"block_type", nlohmann::json::array()},
                     {"norm", nlohmann::json::array()},
                     {"act", nlohmann::json::array()}};
    for (const auto& s : stages) {
      j["width_list"].push_back(s.width);
      j["depth_list"].push_back(s.depth);
      j["block_type"].push_back(s.block);
      j["norm"].push_back(s.norm);
      j["act"].push_back(s.act);
    }
    return j;
  };
  nlohmann::json e = side(encoder), d = side(decoder);
  e["downsample_block_type"] = downsample;
  d["upsample_block_type"] = upsample;
  d["out_norm"] = outNorm;
  d["out_act"] = outAct;
  return {{"kind", "dc"},
          {"in_channels", inChannels},
          {"latent_channels", latentChannels},
          {"head_dim", headDim},
          {"encoder", e},
          {"decoder", d}};
}

Result<DcAeConfig> DcAeConfig::fromJson(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) return fail(where + ": expected an object");
  DcAeConfig c;
  c.encoder.clear();
  c.decoder.clear();
  for (const auto& [key, value] : j.items())
    if (!oneOf(key, {"kind", "in_channels", "latent_channels", "head_dim", "encoder", "decoder"}))
      return fail(where + ": unknown field '" + key + "'");
  if (j.contains("kind") && j["kind"] != "dc") return fail(where + ": field 'kind': expected \"dc\"");
  for (auto [key, field] : std::vector<std::pair<const char*, std::int64_t*>>{
           {"in_channels", &c.inChannels}, {"latent_channels", &c.latentChannels}, {"head_dim", &c.headDim}}) {
    if (!j.contains(key)) continue;
    if (!j[key].is_number_integer()) return fail(where + ": field '" + std::string(key) + "': expected an integer");
    *field = j[key].get<std::int64_t>();
  }
  auto side = [&](const char* name, std::vector<DcAeStage>& stages,
                  std::initializer_list<const char*> extra) -> Result<nlohmann::json> {
    const std::string at = where + "." + name;
    if (!j.contains(name) || !j[name].is_object()) return fail(where + ": field '" + name + "': expected an object");
    const nlohmann::json& s = j[name];
    for (const auto& item : s.items()) {
      const std::string key = item.key();  // (a lambda cannot capture a structured binding before C++20)
      if (!oneOf(key, {"width_list", "depth_list", "block_type", "norm", "act"}) &&
          std::none_of(extra.begin(), extra.end(), [&](const char* e) { return key == e; }))
        return fail(at + ": unknown field '" + key + "'");
    }
    for (const char* key : {"width_list", "depth_list"})
      if (!s.contains(key) || !s[key].is_array() || s[key].empty() || s[key].size() > 10)
        return fail(at + ": field '" + key + "': expected a list of 1-10 integers");
    const std::size_t n = s["width_list"].size();
    if (s["depth_list"].size() != n)
      return fail(at + ": width_list has " + std::to_string(n) + " entries and depth_list " +
                  std::to_string(s["depth_list"].size()));
    stages.assign(n, DcAeStage{});
    for (std::size_t i = 0; i < n; ++i) {
      if (!s["width_list"][i].is_number_integer() || !s["depth_list"][i].is_number_integer())
        return fail(at + ": width_list and depth_list hold integers");
      stages[i].width = s["width_list"][i].get<std::int64_t>();
      stages[i].depth = s["depth_list"][i].get<std::int64_t>();
    }
    // A string applies to every stage, a list gives one per stage (as the official config).
    for (auto [key, member] : std::vector<std::pair<const char*, std::string DcAeStage::*>>{
             {"block_type", &DcAeStage::block}, {"norm", &DcAeStage::norm}, {"act", &DcAeStage::act}}) {
      if (!s.contains(key)) continue;
      const nlohmann::json& v = s[key];
      if (v.is_string()) {
        for (auto& st : stages) st.*member = v.get<std::string>();
      } else if (v.is_array() && v.size() == n &&
                 std::all_of(v.begin(), v.end(), [](auto& e) { return e.is_string(); })) {
        for (std::size_t i = 0; i < n; ++i) stages[i].*member = v[i].get<std::string>();
      } else {
        return fail(at + ": field '" + key + "': expected a string or a list of " + std::to_string(n) + " strings");
      }
    }
    return s;
  };
  auto enc = side("encoder", c.encoder, {"downsample_block_type"});
  if (!enc) return fail(enc.error());
  auto dec = side("decoder", c.decoder, {"upsample_block_type", "out_norm", "out_act"});
  if (!dec) return fail(dec.error());
  auto text = [&](const nlohmann::json& s, const char* key, std::string& out, const std::string& at) -> Result<void> {
    if (!s.contains(key)) return {};
    if (!s[key].is_string()) return fail(at + ": field '" + key + "': expected a string");
    out = s[key].get<std::string>();
    return {};
  };
  for (auto ok :
       {text(*enc, "downsample_block_type", c.downsample, where + ".encoder"),
        text(*dec, "upsample_block_type", c.upsample, where + ".decoder"),
        text(*dec, "out_norm", c.outNorm, where + ".decoder"), text(*dec, "out_act", c.outAct, where + ".decoder")})
    if (!ok) return fail(ok.error());
  if (auto ok = c.validate(); !ok) return fail(ok.error().withContext(where));
  return c;
}

DcAeConfig DcAeConfig::f32c32(const std::string& variant) {
  DcAeConfig c;
  const std::vector<std::int64_t> widths{128, 256, 512, 512, 1024, 1024};
  const bool sana = variant == "sana";
  const std::vector<std::int64_t> enc =
      sana ? std::vector<std::int64_t>{2, 2, 2, 3, 3, 3} : std::vector<std::int64_t>{0, 4, 8, 2, 2, 2};
  const std::vector<std::int64_t> dec =
      sana ? std::vector<std::int64_t>{3, 3, 3, 3, 3, 3} : std::vector<std::int64_t>{0, 5, 10, 2, 2, 2};
  const std::string evit = sana ? "EViTS5_GLU" : "EViT_GLU";
  for (std::size_t i = 0; i < widths.size(); ++i) {
    const std::string block = i < 3 ? "ResBlock" : evit;
    c.encoder.push_back({widths[i], enc[i], block, "trms2d", "silu"});
    const bool bn = !sana && i < 3;
    c.decoder.push_back({widths[i], dec[i], block, bn ? "bn2d" : "trms2d", bn ? "relu" : "silu"});
  }
  c.downsample = sana ? "Conv" : "ConvPixelUnshuffle";
  c.upsample = sana ? "InterpolateConv" : "ConvPixelShuffle";
  return c;
}

// --- network -------------------------------------------------------------------------------

DcAeEncoderImpl::DcAeEncoderImpl(const DcAeConfig& c) : m_config(c) {
  const auto& e = c.encoder;
  const std::size_t n = e.size();
  // Project in: a 3×3 convolution, or (first stage empty) the down-sampling layer
  // straight to the second width, without its shortcut.
  if (e[0].depth > 0)
    project_in = register_module("project_in", DcConvLayer(c.inChannels, e[0].width, 3, true));
  else
    project_in = register_module("project_in", DcResample(true, c.downsample, c.inChannels, e[1].width, false));
  stages = register_module("stages", torch::nn::ModuleList());
  for (std::size_t i = 0; i < n; ++i) {
    auto ops = stageOps(stages);
    addBlocks(ops, e[i], c.headDim);
    if (i + 1 < n && e[i].depth > 0) ops->push_back(DcResample(true, c.downsample, e[i].width, e[i + 1].width, true));
    m_stageOps.push_back(ops);
  }
  // Project out: ResidualBlock(OpSequential([conv 3×3]), averaging shortcut), no norm or act.
  auto out = register_module("project_out", std::make_shared<Module>());
  auto main = out->register_module("main", std::make_shared<Module>());
  auto ops = main->register_module("op_list", torch::nn::ModuleList());
  m_outConv = DcConvLayer(e.back().width, c.latentChannels, 3, true).ptr();
  ops->push_back(m_outConv);
  project_out = out;
}

at::Tensor DcAeEncoderImpl::forward(at::Tensor x) {
  if (auto* conv = project_in->as<DcConvLayerImpl>())
    x = conv->forward(x);
  else
    x = project_in->as<DcResampleImpl>()->forward(x);
  for (const auto& ops : m_stageOps) x = runOps(ops, x);
  return m_outConv->as<DcConvLayerImpl>()->forward(x) + dcAverageShortcut(x, m_config.latentChannels, 1);
}

DcAeDecoderImpl::DcAeDecoderImpl(const DcAeConfig& c) : m_config(c) {
  const auto& d = c.decoder;
  const std::size_t n = d.size();
  // Project in: ResidualBlock(conv 3×3 latent → last width, duplicating shortcut).
  auto in = register_module("project_in", std::make_shared<Module>());
  m_inConv = in->register_module("main", DcConvLayer(c.latentChannels, d.back().width, 3, true));
  project_in = in;
  stages = register_module("stages", torch::nn::ModuleList());
  for (std::size_t i = 0; i < n; ++i) {
    auto ops = stageOps(stages);
    if (i + 1 < n && d[i].depth > 0) ops->push_back(DcResample(false, c.upsample, d[i + 1].width, d[i].width, true));
    addBlocks(ops, d[i], c.headDim);
    m_stageOps.push_back(ops);
  }
  // Project out: OpSequential([norm, act, conv 3×3 or up-sampling to the image]).
  const std::int64_t width = d[0].depth > 0 ? d[0].width : d[1].width;
  auto out = register_module("project_out", std::make_shared<Module>());
  auto ops = out->register_module("op_list", torch::nn::ModuleList());
  m_outOps = ops;
  ops->push_back(DcNorm(c.outNorm, width));
  ops->push_back(std::make_shared<Module>());  // the activation: no weights
  if (d[0].depth > 0)
    ops->push_back(DcConvLayer(width, c.inChannels, 3, true));
  else
    ops->push_back(DcResample(false, c.upsample, width, c.inChannels, false));
  project_out = out;
}

at::Tensor DcAeDecoderImpl::forward(at::Tensor z) {
  at::Tensor x = m_inConv->as<DcConvLayerImpl>()->forward(z) + dcDuplicateShortcut(z, m_config.decoder.back().width, 1);
  for (std::size_t i = m_stageOps.size(); i-- > 0;) x = runOps(m_stageOps[i], x);
  auto& ops = m_outOps;
  x = applyAct(ops[0]->as<DcNormImpl>()->forward(x), dcAct(m_config.outAct));
  if (auto* c = ops[2]->as<DcConvLayerImpl>()) return c->forward(x);
  return ops[2]->as<DcResampleImpl>()->forward(x);
}

DcAutoencoderImpl::DcAutoencoderImpl(const DcAeConfig& config) : m_config(config) {
  encoder = register_module("encoder", DcAeEncoder(config));
  decoder = register_module("decoder", DcAeDecoder(config));
}

Encoded DcAutoencoderImpl::encode(const at::Tensor& x) {
  Encoded e;
  e.mean = encoder(x);
  e.std = at::zeros_like(e.mean);
  return e;
}

at::Tensor DcAutoencoderImpl::decode(const at::Tensor& z, bool) { return decoder(z); }

at::Tensor DcAutoencoderImpl::latentOf(const Encoded& encoded, at::Generator*) const { return encoded.mean; }

}  // namespace tessera
