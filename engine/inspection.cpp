// SPDX-License-Identifier: Apache-2.0
#include "engine/inspection.h"

#include "core/formats/safetensors.h"
#include "core/samplers/observer_fanout.h"
#include "core/system/system_info.h"
#include "engine/generation_plan.h"
#include "models/probe.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <tuple>
#include <sstream>

namespace tessera {
namespace {

struct Shape {
  std::int64_t height = 0, width = 0, patch = 1, depth = 0, heads = 0;
  std::vector<AttentionLayerInfo> layers;  ///< every attention layer of the model at this size
};

Result<Shape> shapeOf(const LoadedModel& model, const GenerationRequest& g) {
  auto traits = modelTraits(model);
  if (!traits) return fail(traits.error());
  Shape s;
  if (g.sizes.size() > 1)
    return fail("inspection looks at one image of one size; the request has " + std::to_string(g.sizes.size()) +
                " sizes");
  s.height = !g.sizes.empty() ? g.sizes[0].first : g.height > 0 ? g.height : traits->trainedHeight;
  s.width = !g.sizes.empty() ? g.sizes[0].second : g.width > 0 ? g.width : traits->trainedWidth;
  if (auto ok = checkSize(*traits, s.height, s.width); !ok) return fail(ok.error());
  s.patch = traits->sizeMultiple;
  s.layers = model.backbone->attentionLayers(s.height, s.width);
  if (s.layers.empty()) {  // the DiT family: depth blocks of num_heads on the patch grid
    const nlohmann::json config =
        model.description.value("backbone", nlohmann::json::object()).value("config", nlohmann::json::object());
    const auto depth = config.value("depth", std::int64_t(0)), heads = config.value("num_heads", std::int64_t(0));
    if (heads > 0)
      for (std::int64_t l = 0; l < depth; ++l)
        s.layers.push_back({"block " + std::to_string(l), heads, s.height / s.patch, s.width / s.patch});
  }
  s.depth = static_cast<std::int64_t>(s.layers.size());
  for (const auto& l : s.layers) s.heads = std::max(s.heads, l.heads);
  return s;
}

/// The layers a request captures (all when it names none).
std::vector<int> chosenLayers(const InspectionRequest& r, const Shape& s) {
  if (!r.layers.empty()) return {r.layers.begin(), r.layers.end()};
  std::vector<int> all;
  for (int l = 0; l < static_cast<int>(s.depth); ++l) all.push_back(l);
  return all;
}

/// The finest grid among `layers` (the capture's map grid).
std::pair<std::int64_t, std::int64_t> finestGrid(const Shape& s, const std::vector<int>& layers) {
  std::pair<std::int64_t, std::int64_t> best{s.height / s.patch, s.width / s.patch};
  bool first = true;
  for (int l : layers) {
    const auto& info = s.layers[static_cast<std::size_t>(l)];
    if (first || info.gridH * info.gridW > best.first * best.second) best = {info.gridH, info.gridW};
    first = false;
  }
  return best;
}

Result<void> checkRequest(const InspectionRequest& r, const Shape& s) {
  if (r.generation.classes.size() != 1)
    return fail("inspection looks at one image; the request has " + std::to_string(r.generation.classes.size()));
  if (r.attention && (s.depth < 1 || s.heads < 1))
    return fail("this backbone has no attention taps (no attention layers at this size)");
  for (int l : r.layers)
    if (l < 0 || l >= s.depth)
      return fail("layer " + std::to_string(l) + " is out of range: this model has blocks 0 to " +
                  std::to_string(s.depth - 1));
  const std::int64_t steps = r.generation.options.steps;
  for (std::int64_t k : r.steps)
    if (k < 0 || (steps > 0 && k >= steps))
      return fail("step " + std::to_string(k) + " is out of range: this run has steps 0 to " +
                  std::to_string(steps - 1));
  return {};
}

/// Observer of the capture run: keeps the probed steps' conditional attention and every
/// guided step's guidance map.
class CaptureObserver final : public StepObserver {
public:
  CaptureObserver(Probe& probe, InspectionCapture& out, std::int64_t total,
                  std::function<void(std::int64_t, std::int64_t)> progress)
      : m_probe(probe), m_out(out), m_total(total), m_progress(std::move(progress)) {}

