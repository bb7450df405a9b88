// SPDX-License-Identifier: Apache-2.0
// DC-AE checkpoints: the original layout (efficientvit's dc_ae.py, `{"state_dict": …}`
// .pt files and mit-han-lab/dc-ae-* model.safetensors) and diffusers' AutoencoderDC
// (diffusion_pytorch_model.safetensors of mit-han-lab/dc-ae-*-diffusers), the
// configuration read from the shapes.
#include "models/autoencoders/dcae/dcae.h"
#include "models/registry.h"

#include <ATen/ATen.h>

#include <map>
#include <optional>
#include <regex>
#include <set>

namespace tessera {

namespace {

bool dcStartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

bool hasPrefix(const TensorShapes& shapes, const std::string& prefix) {
  for (const auto& [name, shape] : shapes)
    if (dcStartsWith(name, prefix)) return true;
  return false;
}

/// The indices `pattern` (one number group) finds among the names, up to six digits each.
std::set<std::int64_t> dcIndices(const TensorShapes& shapes, const std::regex& pattern) {
  std::set<std::int64_t> seen;
  std::smatch m;
  for (const auto& [name, shape] : shapes)
    if (std::regex_match(name, m, pattern) && m[1].length() <= 6) seen.insert(std::stoll(m[1].str()));
  return seen;
}

/// One op of a stage as the keys show it.
enum class DcOp { Res, Evit, Resample };

struct DcSideShapes {
  std::vector<DcAeStage> stages;
  std::string resample;  ///< the down/up-sampling type, "" when no stage changes resolution
  std::int64_t headDim = 0;
};

/// Reads one side's stages ("encoder" or "decoder") from original-layout shapes.
Result<DcSideShapes> readSide(const TensorShapes& shapes, const std::string& side, std::int64_t stageCount) {
  DcSideShapes out;
  const bool encoder = side == "encoder";
  for (std::int64_t s = 0; s < stageCount; ++s) {
    const std::string prefix = side + ".stages." + std::to_string(s) + ".op_list.";
    const auto ops =
        dcIndices(shapes, std::regex(std::regex_replace(prefix, std::regex(R"(\.)"), R"(\.)") + R"((\d+)\..*)"));
    if (!ops.empty() && (*ops.rbegin() + 1 != static_cast<std::int64_t>(ops.size()) || ops.size() > 64))
      return fail(prefix + "N: the ops are not numbered 0 … " + std::to_string(ops.size() - 1));
    DcAeStage stage;
    std::vector<DcOp> kinds;
    std::set<std::string> blockTypes, norms;
    for (std::int64_t j = 0; j < static_cast<std::int64_t>(ops.size()); ++j) {
      const std::string p = prefix + std::to_string(j) + ".";
      if (const auto* w = findShape(shapes, p + "main.conv1.conv.weight")) {
        if (w->size() != 4) return fail(p + "main.conv1.conv.weight: expected 4 dimensions");
        kinds.push_back(DcOp::Res);
        blockTypes.insert("ResBlock");
        stage.width = (*w)[0];
        norms.insert(findShape(shapes, p + "main.conv2.norm.running_mean") ? "bn2d" : "trms2d");
      } else if (const auto* q = findShape(shapes, p + "context_module.main.qkv.conv.weight")) {
        if (q->size() != 4) return fail(p + "context_module.main.qkv.conv.weight: expected 4 dimensions");
        kinds.push_back(DcOp::Evit);
        stage.width = (*q)[1];
        const auto scales = dcIndices(shapes, std::regex(std::regex_replace(p, std::regex(R"(\.)"), R"(\.)") +
                                                         R"(context_module\.main\.aggreg\.(\d+)\.0\.weight)"));
        if (scales.empty()) {
          blockTypes.insert("EViT_GLU");
        } else {
          const auto* k = findShape(shapes, p + "context_module.main.aggreg.0.0.weight");
          const auto* g = findShape(shapes, p + "context_module.main.aggreg.0.1.weight");
          if (scales.size() != 1 || !k || k->size() != 4 || (*k)[2] != 5 || (*k)[3] != 5 || !g || g->size() != 4)
            return fail(p + "context_module.main.aggreg: " + std::to_string(scales.size()) +
                        " aggregation branch(es); supported: none (EViT_GLU) or one 5×5 (EViTS5_GLU)");
          blockTypes.insert("EViTS5_GLU");
          if (out.headDim && out.headDim != (*g)[1])
            return fail(p + "context_module.main.aggreg.0.1.weight: head dimension " + std::to_string((*g)[1]) +
                        " differs from the " + std::to_string(out.headDim) + " of an earlier block");
          out.headDim = (*g)[1];
        }
        norms.insert(findShape(shapes, p + "context_module.main.proj.norm.running_mean") ? "bn2d" : "trms2d");
      } else {
        // The resampling op: the encoder's last op of a stage, the decoder's first.
        const bool strided = findShape(shapes, p + "main.conv.weight") != nullptr;
        const auto* w =
            strided ? findShape(shapes, p + "main.conv.weight") : findShape(shapes, p + "main.conv.conv.weight");
        if (!w || w->size() != 4)
          return fail(p + "…: neither a ResBlock (main.conv1), an EfficientViT block (context_module) nor a " +
                      (encoder ? "down" : "up") + "-sampling block (main.conv)");
        const bool placed = encoder ? j + 1 == static_cast<std::int64_t>(ops.size()) && s + 1 < stageCount
                                    : j == 0 && s + 1 < stageCount;
        if (!placed)
          return fail(p + "main.conv: a " + std::string(encoder ? "down" : "up") + "-sampling block must be the " +
                      (encoder ? "last" : "first") + " op of a stage below the last");
        kinds.push_back(DcOp::Resample);
        std::string type;
        if (encoder) {
          type = strided ? "Conv" : "ConvPixelUnshuffle";
        } else {
          if (strided) return fail(p + "main.conv.weight: a decoder up-sampling block holds main.conv.conv.weight");
          // The output width is checked when the next stage's width is known.
          type = "?";
        }
        if (encoder && !out.resample.empty() && out.resample != type)
          return fail(p + "main.conv: " + type + " down-sampling after " + out.resample + " in an earlier stage");
        if (encoder) out.resample = type;
      }
    }
    std::int64_t blocks = 0;
    for (DcOp k : kinds) blocks += k != DcOp::Resample;
    const bool hasResample = std::find(kinds.begin(), kinds.end(), DcOp::Resample) != kinds.end();
    if (blocks > 0 && s + 1 < stageCount && !hasResample)
      return fail(side + ".stages." + std::to_string(s) + ": blocks but no " + (encoder ? "down" : "up") +
                  "-sampling block (main.conv…)");
    if (blockTypes.size() > 1) return fail(side + ".stages." + std::to_string(s) + ": mixes block types");
    if (norms.size() > 1) return fail(side + ".stages." + std::to_string(s) + ": mixes trms2d and bn2d norms");
    stage.depth = blocks;
    if (!blockTypes.empty()) stage.block = *blockTypes.begin();
    if (!norms.empty()) stage.norm = *norms.begin();
    // The activation leaves no weights: the official configurations pair relu with bn2d.
    stage.act = stage.norm == "bn2d" ? "relu" : "silu";
    out.stages.push_back(stage);
  }
  return out;
}

}  // namespace

Result<NamedTensors> dcAeFromDiffusers(const NamedTensors& tensors) {
  const TensorShapes shapes = shapesOf(tensors);
  // The width of each encoder stage, to tell a stride-2 down-sampling convolution (to the
  // next width) from a pixel-unshuffle one (to a quarter of it): both are "conv" there.
  auto encoderWidth = [&](std::int64_t s) -> std::int64_t {
    const std::string p = "encoder.down_blocks." + std::to_string(s) + ".0.";
    if (const auto* w = findShape(shapes, p + "conv1.weight"); w && !w->empty()) return (*w)[0];
    if (const auto* w = findShape(shapes, p + "attn.to_q.weight"); w && w->size() >= 2) return (*w)[1];
    return 0;
  };
  static const std::regex blockRe(R"((encoder\.down_blocks|decoder\.up_blocks)\.(\d{1,6})\.(\d{1,6})\.(.*))");
  static const std::map<std::string, std::string> blockNames{
      {"conv1.", "main.conv1.conv."},
      {"conv2.weight", "main.conv2.conv.weight"},
      {"norm.", "main.conv2.norm."},
      {"attn.to_out.", "context_module.main.proj.conv."},
      {"attn.norm_out.", "context_module.main.proj.norm."},
      {"conv_out.conv_inverted.", "local_module.main.inverted_conv.conv."},
      {"conv_out.conv_depth.", "local_module.main.depth_conv.conv."},
      {"conv_out.conv_point.", "local_module.main.point_conv.conv."},
      {"conv_out.norm.", "local_module.main.point_conv.norm."}};
  static const std::vector<std::pair<std::string, std::string>> outerNames{
      {"encoder.conv_in.conv.", "encoder.project_in.conv.conv."},
      {"encoder.conv_in.", "encoder.project_in.conv."},
      {"encoder.conv_out.", "encoder.project_out.main.op_list.0.conv."},
      {"decoder.conv_in.", "decoder.project_in.main.conv."},
      {"decoder.norm_out.", "decoder.project_out.op_list.0."},
      {"decoder.conv_out.conv.", "decoder.project_out.op_list.2.conv.conv."},
      {"decoder.conv_out.", "decoder.project_out.op_list.2.conv."}};
  auto asConv = [](const at::Tensor& t) { return t.dim() == 2 ? t.unsqueeze(-1).unsqueeze(-1) : t; };
  NamedTensors out;
  std::map<std::string, std::map<std::string, at::Tensor>> qkv;  // block prefix → to_q/to_k/to_v
  std::vector<std::string> unplaced;
  for (const auto& [name, tensor] : tensors) {
    std::smatch m;
    std::optional<std::string> key;
    at::Tensor value = tensor;
    if (std::regex_match(name, m, blockRe)) {
      const bool encoder = m[1].str()[0] == 'e';
      const std::string stage = m[2].str(),
                        block = (encoder ? "encoder" : "decoder") + std::string(".stages.") + stage + ".op_list." +
                                m[3].str() + ".",
                        rest = m[4].str();
      std::smatch a;
      static const std::regex qkvRe(R"(attn\.to_([qkv])\.weight)");
      static const std::regex scaleRe(R"(attn\.to_qkv_multiscale\.(\d{1,6})\.proj_(in|out)\.weight)");
      if (std::regex_match(rest, a, qkvRe)) {
        qkv[block][a[1].str()] = tensor;
        continue;
      }
      if (std::regex_match(rest, a, scaleRe)) {
        key = block + "context_module.main.aggreg." + a[1].str() + (a[2].str() == "in" ? ".0" : ".1") + ".weight";
      } else if (dcStartsWith(rest, "conv.")) {
        // Down- or up-sampling: "conv" of a DCDownBlock2d / DCUpBlock2d.
        bool strided = false;
        const auto* weight = findShape(shapes, m[1].str() + "." + stage + "." + m[3].str() + ".conv.weight");
        if (encoder && weight && !weight->empty()) {
          const std::int64_t next = encoderWidth(std::stoll(stage) + 1);
          strided = next > 0 && (*weight)[0] == next;
        }
        key = block + (strided ? "main.conv." : "main.conv.conv.") + rest.substr(5);
      } else {
        for (const auto& [from, to] : blockNames)
          if (dcStartsWith(rest, from)) {
            key = block + to + rest.substr(from.size());
            if (from == "attn.to_out.") value = asConv(tensor);
            break;
          }
      }
    } else {
      for (const auto& [from, to] : outerNames)
        if (dcStartsWith(name, from)) {
          key = to + name.substr(from.size());
          break;
        }
    }
    if (!key) {
      unplaced.push_back(name);
      continue;
    }
    out.emplace_back(*key, value);
  }
  // to_q, to_k and to_v are the thirds of the original qkv convolution's rows.
  for (const auto& [block, parts] : qkv) {
    if (parts.size() != 3) {
      std::string have;
      for (const auto& [p, t] : parts) have += (have.empty() ? "to_" : ", to_") + p;
      return fail("diffusers DC-AE block " + block + ": has " + have + " but not all of to_q, to_k, to_v");
    }
    const at::Tensor& q = parts.at("q");
    if (q.sizes() != parts.at("k").sizes() || q.sizes() != parts.at("v").sizes())
      return fail("diffusers DC-AE block " + block + ": to_q, to_k and to_v differ in shape");
    out.emplace_back(block + "context_module.main.qkv.conv.weight",
                     asConv(at::cat({q, parts.at("k"), parts.at("v")}, 0)));
  }
  if (!unplaced.empty()) {
    std::string list;
    for (std::size_t i = 0; i < unplaced.size() && i < 20; ++i) list += (i ? ", " : "") + unplaced[i];
    if (unplaced.size() > 20) list += ", … (" + std::to_string(unplaced.size()) + " in all)";
    return fail("unknown tensors for a diffusers DC-AE: " + list);
  }
  return out;
}

bool looksLikeDcAe(const TensorShapes& shapes) {
  const bool original =
      findShape(shapes, "decoder.project_in.main.conv.weight") && hasPrefix(shapes, "encoder.stages.");
  static const std::regex diffusersBlock(R"(encoder\.down_blocks\.\d+\.\d+\..*)");
  bool diffusers = false;
  if (findShape(shapes, "decoder.norm_out.weight"))
    for (const auto& [name, shape] : shapes)
      if (std::regex_match(name, diffusersBlock)) {
        diffusers = true;
        break;
      }
  return original || diffusers;
}

Result<ImportedAutoencoder> importDcAe(const NamedTensors& raw) {
  ImportedAutoencoder out;
  out.layout = "original";
  NamedTensors sd = raw;
  TensorShapes shapes = shapesOf(sd);
  if (!findShape(shapes, "decoder.project_in.main.conv.weight") && findShape(shapes, "decoder.norm_out.weight")) {
    auto converted = dcAeFromDiffusers(sd);
    if (!converted) return fail(converted.error());
    sd = std::move(*converted);
    shapes = shapesOf(sd);
    out.layout = "diffusers";
  }
  auto need = [&](const std::string& key) -> Result<std::vector<std::int64_t>> {
    const auto* s = findShape(shapes, key);
    if (!s) return fail("not a DC-AE: tensor '" + key + "' is missing");
    if (s->size() != 4)
      return fail("tensor '" + key + "' has " + std::to_string(s->size()) + " dimensions, expected 4");
    for (auto d : *s)
      if (d < 1) return fail("tensor '" + key + "' has an empty dimension");
    return *s;
  };
  const auto encStages = dcIndices(shapes, std::regex(R"(encoder\.stages\.(\d+)\..*)"));
  const auto decStages = dcIndices(shapes, std::regex(R"(decoder\.stages\.(\d+)\..*)"));
  if (encStages.empty() || decStages.empty()) return fail("not a DC-AE: no encoder.stages or decoder.stages tensors");
  const std::int64_t n = std::max(*encStages.rbegin(), *decStages.rbegin()) + 1;
  if (n > 10) return fail("encoder/decoder.stages: " + std::to_string(n) + " stages (expected at most 10)");

  DcAeConfig c;
  auto enc = readSide(shapes, "encoder", n);
  if (!enc) return fail(enc.error());
  auto dec = readSide(shapes, "decoder", n);
  if (!dec) return fail(dec.error());
  c.encoder = enc->stages;
  c.decoder = dec->stages;
  c.headDim = enc->headDim ? enc->headDim : dec->headDim ? dec->headDim : 32;
  if (enc->headDim && dec->headDim && enc->headDim != dec->headDim)
    return fail("the encoder's attention head dimension " + std::to_string(enc->headDim) +
                " differs from the decoder's " + std::to_string(dec->headDim));

  // Projections: channels in and out, and the first stage's width where it has no blocks.
  const bool encConv = findShape(shapes, "encoder.project_in.conv.weight") != nullptr;
  auto pin = need(encConv ? "encoder.project_in.conv.weight" : "encoder.project_in.conv.conv.weight");
  if (!pin) return fail(pin.error());
  c.inChannels = (*pin)[1];
  if (c.encoder[0].depth == 0) {
    if (n < 2) return fail("encoder.stages.0 is empty and there is no second stage");
    if (!encConv) {
      if (!enc->resample.empty() && enc->resample != "ConvPixelUnshuffle")
        return fail("encoder.project_in.conv.conv.weight: pixel-unshuffle projection with " + enc->resample +
                    " down-sampling");
      enc->resample = "ConvPixelUnshuffle";
    }
    // The empty first stage's width is not used by any layer.
    c.encoder[0].width = c.encoder[1].width;
    out.notes.push_back("the encoder's first stage has no blocks: its width is not stored (written as the second's)");
  }
  if (c.decoder[0].depth == 0) {
    if (n < 2) return fail("decoder.stages.0 is empty and there is no second stage");
    c.decoder[0].width = c.decoder[1].width;
  }
  c.downsample = enc->resample.empty() ? "Conv" : enc->resample;
  auto pout = need("encoder.project_out.main.op_list.0.conv.weight");
  if (!pout) return fail(pout.error());
  c.latentChannels = (*pout)[0];

  // Up-sampling type: the up block's convolution gives the stage's width (interpolate) or four times it (shuffle).
  std::string up;
  for (std::int64_t s = 0; s + 1 < n; ++s) {
    if (c.decoder[s].depth == 0) continue;
    auto w = need("decoder.stages." + std::to_string(s) + ".op_list.0.main.conv.conv.weight");
    if (!w) return fail(w.error());
    const std::string type = (*w)[0] == c.decoder[s].width       ? "InterpolateConv"
                             : (*w)[0] == 4 * c.decoder[s].width ? "ConvPixelShuffle"
                                                                 : "";
    if (type.empty() || (!up.empty() && up != type))
      return fail("decoder.stages." + std::to_string(s) + ".op_list.0.main.conv.conv.weight: " +
                  std::to_string((*w)[0]) + " output channels for a stage of width " +
                  std::to_string(c.decoder[s].width) + " (expected the width, or 4× for pixel shuffle)");
    up = type;
  }
  const bool decConv = findShape(shapes, "decoder.project_out.op_list.2.conv.weight") != nullptr;
  auto dout =
      need(decConv ? "decoder.project_out.op_list.2.conv.weight" : "decoder.project_out.op_list.2.conv.conv.weight");
  if (!dout) return fail(dout.error());
  if (c.decoder[0].depth == 0 && up.empty())
    up = (*dout)[0] == 4 * c.inChannels ? "ConvPixelShuffle" : "InterpolateConv";
  c.upsample = up.empty() ? "InterpolateConv" : up;
  c.outNorm = findShape(shapes, "decoder.project_out.op_list.0.running_mean") ? "bn2d" : "trms2d";
  c.outAct = "relu";
  if (auto ok = c.validate(); !ok) return fail("the shapes give an unusable configuration: " + ok.error().message());

  // Refuse a configuration whose blocks alone need far more weights than the file holds
  // before building it (the stage and op counts come from names a damaged file can make up).
  const double held = heldWeights(shapes), needed = c.minimumWeights();
  if (needed > 2 * held + 1e6)
    return fail("the names describe at least " + std::to_string(static_cast<std::int64_t>(needed / 1e6)) +
                " M weights, but the file holds " + std::to_string(static_cast<std::int64_t>(held / 1e6)) +
                " M: tensors are missing");
  DcAutoencoderImpl network(c);
  if (auto ok = loadStateDict(network, sd); !ok) return fail(ok.error());
  out.kind = "dc";
  out.config = c.toJson();
  for (const auto& [name, t] : stateDict(network))
    out.weights.emplace_back(name, t.is_floating_point() ? t.detach().to(at::kFloat).contiguous() : t.detach());
  std::string depths;
  for (const auto& s : c.encoder) depths += (depths.empty() ? "" : ",") + std::to_string(s.depth);
  out.notes.push_back("inferred from shapes (" + out.layout + " layout): DC-AE f" + std::to_string(c.downsampling()) +
                      "c" + std::to_string(c.latentChannels) + ", encoder depths " + depths + ", " + c.downsample +
                      " / " + c.upsample + (enc->headDim || dec->headDim ? "" : ", head_dim 32 (the default)") +
                      "; activations assumed as the official configurations pair them (relu with bn2d, else "
                      "silu; relu before the output)");
  return out;
}

void registerAutoencoder_dcae(AutoencoderRegistry& registry) {
  AutoencoderImporter importer;
  importer.recognises = looksLikeDcAe;
  importer.convert = importDcAe;
  auto factory = [](const nlohmann::json& config) -> Result<std::shared_ptr<AutoencoderImpl>> {
    auto c = DcAeConfig::fromJson(config, "autoencoder.config");
    if (!c) return fail(c.error());
    return std::shared_ptr<AutoencoderImpl>(std::make_shared<DcAutoencoderImpl>(*c));
  };
  // A tiny sana-like f4: widths 8, 16, 32 (EViT with 5×5 aggregation on the last stage).
  nlohmann::json tiny{{"kind", "dc"},
                      {"in_channels", 3},
                      {"latent_channels", 4},
                      {"head_dim", 8},
                      {"encoder",
                       {{"width_list", {8, 16, 32}},
                        {"depth_list", {1, 1, 1}},
                        {"block_type", {"ResBlock", "ResBlock", "EViTS5_GLU"}},
                        {"downsample_block_type", "Conv"}}},
                      {"decoder",
                       {{"width_list", {8, 16, 32}},
                        {"depth_list", {1, 1, 1}},
                        {"block_type", {"ResBlock", "ResBlock", "EViTS5_GLU"}},
                        {"upsample_block_type", "InterpolateConv"}}}};
  (void)registry.add({"dc", "dcae",
                      "DC-AE (mit-han-lab; NiT's f32c32 autoencoder): deterministic, original or diffusers layout",
                      factory, tiny, importer, [](const nlohmann::json& config) {
                        auto c = DcAeConfig::fromJson(config, "autoencoder.config");
                        return c ? c->minimumWeights() : 0.0;  // one that does not parse is refused when built
                      }});
}

}  // namespace tessera
