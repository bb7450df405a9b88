// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <QString>

namespace tessera {

/// `tessera --bench-gallery N`: fills a fresh gallery with N images (28×28 PNGs with
/// varied classes, models, ratings and tags), opens it in the real gallery panel and
/// prints JSON lines: fill time, open, scroll (every page painted, top to bottom), filter
/// and search times. Returns the process exit code.
int runGalleryBenchmark(int entries, const QString& folder);

}  // namespace tessera
