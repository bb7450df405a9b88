// SPDX-License-Identifier: Apache-2.0
#pragma once
// The adaptive-LayerNorm pieces DiT, SiT, FiT and NiT share: a LayerNorm without affine
// weights (its scale and shift come from the conditioning), and the modulation itself.
#include <ATen/ATen.h>
#include <torch/nn/modules/normalization.h>

#include <cstdint>

namespace tessera {

/// LayerNorm over the last `dim` features, no learned weights, eps 1e-6 (the references'
/// `nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)`).
inline torch::nn::LayerNorm plainLayerNorm(std::int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).elementwise_affine(false).eps(1e-6));
}

/// x·(1 + scale) + shift for tokens x (B, N, D) and per-sample scale and shift (B, D).
inline at::Tensor modulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale) {
  return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
}

}  // namespace tessera
