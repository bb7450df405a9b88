// SPDX-License-Identifier: Apache-2.0
#include "widgets/preferences/preferences_dialog.h"

#include "core/system/system_info.h"
#include "widgets/settings.h"
#include "widgets/theme.h"

#include <QComboBox>

#include <QDialogButtonBox>
#include <QFormLayout>
#include <QLabel>
#include <QSpinBox>
#include <QVBoxLayout>

namespace tessera {

PreferencesDialog::PreferencesDialog(QWidget* parent) : QDialog(parent) {
  setObjectName(QStringLiteral("PreferencesDialog"));
  setWindowTitle(tr("Preferences"));
  m_threads = new QSpinBox(this);
  m_threads->setObjectName(QStringLiteral("threads"));
  m_threads->setRange(1, hardwareThreadCount());
  m_threads->setValue(settings::threadCount());
  m_threads->setToolTip(tr("Threads for LibTorch and OpenBLAS. More than the hardware has only slows work down."));
  auto* form = new QFormLayout();
  form->addRow(tr("Compute threads:"), m_threads);
  auto* note = new QLabel(tr("This machine has %n hardware thread(s).", nullptr, hardwareThreadCount()), this);
  note->setEnabled(false);
  form->addRow(QString(), note);
  m_theme = new QComboBox(this);
  m_theme->setObjectName(QStringLiteral("theme"));
  m_theme->addItem(tr("Follow the system"), QStringLiteral("system"));
  m_theme->addItem(tr("Light"), QStringLiteral("light"));
  m_theme->addItem(tr("Dark"), QStringLiteral("dark"));
  m_theme->setCurrentIndex(std::max(0, m_theme->findData(themeSetting())));
  form->addRow(tr("Theme:"), m_theme);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(form);
  layout->addWidget(buttons);
}

void PreferencesDialog::accept() {
  settings::setThreadCount(m_threads->value());
  setThemeSetting(m_theme->currentData().toString());
  applyTheme(themeSetting());
  QDialog::accept();
}

}  // namespace tessera
