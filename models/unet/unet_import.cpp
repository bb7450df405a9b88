// SPDX-License-Identifier: Apache-2.0
#include "models/unet/unet_import.h"

#include "core/process/gaussian_diffusion.h"
#include "models/state_dict.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace tessera {
namespace {

constexpr const char* kLdmPrefix = "model.diffusion_model.";
constexpr const char* kCondStage = "cond_stage_model.";
constexpr const char* kFirstStage = "first_stage_model.";

bool unetStartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

/// LatentDiffusion's register_schedule buffers and other bookkeeping a checkpoint holds
/// beside the networks.
bool unetIsLdmBookkeeping(const std::string& key) {
  static const std::set<std::string> names{"betas",
                                           "alphas_cumprod",
                                           "alphas_cumprod_prev",
                                           "sqrt_alphas_cumprod",
                                           "sqrt_one_minus_alphas_cumprod",
                                           "log_one_minus_alphas_cumprod",
                                           "sqrt_recip_alphas_cumprod",
                                           "sqrt_recipm1_alphas_cumprod",
                                           "posterior_variance",
                                           "posterior_log_variance_clipped",
                                           "posterior_mean_coef1",
                                           "posterior_mean_coef2",
                                           "logvar",
                                           "scale_factor",
                                           "lvlb_weights",
                                           "cond_ids"};
  return names.count(key) > 0 || unetStartsWith(key, "model_ema.");
}

/// The value a float32 buffer was written from: 0.0015f reads 0.0015000000130…
double unetShortestFloat(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.7g", v);
  return std::strtod(buffer, nullptr);
}

std::string unetIntList(const std::vector<std::int64_t>& v) {
  std::string s;
  for (auto x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return "[" + s + "]";
}

std::string unetNumberList(const std::vector<double>& v) {
  std::string s;
  for (auto x : v) {
    std::ostringstream o;
    o << x;
    s += (s.empty() ? "" : ",") + o.str();
  }
  return "[" + s + "]";
}

/// The largest index N of `prefix`N. keys, and which indices occur.
std::set<std::int64_t> unetIndicesOf(const std::map<std::string, at::Tensor>& byName, const std::string& prefix) {
  std::set<std::int64_t> ids;
  for (const auto& [name, t] : byName) {
    if (!unetStartsWith(name, prefix)) continue;
    const std::string rest = name.substr(prefix.size());
    const auto dot = rest.find('.');
    if (dot == std::string::npos || dot == 0 || dot > 6) continue;
    if (rest.find_first_not_of("0123456789") < dot) continue;
    ids.insert(std::stoll(rest.substr(0, dot)));
  }
  return ids;
}

/// The schedule LDM's register_schedule wrote into `betas`.
Result<UNetImportedSchedule> unetScheduleFromBetas(const at::Tensor& betasIn) {
  const at::Tensor betas = betasIn.to(at::kDouble).flatten();
  UNetImportedSchedule s;
  s.steps = betas.numel();
  s.fromCheckpoint = true;
  if (s.steps < 2) return fail("betas has " + std::to_string(s.steps) + " entries; a schedule needs at least 2");
  auto fits = [&](const GaussianDiffusionConfig& c) {
    auto d = GaussianDiffusion::create(c);
    if (!d) return false;
    return (d->betas() - betas).abs().max().item<double>() <= 1e-6 * betas.abs().max().item<double>() + 1e-9;
  };
  GaussianDiffusionConfig c;
  c.steps = s.steps;
  c.schedule = "scaled_linear";
  c.betaStart = unetShortestFloat(betas[0].item<double>());
  c.betaEnd = unetShortestFloat(betas[s.steps - 1].item<double>());
  if (c.betaStart > 0 && c.betaStart < c.betaEnd && fits(c)) {
    s.schedule = c.schedule;
    s.betaStart = c.betaStart;
    s.betaEnd = c.betaEnd;
    return s;
  }
  for (const char* name : {"linear", "cosine"}) {
    c.schedule = name;
    if (fits(c)) {
      s.schedule = name;
      return s;
    }
  }
  return fail("its betas buffer (" + std::to_string(s.steps) + " steps, " + std::to_string(betas[0].item<double>()) +
              " … " + std::to_string(betas[s.steps - 1].item<double>()) +
              ") fits none of the schedules Tessera knows (LDM's linear, i.e. scaled_linear; ADM's linear; cosine)");
}

/// The configuration the tensors determine, before heads and the other unseen settings.
Result<UNetConfig> unetStructureOf(const std::map<std::string, at::Tensor>& net) {
  auto shape = [&](const std::string& key) -> const at::Tensor* {
    auto it = net.find(key);
    return it == net.end() ? nullptr : &it->second;
  };
  auto need = [&](const std::string& key, std::int64_t dims) -> Result<at::Tensor> {
    const at::Tensor* t = shape(key);
    if (!t) return fail("not a U-Net state dict: tensor '" + key + "' is missing");
    if (auto ok = checkImportShape(*t, key, dims); !ok) return fail(ok.error());
    return *t;
  };
  UNetConfig c;
  auto time = need("time_embed.0.weight", 2);
  if (!time) return fail(time.error());
  c.modelChannels = time->size(1);
  if (c.modelChannels < 1 || time->size(0) != 4 * c.modelChannels)
    return fail("time_embed.0.weight is (" + std::to_string(time->size(0)) + ", " + std::to_string(time->size(1)) +
                "), expected (4·model_channels, model_channels)");
  auto first = need("input_blocks.0.0.weight", 4);
  if (!first) return fail(first.error());
  c.inChannels = first->size(1);
  auto out = need("out.2.weight", 4);
  if (!out) return fail(out.error());
  c.outChannels = out->size(0);
  c.learnSigma = c.outChannels == 2 * c.inChannels;

  const auto inputs = unetIndicesOf(net, "input_blocks."), outputs = unetIndicesOf(net, "output_blocks.");
  if (outputs.empty() || inputs.empty())
    return fail("not a U-Net state dict: no input_blocks.N or output_blocks.N tensors");
  const std::int64_t nOut = *outputs.rbegin() + 1, nIn = *inputs.rbegin() + 1;
  if (static_cast<std::int64_t>(outputs.size()) != nOut)
    return fail("output_blocks are not numbered 0.." + std::to_string(nOut - 1) + " without gaps");
  auto has = [&](const std::string& key) { return shape(key) != nullptr; };
  // The first output block that up-samples sits at index num_res_blocks.
  std::int64_t nrb = -1;
  bool updown = false, convResample = true, resampleSeen = false;
  for (std::int64_t j = 0; j < nOut && nrb < 0; ++j)
    for (int l = 1; l <= 2; ++l) {
      const std::string p = "output_blocks." + std::to_string(j) + "." + std::to_string(l) + ".";
      if (has(p + "in_layers.0.weight"))
        nrb = j, updown = true, resampleSeen = true;
      else if (has(p + "conv.weight"))
        nrb = j, resampleSeen = true;
      if (nrb >= 0) break;
    }
  if (nrb < 0) {
    // Parameter-free up-sampling: the down-sampling blocks (average pooling) leave gaps.
    for (std::int64_t i = 1; i < nIn && nrb < 0; ++i)
      if (!inputs.count(i)) nrb = i - 1, convResample = false, resampleSeen = true;
  }
  if (nrb < 0) nrb = nOut - 1;  // one level
  if (nrb < 1 || nOut % (nrb + 1))
    return fail("the output blocks (" + std::to_string(nOut) +
                ") do not divide into levels of num_res_blocks + 1 = " + std::to_string(nrb + 1));
  c.numResBlocks = nrb;
  const std::int64_t levels = nOut / (nrb + 1);
  if (levels > 12) return fail(std::to_string(levels) + " levels: at most 12 are supported");
  if (nIn != levels * (nrb + 1))
    return fail("the input blocks (" + std::to_string(nIn) + ") do not fit " + std::to_string(levels) + " levels of " +
                std::to_string(nrb) + " residual blocks");
  if (!resampleSeen) convResample = true;
  c.resblockUpdown = updown;
  c.convResample = convResample;

  c.channelMult.clear();
  c.attentionResolutions.clear();
  bool transformer = false, selfAttention = false;
  for (std::int64_t level = 0; level < levels; ++level) {
    const std::string b = "input_blocks." + std::to_string(1 + level * (nrb + 1)) + ".";
    auto conv = need(b + "0.in_layers.2.weight", 4);
    if (!conv) return fail(conv.error());
    if (conv->size(0) < 1) return fail(b + "0.in_layers.2.weight has no output channels");
    c.channelMult.push_back(static_cast<double>(conv->size(0)) / static_cast<double>(c.modelChannels));
    if (has(b + "1.qkv.weight")) selfAttention = true, c.attentionResolutions.push_back(std::int64_t{1} << level);
    if (has(b + "1.proj_in.weight")) transformer = true, c.attentionResolutions.push_back(std::int64_t{1} << level);
  }
  if (transformer && selfAttention)
    return fail("the weights mix AttentionBlocks and SpatialTransformers, which no reference configuration does");
  c.useSpatialTransformer = transformer || has("middle_block.1.proj_in.weight");
  if (c.useSpatialTransformer) {
    const auto depth = unetIndicesOf(net, "middle_block.1.transformer_blocks.");
    c.transformerDepth = depth.empty() ? 1 : *depth.rbegin() + 1;
    auto toK = need("middle_block.1.transformer_blocks.0.attn2.to_k.weight", 2);
    if (!toK) return fail(toK.error());
    // A context as wide as the tokens, without a class embedder: the second attention
    // attends to the image itself (context_dim 0).
    const bool embedder = shape("cond_stage_model.embedding.weight") != nullptr;
    c.contextDim = !embedder && toK->size(1) == toK->size(0) ? 0 : toK->size(1);
  } else {
    c.contextDim = 0;
  }
  auto emb = need("input_blocks.1.0.emb_layers.1.weight", 2);
  if (!emb) return fail(emb.error());
  auto res = need("input_blocks.1.0.in_layers.2.weight", 4);
  if (!res) return fail(res.error());
  c.useScaleShiftNorm = emb->size(0) == 2 * res->size(0);

  if (const at::Tensor* table = shape("label_emb.weight")) {
    c.classConditioning = "label_emb";
    c.numClasses = table->size(0);
    c.classDropoutProb = 0;
  } else if (const at::Tensor* embedder = shape("cond_stage_model.embedding.weight")) {
    c.classConditioning = "cross_attention";
    c.numClasses = embedder->size(0) - 1;
    c.classDropoutProb = 0.1;
    if (embedder->dim() != 2 || embedder->size(1) != c.contextDim)
      return fail("cond_stage_model.embedding.weight is " + std::to_string(embedder->size(-1)) +
                  " wide, but the cross-attention takes a " + std::to_string(c.contextDim) + "-wide context");
  } else {
    c.classConditioning = "none";
    c.numClasses = 1;
    c.classDropoutProb = 0;
    if (c.contextDim > 0)
      return fail("the cross-attention takes a context " + std::to_string(c.contextDim) +
                  " wide but the checkpoint has no class embedder (cond_stage_model.embedding): only "
                  "class-conditional LDM models import");
  }
  return c;
}

bool unetSameStructure(const UNetConfig& a, const UNetConfig& b) {
  return a.inChannels == b.inChannels && a.modelChannels == b.modelChannels && a.outChannels == b.outChannels &&
         a.numResBlocks == b.numResBlocks && a.channelMult == b.channelMult &&
         a.useScaleShiftNorm == b.useScaleShiftNorm && a.resblockUpdown == b.resblockUpdown &&
         a.useSpatialTransformer == b.useSpatialTransformer && a.classConditioning == b.classConditioning &&
         std::set<std::int64_t>(a.attentionResolutions.begin(), a.attentionResolutions.end()) ==
             std::set<std::int64_t>(b.attentionResolutions.begin(), b.attentionResolutions.end());
}

}  // namespace

bool recognisesUNet(const TensorShapes& shapes) {
  auto dims = [&](const std::string& key) -> std::size_t {
    for (const char* prefix : {"", kLdmPrefix})
      for (const auto& [name, shape] : shapes)
        if (name == prefix + key) return shape.size();
    return 0;
  };
  return dims("time_embed.0.weight") == 2 && dims("input_blocks.0.0.weight") == 4 && dims("out.2.weight") == 4;
}

Result<UNetImport> importUNetStateDict(const NamedTensors& raw, const ImportRequest& o) {
  const NamedTensors sd = stripWrapperPrefixes(raw);
  UNetImport out;
  out.ldmLayout = std::any_of(sd.begin(), sd.end(), [](const auto& e) { return unetStartsWith(e.first, kLdmPrefix); });
  if (o.source == "ldm" && !out.ldmLayout)
    return fail(
        "not an LDM checkpoint: no model.diffusion_model.* tensors (a bare UNetModel state dict imports with "
        "--from adm or --from unet)");
  std::map<std::string, at::Tensor> net;
  std::vector<std::string> ignored;
  for (const auto& [name, t] : sd) {
    if (!out.ldmLayout) {
      net[name] = t;
      continue;
    }
    if (unetStartsWith(name, kLdmPrefix)) {
      net[name.substr(std::string(kLdmPrefix).size())] = t;
    } else if (unetStartsWith(name, kCondStage)) {
      if (name != "cond_stage_model.embedding.weight")
        return fail("tensor '" + name +
                    "': this checkpoint's conditioning model is not LDM's ClassEmbedder (cond_stage_model.embedding); "
                    "only class-conditional LDM models import");
      net[name] = t;
    } else if (unetStartsWith(name, kFirstStage)) {
      out.hasFirstStage = true;
    } else if (unetIsLdmBookkeeping(name)) {
      if (unetStartsWith(name, "model_ema.")) ignored.push_back(name);
    } else {
      ignored.push_back(name);
    }
  }
  if (!ignored.empty())
    out.notes.push_back("left out " + std::to_string(ignored.size()) + " tensors that are not the U-Net's (" +
                        ignored.front() + (ignored.size() > 1 ? ", …" : "") + ")");

  auto structure = unetStructureOf(net);
  if (!structure) return fail(structure.error());
  UNetConfig c = *structure;
  if (o.numClasses) {
    const std::int64_t rows = c.classRows();
    if (c.classConditioning == "none") return fail("--num-classes: these weights have no class table");
    c.numClasses = *o.numClasses;
    if (rows == c.numClasses + 1)
      c.classDropoutProb = 0.1;
    else if (rows == c.numClasses)
      c.classDropoutProb = 0;
    else
      return fail("the class table has " + std::to_string(rows) + " rows, which fits neither " +
                  std::to_string(c.numClasses) + " classes nor " + std::to_string(c.numClasses) + " + a null class");
  }

  // What the shapes cannot tell: from the preset given, else from a preset the weights
  // match, else from the options (which override either).
  std::optional<UNetConfig> preset;
  std::string presetName;
  if (o.preset) {
    auto p = unetPreset(*o.preset);
    if (!p) return fail(p.error());
    if (!unetSameStructure(*p, c))
      return fail("preset " + *o.preset + " does not fit the weights (channel_mult " + unetNumberList(p->channelMult) +
                  " vs " + unetNumberList(c.channelMult) + ", attention at " + unetIntList(p->attentionResolutions) +
                  " vs " + unetIntList(c.attentionResolutions) + ", " + std::to_string(p->numResBlocks) + " vs " +
                  std::to_string(c.numResBlocks) + " residual blocks)");
    preset = *p;
    presetName = *o.preset;
  } else {
    for (const auto& name : unetPresetNames()) {
      auto p = unetPreset(name);
      if (p && unetSameStructure(*p, c)) {
        preset = *p;
        presetName = name;
        out.notes.push_back("the weights have the structure of preset " + name +
                            ": heads, attention order and image size taken from it");
        break;
      }
    }
  }
  if (preset) {
    c.numHeads = preset->numHeads;
    c.numHeadChannels = preset->numHeadChannels;
    c.numHeadsUpsample = preset->numHeadsUpsample;
    c.useNewAttentionOrder = preset->useNewAttentionOrder;
    c.imageSize = preset->imageSize;
    c.legacy = preset->legacy;
  }
  if (o.heads) c.numHeads = *o.heads, c.numHeadChannels = o.headChannels ? *o.headChannels : -1;
  if (o.headChannels) c.numHeadChannels = *o.headChannels;
  if (o.headsUpsample) c.numHeadsUpsample = *o.headsUpsample;
  if (o.newAttentionOrder) c.useNewAttentionOrder = *o.newAttentionOrder;
  if (o.imageSize) c.imageSize = *o.imageSize;
  if (!preset && !o.heads && !o.headChannels)
    return fail(
        "the attention heads cannot be read from the weights: give --preset, --heads (num_heads) or "
        "--num-head-channels (the presets: " +
        [] {
          std::string s;
          for (const auto& n : unetPresetNames()) s += (s.empty() ? "" : ", ") + n;
          return s;
        }() +
        ")");
  if (!preset && !o.imageSize) {
    c.imageSize = c.sizeMultiple() * std::max<std::int64_t>(1, 64 / c.sizeMultiple());
    out.notes.push_back("the image size is not in the weights: assumed " + std::to_string(c.imageSize) +
                        " (give --image-size)");
  }
  if (o.attentionResolutions) {
    std::set<std::int64_t> given;
    std::stringstream ss(*o.attentionResolutions);
    std::string item;
    while (std::getline(ss, item, ',')) {
      char* end = nullptr;
      const long long r = std::strtoll(item.c_str(), &end, 10);
      if (item.empty() || *end || r < 1 || r > c.imageSize)
        return fail("--attention-resolutions: expected pixel sides like 32,16,8 (at most image_size " +
                    std::to_string(c.imageSize) + "), got '" + *o.attentionResolutions + "'");
      given.insert(c.imageSize / r);
    }
    const std::set<std::int64_t> found(c.attentionResolutions.begin(), c.attentionResolutions.end());
    if (given != found) {
      std::string sides;
      for (auto ds : found) sides += (sides.empty() ? "" : ",") + std::to_string(c.imageSize / ds);
      return fail("--attention-resolutions " + *o.attentionResolutions + " at image size " +
                  std::to_string(c.imageSize) + " does not fit the weights, which have attention at " + sides);
    }
  }
  if (auto ok = c.validate(); !ok) return fail(ok.error());

  // The schedule: LDM checkpoints carry theirs; otherwise the reference's default.
  if (out.ldmLayout) {
    auto it = std::find_if(sd.begin(), sd.end(), [](const auto& e) { return e.first == "betas"; });
    if (it != sd.end()) {
      auto s = unetScheduleFromBetas(it->second);
      if (!s) return fail(s.error());
      out.schedule = *s;
    } else {
      out.schedule.schedule = "scaled_linear";
      out.schedule.betaStart = 0.0015;
      out.schedule.betaEnd = 0.0195;
      out.notes.push_back("no betas buffer: LDM's cin256 schedule assumed (linear_start 0.0015, linear_end 0.0195)");
    }
  } else {
    out.schedule.schedule = presetName == "ADM-64" ? "cosine" : "linear";
  }

  const auto shapes = unetStateShapes(c);
  TensorShapes given;
  for (const auto& [name, t] : net)
    given.emplace_back(name, std::vector<std::int64_t>(t.sizes().begin(), t.sizes().end()));
  if (auto ok = checkStateDictShapes(shapes, given); !ok) return fail(ok.error());
  for (const auto& [name, shape] : shapes) out.weights.emplace_back(name, net.at(name).to(at::kFloat).contiguous());

  out.notes.insert(
      out.notes.begin(),
      "inferred from shapes: " + std::string(out.ldmLayout ? "an LDM checkpoint" : "a UNetModel state dict") +
          ", model_channels " + std::to_string(c.modelChannels) + ", channel_mult " + unetNumberList(c.channelMult) +
          ", " + std::to_string(c.numResBlocks) + " residual blocks per level, attention at down-sampling " +
          unetIntList(c.attentionResolutions) + " (" +
          (c.useSpatialTransformer ? "SpatialTransformer, context " + std::to_string(c.contextDim)
                                   : std::string("AttentionBlock")) +
          "), scale-shift norm " + (c.useScaleShiftNorm ? "yes" : "no") + ", " +
          (c.resblockUpdown ? "residual"
           : c.convResample ? "convolutional"
                            : "parameter-free") +
          " resampling, " + std::to_string(c.numClasses) + " classes" + (c.hasNullClass() ? " + null class" : "") +
          " (" + c.classConditioning + "), learned sigma " + (c.learnSigma ? "yes" : "no"));
  out.config = c;
  return out;
}

}  // namespace tessera
