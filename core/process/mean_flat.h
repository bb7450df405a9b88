// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ATen/core/Tensor.h>

namespace tessera {

/// The mean over every dimension but the first (the batch): a loss term per sample, as the
/// reference code's mean_flat.
inline at::Tensor meanFlat(const at::Tensor& x) { return x.flatten(1).mean(1); }

}  // namespace tessera
