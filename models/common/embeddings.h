// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace tessera {

/// Sinusoidal timestep embedding of the DiT family: half = dim/2 frequencies
/// f_i = exp(-ln(maxPeriod) * i / half); result [cos(t f), sin(t f)] (cos first), with a
/// zero column appended for odd `dim`. t: (N,) of any numeric type; returns (N, dim) float32.
at::Tensor timestepEmbedding(const at::Tensor& t, std::int64_t dim, double maxPeriod = 10000.0);

/// Fixed 2-D sin-cos position embedding (MAE recipe, as DiT computes it) for a grid of
/// `gridH` rows and `gridW` columns, tokens in raster order. The first dim/2 features
/// encode the column (x), the last dim/2 the row (y); each half is [sin(p w), cos(p w)]
/// with w_k = 10000^(-k/(dim/4)), computed in float64. Returns (gridH*gridW, dim) float32.
/// `scaleH`, `scaleW` multiply the row and column positions (position interpolation:
/// trained / requested grid squeezes a larger grid into the trained range).
at::Tensor sincosPosEmbed2d(std::int64_t dim, std::int64_t gridH, std::int64_t gridW, double scaleH = 1.0, double scaleW = 1.0);

}  // namespace tessera
