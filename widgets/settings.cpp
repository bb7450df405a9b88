// SPDX-License-Identifier: Apache-2.0
#include "widgets/settings.h"

#include "core/system/system_info.h"

#include <QSettings>

#include <algorithm>

namespace tessera::settings {

int threadCount() {
  const int hardware = hardwareThreadCount();
  const int stored = QSettings().value(computeThreads(), hardware).toInt();
  return std::clamp(stored, 1, hardware);
}

void setThreadCount(int threads) {
  QSettings().setValue(computeThreads(), threads);
  tessera::setThreadCount(threads);
}

}  // namespace tessera::settings
