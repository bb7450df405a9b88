// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <QDialog>

#include "core/system/system_info.h"

namespace tessera {

/// Version, libraries and licence.
class AboutDialog final : public QDialog {
  Q_OBJECT
  Q_DISABLE_COPY_MOVE(AboutDialog)

public:
  AboutDialog(const SystemInfo& info, QWidget* parent = nullptr);
};

}  // namespace tessera
