// SPDX-License-Identifier: Apache-2.0
#include "models/autoencoders/ldm/ldm_autoencoder.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/padding.h>

#include <algorithm>
#include <cmath>

namespace tessera {

namespace {

torch::nn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride = 1) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel == 3 && stride == 1 ? 1 : 0));
}

torch::nn::GroupNorm groupNorm(std::int64_t groups, std::int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(1e-6).affine(true));
}

/// A level of the encoder or decoder: "block" (ResnetBlocks), "attn" (after each block, on
/// attention levels) and a resampler ("downsample" or "upsample", holding "conv").
struct LevelImpl : torch::nn::Module {
  torch::nn::ModuleList block, attn;
  torch::nn::Conv2d resample{nullptr};
  LevelImpl(std::int64_t in, std::int64_t out, std::int64_t blocks, bool attention, const char* resampler,
            std::int64_t groups) {
    block = register_module("block", torch::nn::ModuleList());
    attn = register_module("attn", torch::nn::ModuleList());
    for (std::int64_t j = 0; j < blocks; ++j) {
      block->push_back(LdmResnetBlock(j == 0 ? in : out, out, groups));
      if (attention) attn->push_back(LdmAttnBlock(out, groups));
    }
    if (resampler) {
      auto holder = register_module(resampler, std::make_shared<torch::nn::Module>());
      // Downsample: zero pad right and bottom by one, then a 3×3 stride-2 convolution
      // without padding; Upsample: nearest ×2, then a 3×3 convolution.
      const bool down = std::string(resampler) == "downsample";
      resample = holder->register_module("conv", conv(out, out, 3, down ? 2 : 1));
    }
  }
  at::Tensor run(at::Tensor h, bool down) {
    for (std::size_t j = 0; j < block->size(); ++j) {
      h = block[j]->as<LdmResnetBlockImpl>()->forward(h);
      if (!attn->is_empty()) h = attn[j]->as<LdmAttnBlockImpl>()->forward(h);
    }
    if (!resample.is_empty()) {
      if (down) {
        h = resample(at::constant_pad_nd(h, {0, 1, 0, 1}, 0.0));
      } else {
        h = resample(at::upsample_nearest2d(h, {2 * h.size(2), 2 * h.size(3)}));
      }
    }
    return h;
  }
};

struct MidImpl : torch::nn::Module {
  LdmResnetBlock block_1{nullptr}, block_2{nullptr};
  LdmAttnBlock attn_1{nullptr};
  MidImpl(std::int64_t channels, std::int64_t groups) {
    block_1 = register_module("block_1", LdmResnetBlock(channels, channels, groups));
    attn_1 = register_module("attn_1", LdmAttnBlock(channels, groups));
    block_2 = register_module("block_2", LdmResnetBlock(channels, channels, groups));
  }
  at::Tensor run(const at::Tensor& h) { return block_2(attn_1(block_1(h))); }
};

