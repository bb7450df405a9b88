// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/config/config.h"
#include "core/process/prediction.h"
#include "core/util/error.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <string>
#include <utility>

namespace tessera {

struct InterpolantConfig {
  std::string path = "linear";         ///< linear | gvp | vp
  std::string prediction = "velocity";  ///< velocity | score | noise (parsePrediction; "eps" = "noise")
  std::string lossWeight = "none";     ///< none | velocity | likelihood (score and noise models)
  double trainEps = 0.0;               ///< SiT's defaults: 0 for linear/gvp + velocity, see defaultsFor()
  double sampleEps = 0.0;
  double vpSigmaMin = 0.1, vpSigmaMax = 20.0;
  /// The network's own time convention: "noise_at_0" (SiT, FiTv2: t = 0 noise, 1 data)
  /// or "data_at_0" (NiT, DiT-MoE's rectified flow: the network sees 1 − t and
  /// predicts the velocity of the reversed path, noise − data = −u_t). Everything
  /// outside the network keeps SiT's convention; toModelTime/fromModelOutput convert.
  std::string modelTime = "noise_at_0";
  /// Training times: "uniform" on the training interval (SiT) or "logit-normal"
  /// (t = sigmoid(u), u ~ N(0, 1): FiTv2's lognorm, NiT's P_mean 0, P_std 1).
  std::string trainTime = "uniform";

  /// SiT's train/sample eps for a path and prediction (transport/__init__.py).
  static InterpolantConfig defaultsFor(const std::string& path, const std::string& prediction);
  nlohmann::json toJson() const;
  static Result<InterpolantConfig> fromConfig(const Config& config, const std::string& path);
};

/// SiT's stochastic interpolants (transport/path.py, transport.py). Naming as SiT: x0 is
/// the noise, x1 the data, x_t = α_t x1 + σ_t x0, t = 0 noise, t = 1 data; the velocity
/// target is u_t = α'_t x1 + σ'_t x0.
class Interpolant {
public:
  static Result<Interpolant> create(const InterpolantConfig& config);
  const InterpolantConfig& config() const { return m_config; }
  /// What the network predicts (config().prediction, read).
  Prediction prediction() const { return *parsePrediction(m_config.prediction); }
  /// The predictions an interpolant can train and sample: velocity, score and noise.
  static std::vector<Prediction> predictions() {
    return {Prediction::Velocity, Prediction::Score, Prediction::Epsilon};
  }

  struct Coefficients {
    at::Tensor alpha, sigma, dAlpha, dSigma;  ///< shaped (N, 1, 1, …) like x
  };
  /// α_t, σ_t and their time derivatives for t (N,), broadcastable against `like`.
  Coefficients coefficients(const at::Tensor& t, const at::Tensor& like) const;

  at::Tensor xt(const at::Tensor& x0, const at::Tensor& x1, const at::Tensor& t) const;
  at::Tensor ut(const at::Tensor& x0, const at::Tensor& x1, const at::Tensor& t) const;

  /// The training time interval [t0, t1] (SiT's check_interval for training, ODE form).
  std::pair<double, double> trainInterval() const;
  /// t ~ U[t0, t1], (N,).
  at::Tensor sampleTrainingTimes(std::int64_t n, const at::TensorOptions& options) const;
  /// Training times from a generator, as trainTime says, within the training interval.
  at::Tensor drawTrainingTimes(std::int64_t n, at::Generator& generator) const;

  /// SiT-convention times → what the network is fed (see InterpolantConfig::modelTime).
  at::Tensor toModelTime(const at::Tensor& t) const;
  /// The network's output → SiT's convention (a velocity changes sign with the time).
  at::Tensor fromModelOutput(const at::Tensor& output) const;
  bool reversedTime() const { return m_config.modelTime == "data_at_0"; }

  /// What SiT's compute_drift returns: (f, g²/2)-like pair (first, var) such that the
  /// probability-flow velocity is var * score - first (Linear: first = -x/t,
  /// var = (1-t)/t; VP: first = -β_t x/2, var = β_t/2).
  std::pair<at::Tensor, at::Tensor> drift(const at::Tensor& x, const at::Tensor& t) const;

  at::Tensor scoreFromVelocity(const at::Tensor& v, const at::Tensor& x, const at::Tensor& t) const;
  at::Tensor noiseFromVelocity(const at::Tensor& v, const at::Tensor& x, const at::Tensor& t) const;
  at::Tensor velocityFromScore(const at::Tensor& s, const at::Tensor& x, const at::Tensor& t) const;
  at::Tensor scoreFromNoise(const at::Tensor& noise, const at::Tensor& x, const at::Tensor& t) const;
  /// The data estimate x1 implied by a velocity (solves x_t and u_t for x1).
  at::Tensor dataFromVelocity(const at::Tensor& v, const at::Tensor& x, const at::Tensor& t) const;
  /// Any prediction of this interpolant's kind converted to a velocity.
  at::Tensor toVelocity(const at::Tensor& modelOutput, const at::Tensor& x, const at::Tensor& t) const;

  /// Per-sample training loss (N,) of a model output at x_t = xt(x0, x1, t).
  at::Tensor trainingLoss(const at::Tensor& modelOutput, const at::Tensor& x0, const at::Tensor& x1, const at::Tensor& t) const;

private:
  Interpolant() = default;
  InterpolantConfig m_config;
};

}  // namespace tessera
