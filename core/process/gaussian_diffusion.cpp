// SPDX-License-Identifier: Apache-2.0
#include "core/process/gaussian_diffusion.h"
#include "core/process/mean_flat.h"

#include "core/util/math.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <set>
#include <sstream>

namespace tessera {
namespace {

at::Tensor normalKl(const at::Tensor& mean1, const at::Tensor& logvar1, const at::Tensor& mean2, const at::Tensor& logvar2) {
  return 0.5 * (-1.0 + logvar2 - logvar1 + at::exp(logvar1 - logvar2) + (mean1 - mean2).pow(2) * at::exp(-logvar2));
}

at::Tensor approxStandardNormalCdf(const at::Tensor& x) {
  return 0.5 * (1.0 + at::tanh(std::sqrt(2.0 / kPi) * (x + 0.044715 * x.pow(3))));
}

/// log-likelihood of x in [-1, 1] under a Gaussian discretised to 256 bins.
at::Tensor discretizedGaussianLogLikelihood(const at::Tensor& x, const at::Tensor& means, const at::Tensor& logScales) {
  const at::Tensor centered = x - means;
  const at::Tensor invStdv = at::exp(-logScales);
  const at::Tensor cdfPlus = approxStandardNormalCdf(invStdv * (centered + 1.0 / 255.0));
  const at::Tensor cdfMin = approxStandardNormalCdf(invStdv * (centered - 1.0 / 255.0));
  const at::Tensor logCdfPlus = at::log(cdfPlus.clamp_min(1e-12));
  const at::Tensor logOneMinusCdfMin = at::log((1.0 - cdfMin).clamp_min(1e-12));
  const at::Tensor logCdfDelta = at::log((cdfPlus - cdfMin).clamp_min(1e-12));
  return at::where(x < -0.999, logCdfPlus, at::where(x > 0.999, logOneMinusCdfMin, logCdfDelta));
}

}  // namespace

nlohmann::json GaussianDiffusionConfig::toJson() const {
  nlohmann::json j = {{"kind", "gaussian_diffusion"},
                      {"steps", steps},
                      {"schedule", schedule},
                      {"prediction", prediction},
                      {"learn_sigma", learnSigma}};
  if (schedule == "scaled_linear") {
    j["beta_start"] = betaStart;
    j["beta_end"] = betaEnd;
  }
  return j;
}

Result<GaussianDiffusionConfig> GaussianDiffusionConfig::fromConfig(const Config& config, const std::string& path) {
  const std::string at = path.empty() ? "" : path + ".";
  if (auto ok = config.rejectUnknown(
          path, {"kind", "steps", "schedule", "prediction", "learn_sigma", "beta_start", "beta_end"});
      !ok)
    return fail(ok.error());
  GaussianDiffusionConfig c;
  auto steps = config.integer(at + "steps", c.steps, 2, 100000);
  if (!steps) return fail(steps.error());
  auto schedule = config.string(at + "schedule", c.schedule, {"linear", "cosine", "scaled_linear"});
  if (!schedule) return fail(schedule.error());
  auto betaStart = config.number(at + "beta_start", c.betaStart, 1e-8, 0.5);
  if (!betaStart) return fail(betaStart.error());
  auto betaEnd = config.number(at + "beta_end", c.betaEnd, 1e-8, 0.999);
  if (!betaEnd) return fail(betaEnd.error());
  c.betaStart = *betaStart;
  c.betaEnd = *betaEnd;
  auto prediction =
      config.string(at + "prediction", c.prediction, predictionSpellings(GaussianDiffusion::predictions()));
  if (!prediction) return fail(prediction.error());
  auto sigma = config.boolean(at + "learn_sigma", c.learnSigma);
  if (!sigma) return fail(sigma.error());
  c.steps = *steps;
  c.schedule = *schedule;
  c.prediction = *prediction;
  c.learnSigma = *sigma;
  return c;
}

Result<GaussianDiffusion> GaussianDiffusion::create(const GaussianDiffusionConfig& config) {
  if (config.steps < 2) return fail("gaussian diffusion: steps must be >= 2, got " + std::to_string(config.steps));
  const auto T = config.steps;
  at::Tensor betas;
  if (config.schedule == "linear") {
    const double scale = 1000.0 / static_cast<double>(T);
    betas = at::linspace(scale * 1e-4, scale * 0.02, T, at::kDouble);
  } else if (config.schedule == "cosine") {
    auto alphaBar = [](double s) { return std::pow(std::cos((s + 0.008) / 1.008 * kPi / 2), 2); };
    std::vector<double> b(static_cast<std::size_t>(T));
    for (std::int64_t i = 0; i < T; ++i)
      b[static_cast<std::size_t>(i)] = std::min(1.0 - alphaBar(double(i + 1) / T) / alphaBar(double(i) / T), 0.999);
    betas = at::tensor(b, at::kDouble);
  } else if (config.schedule == "scaled_linear") {
    if (!(config.betaStart > 0 && config.betaStart < config.betaEnd && config.betaEnd < 1))
      return fail("gaussian diffusion: scaled_linear needs 0 < beta_start < beta_end < 1, got " +
                  std::to_string(config.betaStart) + " and " + std::to_string(config.betaEnd));
    betas = at::linspace(std::sqrt(config.betaStart), std::sqrt(config.betaEnd), T, at::kDouble).pow(2);
  } else {
    return fail("gaussian diffusion: unknown schedule '" + config.schedule +
                "' (expected linear, cosine or scaled_linear)");
  }
  const auto prediction = parsePrediction(config.prediction);
  const auto allowed = predictions();
  if (!prediction || std::find(allowed.begin(), allowed.end(), *prediction) == allowed.end())
    return fail("gaussian diffusion: unknown prediction '" + config.prediction + "' (expected eps, x0 or v)");
  GaussianDiffusion d;
  d.m_config = config;
  d.m_timestepMap.resize(static_cast<std::size_t>(T));
  for (std::int64_t i = 0; i < T; ++i) d.m_timestepMap[static_cast<std::size_t>(i)] = i;
  d.derive(betas);
  return d;
}

void GaussianDiffusion::derive(at::Tensor betas) {
  m_betas = betas;
  const at::Tensor alphas = 1.0 - betas;
  m_alphasCumprod = at::cumprod(alphas, 0);
  m_alphasCumprodPrev = at::cat({at::ones({1}, at::kDouble), m_alphasCumprod.narrow(0, 0, m_alphasCumprod.size(0) - 1)});
  m_posteriorVariance = betas * (1.0 - m_alphasCumprodPrev) / (1.0 - m_alphasCumprod);
  // The posterior variance is 0 at the first step: the log uses the second entry there.
  const at::Tensor pv = at::cat({m_posteriorVariance.narrow(0, 1, 1), m_posteriorVariance.narrow(0, 1, m_posteriorVariance.size(0) - 1)});
  m_posteriorLogVarianceClipped = at::log(pv);
  m_posteriorMeanCoef1 = betas * at::sqrt(m_alphasCumprodPrev) / (1.0 - m_alphasCumprod);
  m_posteriorMeanCoef2 = (1.0 - m_alphasCumprodPrev) * at::sqrt(alphas) / (1.0 - m_alphasCumprod);
  // FIXED_LARGE, the reference's choice without learned sigma: betas, with the first
  // entry replaced by the posterior variance of step 1.
  m_logBetas = at::log(betas);
  m_sqrtAlphasCumprod = at::sqrt(m_alphasCumprod);
  m_sqrtOneMinusAlphasCumprod = at::sqrt(1.0 - m_alphasCumprod);
  m_sqrtRecipAlphasCumprod = at::sqrt(1.0 / m_alphasCumprod);
  m_sqrtRecipM1AlphasCumprod = at::sqrt(1.0 / m_alphasCumprod - 1.0);
  m_fixedLogVariance = at::log(at::cat({m_posteriorVariance.narrow(0, 1, 1), betas.narrow(0, 1, betas.size(0) - 1)}));
}

Result<std::vector<std::int64_t>> GaussianDiffusion::spaceTimesteps(std::int64_t steps, const std::string& spec) {
  std::set<std::int64_t> out;
  if (spec.rfind("ddim", 0) == 0) {
    std::int64_t desired = 0;
    try {
      desired = std::stoll(spec.substr(4));
    } catch (...) {
      return fail("respacing '" + spec + "': expected ddimN with an integer N");
    }
    for (std::int64_t stride = 1; stride < steps; ++stride) {
      if ((steps + stride - 1) / stride == desired) {
        for (std::int64_t i = 0; i < steps; i += stride) out.insert(i);
        return std::vector<std::int64_t>(out.begin(), out.end());
      }
    }
    return fail("respacing '" + spec + "': no integer stride gives exactly " + std::to_string(desired) + " of " +
                std::to_string(steps) + " steps");
  }
  std::vector<std::int64_t> sections;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      std::size_t used = 0;
      const std::int64_t v = std::stoll(item, &used);
      if (used != item.size() || v < 1) throw std::invalid_argument(item);
      sections.push_back(v);
    } catch (...) {
      return fail("respacing '" + spec + "': expected positive integers separated by commas, or ddimN");
    }
  }
  if (sections.empty()) return fail("respacing is empty");
  const std::int64_t n = static_cast<std::int64_t>(sections.size());
  const std::int64_t sizePer = steps / n, extra = steps % n;
  std::int64_t start = 0;
  const int oldRounding = std::fegetround();
  std::fesetround(FE_TONEAREST);  // Python's round(): half to even
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t size = sizePer + (i < extra ? 1 : 0);
    const std::int64_t count = sections[static_cast<std::size_t>(i)];
    if (size < count) {
      std::fesetround(oldRounding);
      return fail("respacing '" + spec + "': cannot take " + std::to_string(count) + " steps from a section of " + std::to_string(size));
    }
    const double stride = count <= 1 ? 1.0 : double(size - 1) / double(count - 1);
    double cur = 0.0;
    for (std::int64_t k = 0; k < count; ++k) {
      out.insert(start + static_cast<std::int64_t>(std::nearbyint(cur)));
      cur += stride;
    }
    start += size;
  }
  std::fesetround(oldRounding);
  return std::vector<std::int64_t>(out.begin(), out.end());
}

