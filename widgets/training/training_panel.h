// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "widgets/studio/studio_service.h"

#include <QWidget>

#include <functional>

class QChart;
class QChartView;
class QLabel;
class QLineSeries;
class QLogValueAxis;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QScatterSeries;
class QSlider;
class QSpinBox;
class QTableWidget;
class QValueAxis;

namespace tessera {

class TrainingJobs;

/// Training jobs: the queue, a live loss chart (raw and smoothed, validation loss,
/// learning rate on a second axis), images/s, ETA and progress, the sample grids by
/// step, and the controls (New job…, Stop, Resume, Sample now, Remove).
class TrainingPanel final : public QWidget {
  Q_OBJECT

public:
  explicit TrainingPanel(TrainingJobs* jobs, QWidget* parent = nullptr);

  /// The models the New job dialog offers for fine-tuning.
  void setModelsProvider(std::function<QVector<ModelInfo>()> provider) { m_models = std::move(provider); }
  qint64 currentJob() const { return m_current; }
  void selectJob(qint64 id);
  /// Points on the raw loss curve of the shown job (tests).
  int lossPoints() const;
  int previewCount() const;
  QSize sizeHint() const override { return {1100, 280}; }

public Q_SLOTS:
  /// Opens the New job dialog and queues what it describes.
  void newJob();

Q_SIGNALS:
  /// The user asked to generate with a finished job's model.
  void useModelRequested(const QString& path);

private:
  void buildUi();
  void refreshList();
  void refreshJob();
  void refreshButtons();
  void showPreview(int index);

  TrainingJobs* m_jobs;
  std::function<QVector<ModelInfo>()> m_models;
  qint64 m_current = 0;

  QTableWidget* m_list = nullptr;
  QPushButton* m_new = nullptr;
  QPushButton* m_stop = nullptr;
  QPushButton* m_resume = nullptr;
  QPushButton* m_sampleNow = nullptr;
  QPushButton* m_remove = nullptr;
  QPushButton* m_use = nullptr;
  QSpinBox* m_concurrent = nullptr;
  QChart* m_chart = nullptr;
  QChartView* m_chartView = nullptr;
  QLineSeries* m_raw = nullptr;
  QLineSeries* m_smooth = nullptr;
  QLineSeries* m_validation = nullptr;
  QScatterSeries* m_validationDots = nullptr;
  QLineSeries* m_lr = nullptr;
  QValueAxis* m_stepAxis = nullptr;
  QValueAxis* m_lossAxis = nullptr;
  QValueAxis* m_lrAxis = nullptr;
  QLabel* m_stats = nullptr;
  QProgressBar* m_progress = nullptr;
  QLabel* m_preview = nullptr;
  QSlider* m_previewSlider = nullptr;
  QLabel* m_previewLabel = nullptr;
  QLabel* m_evaluation = nullptr;
  QPlainTextEdit* m_output = nullptr;
};

}  // namespace tessera
