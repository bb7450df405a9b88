// SPDX-License-Identifier: Apache-2.0
#include "models/common/attention.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <cmath>
#include <limits>
#include <map>
#include <vector>

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

at::Tensor maskedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& valid) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.sizes() == q.sizes(),
              "maskedAttention: expected q, k, v of one shape (N, heads, T, d), got ", q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(valid.dim() == 2 && valid.size(0) == q.size(0) && valid.size(1) == q.size(2),
              "maskedAttention: expected a mask of shape (", q.size(0), ", ", q.size(2), "), got ", valid.sizes());
  const at::Tensor m = valid.to(at::kBool);
  const at::Tensor allowed = at::eq(m.unsqueeze(2), m.unsqueeze(1)).unsqueeze(1);  // (N, 1, T, T)
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, allowed);
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  at::Tensor logits = at::matmul(q * scale, k.transpose(-2, -1));
  logits.masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  return at::matmul(at::softmax(logits, -1), v);
#endif
}

at::Tensor varlenAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cuSeqlens) {
  TORCH_CHECK(q.dim() == 3 && k.sizes() == q.sizes() && v.sizes() == q.sizes(),
              "varlenAttention: expected q, k, v of one shape (total, heads, d), got ", q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(cuSeqlens.dim() == 1 && cuSeqlens.size(0) >= 2, "varlenAttention: cu_seqlens must be (B+1,), got ", cuSeqlens.sizes());
  const at::Tensor cu = cuSeqlens.to(at::kCPU, at::kLong).contiguous();
  const std::int64_t* b = cu.data_ptr<std::int64_t>();
  const std::int64_t count = cu.size(0) - 1;
  TORCH_CHECK(b[0] == 0 && b[count] == q.size(0), "varlenAttention: cu_seqlens must run from 0 to the ", q.size(0),
              " packed tokens, got ", b[0], " … ", b[count]);
  // Sequences grouped by length: one batched attention per distinct length.
  std::map<std::int64_t, std::vector<std::int64_t>> byLength;
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t len = b[i + 1] - b[i];
    TORCH_CHECK(len >= 0, "varlenAttention: cu_seqlens must not decrease (sequence ", i, ")");
    if (len > 0) byLength[len].push_back(i);
  }
  if (byLength.size() == 1 && byLength.begin()->second.size() == static_cast<std::size_t>(count)) {
    // One length: a reshape, no copies.
    const std::int64_t len = byLength.begin()->first;
    auto batched = [&](const at::Tensor& t) { return t.reshape({count, len, t.size(1), t.size(2)}).transpose(1, 2); };
    return scaledDotProductAttention(batched(q), batched(k), batched(v)).transpose(1, 2).reshape(q.sizes());
  }
  at::Tensor out = at::empty_like(q);
  for (const auto& entry : byLength) {
    const std::int64_t len = entry.first;  // not a structured binding: C++17 lambdas cannot capture one (clang refuses)
    const auto& seqs = entry.second;
    const std::int64_t g = static_cast<std::int64_t>(seqs.size());
    std::vector<std::int64_t> rows;
    rows.reserve(static_cast<std::size_t>(g * len));
    for (std::int64_t s : seqs)
      for (std::int64_t j = 0; j < len; ++j) rows.push_back(b[s] + j);
    const at::Tensor index = at::tensor(rows, at::kLong).to(q.device());
    auto gather = [&](const at::Tensor& t) {
      return t.index_select(0, index).reshape({g, len, t.size(1), t.size(2)}).transpose(1, 2);  // (g, h, len, d)
    };
    const at::Tensor o = scaledDotProductAttention(gather(q), gather(k), gather(v));
    out.index_copy_(0, index, o.transpose(1, 2).reshape({g * len, q.size(1), q.size(2)}));
  }
  return out;
}

}  // namespace tessera
