// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/samplers/sampling_space.h"
#include "core/util/error.h"

#include <memory>
#include <string>
#include <vector>

namespace tessera {

struct GridRequest {
  std::int64_t steps = 50;
  double start = 0.0, end = 1.0;  ///< τ interval (SamplingSpace::interval)
  std::string respacing = "ddim"; ///< respaced grids: "ddpm" → the reference's "N", "ddim" → "ddimN"
  double shift = 0.0;             ///< shifted: 0 = sqrt(resolutionScale)
  double resolutionScale = 1.0;
  double rho = 7.0;               ///< karras
};

/// A time grid: steps + 1 ascending τ values from `start` (noise) to `end`. Small
/// classes, one per kind, listed in one table (time_grid.cpp).
class TimeGrid {
public:
  virtual ~TimeGrid() = default;
  virtual std::string name() const = 0;
  virtual std::string description() const = 0;
  virtual Result<std::vector<double>> make(const SamplingSpace& space, const GridRequest& request) const = 0;
};

/// "uniform", "quadratic", "shifted", "karras", "respaced".
const TimeGrid* findTimeGrid(const std::string& name);
std::vector<std::string> timeGridNames();

}  // namespace tessera
