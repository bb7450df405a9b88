// SPDX-License-Identifier: Apache-2.0
#include "core/process/interpolant.h"
#include "core/process/mean_flat.h"

#include "core/util/math.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace tessera {
namespace {

at::Tensor expandLike(const at::Tensor& t, const at::Tensor& x) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == x.size(0), "interpolant: expected t of shape (", x.size(0), "), got ", t.sizes());
  std::vector<std::int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  return t.to(x.options()).reshape(shape);
}

}  // namespace

InterpolantConfig InterpolantConfig::defaultsFor(const std::string& path, const std::string& prediction) {
  InterpolantConfig c;
  c.path = path;
  c.prediction = prediction;
  if (path == "vp") {
    c.trainEps = 1e-5;
    c.sampleEps = 1e-3;
  } else if (parsePrediction(prediction) != Prediction::Velocity) {
    c.trainEps = 1e-3;
    c.sampleEps = 1e-3;
  }
  return c;
}

nlohmann::json InterpolantConfig::toJson() const {
  return {{"kind", "interpolant"}, {"path", path}, {"prediction", prediction}, {"loss_weight", lossWeight},
          {"train_eps", trainEps}, {"sample_eps", sampleEps}, {"vp_sigma_min", vpSigmaMin}, {"vp_sigma_max", vpSigmaMax},
          {"model_time", modelTime}, {"train_time", trainTime}};
}

Result<InterpolantConfig> InterpolantConfig::fromConfig(const Config& config, const std::string& p) {
  const std::string at = p.empty() ? "" : p + ".";
  if (auto ok = config.rejectUnknown(p, {"kind", "path", "prediction", "loss_weight", "train_eps", "sample_eps", "vp_sigma_min", "vp_sigma_max",
                                 "model_time", "train_time"}); !ok)
    return fail(ok.error());
  auto path = config.string(at + "path", std::string("linear"), {"linear", "gvp", "vp"});
  if (!path) return fail(path.error());
  auto prediction =
      config.string(at + "prediction", std::string("velocity"), predictionSpellings(Interpolant::predictions()));
  if (!prediction) return fail(prediction.error());
  InterpolantConfig c = defaultsFor(*path, *prediction);
  auto weight = config.string(at + "loss_weight", c.lossWeight, {"none", "velocity", "likelihood"});
  if (!weight) return fail(weight.error());
  c.lossWeight = *weight;
  for (auto [field, key] : {std::pair<double*, const char*>{&c.trainEps, "train_eps"}, {&c.sampleEps, "sample_eps"}}) {
    auto v = config.number(at + key, *field, 0.0, 0.5);
    if (!v) return fail(v.error());
    *field = *v;
  }
  auto smin = config.number(at + "vp_sigma_min", c.vpSigmaMin, 1e-6, 1e3);
  if (!smin) return fail(smin.error());
  auto smax = config.number(at + "vp_sigma_max", c.vpSigmaMax, 1e-6, 1e3);
  if (!smax) return fail(smax.error());
  c.vpSigmaMin = *smin;
  c.vpSigmaMax = *smax;
  auto modelTime = config.string(at + "model_time", c.modelTime, {"noise_at_0", "data_at_0"});
  if (!modelTime) return fail(modelTime.error());
  c.modelTime = *modelTime;
  auto trainTime = config.string(at + "train_time", c.trainTime, {"uniform", "logit-normal"});
  if (!trainTime) return fail(trainTime.error());
  c.trainTime = *trainTime;
  return c;
}

Result<Interpolant> Interpolant::create(const InterpolantConfig& config) {
  if (config.path != "linear" && config.path != "gvp" && config.path != "vp")
    return fail("interpolant: unknown path '" + config.path + "' (expected linear, gvp or vp)");
  const auto prediction = parsePrediction(config.prediction);
  const auto allowed = predictions();
  if (!prediction || std::find(allowed.begin(), allowed.end(), *prediction) == allowed.end())
    return fail("interpolant: unknown prediction '" + config.prediction + "' (expected velocity, score or noise)");
  if (config.vpSigmaMax <= config.vpSigmaMin) return fail("interpolant: vp_sigma_max must exceed vp_sigma_min");
  if (config.modelTime != "noise_at_0" && config.modelTime != "data_at_0")
    return fail("interpolant: model_time must be noise_at_0 or data_at_0, got '" + config.modelTime + "'");
  if (config.trainTime != "uniform" && config.trainTime != "logit-normal")
    return fail("interpolant: train_time must be uniform or logit-normal, got '" + config.trainTime + "'");
  Interpolant i;
  i.m_config = config;
  return i;
}

Interpolant::Coefficients Interpolant::coefficients(const at::Tensor& tIn, const at::Tensor& like) const {
  const at::Tensor t = expandLike(tIn, like);
  Coefficients c;
  if (m_config.path == "linear") {
    c.alpha = t;
    c.sigma = 1.0 - t;
    c.dAlpha = at::ones_like(t);
    c.dSigma = -at::ones_like(t);
  } else if (m_config.path == "gvp") {
    c.alpha = at::sin(t * kPi / 2);
    c.sigma = at::cos(t * kPi / 2);
    c.dAlpha = kPi / 2 * at::cos(t * kPi / 2);
    c.dSigma = -kPi / 2 * at::sin(t * kPi / 2);
  } else {  // vp: α = exp(m(t)), m(t) = -¼(1-t)²(σmax-σmin) - ½(1-t)σmin
    const double smin = m_config.vpSigmaMin, smax = m_config.vpSigmaMax;
    const at::Tensor m = -0.25 * (1.0 - t).pow(2) * (smax - smin) - 0.5 * (1.0 - t) * smin;
    const at::Tensor dm = 0.5 * (1.0 - t) * (smax - smin) + 0.5 * smin;
    c.alpha = at::exp(m);
    c.dAlpha = c.alpha * dm;
    c.sigma = at::sqrt(1.0 - at::exp(2.0 * m));
    c.dSigma = at::exp(2.0 * m) * (2.0 * dm) / (-2.0 * c.sigma);
  }
  return c;
}

