// SPDX-License-Identifier: Apache-2.0
#pragma once
// Tensors to pictures for the services (their .cpp files only: the panels never see LibTorch).
#include <ATen/core/Tensor.h>
#include <QImage>

namespace tessera {

/// (C, H, W) in [-1, 1] → a grey (C = 1) or RGB (C = 3) QImage, shrunk to at most `maxSide`
/// pixels a side when maxSide > 0. Other channel counts (latents) show their first channel
/// as grey.
QImage toQImage(const at::Tensor& chw, int maxSide = 0);

}  // namespace tessera
