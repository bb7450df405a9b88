// SPDX-License-Identifier: Apache-2.0
// Formulas from FiT's fit/model/rope.py (whlzy/FiT), which NiT's rope.py repeats: the
// NTK base change, YaRN's and NTK-by-parts' linear ramps over the frequency index
// between correction bounds, YaRN's mscale and the NTK-pro proportions.
#include "models/common/rope.h"

#include "core/config/config.h"
#include "core/util/math.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

namespace tessera {
namespace {

/// The frequency index at which a wavelength makes `rotations` turns over the trained
/// length (YaRN's find_correction_factor).
double correctionFactor(double rotations, double dim, double base, double trainedLength) {
  return dim * std::log(trainedLength / (rotations * 2 * kPi)) / (2 * std::log(base));
}

std::pair<double, double> correctionRange(double lowRot, double highRot, double dim, double base, double trainedLength) {
  const double low = std::floor(correctionFactor(lowRot, dim, base, trainedLength));
  const double high = std::ceil(correctionFactor(highRot, dim, base, trainedLength));
  return {std::max(low, 0.0), std::min(high, dim - 1)};
}

/// clamp((i − low) / (high − low), 0, 1), with high nudged when equal to low.
double ramp(double i, double low, double high) {
  if (low == high) high += 0.001;
  return std::clamp((i - low) / (high - low), 0.0, 1.0);
}

}  // namespace

std::vector<std::string> RopeExtrapolation::methods() {
  return {"none", "linear", "ntk", "ntk-by-parts", "yarn", "ntk-pro1", "ntk-pro2", "scale1", "scale2"};
}

Result<void> RopeExtrapolation::validate() const {
  const auto all = methods();
  if (std::find(all.begin(), all.end(), method) == all.end()) {
    std::string names;
    for (const auto& m : all) names += (names.empty() ? "" : ", ") + m;
    return fail("extrapolation method '" + method + "' is not one of: " + names);
  }
  if (trainedLength < 0) return fail("extrapolation: trained_length must be >= 0");
  return {};
}

nlohmann::json RopeExtrapolation::toJson() const {
  return {{"method", method}, {"trained_length", trainedLength}, {"decouple", decouple}};
}

Result<RopeExtrapolation> ropeExtrapolationFromConfig(const Config& config, const std::string& path) {
  if (auto ok = config.rejectUnknown(path, {"method", "trained_length", "decouple"}); !ok) return fail(ok.error());
  RopeExtrapolation e;
  auto method = config.string(path + ".method", e.method, RopeExtrapolation::methods());
  if (!method) return fail(method.error());
  auto length = config.number(path + ".trained_length", e.trainedLength, 0.0, 1e6);
  if (!length) return fail(length.error());
  auto decouple = config.boolean(path + ".decouple", e.decouple);
  if (!decouple) return fail(decouple.error());
  e.method = *method, e.trainedLength = *length, e.decouple = *decouple;
  return e;
}

RopeAxis ropeAxis(std::int64_t axisDim, double theta, const RopeExtrapolation& e, double length, double maxSide, double area) {
  TORCH_CHECK(axisDim % 2 == 0 && axisDim > 0, "RoPE: the per-axis dimension must be even, got ", axisDim);
  const double dim = static_cast<double>(axisDim);
  const std::int64_t count = axisDim / 2;
  RopeAxis out;
  out.freqs.resize(static_cast<std::size_t>(count));
  std::vector<double> base(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) base[static_cast<std::size_t>(i)] = 1.0 / std::pow(theta, 2.0 * static_cast<double>(i) / dim);
  if (e.method == "none" || e.trainedLength <= 0) {
    out.freqs = base;
    return out;
  }
  const double L = e.trainedLength;
  const double s = std::max(length / L, 1.0);
  std::vector<double> linear(base.size()), ntk(base.size());
  const double ntkBase = theta * std::pow(s, dim / (dim - 2));
  for (std::int64_t i = 0; i < count; ++i) {
    linear[static_cast<std::size_t>(i)] = base[static_cast<std::size_t>(i)] / s;
    ntk[static_cast<std::size_t>(i)] = 1.0 / std::pow(ntkBase, 2.0 * static_cast<double>(i) / dim);
  }
  if (e.method == "linear") {
    out.freqs = linear;
  } else if (e.method == "ntk" || e.method == "ntk-pro1" || e.method == "ntk-pro2") {
    out.freqs = ntk;
  } else if (e.method == "ntk-by-parts") {
    const auto [l1, h1] = correctionRange(1.25, 0.75, dim, theta, L);
    const auto [l2, h2] = correctionRange(16, 2, dim, theta, L);
    for (std::int64_t i = 0; i < count; ++i) {
      const auto k = static_cast<std::size_t>(i);
      const double m1 = 1 - ramp(static_cast<double>(i), l1, h1);
      const double f = linear[k] * (1 - m1) + ntk[k] * m1;
      const double m2 = 1 - ramp(static_cast<double>(i), l2, h2);
      out.freqs[k] = f * (1 - m2) + base[k] * m2;
    }
  } else if (e.method == "scale1" || e.method == "scale2") {
    out.freqs = base;  // NiT's scale1/scale2: plain frequencies, the NTK-pro attention factors
  } else if (e.method == "yarn") {
    const auto [lo, hi] = correctionRange(32, 1, dim, theta, L);
    for (std::int64_t i = 0; i < count; ++i) {
      const auto k = static_cast<std::size_t>(i);
      const double m = 1 - ramp(static_cast<double>(i), lo, hi);
      out.freqs[k] = linear[k] * (1 - m) + base[k] * m;
    }
  }
  // Magnitude factors use the whole grid, whatever `decouple` says.
  const double sMax = std::max(maxSide / L, 1.0);
  auto proportion = [](double test, double train) { return 2 * test / train <= 1 ? 1.0 : std::sqrt(std::log(2 * test) / std::log(train)); };
  if (e.method == "yarn") out.factor = sMax <= 1 ? 1.0 : 0.1 * std::log(sMax) + 1.0;
  if (e.method == "ntk-pro1" || e.method == "scale1") out.factor = proportion(maxSide, L);
  if (e.method == "ntk-pro2" || e.method == "scale2") out.factor = proportion(area, L * L);
  return out;
}

RopeTables ropeTables(const at::Tensor& a, const at::Tensor& b, const RopeAxis& first, const RopeAxis& second) {
  auto half = [](const at::Tensor& pos, const RopeAxis& axis) {
    const at::Tensor f = at::tensor(axis.freqs, at::kDouble);
    const at::Tensor angles = pos.to(at::kDouble).unsqueeze(1) * f.unsqueeze(0);  // (T, d/4)
    return angles.repeat_interleave(2, 1);                                        // (T, d/2): each pair
  };
  const at::Tensor ha = half(a, first), hb = half(b, second);
  RopeTables t;
  t.cos = at::cat({ha.cos() * first.factor, hb.cos() * second.factor}, 1).to(at::kFloat);
  t.sin = at::cat({ha.sin() * first.factor, hb.sin() * second.factor}, 1).to(at::kFloat);
  return t;
}

at::Tensor applyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const std::int64_t d = x.size(-1);
  TORCH_CHECK(d % 2 == 0, "RoPE: the head dimension must be even, got ", d);
  TORCH_CHECK(cos.size(-1) == d && sin.size(-1) == d, "RoPE: tables of width ", cos.size(-1), " for heads of ", d);
  const at::Tensor pairs = x.unflatten(-1, {d / 2, 2});
  const at::Tensor rotated = at::stack({-pairs.select(-1, 1), pairs.select(-1, 0)}, -1).flatten(-2);
  return x * cos + rotated * sin;
}

}  // namespace tessera
