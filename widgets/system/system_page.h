// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <QWidget>

#include "core/system/system_info.h"

class QFormLayout;
class QLabel;

namespace tessera {

/// The central page while no panel is open: what Tessera runs on, measured.
class SystemPage final : public QWidget {
  Q_OBJECT
  Q_DISABLE_COPY_MOVE(SystemPage)

public:
  explicit SystemPage(QWidget* parent = nullptr);
  void setInfo(const SystemInfo& info);
  /// The value shown for a row, for tests ("LibTorch", "BLAS kernel", ...).
  QString valueOf(const QString& row) const;

private:
  QLabel* addRow(const QString& name);
  /// Loaded plugins and what they add, refused ones with the reason.
  static QString pluginSummary();

  QFormLayout* m_form = nullptr;
  QList<QPair<QString, QLabel*>> m_rows;
};

}  // namespace tessera