std::string list(const std::vector<std::int64_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

// --- configuration -----------------------------------------------------------------

double LdmAutoencoderConfig::minimumWeights() const {
  double total = 0;
  for (std::int64_t m : chMult) {
    const double width = static_cast<double>(ch) * static_cast<double>(m);
    total += static_cast<double>(2 * numResBlocks + 1) * 2 * 9 * width * width;
  }
  return total;
}

Result<void> LdmAutoencoderConfig::validate() const {
  if (kind != "kl" && kind != "vq") return fail("autoencoder kind '" + kind + "' (expected kl or vq)");
  auto positive = [](std::int64_t v, std::int64_t most) { return v >= 1 && v <= most; };
  if (!positive(inChannels, 64) || !positive(outChannels, 64)) return fail("in/out channels must be 1-64");
  if (!positive(normGroups, 1024)) return fail("norm_groups must be 1-1024");
  if (!positive(ch, 4096) || ch % normGroups)
    return fail("ch " + std::to_string(ch) + " must be a positive multiple of norm_groups " +
                std::to_string(normGroups));
  if (chMult.empty() || chMult.size() > 8)
    return fail("ch_mult must have 1-8 levels, has " + std::to_string(chMult.size()));
  for (auto m : chMult)
    if (!positive(m, 64)) return fail("ch_mult " + list(chMult) + ": every multiplier must be 1-64");
  if (!positive(numResBlocks, 16)) return fail("num_res_blocks must be 1-16");
  for (auto l : attnLevels)
    if (l < 0 || l >= static_cast<std::int64_t>(chMult.size()))
      return fail("attn_levels " + list(attnLevels) + ": levels are 0-" + std::to_string(chMult.size() - 1));
  if (!positive(zChannels, 1024) || !positive(embedDim, 1024)) return fail("z_channels and embed_dim must be 1-1024");
  if (kind == "vq" && !positive(numEmbeddings, 1 << 20)) return fail("a vq autoencoder needs num_embeddings 1-1048576");
  if (kind == "kl" && numEmbeddings != 0) return fail("num_embeddings is for vq autoencoders");
  return {};
}

nlohmann::json LdmAutoencoderConfig::toJson() const {
  nlohmann::json j{{"kind", kind},
                   {"in_channels", inChannels},
                   {"out_channels", outChannels},
                   {"ch", ch},
                   {"ch_mult", chMult},
                   {"num_res_blocks", numResBlocks},
                   {"attn_levels", attnLevels},
                   {"z_channels", zChannels},
                   {"embed_dim", embedDim},
                   {"norm_groups", normGroups}};
  if (kind == "vq") j["num_embeddings"] = numEmbeddings;
  return j;
}

Result<LdmAutoencoderConfig> LdmAutoencoderConfig::fromJson(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) return fail(where + ": expected an object");
  LdmAutoencoderConfig c;
  static const std::vector<std::string> known{"kind",      "in_channels",    "out_channels", "ch",
                                              "ch_mult",   "num_res_blocks", "attn_levels",  "z_channels",
                                              "embed_dim", "num_embeddings", "norm_groups"};
  for (const auto& [key, value] : j.items())
    if (std::find(known.begin(), known.end(), key) == known.end()) return fail(where + ": unknown field '" + key + "'");
  auto integer = [&](const char* key, std::int64_t& out) -> Result<void> {
    if (!j.contains(key)) return {};
    if (!j[key].is_number_integer()) return fail(where + ": field '" + key + "': expected an integer");
    out = j[key].get<std::int64_t>();
    return {};
  };
  auto integers = [&](const char* key, std::vector<std::int64_t>& out) -> Result<void> {
    if (!j.contains(key)) return {};
    if (!j[key].is_array() || j[key].size() > 64)
      return fail(where + ": field '" + key + "': expected a list of integers");
    out.clear();
    for (const auto& v : j[key]) {
      if (!v.is_number_integer()) return fail(where + ": field '" + key + "': expected a list of integers");
      out.push_back(v.get<std::int64_t>());
    }
    return {};
  };
  if (j.contains("kind")) {
    if (!j["kind"].is_string()) return fail(where + ": field 'kind': expected kl or vq");
    c.kind = j["kind"].get<std::string>();
  }
  for (auto [key, field] : std::vector<std::pair<const char*, std::int64_t*>>{{"in_channels", &c.inChannels},
                                                                              {"out_channels", &c.outChannels},
                                                                              {"ch", &c.ch},
                                                                              {"num_res_blocks", &c.numResBlocks},
                                                                              {"z_channels", &c.zChannels},
                                                                              {"embed_dim", &c.embedDim},
                                                                              {"num_embeddings", &c.numEmbeddings},
                                                                              {"norm_groups", &c.normGroups}})
    if (auto ok = integer(key, *field); !ok) return fail(ok.error());
  if (auto ok = integers("ch_mult", c.chMult); !ok) return fail(ok.error());
  if (auto ok = integers("attn_levels", c.attnLevels); !ok) return fail(ok.error());
  if (auto ok = c.validate(); !ok) return fail(ok.error().withContext(where));
  for (std::int64_t m : c.chMult)
    if ((c.ch * m) % c.normGroups)
      return fail(where + ": channels " + std::to_string(c.ch * m) + " are not a multiple of norm_groups " +
                  std::to_string(c.normGroups));
  return c;
}

// --- blocks --------------------------------------------------------------------------

LdmResnetBlockImpl::LdmResnetBlockImpl(std::int64_t in, std::int64_t out, std::int64_t groups) {
  norm1 = register_module("norm1", groupNorm(groups, in));
  conv1 = register_module("conv1", conv(in, out, 3));
  norm2 = register_module("norm2", groupNorm(groups, out));
  conv2 = register_module("conv2", conv(out, out, 3));
  if (in != out) nin_shortcut = register_module("nin_shortcut", conv(in, out, 1));
}

