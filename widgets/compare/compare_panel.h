// SPDX-License-Identifier: Apache-2.0
// The Compare panel: a grid whose rows and columns are chosen from models, samplers,
// steps, guidance scales, seeds and sizes, all with the same class, seed and noise. Cells
// fill in as they finish (image, wall time, network evaluations, compute) and can be
// cancelled; "matched compute" gives every cell about the same FLOPs; a quality column
// runs `eval` per row or column; the grid exports as one labelled PNG, is saved in the
// gallery as a set and reopens from it; any cell opens in the studio (timeline, maps).
#pragma once

#include "widgets/studio/compare_service.h"

#include <QThread>

#include <functional>
#include <QWidget>

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QScrollArea;
class QSpinBox;

namespace tessera {

/// The grid itself, painted: row and column labels, cells, quality per row and column.
class CompareGrid final : public QWidget {
  Q_OBJECT
public:
  explicit CompareGrid(QWidget* parent = nullptr);
  void setAxes(const QString& rowAxis, const QStringList& rows, const QString& columnAxis, const QStringList& columns);
  void setCell(const CompareCell& cell);
  void setQuality(const CompareQuality& quality);
  void setQualityText(int index, bool rows, const QString& text);
  /// What the quality label of row or column `index` shows ("" before an evaluation).
  QString qualityText(int index, bool rows) const { return (rows ? m_rowQuality : m_columnQuality).value(index); }
  const CompareCell* cell(int row, int column) const;
  int rows() const { return static_cast<int>(m_rows.size()); }
  int columns() const { return static_cast<int>(m_columns.size()); }
  int selectedRow() const { return m_selRow; }
  int selectedColumn() const { return m_selColumn; }
  QRect cellRect(int row, int column) const;
  QSize sizeHint() const override;
  QSize minimumSizeHint() const override { return sizeHint(); }
  /// The whole grid with its labels, as one image.
  QImage render() const;

Q_SIGNALS:
  void cellClicked(int row, int column);
  void cellDoubleClicked(int row, int column);

protected:
  void paintEvent(QPaintEvent*) override;
  void mousePressEvent(QMouseEvent*) override;
  void mouseDoubleClickEvent(QMouseEvent*) override;

private:
  void paintGrid(QPainter& p) const;
  int imageSide() const;
  bool hit(const QPoint& pos, int* row, int* column) const;
  QString m_rowAxis, m_columnAxis;
  QStringList m_rows, m_columns;
  QVector<CompareCell> m_cells;  ///< row-major
  QStringList m_rowQuality, m_columnQuality;
  int m_selRow = -1, m_selColumn = -1;
};

class ComparePanel final : public QWidget {
  Q_OBJECT
public:
  explicit ComparePanel(QWidget* parent = nullptr);
  ~ComparePanel() override;

  /// The models to choose from and the base setting (the Generate panel's, one image).
  void setModels(const QVector<ModelInfo>& models);
  void setBase(const GenerationJob& base, const QString& description);
  void setGalleryPath(const QString& path);
  /// Asked for the base setting when Run is pressed (the Generate panel's current one).
  void setBaseProvider(std::function<GenerationJob()> provider) { m_baseProvider = std::move(provider); }

  // For tests and scripting.
  void setAxes(CompareAxis rows, const QString& rowValues, CompareAxis columns, const QString& columnValues);
  void setMatchedCompute(bool on);
  CompareGrid* grid() const { return m_grid; }
  bool isRunning() const { return m_running; }
  QString lastError() const { return m_error; }
  qint64 lastSavedSet() const { return m_savedSet; }
  QString exportPng(const QString& path) const;
  void evaluate(bool rows, int perClass);
  bool isEvaluating() const;
  void openSet(qint64 setId);

public Q_SLOTS:
  void run();
  void cancel();

Q_SIGNALS:
  void runFinished(bool ok);
  void setLoaded();
  void qualityFinished();
  /// Open this cell in the studio: generate it as the current image.
  void openRequested(const tessera::GenerationJob& job);

private:
  void refreshSets();
  void updateAxisDefaults(bool rows);
  void startCells(const CompareSetup& setup);

  QThread m_thread;
  CompareWorker* m_worker = nullptr;
  QualityRunner* m_quality = nullptr;
  qint64 m_id = 0;
  bool m_running = false;
  int m_done = 0, m_total = 0;
  qint64 m_savedSet = 0;
  QVector<ModelInfo> m_models;
  GenerationJob m_base;
  QString m_galleryPath, m_error;
  std::function<GenerationJob()> m_baseProvider;

  QComboBox *m_rowAxis, *m_columnAxis, *m_sets;
  QLineEdit *m_rowValues, *m_columnValues;
  QCheckBox* m_matched;
  QPushButton *m_run, *m_cancel, *m_export, *m_open, *m_openSet, *m_evalRows, *m_evalColumns;
  QSpinBox* m_perClass;
  QLabel *m_base_label, *m_status;
  QProgressBar *m_progress, *m_qualityProgress;
  QScrollArea* m_scroll;
  CompareGrid* m_grid;
};

}  // namespace tessera
