// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <QDialog>

class QComboBox;
class QSpinBox;

namespace tessera {

/// Application settings, stored with QSettings: compute threads.
class PreferencesDialog final : public QDialog {
  Q_OBJECT
  Q_DISABLE_COPY_MOVE(PreferencesDialog)

public:
  explicit PreferencesDialog(QWidget* parent = nullptr);
  QSpinBox* threadsBox() const { return m_threads; }

public Q_SLOTS:
  void accept() override;

private:
  QSpinBox* m_threads = nullptr;
  QComboBox* m_theme = nullptr;
};

}  // namespace tessera
