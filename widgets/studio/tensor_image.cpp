// SPDX-License-Identifier: Apache-2.0
#include "widgets/studio/tensor_image.h"

#include "engine/generated_image.h"

#include <algorithm>
#include <cstring>

namespace tessera {

QImage toQImage(const at::Tensor& chw, int maxSide) {
  const Image8 img = toImage8(chw.detach());
  if (img.channels != 1 && img.channels != 3) return toQImage(chw.slice(0, 0, 1), maxSide);
  const QImage::Format format = img.channels == 1 ? QImage::Format_Grayscale8 : QImage::Format_RGB888;
  QImage out(static_cast<int>(img.width), static_cast<int>(img.height), format);
  const std::size_t row = static_cast<std::size_t>(img.width * img.channels);
  for (int y = 0; y < out.height(); ++y)
    std::memcpy(out.scanLine(y), img.pixels.data() + static_cast<std::size_t>(y) * row, row);
  if (maxSide > 0 && std::max(out.width(), out.height()) > maxSide)
    out = out.scaled(maxSide, maxSide, Qt::KeepAspectRatio, Qt::SmoothTransformation);
  return out;
}

}  // namespace tessera
