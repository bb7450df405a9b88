// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ATen/core/Tensor.h>

namespace tessera {

/// softmax(q kᵀ / sqrt(d)) v for q, k, v of shape (N, heads, T, d). Uses LibTorch's fused
/// scaled-dot-product kernel where the LibTorch version has one (2.0 and later) and the
/// exact composition of matrix products and softmax elsewhere.
at::Tensor scaledDotProductAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

/// The attention probabilities softmax(q kᵀ / sqrt(d)), (N, heads, T, T), for inspection.
at::Tensor attentionProbabilities(const at::Tensor& q, const at::Tensor& k);

}  // namespace tessera