at::Tensor LdmResnetBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = conv1(at::silu(norm1(x)));
  h = conv2(at::silu(norm2(h)));  // dropout 0 in every released model
  return (nin_shortcut.is_empty() ? x : nin_shortcut(x)) + h;
}

LdmAttnBlockImpl::LdmAttnBlockImpl(std::int64_t channels, std::int64_t groups) {
  norm = register_module("norm", groupNorm(groups, channels));
  q = register_module("q", conv(channels, channels, 1));
  k = register_module("k", conv(channels, channels, 1));
  v = register_module("v", conv(channels, channels, 1));
  proj_out = register_module("proj_out", conv(channels, channels, 1));
}

at::Tensor LdmAttnBlockImpl::forward(const at::Tensor& x) {
  const at::Tensor h = norm(x);
  const std::int64_t b = x.size(0), c = x.size(1), hh = x.size(2), ww = x.size(3), n = hh * ww;
  const at::Tensor qs = q(h).reshape({b, c, n}).transpose(1, 2);  // (b, n, c)
  const at::Tensor ks = k(h).reshape({b, c, n});                  // (b, c, n)
  const at::Tensor vs = v(h).reshape({b, c, n}).transpose(1, 2);  // (b, n, c)
  const double scale = 1.0 / std::sqrt(static_cast<double>(c));
  // Queries in chunks: a 128×128 latent has 16 384 positions, whose full attention
  // matrix alone would take 1 GB per image.
  constexpr std::int64_t kChunk = 4096;
  at::Tensor out;
  if (n <= kChunk) {
    out = at::bmm(at::softmax(at::bmm(qs, ks) * scale, 2), vs);
  } else {
    std::vector<at::Tensor> parts;
    for (std::int64_t s = 0; s < n; s += kChunk) {
      const at::Tensor qc = qs.narrow(1, s, std::min(kChunk, n - s));
      parts.push_back(at::bmm(at::softmax(at::bmm(qc, ks) * scale, 2), vs));
    }
    out = at::cat(parts, 1);
  }
  return x + proj_out(out.transpose(1, 2).reshape({b, c, hh, ww}));
}

LdmEncoderImpl::LdmEncoderImpl(const LdmAutoencoderConfig& c) : m_config(c) {
  conv_in = register_module("conv_in", conv(c.inChannels, c.ch, 3));
  down = register_module("down", torch::nn::ModuleList());
  const auto levels = static_cast<std::int64_t>(c.chMult.size());
  std::int64_t in = c.ch;
  for (std::int64_t i = 0; i < levels; ++i) {
    const std::int64_t out = c.ch * c.chMult[i];
    const bool attention = std::count(c.attnLevels.begin(), c.attnLevels.end(), i) > 0;
    down->push_back(std::make_shared<LevelImpl>(in, out, c.numResBlocks, attention,
                                                i + 1 < levels ? "downsample" : nullptr, c.normGroups));
    in = out;
  }
  mid = register_module("mid", std::make_shared<MidImpl>(in, c.normGroups));
  norm_out = register_module("norm_out", groupNorm(c.normGroups, in));
  conv_out = register_module("conv_out", conv(in, c.kind == "kl" ? 2 * c.zChannels : c.zChannels, 3));
}

at::Tensor LdmEncoderImpl::forward(const at::Tensor& x) {
  at::Tensor h = conv_in(x);
  for (std::size_t i = 0; i < down->size(); ++i) h = down[i]->as<LevelImpl>()->run(h, true);
  h = std::static_pointer_cast<MidImpl>(mid)->run(h);
  return conv_out(at::silu(norm_out(h)));
}

