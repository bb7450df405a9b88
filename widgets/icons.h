// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <QIcon>

namespace tessera {

/// The application icon in all its sizes (also makes sure the compiled-in resources
/// of the static resource library are registered).
QIcon tesseraIcon();

}  // namespace tessera
