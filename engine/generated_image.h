// SPDX-License-Identifier: Apache-2.0
// One image of a finished generation as it leaves the core: an 8-bit picture, its PNG
// with the settings in a "tessera" tEXt chunk (everything needed to reproduce it), a
// thumbnail, and its gallery record. `tessera-cli sample` and the studio both use it,
// so a PNG from either reproduces in either.
#pragma once

#include "core/formats/png.h"
#include "core/gallery/gallery_store.h"
#include "engine/generation.h"

#include <nlohmann/json.hpp>

namespace tessera {

struct GeneratedImage {
  Image8 image;
  std::string png;        ///< with the "tessera" text chunk
  std::string thumbnail;  ///< PNG, longest side at most kThumbnailSide
  nlohmann::json metadata;
  GalleryRecord record;
};

inline constexpr std::int64_t kThumbnailSide = 128;

/// (C, H, W) in [-1, 1] → 8 bits (grey or RGB).
Image8 toImage8(const at::Tensor& chw);

/// Image `index` of `result`, generated from `model` (file at `modelPath` with SHA-256
/// `modelHash`) with per-image classes `classes` and first seed `firstSeed`.
Result<GeneratedImage> describeGeneratedImage(const LoadedModel& model, const ModelTraits& traits,
                                              const GenerationResult& result, const std::vector<std::int64_t>& classes,
                                              std::uint64_t firstSeed, std::int64_t index, const std::string& modelPath,
                                              const std::string& modelHash);

/// What a PNG's "tessera" metadata asks for, as a request for one image (the one in the
/// PNG): sampler, steps, every sampler option, guidance, size, class and that image's seed.
/// Fails naming the field that is missing or malformed.
Result<GenerationRequest> requestFromMetadata(const nlohmann::json& metadata);

}  // namespace tessera