Result<GaussianDiffusion> GaussianDiffusion::respaced(const std::vector<std::int64_t>& keep) const {
  if (keep.empty()) return fail("respacing keeps no steps");
  std::vector<double> newBetas;
  std::vector<std::int64_t> map;
  double last = 1.0;
  std::size_t k = 0;
  const auto* ac = m_alphasCumprod.data_ptr<double>();
  for (std::int64_t i = 0; i < numSteps(); ++i) {
    if (k < keep.size() && keep[k] == i) {
      newBetas.push_back(1.0 - ac[i] / last);
      last = ac[i];
      map.push_back(m_timestepMap[static_cast<std::size_t>(i)]);
      ++k;
    }
  }
  if (k != keep.size()) return fail("respacing: kept steps must be sorted, unique and below " + std::to_string(numSteps()));
  GaussianDiffusion d;
  d.m_config = m_config;
  d.m_timestepMap = map;
  d.derive(at::tensor(newBetas, at::kDouble));
  return d;
}

at::Tensor GaussianDiffusion::networkTimesteps(const at::Tensor& t) const {
  return at::tensor(m_timestepMap, at::kLong).to(t.device()).index_select(0, t.to(at::kLong));
}

at::Tensor GaussianDiffusion::at_(const at::Tensor& table, const at::Tensor& t, const at::Tensor& like) const {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == like.size(0), "gaussian diffusion: expected t of shape (", like.size(0), "), got ", t.sizes());
  const at::Tensor idx = t.to(at::kLong).to(at::kCPU);
  TORCH_CHECK(idx.numel() == 0 || (idx.min().item<std::int64_t>() >= 0 && idx.max().item<std::int64_t>() < numSteps()),
              "gaussian diffusion: timesteps must lie in [0, ", numSteps() - 1, "]");
  std::vector<std::int64_t> shape(static_cast<std::size_t>(like.dim()), 1);
  shape[0] = like.size(0);
  return table.index_select(0, idx).to(like.options()).reshape(shape);  // (N, 1, 1, 1)
}

