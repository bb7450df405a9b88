// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <QString>

namespace tessera {

/// "system" (dark when the platform's palette is dark), "light" or "dark": Fusion style
/// with a matching palette, so every panel looks the same on every desktop.
void applyTheme(const QString& mode);
/// The stored choice ("system" when none).
QString themeSetting();
void setThemeSetting(const QString& mode);
/// Whether the palette in use is dark.
bool isDarkTheme();

}  // namespace tessera