LdmDecoderImpl::LdmDecoderImpl(const LdmAutoencoderConfig& c) : m_config(c) {
  const auto levels = static_cast<std::int64_t>(c.chMult.size());
  std::int64_t in = c.ch * c.chMult.back();
  conv_in = register_module("conv_in", conv(c.zChannels, in, 3));
  mid = register_module("mid", std::make_shared<MidImpl>(in, c.normGroups));
  // Built from the lowest resolution up, as the reference does, but listed by level
  // (up.0 is the full resolution).
  std::vector<std::shared_ptr<LevelImpl>> built(static_cast<std::size_t>(levels));
  for (std::int64_t i = levels - 1; i >= 0; --i) {
    const std::int64_t out = c.ch * c.chMult[i];
    const bool attention = std::count(c.attnLevels.begin(), c.attnLevels.end(), i) > 0;
    built[i] =
        std::make_shared<LevelImpl>(in, out, c.numResBlocks + 1, attention, i > 0 ? "upsample" : nullptr, c.normGroups);
    in = out;
  }
  up = register_module("up", torch::nn::ModuleList());
  for (auto& level : built) up->push_back(level);
  norm_out = register_module("norm_out", groupNorm(c.normGroups, in));
  conv_out = register_module("conv_out", conv(in, c.outChannels, 3));
}

at::Tensor LdmDecoderImpl::forward(const at::Tensor& z) {
  at::Tensor h = std::static_pointer_cast<MidImpl>(mid)->run(conv_in(z));
  for (auto i = static_cast<std::int64_t>(up->size()) - 1; i >= 0; --i) h = up[i]->as<LevelImpl>()->run(h, false);
  return conv_out(at::silu(norm_out(h)));
}

// --- the autoencoder ---------------------------------------------------------------

LdmAutoencoderImpl::LdmAutoencoderImpl(const LdmAutoencoderConfig& config) : m_config(config) {
  encoder = register_module("encoder", LdmEncoder(config));
  decoder = register_module("decoder", LdmDecoder(config));
  const std::int64_t moments = config.kind == "kl" ? 2 : 1;
  quant_conv = register_module("quant_conv", conv(moments * config.zChannels, moments * config.embedDim, 1));
  post_quant_conv = register_module("post_quant_conv", conv(config.embedDim, config.zChannels, 1));
  if (config.kind == "vq") {
    m_quantize = register_module("quantize", std::make_shared<torch::nn::Module>());
    m_codebook = m_quantize->register_module("embedding", torch::nn::Embedding(config.numEmbeddings, config.embedDim));
    // taming initialises the codebook uniformly in ±1/n.
    torch::NoGradGuard noGrad;
    m_codebook->weight.uniform_(-1.0 / static_cast<double>(config.numEmbeddings),
                                1.0 / static_cast<double>(config.numEmbeddings));
  }
}

std::pair<at::Tensor, at::Tensor> LdmAutoencoderImpl::quantize(const at::Tensor& h) const {
  const at::Tensor z = h.permute({0, 2, 3, 1}).contiguous();
  const at::Tensor flat = z.reshape({-1, m_config.embedDim});
  const at::Tensor& e = m_codebook->weight;
  const at::Tensor d = flat.pow(2).sum(1, true) + e.pow(2).sum(1) - 2 * at::mm(flat, e.t());
  const at::Tensor indices = at::argmin(d, 1);
  const at::Tensor zq = at::embedding(e, indices).view(z.sizes());
  // The reference's straight-through estimator z + (z_q − z), kept for its rounding.
  const at::Tensor quant = (z + (zq - z)).permute({0, 3, 1, 2}).contiguous();
  return {quant, indices.view({h.size(0), h.size(2), h.size(3)})};
}

Encoded LdmAutoencoderImpl::encode(const at::Tensor& x) {
  Encoded out;
  const at::Tensor moments = quant_conv(encoder(x));
  if (m_config.kind == "kl") {
    auto parts = moments.chunk(2, 1);
    out.mean = parts[0];
    out.std = at::exp(0.5 * at::clamp(parts[1], -30.0, 20.0));
  } else {
    out.h = moments;
    std::tie(out.quant, out.indices) = quantize(moments);
  }
  return out;
}

at::Tensor LdmAutoencoderImpl::decode(const at::Tensor& z, bool quantizeFirst) {
  at::Tensor q = z;
  if (m_config.kind == "vq" && quantizeFirst) q = quantize(z).first;
  return decoder(post_quant_conv(q));
}

at::Tensor LdmAutoencoderImpl::latentOf(const Encoded& encoded, at::Generator* generator) const {
  if (m_config.kind == "vq") return encoded.h;
  if (!generator) return encoded.mean;
  return encoded.mean + encoded.std * at::randn(encoded.mean.sizes(), *generator, encoded.mean.options());
}

}  // namespace tessera