at::Tensor Interpolant::xt(const at::Tensor& x0, const at::Tensor& x1, const at::Tensor& t) const {
  const auto c = coefficients(t, x1);
  return c.alpha * x1 + c.sigma * x0;
}

at::Tensor Interpolant::ut(const at::Tensor& x0, const at::Tensor& x1, const at::Tensor& t) const {
  const auto c = coefficients(t, x1);
  return c.dAlpha * x1 + c.dSigma * x0;
}

std::pair<double, double> Interpolant::trainInterval() const {
  const double eps = m_config.trainEps;
  if (m_config.path == "vp") return {0.0, 1.0 - eps};
  if (prediction() != Prediction::Velocity) return {eps, 1.0 - eps};
  return {0.0, 1.0};
}

at::Tensor Interpolant::sampleTrainingTimes(std::int64_t n, const at::TensorOptions& options) const {
  const auto [t0, t1] = trainInterval();
  return at::rand({n}, options) * (t1 - t0) + t0;
}

at::Tensor Interpolant::drawTrainingTimes(std::int64_t n, at::Generator& generator) const {
  const auto [t0, t1] = trainInterval();
  if (m_config.trainTime == "logit-normal")
    return at::sigmoid(at::randn({n}, generator, at::kFloat)).clamp(t0, t1);
  return at::rand({n}, generator, at::kFloat) * (t1 - t0) + t0;
}

at::Tensor Interpolant::toModelTime(const at::Tensor& t) const { return reversedTime() ? 1.0 - t : t; }

at::Tensor Interpolant::fromModelOutput(const at::Tensor& output) const {
  if (!reversedTime()) return output;
  // The reversed path's velocity is −u_t; a noise prediction is the same noise, and a
  // score the same score (they do not depend on the direction of time).
  return prediction() == Prediction::Velocity ? -output : output;
}

std::pair<at::Tensor, at::Tensor> Interpolant::drift(const at::Tensor& x, const at::Tensor& t) const {
  if (m_config.path == "vp") {
    const at::Tensor te = expandLike(t, x);
    const at::Tensor beta = m_config.vpSigmaMin + (1.0 - te) * (m_config.vpSigmaMax - m_config.vpSigmaMin);
    return {-0.5 * beta * x, beta / 2.0};
  }
  const auto c = coefficients(t, x);
  const at::Tensor ratio = c.dAlpha / c.alpha;
  return {-ratio * x, ratio * c.sigma.pow(2) - c.sigma * c.dSigma};
}

at::Tensor Interpolant::scoreFromVelocity(const at::Tensor& v, const at::Tensor& x, const at::Tensor& t) const {
  const auto c = coefficients(t, x);
  const at::Tensor reverseRatio = c.alpha / c.dAlpha;
  return (reverseRatio * v - x) / (c.sigma.pow(2) - reverseRatio * c.dSigma * c.sigma);
}

at::Tensor Interpolant::noiseFromVelocity(const at::Tensor& v, const at::Tensor& x, const at::Tensor& t) const {
  const auto c = coefficients(t, x);
  const at::Tensor reverseRatio = c.alpha / c.dAlpha;
  return (reverseRatio * v - x) / (reverseRatio * c.dSigma - c.sigma);
}

at::Tensor Interpolant::velocityFromScore(const at::Tensor& s, const at::Tensor& x, const at::Tensor& t) const {
  const auto [negDrift, driftVar] = drift(x, t);
  return driftVar * s - negDrift;  // the probability-flow velocity
}

at::Tensor Interpolant::scoreFromNoise(const at::Tensor& noise, const at::Tensor& x, const at::Tensor& t) const {
  return noise / -coefficients(t, x).sigma;
}

at::Tensor Interpolant::dataFromVelocity(const at::Tensor& v, const at::Tensor& x, const at::Tensor& t) const {
  const auto c = coefficients(t, x);
  return (c.dSigma * x - c.sigma * v) / (c.alpha * c.dSigma - c.sigma * c.dAlpha);
}

at::Tensor Interpolant::toVelocity(const at::Tensor& out, const at::Tensor& x, const at::Tensor& t) const {
  if (prediction() == Prediction::Velocity) return out;
  if (prediction() == Prediction::Score) return velocityFromScore(out, x, t);
  return velocityFromScore(scoreFromNoise(out, x, t), x, t);
}

at::Tensor Interpolant::trainingLoss(const at::Tensor& out, const at::Tensor& x0, const at::Tensor& x1, const at::Tensor& t) const {
  if (prediction() == Prediction::Velocity) return meanFlat((out - ut(x0, x1, t)).pow(2));
  const at::Tensor x = xt(x0, x1, t);
  const at::Tensor driftVar = drift(x, t).second;
  const at::Tensor sigma = coefficients(t, x).sigma;
  at::Tensor weight = at::ones_like(sigma);
  if (m_config.lossWeight == "velocity") weight = (driftVar / sigma).pow(2);
  else if (m_config.lossWeight == "likelihood") weight = driftVar / sigma.pow(2);
  if (prediction() == Prediction::Epsilon) return meanFlat(weight * (out - x0).pow(2));
  return meanFlat(weight * (out * sigma + x0).pow(2));
}

}  // namespace tessera
