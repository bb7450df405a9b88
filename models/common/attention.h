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

/// Attention over a padded batch, FiT's rule: token i of sequence b attends to token j
/// when valid[b, i] == valid[b, j] — real tokens see only real tokens, and padding sees
/// only padding (so that no row is empty). q, k, v (N, heads, T, d); valid (N, T) bool.
/// Changing the values at padded positions changes nothing at real positions.
at::Tensor maskedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& valid);

/// Variable-length attention over packed sequences (flash-attn's varlen interface):
/// q, k, v (total, heads, d) hold the sequences one after another, `cuSeqlens` (B+1,)
/// int64 their boundaries [0, L_0, L_0+L_1, …]. Each token attends to the tokens of its
/// own sequence only. Exact: sequences of equal length are stacked and run through one
/// scaledDotProductAttention (the fused kernel on LibTorch 2.x), so no block-diagonal
/// mask over the pack is ever built and no padding is computed. Returns (total, heads, d).
at::Tensor varlenAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cuSeqlens);

}  // namespace tessera
