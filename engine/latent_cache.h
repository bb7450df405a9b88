// SPDX-License-Identifier: Apache-2.0
// The latent cache of latent training (data.latents): a data set encoded once by the
// model's autoencoder, kept on disk and reused by every run that trains on the same
// images with the same autoencoder. Like LDM, the cache keeps the posterior (mean and
// standard deviation), not one sample of it, so each training step draws its own latent;
// mirrored images are encoded too, since the latent of a mirrored image is not the
// mirrored latent.
//
// A cache file is named by a hash of the autoencoder's SHA-256 and the data's description,
// and records both; a file whose record does not match (another autoencoder, other data,
// a damaged file) is encoded again and replaced atomically.
#pragma once

#include "core/util/error.h"
#include "models/autoencoders/autoencoder.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace tessera {

/// A data set's posteriors, item by item: (N, C, h, w) float; the *Flipped ones are
/// the mirrored images' (undefined when the data is not flipped).
struct LatentSet {
  at::Tensor mean, std;
  at::Tensor meanFlipped, stdFlipped;
  std::string path;     ///< the cache file
  bool reused = false;  ///< read from the cache rather than encoded
  std::string note;     ///< why an existing file was not reused ("" when none)
  double seconds = 0;   ///< spent encoding or reading
};

/// The SHA-256 (hex) of an autoencoder: its kind, configuration and weights (not its
/// scale factor or preview map, which do not change its latents).
std::string autoencoderSha256(const LoadedAutoencoder& ae);

/// The items of a data set at their trained size, (C, H, W) in [-1, 1], by index.
using ItemSource = std::function<at::Tensor(std::int64_t index)>;

/// The posteriors of `count` items under `ae`, from `dir`'s cache when it holds them for
/// this autoencoder (`aeSha`) and data (`dataKey`: what makes the items what they are),
/// else encoded (in chunks, `progress(done, count)` after each) and written there.
Result<LatentSet> cachedLatents(const LoadedAutoencoder& ae, const std::string& aeSha, const ItemSource& items,
                                std::int64_t count, bool flips, const std::string& dir, const nlohmann::json& dataKey,
                                const std::function<void(std::int64_t, std::int64_t)>& progress = {});

}  // namespace tessera
