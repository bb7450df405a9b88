// SPDX-License-Identifier: Apache-2.0
#include "models/common/attention.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cmath>

namespace tessera {

at::Tensor attentionProbabilities(const at::Tensor& q, const at::Tensor& k) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  return at::softmax(at::matmul(q * scale, k.transpose(-2, -1)), -1);  // (N, h, T, T)
}

at::Tensor scaledDotProductAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v);
#else
  return at::matmul(attentionProbabilities(q, k), v);  // (N, h, T, d)
#endif
}

}  // namespace tessera
