// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/config/config.h"
#include "core/process/prediction.h"
#include "core/util/error.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace tessera {

struct GaussianDiffusionConfig {
  std::int64_t steps = 1000;
  /// linear (DiT/ADM: betas 1e-4 … 0.02 scaled by 1000/steps) | cosine | scaled_linear (LDM's
  /// "linear": the square of a linspace from √beta_start to √beta_end)
  std::string schedule = "linear";
  double betaStart = 0.00085, betaEnd = 0.012;  ///< scaled_linear only (LDM configs give linear_start/linear_end)
  std::string prediction = "eps";   ///< eps | x0 | v (parsePrediction): what the network's first C channels mean
  bool learnSigma = true;           ///< next C channels interpolate the log variance (learned range)
  nlohmann::json toJson() const;
  static Result<GaussianDiffusionConfig> fromConfig(const Config& config, const std::string& path);
};

/// The DDPM process as DiT uses it (its gaussian_diffusion.py and respace.py): schedules
/// in float64, q(x_t | x_0), the posterior q(x_{t-1} | x_t, x_0), learned-range or fixed
/// variance, conversions between eps / x0 / v, the hybrid loss (MSE + VLB with the mean
/// detached) and timestep respacing. Timesteps `t` are indices into this process; after
/// respacing, timestepMap() gives the original index the network must see.
class GaussianDiffusion {
public:
  static Result<GaussianDiffusion> create(const GaussianDiffusionConfig& config);

  /// The reference's space_timesteps: "250" (evenly spaced, rounded half to even as
  /// Python's round), "ddim50" (a fixed integer stride), "10,15,20" (per section).
  static Result<std::vector<std::int64_t>> spaceTimesteps(std::int64_t steps, const std::string& spec);
  /// The process restricted to `keep` (sorted original indices): betas rebuilt from
  /// the kept cumulative alphas, as SpacedDiffusion does.
  Result<GaussianDiffusion> respaced(const std::vector<std::int64_t>& keep) const;

  const GaussianDiffusionConfig& config() const { return m_config; }
  /// What the network's first C channels mean (config().prediction, read).
  Prediction prediction() const { return *parsePrediction(m_config.prediction); }
  /// The predictions this process can interpret: eps, x0 and v.
  static std::vector<Prediction> predictions() { return {Prediction::Epsilon, Prediction::Sample, Prediction::V}; }
  std::int64_t numSteps() const { return static_cast<std::int64_t>(m_timestepMap.size()); }
  /// Original (unspaced) index of each step; the network sees these.
  const std::vector<std::int64_t>& timestepMap() const { return m_timestepMap; }
  /// Maps step indices (N,) to the network's timesteps (N,) int64.
  at::Tensor networkTimesteps(const at::Tensor& t) const;

  // float64 schedules on the CPU, one entry per step
  const at::Tensor& betas() const { return m_betas; }
  const at::Tensor& alphasCumprod() const { return m_alphasCumprod; }
  const at::Tensor& alphasCumprodPrev() const { return m_alphasCumprodPrev; }
  const at::Tensor& posteriorVariance() const { return m_posteriorVariance; }
  const at::Tensor& posteriorLogVarianceClipped() const { return m_posteriorLogVarianceClipped; }

  /// x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) noise.
  at::Tensor qSample(const at::Tensor& x0, const at::Tensor& t, const at::Tensor& noise) const;

  struct Posterior {
    at::Tensor mean, variance, logVariance;
  };
  /// q(x_{t-1} | x_t, x0).
  Posterior qPosterior(const at::Tensor& x0, const at::Tensor& xt, const at::Tensor& t) const;

  at::Tensor x0FromEps(const at::Tensor& xt, const at::Tensor& t, const at::Tensor& eps) const;
  at::Tensor epsFromX0(const at::Tensor& xt, const at::Tensor& t, const at::Tensor& x0) const;
  at::Tensor x0FromV(const at::Tensor& xt, const at::Tensor& t, const at::Tensor& v) const;
  at::Tensor epsFromV(const at::Tensor& xt, const at::Tensor& t, const at::Tensor& v) const;
  at::Tensor vFrom(const at::Tensor& x0, const at::Tensor& eps, const at::Tensor& t) const;

  /// The network's output read in this process's terms.
  struct ModelPrediction {
    at::Tensor eps, x0;       ///< (N, C, …)
    at::Tensor mean;          ///< posterior mean of x_{t-1} given the predicted x0
    at::Tensor logVariance;   ///< of p(x_{t-1} | x_t): learned range, or fixed (large)
  };
  ModelPrediction interpret(const at::Tensor& modelOutput, const at::Tensor& xt, const at::Tensor& t) const;

  struct Loss {
    at::Tensor loss, mse, vb;  ///< per sample (N,); vb is zero without learned sigma
  };
  /// DiT's training loss for a model output at (x0, noise, t): MSE on the prediction
  /// target, plus the variational bound in bits/dim with the mean detached when sigma is
  /// learned (the decoder NLL at t = 0).
  Loss trainingLoss(const at::Tensor& modelOutput, const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) const;

private:
  GaussianDiffusion() = default;
  void derive(at::Tensor betas);
  at::Tensor at_(const at::Tensor& table, const at::Tensor& t, const at::Tensor& like) const;

  GaussianDiffusionConfig m_config;
  std::vector<std::int64_t> m_timestepMap;
  at::Tensor m_betas, m_alphasCumprod, m_alphasCumprodPrev, m_posteriorVariance, m_posteriorLogVarianceClipped,
      m_posteriorMeanCoef1, m_posteriorMeanCoef2, m_fixedLogVariance, m_logBetas, m_sqrtAlphasCumprod,
      m_sqrtOneMinusAlphasCumprod, m_sqrtRecipAlphasCumprod, m_sqrtRecipM1AlphasCumprod;
};

}  // namespace tessera
