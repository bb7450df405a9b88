// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "widgets/studio/studio_service.h"

#include <QFutureWatcher>
#include <QJsonObject>
#include <QWidget>

class QCheckBox;
class QComboBox;
class QLineEdit;
class QDoubleSpinBox;
class QLabel;
class QListWidget;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QToolButton;

namespace tessera {

/// Model, classes, size, sampler and guidance, seed and batch; Generate and Cancel.
/// The settings are captured into a GenerationJob when Generate is pressed.
class GeneratePanel final : public QWidget {
  Q_OBJECT

public:
  explicit GeneratePanel(QWidget* parent = nullptr);

  /// Re-reads the model folders (and the models opened by hand) off the GUI thread, then
  /// selects `select` (a path) when given, else keeps the current model.
  void refreshModels(const QString& select = QString());
  const QVector<ModelInfo>& models() const { return m_models; }
  const ModelInfo* currentModel() const;
  bool selectModel(const QString& pathOrName);
  /// The job the current settings describe (the seed as shown; no randomising).
  GenerationJob captureJob() const;
  /// Puts every setting of a Tessera PNG's metadata back; returns what could not be restored.
  QString applySettings(const QJsonObject& metadata);
  void setRunning(bool running);
  void setProgress(int done, int total);
  void setGuidanceInterval(double low, double high);
  /// The size status line (empty when the size is the trained one).
  QString sizeStatus() const;
  /// Mixed sizes: on, with a list "W×H, W×H, …" (image i gets entry i mod k).
  void setMixedSizes(bool on, const QString& list = {});

Q_SIGNALS:
  void generateRequested(const tessera::GenerationJob& job);
  void cancelRequested();
  void modelsLoaded();
  void guidanceIntervalChanged(double low, double high);

private:
  void buildUi();
  void onModelChanged();
  void onPresetChanged();
  void validateSize();
  void onGenerate();
  void populateClasses(const ModelInfo& model);
  /// The mixed-size list parsed, or an error naming the bad entry.
  QVector<QSize> mixedSizes(QString* error) const;

  QVector<ModelInfo> m_models;
  QStringList m_openedFiles;
  QFutureWatcher<QVector<ModelInfo>> m_scan;
  QFutureWatcher<QVector<QImage>> m_examples;
  QString m_pendingModel;  ///< selected once the scan finishes

  QComboBox* m_model = nullptr;
  QLabel* m_modelInfo = nullptr;
  QListWidget* m_classes = nullptr;
  QCheckBox* m_randomClass = nullptr;
  QSpinBox* m_count = nullptr;
  QComboBox* m_preset = nullptr;
  QSpinBox* m_width = nullptr;
  QSpinBox* m_height = nullptr;
  QLabel* m_sizeStatus = nullptr;
  class AspectHistogram* m_histogram = nullptr;
  QCheckBox* m_mixed = nullptr;
  QLineEdit* m_sizeList = nullptr;
  QToolButton* m_commonSizes = nullptr;
  QComboBox* m_sampler = nullptr;
  QSpinBox* m_steps = nullptr;
  QDoubleSpinBox* m_cfg = nullptr;
  QDoubleSpinBox* m_cfgLow = nullptr;
  QDoubleSpinBox* m_cfgHigh = nullptr;
  QCheckBox* m_clip = nullptr;
  QSpinBox* m_seed = nullptr;
  QToolButton* m_seedLock = nullptr;
  QSpinBox* m_batch = nullptr;
  QPushButton* m_generate = nullptr;
  QPushButton* m_cancel = nullptr;
  QProgressBar* m_progress = nullptr;
  QString m_grid = QStringLiteral("default");
  double m_eta = 0.0;
  bool m_sizeOk = true;
};

}  // namespace tessera
