// SPDX-License-Identifier: Apache-2.0
// Images of different sizes as one token sequence (NiT's packed batches): each image
// (C, H, W) becomes its H/p × W/p patches in raster order (row-major), each patch a
// (C, p, p) block, and the images follow one another. Shape (L, C, p, p), L = Σ h_i w_i.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace tessera {

/// Token grid (rows, columns) of each image of a pack.
using GridSizes = std::vector<std::pair<std::int64_t, std::int64_t>>;

/// (C, H, W) → (H/p · W/p, C, p, p); also (N, C, H, W) → (N · H/p · W/p, C, p, p).
at::Tensor patchify(const at::Tensor& images, std::int64_t patch);
/// The inverse of patchify for one image: (h·w, C, p, p) → (C, h·p, w·p).
at::Tensor unpatchify(const at::Tensor& tokens, std::int64_t gridH, std::int64_t gridW);
/// The inverse of patchify for N images of one grid: (N·h·w, C, p, p) → (N, C, h·p, w·p).
at::Tensor unpatchifyBatch(const at::Tensor& tokens, std::int64_t count, std::int64_t gridH, std::int64_t gridW);

/// Packs images (C, H_i, W_i), sides multiples of `patch`, into (L, C, p, p).
at::Tensor packImages(const std::vector<at::Tensor>& images, std::int64_t patch);
/// Splits a pack back into images (C', h_i·p, w_i·p) (C' may differ from the input's).
std::vector<at::Tensor> unpackImages(const at::Tensor& tokens, const GridSizes& grids);

/// [0, L_0, L_0 + L_1, …] (B+1,) int64 on the CPU.
at::Tensor cumulativeLengths(const GridSizes& grids);
/// Token grids from per-image pixel sizes (B, 2) and the patch size; fails (c10::Error)
/// naming the image whose size is not a multiple of the patch.
GridSizes gridsFromSizes(const at::Tensor& sizes, std::int64_t patch);
/// For each token of the pack, the index of its image: (L,) int64.
at::Tensor tokenImageIndex(const GridSizes& grids);
/// Σ h_i w_i.
std::int64_t totalTokens(const GridSizes& grids);

/// Padded layout of a pack (FiT's sequences): (B, N_max, F) features with a (B, N_max)
/// validity mask, from packed (L, F) rows; and back.
at::Tensor padPacked(const at::Tensor& rows, const GridSizes& grids, std::int64_t maxTokens);
at::Tensor unpadToPacked(const at::Tensor& padded, const GridSizes& grids);
at::Tensor paddingMask(const GridSizes& grids, std::int64_t maxTokens);

}  // namespace tessera
