// SPDX-License-Identifier: Apache-2.0
#include "widgets/icons.h"

#include <QDir>

// Q_INIT_RESOURCE must be used outside any namespace. Resources in a static library
// are not registered by the linker on their own.
static void initTesseraResources() { Q_INIT_RESOURCE(tessera); }

namespace tessera {

QIcon tesseraIcon() {
  static const QIcon icon = [] {
    initTesseraResources();
    QIcon i;
    for (int size : {32, 64, 128, 256}) i.addFile(QStringLiteral(":/icons/tessera-%1.png").arg(size), QSize(size, size));
    return i;
  }();
  return icon;
}

}  // namespace tessera
