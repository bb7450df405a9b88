// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <QString>

/// QSettings keys, in one place so that panels and tests agree on them.
namespace tessera::settings {

inline QString windowGeometry() { return QStringLiteral("window/geometry"); }
inline QString windowState() { return QStringLiteral("window/state"); }
/// LibTorch intra-op threads and OpenBLAS threads; absent means all hardware threads.
inline QString computeThreads() { return QStringLiteral("compute/threads"); }

/// The thread count to use: the stored setting clamped to [1, hardware], or all.
int threadCount();
void setThreadCount(int threads);

}  // namespace tessera::settings
