// SPDX-License-Identifier: Apache-2.0
// The attention maps panel: captures one image's attention (chosen blocks, every chosen
// step) and guidance map on a worker, then shows, for the patch the user clicks, what it
// attends to or who attends to it — one block or their mean or the rollout across
// blocks, one head or their mean — as a heat map over the image at its true aspect
// ratio, the per-head entropy of the step, and the map's evolution across steps.
#pragma once

#include "widgets/studio/inspection_service.h"

#include <QThread>
#include <QWidget>

class QCheckBox;
class QComboBox;
class QLabel;
class QListWidget;
class QProgressBar;
class QPushButton;
class QSlider;

namespace tessera {

/// The image with its heat map; a click picks the patch under the cursor.
class MapView final : public QWidget {
  Q_OBJECT
public:
  explicit MapView(QWidget* parent = nullptr);
  /// `overlay` is the image (already blended) at any scale; the grid is gridW × gridH patches.
  void setOverlay(const QImage& overlay, int gridW, int gridH);
  void setSelected(int token);
  int selected() const { return m_selected; }
  /// The widget rectangle the image is painted in (true aspect ratio).
  QRect imageRect() const;
  /// The point at the centre of patch `token`, in widget coordinates.
  QPoint centreOf(int token) const;
  QSize sizeHint() const override { return {360, 360}; }

Q_SIGNALS:
  void tokenClicked(int token);

protected:
  void paintEvent(QPaintEvent*) override;
  void mousePressEvent(QMouseEvent*) override;

private:
  QImage m_overlay;
  int m_gridW = 0, m_gridH = 0, m_selected = -1;
};

/// Entropy of every captured block × head as coloured cells; a click picks the pair.
class EntropyChart final : public QWidget {
  Q_OBJECT
public:
  explicit EntropyChart(QWidget* parent = nullptr);
  void setEntropy(const QVector<float>& values, const QVector<int>& layers, int heads, double maximum);
  void setSelection(int layerIndex, int head);
  QSize sizeHint() const override { return {260, 150}; }

Q_SIGNALS:
  void cellClicked(int layerIndex, int head);

protected:
  void paintEvent(QPaintEvent*) override;
  void mousePressEvent(QMouseEvent*) override;

private:
  QRectF cellRect(int row, int column) const;
  QVector<float> m_values;
  QVector<int> m_layers;
  int m_heads = 0, m_layer = -1, m_head = -1;
  double m_max = 1;
};

class AttentionPanel final : public QWidget {
  Q_OBJECT
public:
  explicit AttentionPanel(QWidget* parent = nullptr);
  ~AttentionPanel() override;

  /// The image to inspect: a one-image job, its model, and a line describing it.
  void setSource(const GenerationJob& job, const ModelInfo& model, const QString& title);
  void clearSource(const QString& why);
  bool hasSource() const { return m_hasSource; }
  /// The capture's size in bytes for the current choices (shown before it runs).
  quint64 estimatedBytes() const;

  // For tests and scripting.
  MapView* mapView() const { return m_view; }
  EntropyChart* entropyChart() const { return m_entropy; }
  QListWidget* strip() const { return m_strip; }
  QComboBox* layerBox() const { return m_layer; }
  QComboBox* headBox() const { return m_head; }
  QComboBox* directionBox() const { return m_direction; }
  QComboBox* kindBox() const { return m_kind; }
  QComboBox* captureStepsBox() const { return m_captureSteps; }
  QSlider* stepSlider() const { return m_step; }
  QPushButton* captureButton() const { return m_capture; }
  const QVector<float>& currentMap() const { return m_map; }
  /// The status line under the controls (capture results, why a map cannot be made).
  QString statusText() const;
  QSize currentMapSize() const { return m_mapSize; }
  InspectionSummary summary() const { return m_summary; }
  QImage currentOverlay() const { return m_overlay; }
  QString lastError() const { return m_error; }
  bool isCapturing() const { return m_running; }

  QString exportPng(const QString& path) const;
  QString exportTensor(const QString& path) const;

public Q_SLOTS:
  void capture();
  void cancel();

Q_SIGNALS:
  void captureFinished(bool ok);

private:
  void updateEstimate();
  void refresh();
  void refreshStrip();
  QVector<float> mapAt(int stepIndex) const;
  QJsonObject mapMeta() const;
  QVector<int> stepsToCapture() const;

  QThread m_thread;
  InspectionWorker* m_worker = nullptr;
  qint64 m_id = 0;
  bool m_running = false, m_hasSource = false;
  GenerationJob m_job;
  ModelInfo m_model;
  InspectionHandle m_data;
  InspectionSummary m_summary;
  QVector<float> m_map;
  mutable QString m_mapError;  ///< why the last map could not be made (mapAt), shown in the status line
  QString m_shownMapError;     ///< the one the status line shows
  QSize m_mapSize;
  QImage m_overlay;
  QString m_error;

  QLabel *m_source, *m_estimate, *m_stepLabel, *m_status;
  QComboBox *m_captureSteps, *m_captureLayers, *m_kind, *m_layer, *m_head, *m_direction, *m_colors;
  QSlider *m_opacity, *m_step;
  QPushButton *m_capture, *m_cancel, *m_exportPng, *m_exportTensor, *m_exportCapture;
  QProgressBar* m_progress;
  MapView* m_view;
  EntropyChart* m_entropy;
  QListWidget* m_strip;
};

}  // namespace tessera
