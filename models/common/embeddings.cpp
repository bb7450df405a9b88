// SPDX-License-Identifier: Apache-2.0
#include "models/common/embeddings.h"

#include <ATen/ATen.h>

#include <cmath>

namespace tessera {

at::Tensor timestepEmbedding(const at::Tensor& t, std::int64_t dim, double maxPeriod) {
  TORCH_CHECK(t.dim() == 1, "timestep embedding: expected t of shape (N,), got ", t.sizes());
  const std::int64_t half = dim / 2;
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(t.device());
  const at::Tensor freqs = at::exp(-std::log(maxPeriod) * at::arange(half, opts) / static_cast<double>(half));  // (half,)
  const at::Tensor args = t.to(at::kFloat).unsqueeze(1) * freqs.unsqueeze(0);                                 // (N, half)
  at::Tensor emb = at::cat({at::cos(args), at::sin(args)}, -1);                                              // (N, 2*half)
  if (dim % 2) emb = at::cat({emb, at::zeros_like(emb.narrow(1, 0, 1))}, -1);
  return emb;
}

namespace {

at::Tensor sincos1d(std::int64_t dim, const at::Tensor& pos) {  // pos (M,) float64 -> (M, dim)
  const at::Tensor omega = 1.0 / at::pow(10000.0, at::arange(dim / 2, at::kDouble) / (dim / 2.0));  // (dim/2,)
  const at::Tensor out = pos.unsqueeze(1) * omega.unsqueeze(0);                                    // (M, dim/2)
  return at::cat({at::sin(out), at::cos(out)}, 1);
}

}  // namespace

at::Tensor sincosPosEmbed2d(std::int64_t dim, std::int64_t gridH, std::int64_t gridW, double scaleH, double scaleW) {
  TORCH_CHECK(dim % 4 == 0, "2-D sin-cos position embedding: width ", dim, " must be a multiple of 4");
  // Row-major raster: token i sits at row i / W, column i % W.
  const at::Tensor cols = at::arange(gridW, at::kDouble).repeat({gridH}) * scaleW;              // (H*W,)
  const at::Tensor rows = at::arange(gridH, at::kDouble).repeat_interleave(gridW) * scaleH;    // (H*W,)
  return at::cat({sincos1d(dim / 2, cols), sincos1d(dim / 2, rows)}, 1).to(at::kFloat);         // (H*W, dim)
}

}  // namespace tessera