at::Tensor GaussianDiffusion::qSample(const at::Tensor& x0, const at::Tensor& t, const at::Tensor& noise) const {
  return at_(m_sqrtAlphasCumprod, t, x0) * x0 + at_(m_sqrtOneMinusAlphasCumprod, t, x0) * noise;
}

GaussianDiffusion::Posterior GaussianDiffusion::qPosterior(const at::Tensor& x0, const at::Tensor& xt, const at::Tensor& t) const {
  return {at_(m_posteriorMeanCoef1, t, xt) * x0 + at_(m_posteriorMeanCoef2, t, xt) * xt,
          at_(m_posteriorVariance, t, xt).expand_as(xt), at_(m_posteriorLogVarianceClipped, t, xt).expand_as(xt)};
}

at::Tensor GaussianDiffusion::x0FromEps(const at::Tensor& xt, const at::Tensor& t, const at::Tensor& eps) const {
  return at_(m_sqrtRecipAlphasCumprod, t, xt) * xt - at_(m_sqrtRecipM1AlphasCumprod, t, xt) * eps;
}
at::Tensor GaussianDiffusion::epsFromX0(const at::Tensor& xt, const at::Tensor& t, const at::Tensor& x0) const {
  return (at_(m_sqrtRecipAlphasCumprod, t, xt) * xt - x0) / at_(m_sqrtRecipM1AlphasCumprod, t, xt);
}
at::Tensor GaussianDiffusion::x0FromV(const at::Tensor& xt, const at::Tensor& t, const at::Tensor& v) const {
  return at_(m_sqrtAlphasCumprod, t, xt) * xt - at_(m_sqrtOneMinusAlphasCumprod, t, xt) * v;
}
at::Tensor GaussianDiffusion::epsFromV(const at::Tensor& xt, const at::Tensor& t, const at::Tensor& v) const {
  return at_(m_sqrtOneMinusAlphasCumprod, t, xt) * xt + at_(m_sqrtAlphasCumprod, t, xt) * v;
}
at::Tensor GaussianDiffusion::vFrom(const at::Tensor& x0, const at::Tensor& eps, const at::Tensor& t) const {
  return at_(m_sqrtAlphasCumprod, t, x0) * eps - at_(m_sqrtOneMinusAlphasCumprod, t, x0) * x0;
}

