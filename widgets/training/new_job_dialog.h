// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "widgets/studio/studio_service.h"
#include "widgets/studio/training_service.h"
#include "widgets/training/training_jobs.h"

#include <QDialog>
#include <QFutureWatcher>
#include <QJsonObject>

class QButtonGroup;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QProcess;
class QPushButton;
class QRadioButton;
class QSpinBox;
class QTreeWidget;

namespace tessera {

/// The New job dialog: from scratch or fine-tuning, backbone and size, process, data set
/// (with an image folder's preview), class subset, resolution mode, schedule, and a time
/// per step measured on a few real steps.
class NewJobDialog final : public QDialog {
  Q_OBJECT

public:
  explicit NewJobDialog(const QVector<ModelInfo>& models, QWidget* parent = nullptr);
  ~NewJobDialog() override;

  /// The job the dialog describes (valid when specProblem() is empty).
  TrainingJobSpec spec() const;
  /// Empty, or what stops the job from being queued.
  QString specProblem() const;
  /// The measured seconds per step (0 until measured).
  double secondsPerStep() const { return m_secondsPerStep; }

Q_SIGNALS:
  void measured(double secondsPerStep);

private:
  void buildUi();
  void updateEnabled();
  void fillSizes();
  void onDataChanged();
  void setClasses(const QStringList& names);
  void browseFolder();
  void measure();
  void updateEstimate();
  QJsonObject modelSection() const;

  QVector<ModelInfo> m_models;
  QLineEdit* m_name = nullptr;
  QRadioButton* m_scratch = nullptr;
  QRadioButton* m_finetune = nullptr;
  QComboBox* m_initModel = nullptr;
  QComboBox* m_backbone = nullptr;
  QComboBox* m_size = nullptr;
  QComboBox* m_process = nullptr;
  QComboBox* m_data = nullptr;
  QLineEdit* m_folder = nullptr;
  QPushButton* m_browse = nullptr;
  QTreeWidget* m_folderPreview = nullptr;
  QListWidget* m_classes = nullptr;
  QComboBox* m_resolution = nullptr;
  QSpinBox* m_imageSize = nullptr;
  QSpinBox* m_steps = nullptr;
  QSpinBox* m_batch = nullptr;
  QDoubleSpinBox* m_lr = nullptr;
  QDoubleSpinBox* m_ema = nullptr;
  QComboBox* m_lrSchedule = nullptr;
  QSpinBox* m_checkpointEvery = nullptr;
  QSpinBox* m_previewEvery = nullptr;
  QSpinBox* m_validationEvery = nullptr;
  QPushButton* m_measure = nullptr;
  QLabel* m_estimate = nullptr;
  QLabel* m_problem = nullptr;
  QPushButton* m_ok = nullptr;
  QProcess* m_bench = nullptr;
  QString m_benchConfig;
  QFutureWatcher<FolderPreview> m_folderWatcher;
  FolderPreview m_folderInfo;
  double m_secondsPerStep = 0;
};

}  // namespace tessera
