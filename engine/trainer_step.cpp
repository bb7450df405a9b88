// SPDX-License-Identifier: Apache-2.0
// One optimisation step (forward, loss, backward, the gradients summed over ranks,
// clipping, AdamW, the EMA) and the validation loss at fixed timesteps and noise.
#include "engine/trainer.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>

namespace tessera {
namespace {

/// bf16 autocast on CUDA for the forward pass (no loss scaling needed, unlike fp16).
class CudaBf16Autocast {
public:
  explicit CudaBf16Autocast(bool enable) : m_on(enable) {
    if (!m_on) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
    at::autocast::increment_nesting();
  }
  ~CudaBf16Autocast() {
    if (!m_on) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
  }
  CudaBf16Autocast(const CudaBf16Autocast&) = delete;
  CudaBf16Autocast& operator=(const CudaBf16Autocast&) = delete;

private:
  bool m_on;
};

}  // namespace

Result<Trainer::Optimised> Trainer::optimise(const Draws& d, std::int64_t batchSize) {
  m_optimizer->zero_grad();
  const at::Tensor local = m_ae ? autoencoderLossOf(*m_ae, d) : lossOf(*m_net, d);
  const at::Tensor lossSumLocal = local.sum();
  (lossSumLocal / static_cast<double>(batchSize)).backward();
  std::vector<at::Tensor> grads;
  for (auto& p : m_params) {
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    grads.push_back(p.grad());
  }
  // [loss sum, stop requests]: ranks decide to stop together, after the same step.
  at::Tensor lossBuf = at::zeros({2}, at::kDouble);
  lossBuf[0] = lossSumLocal.detach().to(at::kDouble).to(at::kCPU).item<double>();
  lossBuf[1] = m_request.stop && m_request.stop->load() ? 1.0 : 0.0;
  if (m_step == m_faultStep) lossBuf[0] = std::nan("");
  if (m_world > 1) {
    m_dp->allReduceSum(grads);
    m_dp->allReduceSum({lossBuf});
  }
  Optimised o;
  o.loss = lossBuf[0].item<double>() / static_cast<double>(batchSize);
  o.stopRequested = m_world > 1 && lossBuf[1].item<double>() > 0;
  if (!std::isfinite(o.loss)) return stopOnNonFinite(o.loss);
  o.gradNorm = clipGradients();
  m_optimizer->step();
  updateEma();
  return o;
}

/// The "error" event and the failure of a step whose loss is not finite; the last
/// checkpoint stays the run's newest, so the run resumes from before the fault.
tl::unexpected<Error> Trainer::stopOnNonFinite(double loss) {
  const std::string where =
      m_lastCheckpoint.empty() ? "no checkpoint was written yet" : "the last good checkpoint is " + m_lastCheckpoint;
  emit({{"event", "error"},
        {"step", m_step},
        {"reason", "non-finite loss"},
        {"loss", std::to_string(loss)},
        {"checkpoint", m_lastCheckpoint}});
  m_bar->finish();
  return fail("training stopped: the loss became " + std::string(std::isnan(loss) ? "NaN" : "infinite") + " at step " +
              std::to_string(m_step) + "; " + where + " (lower train.lr, raise train.warmup, or check the data)");
}

/// The gradients' global norm, clipped to train.clip when it is set.
double Trainer::clipGradients() {
  if (m_s.optimiser.clip > 0) return torch::nn::utils::clip_grad_norm_(m_params, m_s.optimiser.clip);
  torch::NoGradGuard g;
  double sq = 0;
  for (auto& p : m_params) sq += p.grad().pow(2).sum().item<double>();
  return std::sqrt(sq);
}

void Trainer::updateEma() {
  torch::NoGradGuard g;
  const OptimiserSettings& o = m_s.optimiser;
  double decay = o.ema;
  // Early steps average over fewer steps, so the EMA does not remember the initialisation.
  if (o.emaWarmup) decay = std::min(decay, (1.0 + static_cast<double>(m_step)) / (10.0 + static_cast<double>(m_step)));
  for (std::size_t i = 0; i < m_params.size(); ++i) m_emaParams[i].mul_(decay).add_(m_params[i].detach(), 1.0 - decay);
}

/// Per-sample losses of one batch (this rank's rows).
at::Tensor Trainer::lossOf(BackboneImpl& model, const Draws& d) const {
  CudaBf16Autocast autocast(m_s.precision == "bf16");
  if (d.sizes.defined()) return packedLossOf(model, d);
  const at::Tensor x0 = d.x0.to(m_device), noise = d.noise.to(m_device), t = d.t.to(m_device),
                   y = d.labels.to(m_device);
  BackboneInput in;
  if (m_process.diffusion) {
    in.x = m_process.diffusion->qSample(x0, t, noise), in.t = t, in.y = y;
    const at::Tensor out = model.forward(in).prediction;
    return m_process.diffusion->trainingLoss(out.to(at::kFloat), x0, noise, t).loss;
  }
  const Interpolant& ip = *m_process.interpolant;
  in.x = ip.xt(noise, x0, t), in.t = ip.toModelTime(t), in.y = y;
  const at::Tensor out = ip.fromModelOutput(model.forward(in).prediction);
  return ip.trainingLoss(out.to(at::kFloat), noise, x0, t);
}

// Every token is a sample of the process at its image's time; an image's loss is the
// mean over its tokens (= over its pixels, as for a whole image).
at::Tensor Trainer::packedLossOf(BackboneImpl& model, const Draws& d) const {
  const at::Tensor x0 = d.x0.to(m_device), noise = d.noise.to(m_device), t = d.t.to(m_device),
                   y = d.labels.to(m_device);
  const at::Tensor tokenImage = d.tokenImage.to(m_device);
  const at::Tensor tt = t.index_select(0, tokenImage);
  BackboneInput in;
  in.y = y, in.sizes = d.sizes;
  at::Tensor perToken;
  if (m_process.diffusion) {
    in.x = m_process.diffusion->qSample(x0, tt, noise), in.t = t;
    const at::Tensor out = model.forward(in).prediction;
    perToken = m_process.diffusion->trainingLoss(out.to(at::kFloat), x0, noise, tt).loss;
  } else {
    const Interpolant& ip = *m_process.interpolant;
    in.x = ip.xt(noise, x0, tt), in.t = ip.toModelTime(t);
    const at::Tensor out = ip.fromModelOutput(model.forward(in).prediction);
    perToken = ip.trainingLoss(out.to(at::kFloat), noise, x0, tt);
  }
  const at::Tensor sums = at::zeros({t.size(0)}, perToken.options()).index_add(0, tokenImage, perToken);
  return sums / d.tokenCounts.to(sums.device());
}

/// The k-th of validation.timesteps evenly spaced timesteps, for n images.
at::Tensor Trainer::fixedTimesteps(std::int64_t k, std::int64_t n) const {
  const double frac = (static_cast<double>(k) + 0.5) / static_cast<double>(m_s.validation.timesteps);
  if (m_process.diffusion)
    return at::full({n}, static_cast<std::int64_t>(frac * static_cast<double>(m_process.diffusion->numSteps())),
                    at::kLong);
  const auto [t0, t1] = m_process.interpolant->trainInterval();
  return at::full({n}, t0 + frac * (t1 - t0), at::kFloat);
}

double Trainer::validationLoss(BackboneImpl& model) {
  if (!m_valBatcher) return std::nan("");
  torch::NoGradGuard g;
  double sum = 0;
  std::int64_t count = 0;
  const std::int64_t total = m_valBatcher->itemCount();
  for (std::int64_t k = 0; k < m_s.validation.timesteps; ++k) {
    std::int64_t seen = 0;
    for (std::int64_t b = 0; seen < total; ++b) {
      Batch batch = m_valBatcher->batch(b);
      const std::int64_t take = std::min<std::int64_t>(batch.size(), total - seen);
      if (take < batch.size()) {
        if (batch.x.defined()) batch.x = batch.x.slice(0, 0, take);
        if (!batch.images.empty()) batch.images.resize(static_cast<std::size_t>(take));
        batch.labels = batch.labels.slice(0, 0, take);
        batch.indices.resize(static_cast<std::size_t>(take));
        batch.flipped.resize(static_cast<std::size_t>(take));
      }
      seen += take;
      // The same noise at every evaluation; the drawn timesteps give way to fixed ones.
      Draws d = drawsFor(batch, mixSeed(mixSeed(m_s.seed, 0x7A11D), static_cast<std::uint64_t>(b)), false);
      d.t = fixedTimesteps(k, take);
      // Each rank takes its share; the sums are combined below.
      const Draws mine = sliceFor(d, take);
      if (mine.labels.size(0) > 0) {
        sum += lossOf(model, mine).sum().item<double>();
        count += mine.labels.size(0);
      }
    }
  }
  at::Tensor agg = at::tensor({sum, static_cast<double>(count)}, at::kDouble);
  m_dp->allReduceSum({agg});
  return agg[0].item<double>() / std::max(1.0, agg[1].item<double>());
}

/// Data-parallel ranks must hold the same weights: each one's largest difference from
/// the ranks' mean.
double Trainer::rankMaxDifference() {
  torch::NoGradGuard g;
  std::vector<at::Tensor> flat;
  for (const auto& p : m_params) flat.push_back(p.detach().reshape({-1}).to(at::kDouble).to(at::kCPU));
  const at::Tensor mine = at::cat(flat);
  at::Tensor mean = mine.clone();
  m_dp->allReduceSum({mean});
  at::Tensor diff = (mean / static_cast<double>(m_world) - mine).abs().max().reshape({1});
  m_dp->allReduceSum({diff});
  return diff.item<double>();
}

}  // namespace tessera
