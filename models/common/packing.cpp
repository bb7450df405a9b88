// SPDX-License-Identifier: Apache-2.0
#include "models/common/packing.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace tessera {

at::Tensor patchify(const at::Tensor& images, std::int64_t p) {
  TORCH_CHECK(images.dim() == 3 || images.dim() == 4, "patchify: expected (C, H, W) or (N, C, H, W), got ", images.sizes());
  const at::Tensor x = images.dim() == 3 ? images.unsqueeze(0) : images;
  const std::int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(H % p == 0 && W % p == 0 && H > 0 && W > 0, "patchify: ", H, "x", W, " is not a multiple of the patch size ", p);
  const std::int64_t h = H / p, w = W / p;
  return x.reshape({N, C, h, p, w, p}).permute({0, 2, 4, 1, 3, 5}).reshape({N * h * w, C, p, p});
}

at::Tensor unpatchify(const at::Tensor& tokens, std::int64_t h, std::int64_t w) {
  return unpatchifyBatch(tokens, 1, h, w).squeeze(0);
}

at::Tensor unpatchifyBatch(const at::Tensor& tokens, std::int64_t n, std::int64_t h, std::int64_t w) {
  TORCH_CHECK(tokens.dim() == 4 && tokens.size(0) == n * h * w && tokens.size(2) == tokens.size(3),
              "unpatchify: expected (", n * h * w, ", C, p, p) tokens, got ", tokens.sizes());
  const std::int64_t C = tokens.size(1), p = tokens.size(2);
  return tokens.reshape({n, h, w, C, p, p}).permute({0, 3, 1, 4, 2, 5}).reshape({n, C, h * p, w * p});
}

at::Tensor packImages(const std::vector<at::Tensor>& images, std::int64_t p) {
  TORCH_CHECK(!images.empty(), "packImages: no images");
  std::vector<at::Tensor> parts;
  parts.reserve(images.size());
  for (const auto& img : images) parts.push_back(patchify(img, p));
  return parts.size() == 1 ? parts[0] : at::cat(parts, 0);
}

std::vector<at::Tensor> unpackImages(const at::Tensor& tokens, const GridSizes& grids) {
  TORCH_CHECK(tokens.dim() == 4 && tokens.size(0) == totalTokens(grids), "unpackImages: expected (", totalTokens(grids),
              ", C, p, p) tokens, got ", tokens.sizes());
  std::vector<at::Tensor> out;
  std::int64_t at = 0;
  for (const auto& [h, w] : grids) {
    out.push_back(unpatchify(tokens.narrow(0, at, h * w), h, w));
    at += h * w;
  }
  return out;
}

at::Tensor cumulativeLengths(const GridSizes& grids) {
  std::vector<std::int64_t> cu{0};
  for (const auto& [h, w] : grids) cu.push_back(cu.back() + h * w);
  return at::tensor(cu, at::kLong);
}

GridSizes gridsFromSizes(const at::Tensor& sizes, std::int64_t p) {
  TORCH_CHECK(sizes.dim() == 2 && sizes.size(1) == 2, "expected per-image sizes of shape (B, 2), got ", sizes.sizes());
  const at::Tensor s = sizes.to(at::kCPU, at::kLong).contiguous();
  const std::int64_t* d = s.data_ptr<std::int64_t>();
  GridSizes grids;
  for (std::int64_t i = 0; i < s.size(0); ++i) {
    const std::int64_t H = d[2 * i], W = d[2 * i + 1];
    TORCH_CHECK(H > 0 && W > 0 && H % p == 0 && W % p == 0, "image ", i, ": ", H, "x", W,
                " is not a positive multiple of the patch size ", p);
    grids.emplace_back(H / p, W / p);
  }
  return grids;
}

at::Tensor tokenImageIndex(const GridSizes& grids) {
  std::vector<std::int64_t> lengths;
  for (const auto& [h, w] : grids) lengths.push_back(h * w);
  return at::repeat_interleave(at::arange(static_cast<std::int64_t>(grids.size()), at::kLong), at::tensor(lengths, at::kLong));
}

std::int64_t totalTokens(const GridSizes& grids) {
  std::int64_t n = 0;
  for (const auto& [h, w] : grids) n += h * w;
  return n;
}

namespace {
/// Row of the padded (B·N_max) layout for each packed token.
at::Tensor paddedRows(const GridSizes& grids, std::int64_t maxTokens) {
  std::vector<std::int64_t> rows;
  rows.reserve(static_cast<std::size_t>(totalTokens(grids)));
  for (std::size_t i = 0; i < grids.size(); ++i) {
    const std::int64_t len = grids[i].first * grids[i].second;
    TORCH_CHECK(len <= maxTokens, "image ", i, " has ", len, " tokens, more than the ", maxTokens, " of the padded layout");
    for (std::int64_t j = 0; j < len; ++j) rows.push_back(static_cast<std::int64_t>(i) * maxTokens + j);
  }
  return at::tensor(rows, at::kLong);
}
}  // namespace

at::Tensor padPacked(const at::Tensor& rows, const GridSizes& grids, std::int64_t maxTokens) {
  const std::int64_t B = static_cast<std::int64_t>(grids.size());
  const at::Tensor flat = rows.reshape({rows.size(0), -1});
  at::Tensor out = at::zeros({B * maxTokens, flat.size(1)}, flat.options());
  out = out.index_copy(0, paddedRows(grids, maxTokens).to(flat.device()), flat);
  return out.reshape({B, maxTokens, flat.size(1)});
}

at::Tensor unpadToPacked(const at::Tensor& padded, const GridSizes& grids) {
  const at::Tensor flat = padded.reshape({padded.size(0) * padded.size(1), -1});
  return flat.index_select(0, paddedRows(grids, padded.size(1)).to(flat.device()));
}

at::Tensor paddingMask(const GridSizes& grids, std::int64_t maxTokens) {
  const std::int64_t B = static_cast<std::int64_t>(grids.size());
  at::Tensor m = at::zeros({B, maxTokens}, at::kBool);
  for (std::int64_t i = 0; i < B; ++i) m[i].narrow(0, 0, grids[static_cast<std::size_t>(i)].first * grids[static_cast<std::size_t>(i)].second).fill_(true);
  return m;
}

}  // namespace tessera
