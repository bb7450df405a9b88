// SPDX-License-Identifier: Apache-2.0
// LDM autoencoder checkpoints: CompVis layout (LDM, original Stable Diffusion, U-ViT's
// autoencoder_kl_ema.pth) and diffusers layout (AutoencoderKL / VQModel,
// diffusion_pytorch_model.safetensors), the configuration read from the shapes.
#include "models/autoencoders/ldm/ldm_autoencoder.h"
#include "models/registry.h"

#include <ATen/ATen.h>

#include <map>
#include <regex>
#include <set>

namespace tessera {

namespace {

bool startsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

/// The attention sub-module names of diffusers (current and deprecated) → CompVis.
const std::map<std::string, std::string>& attentionNames() {
  static const std::map<std::string, std::string> names{
      {"group_norm", "norm"},   {"to_q", "q"},  {"to_k", "k"}, {"to_v", "v"},
      {"to_out.0", "proj_out"}, {"query", "q"}, {"key", "k"},  {"value", "v"},
      {"proj_attn", "proj_out"}};
  return names;
}

/// "group_norm.weight" → "norm.weight" (rest = what follows "attentions.J.").
std::optional<std::string> attentionKey(const std::string& rest) {
  for (const auto& [from, to] : attentionNames())
    if (startsWith(rest, from + ".")) return to + rest.substr(from.size());
  return std::nullopt;
}

std::string resnetKey(const std::string& rest) {
  if (startsWith(rest, "conv_shortcut.")) return "nin_shortcut" + rest.substr(std::string("conv_shortcut").size());
  return rest;
}

std::int64_t count(const TensorShapes& shapes, const std::regex& pattern) {
  std::set<std::int64_t> seen;
  std::smatch m;
  for (const auto& [name, shape] : shapes)
    if (std::regex_match(name, m, pattern) && m[1].length() <= 6) seen.insert(std::stoll(m[1].str()));
  if (seen.empty()) return 0;
  // Indices must run 0 … n − 1: a gap is a damaged file, and is reported by the strict load.
  return *seen.rbegin() + 1;
}

}  // namespace

bool looksLikeLdmAutoencoder(const TensorShapes& shapes) {
  const bool ends = findShape(shapes, "encoder.conv_in.weight") && findShape(shapes, "decoder.conv_out.weight");
  return ends && (findShape(shapes, "encoder.down.0.block.0.conv1.weight") ||
                  findShape(shapes, "encoder.down_blocks.0.resnets.0.conv1.weight"));
}

Result<NamedTensors> ldmFromDiffusers(const NamedTensors& tensors) {
  const std::int64_t upLevels = count(shapesOf(tensors), std::regex(R"(decoder\.up_blocks\.(\d+)\..*)"));
  static const std::regex downRe(R"(encoder\.down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.*))");
  static const std::regex upRe(R"(decoder\.up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.*))");
  static const std::regex midRe(R"((encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.*))");
  NamedTensors out;
  std::vector<std::string> unplaced;
  for (const auto& [name, tensor] : tensors) {
    std::smatch m;
    std::optional<std::string> key;
    at::Tensor value = tensor;
    auto attention = [&](const std::string& prefix, const std::string& rest) {
      auto a = attentionKey(rest);
      if (!a) return;
      key = prefix + *a;
      // diffusers holds the 1×1 convolutions as Linear layers: (C, C) → (C, C, 1, 1).
      if (value.dim() == 2) value = value.unsqueeze(-1).unsqueeze(-1);
    };
    if (std::regex_match(name, m, downRe)) {
      const std::string level = "encoder.down." + m[1].str() + ".", kind = m[2].str(), j = m[3].str(),
                        rest = m[4].str();
      if (kind == "resnets")
        key = level + "block." + j + "." + resnetKey(rest);
      else if (kind == "attentions")
        attention(level + "attn." + j + ".", rest);
      else if (j == "0" && startsWith(rest, "conv."))
        key = level + "downsample." + rest;
    } else if (std::regex_match(name, m, upRe)) {
      const std::int64_t i = std::stoll(m[1].str().substr(0, 6));
      const std::string level = "decoder.up." + std::to_string(upLevels - 1 - i) + ".", kind = m[2].str(),
                        j = m[3].str(), rest = m[4].str();
      if (kind == "resnets")
        key = level + "block." + j + "." + resnetKey(rest);
      else if (kind == "attentions")
        attention(level + "attn." + j + ".", rest);
      else if (j == "0" && startsWith(rest, "conv."))
        key = level + "upsample." + rest;
    } else if (std::regex_match(name, m, midRe)) {
      const std::string side = m[1].str(), kind = m[2].str(), j = m[3].str(), rest = m[4].str();
      if (kind == "resnets" && (j == "0" || j == "1"))
        key = side + ".mid.block_" + std::to_string(std::stoi(j) + 1) + "." + resnetKey(rest);
      else if (kind == "attentions" && j == "0")
        attention(side + ".mid.attn_1.", rest);
    } else if (startsWith(name, "encoder.conv_norm_out.") || startsWith(name, "decoder.conv_norm_out.")) {
      key = name.substr(0, 8) + "norm_out" + name.substr(name.find(".conv_norm_out") + 14);
    } else if (startsWith(name, "encoder.conv_in.") || startsWith(name, "encoder.conv_out.") ||
               startsWith(name, "decoder.conv_in.") || startsWith(name, "decoder.conv_out.") ||
               startsWith(name, "quant_conv.") || startsWith(name, "post_quant_conv.") ||
               startsWith(name, "quantize.")) {
      key = name;
    }
    if (!key) {
      unplaced.push_back(name);
      continue;
    }
    out.emplace_back(*key, value);
  }
  if (!unplaced.empty()) {
    std::string list;
    for (std::size_t i = 0; i < unplaced.size() && i < 20; ++i) list += (i ? ", " : "") + unplaced[i];
    if (unplaced.size() > 20) list += ", … (" + std::to_string(unplaced.size()) + " in all)";
    return fail("unknown tensors for a diffusers autoencoder: " + list);
  }
  return out;
}

Result<ImportedAutoencoder> importLdmAutoencoder(const NamedTensors& raw) {
  ImportedAutoencoder out;
  out.layout = "compvis";
  NamedTensors sd;
  std::int64_t lossTensors = 0;
  for (const auto& [name, t] : raw) {
    // Training-only parts of LDM's first-stage checkpoints (discriminator, LPIPS, logvar).
    if (startsWith(name, "loss."))
      ++lossTensors;
    else
      sd.emplace_back(name, t);
  }
  if (lossTensors) out.notes.push_back("left out " + std::to_string(lossTensors) + " training-loss tensors (loss.*)");
  TensorShapes shapes = shapesOf(sd);
  if (findShape(shapes, "encoder.down_blocks.0.resnets.0.conv1.weight") ||
      findShape(shapes, "decoder.up_blocks.0.resnets.0.conv1.weight")) {
    auto converted = ldmFromDiffusers(sd);
    if (!converted) return fail(converted.error());
    sd = std::move(*converted);
    shapes = shapesOf(sd);
    out.layout = "diffusers";
  }
  auto need = [&](const std::string& key, std::size_t dims) -> Result<std::vector<std::int64_t>> {
    const auto* s = findShape(shapes, key);
    if (!s) return fail("not an LDM autoencoder: tensor '" + key + "' is missing");
    if (s->size() != dims)
      return fail("tensor '" + key + "' has " + std::to_string(s->size()) + " dimensions, expected " +
                  std::to_string(dims));
    for (auto d : *s)
      if (d < 1) return fail("tensor '" + key + "' has an empty dimension");
    return *s;
  };
  LdmAutoencoderConfig c;
  auto convIn = need("encoder.conv_in.weight", 4);
  if (!convIn) return fail(convIn.error());
  c.ch = (*convIn)[0];
  c.inChannels = (*convIn)[1];
  const std::int64_t levels = count(shapes, std::regex(R"(encoder\.down\.(\d+)\.block\.0\.conv1\.weight)"));
  if (levels < 1 || levels > 8) return fail("encoder.down: expected 1-8 levels, found " + std::to_string(levels));
  c.chMult.clear();
  c.attnLevels.clear();
  for (std::int64_t i = 0; i < levels; ++i) {
    auto first = need("encoder.down." + std::to_string(i) + ".block.0.conv1.weight", 4);
    if (!first) return fail(first.error());
    if ((*first)[0] % c.ch)
      return fail("encoder.down." + std::to_string(i) + ".block.0.conv1.weight: " + std::to_string((*first)[0]) +
                  " channels, not a multiple of ch " + std::to_string(c.ch));
    c.chMult.push_back((*first)[0] / c.ch);
    if (findShape(shapes, "encoder.down." + std::to_string(i) + ".attn.0.q.weight")) c.attnLevels.push_back(i);
  }
  c.numResBlocks = count(shapes, std::regex(R"(encoder\.down\.0\.block\.(\d+)\.conv1\.weight)"));
  auto qc = need("quant_conv.weight", 4);
  if (!qc) return fail(qc.error());
  auto pqc = need("post_quant_conv.weight", 4);
  if (!pqc) return fail(pqc.error());
  c.embedDim = (*pqc)[1];
  c.zChannels = (*pqc)[0];
  // KL's quant_conv maps mean and log-variance (2z → 2e); VQ's maps z → e.
  if ((*qc)[1] == 2 * c.zChannels && (*qc)[0] == 2 * c.embedDim) {
    c.kind = "kl";
    if (findShape(shapes, "quantize.embedding.weight"))
      return fail("quant_conv.weight (" + std::to_string((*qc)[0]) + "×" + std::to_string((*qc)[1]) +
                  ") is a Gaussian posterior's, but the file has a codebook (quantize.embedding.weight)");
  } else if ((*qc)[1] == c.zChannels && (*qc)[0] == c.embedDim) {
    c.kind = "vq";
    auto codebook = need("quantize.embedding.weight", 2);
    if (!codebook)
      return fail("a VQ autoencoder (quant_conv " + std::to_string(c.zChannels) + " → " + std::to_string(c.embedDim) +
                  ") without its codebook: " + codebook.error().message());
    c.numEmbeddings = (*codebook)[0];
  } else {
    return fail("quant_conv.weight is " + std::to_string((*qc)[0]) + "×" + std::to_string((*qc)[1]) +
                " and post_quant_conv.weight " + std::to_string((*pqc)[0]) + "×" + std::to_string((*pqc)[1]) +
                ": fits neither a KL (2e×2z, z×e) nor a VQ (e×z, z×e) autoencoder");
  }
  auto convOut = need("decoder.conv_out.weight", 4);
  if (!convOut) return fail(convOut.error());
  c.outChannels = (*convOut)[0];
  if (auto ok = c.validate(); !ok) return fail("the shapes give an unusable configuration: " + ok.error().message());
  for (std::int64_t m : c.chMult)
    if ((c.ch * m) % c.normGroups)
      return fail("channels " + std::to_string(c.ch * m) +
                  " are not a multiple of 32, the group count of LDM's GroupNorm");

  // The network is built before its tensors are compared: refuse first a configuration
  // whose blocks alone need far more weights than the checkpoint holds (the levels and
  // blocks are read from names, which a damaged file can make up).
  const double held = heldWeights(shapes), needed = c.minimumWeights();
  if (needed > 2 * held + 1e6)
    return fail("the names describe " + std::to_string(c.chMult.size()) + " levels of " +
                std::to_string(c.numResBlocks) + " blocks, at least " +
                std::to_string(static_cast<std::int64_t>(needed / 1e6)) + " M weights, but the file holds " +
                std::to_string(static_cast<std::int64_t>(held / 1e6)) + " M: tensors are missing");
  LdmAutoencoderImpl network(c);
  if (auto ok = loadStateDict(network, sd); !ok) return fail(ok.error());
  out.kind = c.kind;
  out.config = c.toJson();
  for (const auto& [name, t] : stateDict(network))
    out.weights.emplace_back(name, t.detach().to(at::kFloat).contiguous());
  std::string attn;
  for (auto l : c.attnLevels) attn += (attn.empty() ? "" : ",") + std::to_string(l);
  out.notes.push_back("inferred from shapes (" + out.layout + " layout): " + c.kind + ", f" +
                      std::to_string(c.downsampling()) + ", " + std::to_string(c.embedDim) + " latent channels, ch " +
                      std::to_string(c.ch) + " × " + nlohmann::json(c.chMult).dump() + ", " +
                      std::to_string(c.numResBlocks) + " blocks per level" +
                      (attn.empty() ? "" : ", attention at levels " + attn) +
                      (c.kind == "vq" ? ", codebook " + std::to_string(c.numEmbeddings) : ""));
  return out;
}

void registerAutoencoder_ldm(AutoencoderRegistry& registry) {
  AutoencoderImporter importer;
  importer.recognises = looksLikeLdmAutoencoder;
  importer.convert = importLdmAutoencoder;
  auto factory = [](const nlohmann::json& config) -> Result<std::shared_ptr<AutoencoderImpl>> {
    auto c = LdmAutoencoderConfig::fromJson(config, "autoencoder.config");
    if (!c) return fail(c.error());
    return std::shared_ptr<AutoencoderImpl>(std::make_shared<LdmAutoencoderImpl>(*c));
  };
  auto minimum = [](const nlohmann::json& config) {
    auto c = LdmAutoencoderConfig::fromJson(config, "autoencoder.config");
    return c ? c->minimumWeights() : 0.0;  // a configuration that does not parse is refused when built
  };
  nlohmann::json tinyKl{{"kind", "kl"},       {"ch", 32},        {"ch_mult", {1, 2}}, {"num_res_blocks", 1},
                        {"attn_levels", {1}}, {"z_channels", 4}, {"embed_dim", 4}};
  nlohmann::json tinyVq{{"kind", "vq"},    {"ch", 32},       {"ch_mult", {1, 2}},   {"num_res_blocks", 1},
                        {"z_channels", 3}, {"embed_dim", 3}, {"num_embeddings", 16}};
  (void)registry.add({"kl", "ldm",
                      "LDM AutoencoderKL (Stable Diffusion's VAE): Gaussian posterior, CompVis or diffusers layout",
                      factory, tinyKl, importer, minimum});
  (void)registry.add({"vq", "ldm", "LDM VQModel (taming's VectorQuantizer2): the first stage of LDM's ImageNet models",
                      factory, tinyVq, importer, minimum});
}

}  // namespace tessera