GaussianDiffusion::ModelPrediction GaussianDiffusion::interpret(const at::Tensor& out, const at::Tensor& xt, const at::Tensor& t) const {
  const std::int64_t C = xt.size(1);
  at::Tensor pred = out;
  ModelPrediction p;
  if (m_config.learnSigma) {
    TORCH_CHECK(out.size(1) == 2 * C, "gaussian diffusion: a learned-sigma model must output ", 2 * C, " channels, got ", out.size(1));
    pred = out.narrow(1, 0, C);
    const at::Tensor frac = (out.narrow(1, C, C) + 1.0) / 2.0;
    const at::Tensor minLog = at_(m_posteriorLogVarianceClipped, t, xt), maxLog = at_(m_logBetas, t, xt);
    p.logVariance = frac * maxLog + (1.0 - frac) * minLog;
  } else {
    TORCH_CHECK(out.size(1) == C, "gaussian diffusion: expected ", C, " output channels, got ", out.size(1));
    p.logVariance = at_(m_fixedLogVariance, t, xt).expand_as(xt);
  }
  const Prediction kind = prediction();
  if (kind == Prediction::Epsilon) {
    p.eps = pred;
    p.x0 = x0FromEps(xt, t, pred);
  } else if (kind == Prediction::Sample) {
    p.x0 = pred;
    p.eps = epsFromX0(xt, t, pred);
  } else {
    p.x0 = x0FromV(xt, t, pred);
    p.eps = epsFromV(xt, t, pred);
  }
  p.mean = qPosterior(p.x0, xt, t).mean;
  return p;
}

GaussianDiffusion::Loss GaussianDiffusion::trainingLoss(const at::Tensor& out, const at::Tensor& x0, const at::Tensor& noise,
                                                        const at::Tensor& t) const {
  const at::Tensor xt = qSample(x0, t, noise);
  const std::int64_t C = x0.size(1);
  const at::Tensor pred = out.narrow(1, 0, C);
  const Prediction kind = prediction();
  const at::Tensor target = kind == Prediction::Epsilon ? noise : kind == Prediction::Sample ? x0 : vFrom(x0, noise, t);
  Loss l;
  l.mse = meanFlat((target - pred).pow(2));
  if (!m_config.learnSigma) {
    l.vb = at::zeros_like(l.mse);
    l.loss = l.mse;
    return l;
  }
  // The VLB only trains the variance: the mean's gradient comes from the MSE alone.
  const at::Tensor frozen = at::cat({pred.detach(), out.narrow(1, C, C)}, 1);
  const ModelPrediction p = interpret(frozen, xt, t);
  const Posterior q = qPosterior(x0, xt, t);
  const at::Tensor kl = meanFlat(normalKl(q.mean, q.logVariance, p.mean, p.logVariance)) / std::log(2.0);
  const at::Tensor nll = -meanFlat(discretizedGaussianLogLikelihood(x0, p.mean, 0.5 * p.logVariance)) / std::log(2.0);
  l.vb = at::where(t.to(kl.device()) == 0, nll, kl);
  l.loss = l.mse + l.vb;
  return l;
}

}  // namespace tessera
