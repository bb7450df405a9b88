// SPDX-License-Identifier: Apache-2.0
// File ▸ Import… (and a checkpoint dropped on the window): an official checkpoint becomes
// a model in the user's model folder. The dialog shows what the checkpoint was recognised
// as, its configuration, parameter count and what is missing, asks for the autoencoder
// when the backbone samples latents, and converts on a worker thread.
#pragma once

#include "widgets/studio/import_service.h"

#include <QDialog>
#include <QFutureWatcher>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTimer;

namespace tessera {

class ImportDialog final : public QDialog {
  Q_OBJECT
  Q_DISABLE_COPY_MOVE(ImportDialog)

public:
  /// `file`: the checkpoint to start with (dropped on the window), or empty.
  explicit ImportDialog(const QString& file = QString(), QWidget* parent = nullptr);
  ~ImportDialog() override;

  /// The settings as the fields show them.
  ImportSettings settings() const;
  /// The model file it writes.
  QString outputPath() const;
  /// The last preview (for tests).
  const ImportPreview& preview() const { return m_preview; }
  /// Whether a preview or the import is running.
  bool busy() const;

Q_SIGNALS:
  /// The model file written.
  void imported(const QString& path);
  /// A preview finished (its results are shown).
  void previewed();

public Q_SLOTS:
  void accept() override;

private:
  void buildUi();
  void schedulePreview();
  void startPreview();
  void showPreview(const ImportPreview& p);
  void setBusy(bool busy, const QString& what);
  void browse(QLineEdit* target, const QString& title);

  QLineEdit* m_file = nullptr;
  QComboBox* m_from = nullptr;
  QComboBox* m_preset = nullptr;
  QSpinBox* m_heads = nullptr;
  QLineEdit* m_autoencoder = nullptr;
  QPushButton* m_autoencoderBrowse = nullptr;
  QDoubleSpinBox* m_scale = nullptr;
  QLineEdit* m_name = nullptr;
  QLabel* m_summary = nullptr;
  QPlainTextEdit* m_details = nullptr;
  QProgressBar* m_progress = nullptr;
  QPushButton* m_import = nullptr;
  QTimer* m_debounce = nullptr;
  QFutureWatcher<ImportPreview> m_previewWatcher;
  QFutureWatcher<QString> m_importWatcher;
  ImportPreview m_preview;
  bool m_previewStale = false;  ///< the fields changed while a preview ran
};

}  // namespace tessera