  void onStep(const StepEvent& e) override {
    if (!m_probe.attention().empty()) {
      std::size_t i = 0;
      for (const auto& [layer, rows] : m_probe.attention()) {  // in layer order, as m_out.layers
        if (m_attention.size() <= i) m_attention.emplace_back();
        m_attention[i++].push_back(rows.front());  // row 0: the conditional pass
      }
      m_out.steps.push_back(e.index);
      m_out.taus.push_back(e.tau);
      m_probe.clearResults();
    }
    const Denoised& d = *e.denoised;
    if (d.x0Conditional.defined()) {
      const at::Tensor diff = (d.x0Conditional[0] - d.x0Unconditional[0]).to(at::kCPU, at::kFloat);  // (C, H, W)
      m_guidance.push_back(diff.pow(2).sum(0).sqrt());
      m_out.guidanceSteps.push_back(e.index);
      m_out.guidanceTaus.push_back(e.tau);
    }
    if (m_progress) m_progress(e.index + 1, m_total);
  }

  void finish() {
    bool uniform = true;
    for (const auto& steps : m_attention) {
      m_out.layerAttention.push_back(at::stack(steps, 0).contiguous());  // (steps, heads, T, T)
      uniform = uniform && m_out.layerAttention.back().sizes() == m_out.layerAttention.front().sizes();
    }
    if (!m_out.layerAttention.empty() && uniform) m_out.attention = at::stack(m_out.layerAttention, 1).contiguous();
    if (!m_guidance.empty()) m_out.guidance = at::stack(m_guidance, 0).contiguous();
  }

private:
  Probe& m_probe;
  InspectionCapture& m_out;
  std::int64_t m_total;
  std::function<void(std::int64_t, std::int64_t)> m_progress;
  std::vector<std::vector<at::Tensor>> m_attention;  ///< per captured layer, per captured step
  std::vector<at::Tensor> m_guidance;
};

at::Tensor layerHeads(const InspectionCapture& c, std::int64_t stepIndex, int layer, int head) {
  at::Tensor a = c.layerAttention[static_cast<std::size_t>(layer)][stepIndex];  // (heads, T, T)
  return head == kMeanOfHeads ? a.mean(0) : a[head];
}

/// Layer `layer`'s map for capture-grid token `token`, on the capture's grid.
Result<at::Tensor> layerMapOnGrid(const InspectionCapture& c, std::int64_t stepIndex, int layer, int head,
                                  std::int64_t token, bool reverse) {
  const AttentionLayerInfo& info = c.layerInfo[static_cast<std::size_t>(layer)];
  if (head != kMeanOfHeads && head >= info.heads)
    return fail("head " + std::to_string(head) + " is out of range: " + info.name + " has " +
                std::to_string(info.heads) + " heads");
  const std::int64_t fy = c.gridH / info.gridH, fx = c.gridW / info.gridW;
  const std::int64_t local = (token / c.gridW / fy) * info.gridW + (token % c.gridW) / fx;
  const at::Tensor m = layerHeads(c, stepIndex, layer, head);  // (T_l, T_l)
  at::Tensor v = (reverse ? m.select(1, local) : m.select(0, local)).reshape({info.gridH, info.gridW});
  if (fy > 1 || fx > 1) {
    v = v.repeat_interleave(fy, 0).repeat_interleave(fx, 1);
    if (!reverse) v = v / static_cast<double>(fy * fx);  // still a distribution over the finer grid
  }
  return v.contiguous();
}

}  // namespace

Result<InspectionEstimate> estimateInspection(const LoadedModel& model, const InspectionRequest& request) {
  auto shape = shapeOf(model, request.generation);
  if (!shape) return fail(shape.error());
  if (auto ok = checkRequest(request, *shape); !ok) return fail(ok.error());
  InspectionEstimate e;
  const std::vector<int> layers = request.attention ? chosenLayers(request, *shape) : std::vector<int>{};
  const auto [gridH, gridW] = finestGrid(*shape, layers);
  e.tokens = gridH * gridW;
  e.depth = shape->depth;
  e.heads = shape->heads;
  e.layers = static_cast<std::int64_t>(layers.size());
  e.totalSteps = request.generation.options.steps;
  e.steps = request.steps.empty() ? e.totalSteps : static_cast<std::int64_t>(request.steps.size());
  // In floating point: at 16384 x 16384 the integer products wrapped around (the estimate
  // once came out hundreds of times too small).
  double allLayers = 0, largest = 0;
  for (int l : layers) {
    const auto& info = shape->layers[static_cast<std::size_t>(l)];
    const double t = static_cast<double>(info.gridH) * static_cast<double>(info.gridW);
    const double perLayer = static_cast<double>(info.heads) * t * t * 4.0;
    allLayers += perLayer;
    largest = std::max(largest, perLayer);
  }
  // Kept: the conditional rows of every captured step; transient: one evaluation's rows
  // (conditional and unconditional) of every captured layer, plus one layer's logits; the
  // guidance maps; and generating the one image itself.
  double bytes = allLayers * static_cast<double>(e.steps + 2) + 2 * largest;
  bytes +=
      static_cast<double>(e.totalSteps) * static_cast<double>(shape->height) * static_cast<double>(shape->width) * 4.0;
  if (auto traits = modelTraits(model); traits)
    bytes += estimateGenerationBytes(model, *traits, 1, 1, shape->height, shape->width);
  e.bytes = bytes >= 1.8e19 ? std::numeric_limits<std::uint64_t>::max() : static_cast<std::uint64_t>(bytes);
  return e;
}

Result<InspectionCapture> captureInspection(const LoadedModel& model, const InspectionRequest& request) {
  auto shape = shapeOf(model, request.generation);
  if (!shape) return fail(shape.error());
  if (auto ok = checkRequest(request, *shape); !ok) return fail(ok.error());
  // Refused before anything runs when it cannot fit (at 128 x 128 one grew past 2 GB unguarded).
  auto estimate = estimateInspection(model, request);
  if (!estimate) return fail(estimate.error());
  if (const std::uint64_t available = availableMemoryBytes(); available > 0 && estimate->bytes > available) {
    std::ostringstream message;
    message << std::setprecision(3) << "inspection: capturing " << estimate->steps << " steps x " << estimate->layers
            << " blocks of " << estimate->heads << " heads x " << estimate->tokens << "^2 tokens needs about "
            << static_cast<double>(estimate->bytes) / 1e9 << " GB, and " << static_cast<double>(available) / 1e9
            << " GB is available; capture fewer steps or blocks, or a smaller size";
    return fail(message.str());
  }
  InspectionCapture out;
  const std::vector<int> chosen = request.attention ? chosenLayers(request, *shape) : std::vector<int>{};
  out.height = shape->height;
  out.width = shape->width;
  std::tie(out.gridH, out.gridW) = finestGrid(*shape, chosen);
  out.patch = std::max<std::int64_t>(1, shape->height / out.gridH);
  out.depth = shape->depth;
  out.heads = shape->heads;
  for (int l : chosen) out.layerInfo.push_back(shape->layers[static_cast<std::size_t>(l)]);

  Probe probe;
  GenerationRequest g = request.generation;
  g.batch = 1;
  g.guidanceParts = true;
  g.recordTrajectory = false;
  if (request.attention) {
    const std::set<int> layers(chosen.begin(), chosen.end());
    out.layers = chosen;
    probe.requestAttention(layers);
    g.probe = &probe;
    if (!request.steps.empty()) {
      const std::set<std::int64_t> wanted(request.steps.begin(), request.steps.end());
      g.probeStep = [wanted](std::int64_t step) { return wanted.count(step) > 0; };
    }
  }
  CaptureObserver observer(probe, out, request.generation.options.steps, request.progress);
  // The caller's observer, if any, still sees every step (after ours).
  ObserverFanout both;
  both.targets = {&observer, request.generation.observer};
  g.observer = &both;
  auto result = generate(model, g);
  if (!result) return fail(result.error());
  if (result->cancelled) return fail("the inspection was cancelled");
  observer.finish();
  if (request.attention && out.layerAttention.size() != out.layers.size())
    return fail("the backbone recorded attention for " + std::to_string(out.layerAttention.size()) + " of the " +
                std::to_string(out.layers.size()) + " layers asked for: its blocks have no attention taps");
  out.image = result->images.front();
  out.settings = result->settings;
  out.totalSteps = result->steps;
  return out;
}

Result<at::Tensor> attentionMap(const InspectionCapture& c, std::int64_t stepIndex, int layer, int head,
                                std::int64_t token, bool reverse) {
  if (c.layerAttention.empty()) return fail("this capture holds no attention");
  const std::int64_t S = static_cast<std::int64_t>(c.steps.size()),
                     L = static_cast<std::int64_t>(c.layerAttention.size());
  const std::int64_t T = c.gridH * c.gridW;
  if (stepIndex < 0 || stepIndex >= S)
    return fail("captured step " + std::to_string(stepIndex) + " is out of range 0 to " + std::to_string(S - 1));
  if (layer != kMeanOfLayers && layer != kRollout && (layer < 0 || layer >= L))
    return fail("layer " + std::to_string(layer) + " is out of range: " + std::to_string(L) + " layers were captured");
  if (head != kMeanOfHeads && (head < 0 || head >= c.heads))
    return fail("head " + std::to_string(head) + " is out of range: the model has " + std::to_string(c.heads) +
                " heads");
  if (token < 0 || token >= T)
    return fail("token " + std::to_string(token) + " is out of range: the image has " + std::to_string(T) + " tokens");
  if (layer == kRollout) {
    for (const auto& info : c.layerInfo)
      if (info.gridH != c.gridH || info.gridW != c.gridW)
        return fail("rollout multiplies layers of one grid; " + info.name +
                    " has another: pick a layer, or capture layers of one resolution");
    const at::Tensor eye = at::eye(T, at::kFloat);
    at::Tensor m = eye;  // (T, T): rows are queries, columns keys
    for (std::int64_t l = 0; l < L; ++l) {
      if (head != kMeanOfHeads && head >= c.layerInfo[static_cast<std::size_t>(l)].heads)
        return fail("head " + std::to_string(head) +
                    " is out of range: " + c.layerInfo[static_cast<std::size_t>(l)].name + " has " +
                    std::to_string(c.layerInfo[static_cast<std::size_t>(l)].heads) + " heads");
      at::Tensor a = 0.5 * layerHeads(c, stepIndex, static_cast<int>(l), head) + 0.5 * eye;
      a = a / a.sum(-1, true);
      m = at::matmul(a, m);  // later layers act on what earlier ones mixed
    }
    const at::Tensor v = reverse ? m.select(1, token) : m.select(0, token);
    return v.reshape({c.gridH, c.gridW}).contiguous();
  }
  if (layer == kMeanOfLayers) {
    at::Tensor sum;
    for (std::int64_t l = 0; l < L; ++l) {
      auto m = layerMapOnGrid(c, stepIndex, static_cast<int>(l), head, token, reverse);
      if (!m) return fail(m.error());
      sum = sum.defined() ? sum + *m : *m;
    }
    return (sum / static_cast<double>(L)).contiguous();
  }
  return layerMapOnGrid(c, stepIndex, layer, head, token, reverse);
}

Result<at::Tensor> headEntropy(const InspectionCapture& c, std::int64_t stepIndex) {
  if (c.layerAttention.empty()) return fail("this capture holds no attention");
  if (stepIndex < 0 || stepIndex >= static_cast<std::int64_t>(c.steps.size()))
    return fail("captured step " + std::to_string(stepIndex) + " is out of range 0 to " +
                std::to_string(c.steps.size() - 1));
  const auto L = static_cast<std::int64_t>(c.layerAttention.size());
  at::Tensor out = at::full({L, c.heads}, std::numeric_limits<float>::quiet_NaN(), at::kFloat);
  for (std::int64_t l = 0; l < L; ++l) {
    const at::Tensor p = c.layerAttention[static_cast<std::size_t>(l)][stepIndex];  // (heads, T, T)
    out[l].narrow(0, 0, p.size(0)).copy_((-(p * at::log(p.clamp_min(1e-30))).sum(-1)).mean(-1));
  }
  return out;
}

Result<void> writeInspection(const std::string& path, const InspectionCapture& c) {
  NamedTensors tensors;
  tensors.emplace_back("image", c.image.contiguous());
  if (!c.layerAttention.empty()) {
    if (c.attention.defined()) {
      tensors.emplace_back("attention", c.attention);
    } else {  // layers of several grids (a U-Net): one tensor each
      for (std::size_t l = 0; l < c.layerAttention.size(); ++l)
        tensors.emplace_back("attention." + std::to_string(c.layers[l]), c.layerAttention[l]);
    }
    tensors.emplace_back("steps", at::tensor(c.steps, at::kLong));
    tensors.emplace_back("taus", at::tensor(c.taus, at::kDouble));
    tensors.emplace_back("layers", at::tensor(std::vector<std::int64_t>(c.layers.begin(), c.layers.end()), at::kLong));
  }
  if (c.guidance.defined()) {
    tensors.emplace_back("guidance", c.guidance);
    tensors.emplace_back("guidance_steps", at::tensor(c.guidanceSteps, at::kLong));
    tensors.emplace_back("guidance_taus", at::tensor(c.guidanceTaus, at::kDouble));
  }
  nlohmann::json layers = nlohmann::json::array();
  for (std::size_t l = 0; l < c.layerInfo.size(); ++l)
    layers.push_back({{"layer", c.layers[l]},
                      {"name", c.layerInfo[l].name},
                      {"heads", c.layerInfo[l].heads},
                      {"grid", {{"height", c.layerInfo[l].gridH}, {"width", c.layerInfo[l].gridW}}}});
  const nlohmann::json meta = {
      {"grid", {{"height", c.gridH}, {"width", c.gridW}}},
      {"layers", layers},
      {"patch", c.patch},
      {"size", {{"height", c.height}, {"width", c.width}}},
      {"attention_layout",
       "(step, layer, head, query, key); tokens row-major on the patch grid; conditional pass. Layers of several grids "
       "(a U-Net) are written one each as attention.LAYER (step, head, query, key) on their own grid (layers[].grid)"},
      {"guidance_layout", "(step, H, W): per pixel norm over channels of x0(cond) - x0(uncond)"},
      {"settings", c.settings}};
  return writeSafetensors(path, tensors, {{"tessera.inspection", meta.dump()}});
}

double forwardGflops(const LoadedModel& model, std::int64_t height, std::int64_t width) {
  if (auto own = model.backbone->forwardFlops(height, width)) return *own / 1e9;
  const std::int64_t p = std::max<std::int64_t>(1, model.backbone->capabilities().sizeMultiple);
  const double T = static_cast<double>((height / p) * (width / p));
  const nlohmann::json config =
      model.description.value("backbone", nlohmann::json::object()).value("config", nlohmann::json::object());
  const double depth = static_cast<double>(config.value("depth", 0)),
               D = static_cast<double>(config.value("hidden_size", 0));
  double flops = 2.0 * T * T * D * 2.0 * depth;  // QKᵀ and (softmax)·V in every block
  for (const auto& item : model.backbone->named_parameters()) {
    const std::string& name = item.key();
    const at::Tensor& w = item.value();
    if (w.dim() < 2 || name.find("pos_embed") != std::string::npos || name.find("embedding_table") != std::string::npos)
      continue;
    const bool perImage = name.find("adaLN") != std::string::npos || name.find("t_embedder") != std::string::npos ||
                          name.find("y_embedder") != std::string::npos;
    flops += 2.0 * static_cast<double>(w.numel()) * (perImage ? 1.0 : T);
  }
  return flops / 1e9;
}

}  // namespace tessera
