// SPDX-License-Identifier: Apache-2.0
// Looking inside a generation: the attention probabilities of chosen blocks at chosen
// steps, the guidance map (where the class changes the prediction), and what they
// imply (attention maps, rollout across layers, per-head entropy). Captured by running
// the generation once more with the backbone's probe attached only where asked, so a
// normal generation pays nothing. Also: a forward pass's compute, for fair comparisons.
#pragma once

#include "core/util/error.h"
#include "engine/generation.h"
#include "engine/model_file.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace tessera {

struct InspectionRequest {
  /// Exactly one image; the same request as the image's own generation reproduces it.
  GenerationRequest generation;
  /// Steps (0-based) whose first network evaluation is captured; empty: every step.
  std::vector<std::int64_t> steps;
  /// Blocks whose attention is captured; empty: every block.
  std::set<int> layers;
  bool attention = true;  ///< false: the guidance map only
  /// After every step of the run (done, total): for progress bars.
  std::function<void(std::int64_t done, std::int64_t total)> progress;
};

/// What a capture will hold, before it runs.
struct InspectionEstimate {
  std::int64_t tokens = 0;   ///< tokens of the image (T)
  std::int64_t depth = 0, heads = 0;
  std::int64_t layers = 0;   ///< layers to capture
  std::int64_t steps = 0;    ///< steps to capture
  std::int64_t totalSteps = 0;
  std::uint64_t bytes = 0;   ///< kept probabilities plus the largest transient copy
};

struct InspectionCapture {
  at::Tensor image;  ///< (C, H, W) the finished image, in the model's data range
  /// The map grid: the finest captured layer's token grid (a U-Net's layers have their
  /// own, coarser ones; their maps are drawn on this grid), and H / gridH.
  std::int64_t height = 0, width = 0, patch = 1, gridH = 0, gridW = 0;
  std::int64_t depth = 0, heads = 0;  ///< attention layers of the model; the most heads any has
  std::vector<int> layers;           ///< the captured blocks (dimension 1 of `attention`)
  std::vector<AttentionLayerInfo> layerInfo;  ///< each captured layer's grid and heads
  /// Per captured layer: (steps, heads_l, T_l, T_l), the conditional pass.
  std::vector<at::Tensor> layerAttention;
  std::vector<std::int64_t> steps;   ///< the captured steps (dimension 0 of `attention`)
  std::vector<double> taus;          ///< progress (0 noise … 1 data) at each captured step's evaluation
  /// Steps the run took: the request's, except where the grid takes another count (LDM's
  /// DDIM timesteps when the stride does not divide the process).
  std::int64_t totalSteps = 0;
  /// (steps, layers, heads, T, T) float: layerAttention stacked, when every captured layer
  /// has the same grid and heads (the DiT family); rows sum to 1. Undefined otherwise, and
  /// when attention was not asked for.
  at::Tensor attention;
  /// (guided steps, H, W): per pixel ‖x0(cond) − x0(uncond)‖ over channels at every
  /// guided step; undefined when the image was made without guidance.
  at::Tensor guidance;
  std::vector<std::int64_t> guidanceSteps;
  std::vector<double> guidanceTaus;
  nlohmann::json settings;  ///< the generation's settings
};

/// Checks the request and says what it will hold (nothing runs).
Result<InspectionEstimate> estimateInspection(const LoadedModel& model, const InspectionRequest& request);
/// Runs the generation with the probe attached at the asked steps. Fails naming what is
/// wrong (not one image, a step or layer out of range, a backbone without attention taps).
Result<InspectionCapture> captureInspection(const LoadedModel& model, const InspectionRequest& request);

/// Layer choices for maps besides a captured block's position in `layers`.
constexpr int kMeanOfLayers = -1;  ///< the mean over the captured layers
constexpr int kRollout = -2;       ///< attention rollout across the captured layers
/// Head choice: the mean over heads.
constexpr int kMeanOfHeads = -1;

/// (gridH, gridW) map for token `token` (row-major on the capture's grid) at captured step
/// `stepIndex`: what it attends to (a distribution: sums to 1), or with `reverse` how much
/// every token attends to it. `layer` is a position in `capture.layers`, kMeanOfLayers or
/// kRollout; `head` a head or kMeanOfHeads. Rollout (Abnar & Zuidema): per layer
/// Â = ½A + ½I with rows renormalised, multiplied from the first captured block up; it
/// needs layers of one grid. A layer on a coarser grid (a U-Net's) answers for the cell
/// that holds the token, and its map is spread over the cells each of its tokens covers.
Result<at::Tensor> attentionMap(const InspectionCapture& capture, std::int64_t stepIndex, int layer, int head,
                                std::int64_t token, bool reverse);
/// (layers, heads): each head's attention entropy in nats, averaged over queries; low
/// entropy marks sharp heads. The maximum is log(T_l). A layer with fewer heads than the
/// most has NaN in the columns it lacks.
Result<at::Tensor> headEntropy(const InspectionCapture& capture, std::int64_t stepIndex);
/// Writes the capture (attention, guidance, image, steps, layers) as safetensors with the
/// settings and grid in the metadata.
Result<void> writeInspection(const std::string& path, const InspectionCapture& capture);

/// Floating-point operations of one forward pass of one image of H × W (multiply-adds
/// count 2), from the weights: token-wise matrices × tokens, per-image ones (timestep,
/// class, adaLN) once, and attention's 2·T²·D per block for QKᵀ and its product with V.
double forwardGflops(const LoadedModel& model, std::int64_t height, std::int64_t width);

}  // namespace tessera
