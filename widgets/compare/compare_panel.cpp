// SPDX-License-Identifier: Apache-2.0
#include "widgets/compare/compare_panel.h"

#include "widgets/panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QFileDialog>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QMouseEvent>
#include <QPainter>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QSpinBox>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

namespace tessera {
namespace {

constexpr int kLabelWidth = 110, kHeaderHeight = 30, kCaptionHeight = 44, kGap = 8, kQualityWidth = 130;

QString gflopsText(double g) {
  if (g >= 1000) return QStringLiteral("%1 TFLOP").arg(g / 1000.0, 0, 'f', 2);
  if (g >= 1) return QStringLiteral("%1 GFLOP").arg(g, 0, 'f', g >= 100 ? 0 : 1);
  return QStringLiteral("%1 MFLOP").arg(g * 1000.0, 0, 'f', 0);
}

}  // namespace

// ---- CompareGrid ---------------------------------------------------------------------

CompareGrid::CompareGrid(QWidget* parent) : QWidget(parent) { setAttribute(Qt::WA_OpaquePaintEvent, false); }

void CompareGrid::setAxes(const QString& rowAxis, const QStringList& rows, const QString& columnAxis, const QStringList& columns) {
  m_rowAxis = rowAxis;
  m_columnAxis = columnAxis;
  m_rows = rows;
  m_columns = columns;
  m_cells = QVector<CompareCell>(rows.size() * columns.size());
  for (int r = 0; r < rows.size(); ++r)
    for (int c = 0; c < columns.size(); ++c) {
      m_cells[r * columns.size() + c].row = r;
      m_cells[r * columns.size() + c].column = c;
    }
  m_rowQuality = QStringList(rows.size());
  m_columnQuality = QStringList(columns.size());
  m_selRow = m_selColumn = -1;
  updateGeometry();
  resize(sizeHint());
  update();
}

void CompareGrid::setCell(const CompareCell& cell) {
  if (cell.row < 0 || cell.row >= m_rows.size() || cell.column < 0 || cell.column >= m_columns.size()) return;
  m_cells[cell.row * m_columns.size() + cell.column] = cell;
  const QSize before = sizeHint();
  if (!cell.image.isNull()) {
    updateGeometry();
    if (sizeHint() != before) resize(sizeHint());
  }
  update();
}

void CompareGrid::setQuality(const CompareQuality& q) {
  const QString text = q.error.isEmpty() ? tr("acc %1%\nFD %2× floor\n(n %3)").arg(q.accuracy * 100, 0, 'f', 1).arg(q.fdRatio, 0, 'f', 2).arg(q.samples)
                                         : tr("eval failed:\n%1").arg(q.error.left(60));
  setQualityText(q.index, q.rows, text);
}

void CompareGrid::setQualityText(int index, bool rows, const QString& text) {
  QStringList& list = rows ? m_rowQuality : m_columnQuality;
  if (index < 0 || index >= list.size()) return;
  list[index] = text;
  updateGeometry();
  resize(sizeHint());
  update();
}

const CompareCell* CompareGrid::cell(int row, int column) const {
  if (row < 0 || row >= m_rows.size() || column < 0 || column >= m_columns.size()) return nullptr;
  return &m_cells[row * m_columns.size() + column];
}

int CompareGrid::imageSide() const {
  int longest = 28;
  for (const CompareCell& c : m_cells)
    if (!c.image.isNull()) longest = std::max({longest, c.image.width(), c.image.height()});
  // Small images are scaled up by a whole factor (crisp pixels) to about 128 px.
  return longest >= 128 ? std::min(longest, 256) : longest * std::max(1, 128 / longest);
}

QRect CompareGrid::cellRect(int row, int column) const {
  const int side = imageSide();
  const int w = std::max(side, 120) + kGap, h = side + kCaptionHeight + kGap;
  return QRect(kLabelWidth + column * w, kHeaderHeight + row * h, w - kGap, h - kGap);
}

QSize CompareGrid::sizeHint() const {
  const QRect last = cellRect(std::max(0, static_cast<int>(m_rows.size()) - 1), std::max(0, static_cast<int>(m_columns.size()) - 1));
  bool anyRowQuality = false, anyColumnQuality = false;
  for (const QString& s : m_rowQuality) anyRowQuality = anyRowQuality || !s.isEmpty();
  for (const QString& s : m_columnQuality) anyColumnQuality = anyColumnQuality || !s.isEmpty();
  return QSize(last.right() + kGap + (anyRowQuality ? kQualityWidth : 0) + 4, last.bottom() + kGap + (anyColumnQuality ? 52 : 0) + 4);
}

void CompareGrid::paintEvent(QPaintEvent*) {
  QPainter p(this);
  paintGrid(p);
}

void CompareGrid::paintGrid(QPainter& p) const {
  p.fillRect(QRect(QPoint(0, 0), sizeHint()).united(rect()), palette().base());
  if (m_rows.isEmpty() || m_columns.isEmpty()) {
    p.setPen(palette().color(QPalette::PlaceholderText));
    p.drawText(QRect(0, 0, std::max(width(), 400), std::max(height(), 120)), Qt::AlignCenter,
               tr("Choose rows and columns above, then Run: every cell uses the same class, seed and noise."));
    return;
  }
  const QColor text = palette().color(QPalette::Text), dim = palette().color(QPalette::PlaceholderText);
  QFont bold = font();
  bold.setBold(true);
  p.setFont(bold);
  p.setPen(dim);
  QFont small = font();
  small.setPointSizeF(small.pointSizeF() * 0.85);
  p.setFont(small);
  p.drawText(QRect(4, 0, kLabelWidth - 8, kHeaderHeight), Qt::AlignLeft | Qt::AlignVCenter,
             m_columnAxis + QStringLiteral(" →\n") + m_rowAxis + QStringLiteral(" ↓"));
  p.setFont(bold);
  p.setPen(text);
  for (int c = 0; c < m_columns.size(); ++c) {
    const QRect r = cellRect(0, c);
    p.drawText(QRect(r.left(), 0, r.width(), kHeaderHeight), Qt::AlignCenter | Qt::TextWordWrap, m_columns[c]);
  }
  for (int r = 0; r < m_rows.size(); ++r) {
    const QRect cr = cellRect(r, 0);
    p.drawText(QRect(4, cr.top(), kLabelWidth - 8, cr.height()), Qt::AlignLeft | Qt::AlignVCenter | Qt::TextWordWrap, m_rows[r]);
  }
  p.setFont(font());
  const int side = imageSide();
  for (const CompareCell& c : m_cells) {
    const QRect r = cellRect(c.row, c.column);
    const QRect imageArea(r.left(), r.top(), r.width(), side);
    p.fillRect(imageArea, palette().alternateBase());
    if (!c.image.isNull()) {
      const QSize s = c.image.size().scaled(imageArea.size(), Qt::KeepAspectRatio);
      const QRect target(imageArea.left() + (imageArea.width() - s.width()) / 2, imageArea.top() + (imageArea.height() - s.height()) / 2,
                         s.width(), s.height());
      p.setRenderHint(QPainter::SmoothPixmapTransform, false);
      p.drawImage(target, c.image);
    }
    const QRect caption(r.left(), r.top() + side + 2, r.width(), kCaptionHeight - 2);
    p.setPen(c.error.isEmpty() ? text : QColor(200, 40, 40));
    QString line;
    if (!c.error.isEmpty()) line = c.error;
    else if (!c.done) line = tr("waiting…");
    else
      line = tr("%1 steps · NFE %2\n%3 s · %4").arg(c.job.steps).arg(c.nfe).arg(c.seconds, 0, 'f', c.seconds < 10 ? 2 : 1).arg(gflopsText(c.gflops()));
    p.drawText(caption, Qt::AlignHCenter | Qt::AlignTop | Qt::TextWordWrap, line);
    if (c.row == m_selRow && c.column == m_selColumn) {
      p.setPen(QPen(palette().color(QPalette::Highlight), 2));
      p.drawRect(r.adjusted(-2, -2, 2, 2));
    }
  }
  p.setPen(text);
  for (int r = 0; r < m_rowQuality.size(); ++r) {
    if (m_rowQuality[r].isEmpty()) continue;
    const QRect last = cellRect(r, static_cast<int>(m_columns.size()) - 1);
    p.drawText(QRect(last.right() + kGap + 4, last.top(), kQualityWidth - 8, last.height()), Qt::AlignLeft | Qt::AlignVCenter | Qt::TextWordWrap,
               m_rowQuality[r]);
  }
  for (int c = 0; c < m_columnQuality.size(); ++c) {
    if (m_columnQuality[c].isEmpty()) continue;
    const QRect last = cellRect(static_cast<int>(m_rows.size()) - 1, c);
    p.drawText(QRect(last.left(), last.bottom() + kGap, last.width(), 50), Qt::AlignHCenter | Qt::AlignTop | Qt::TextWordWrap, m_columnQuality[c]);
  }
}

QImage CompareGrid::render() const {
  QImage out(sizeHint(), QImage::Format_RGB32);
  QPainter p(&out);
  paintGrid(p);
  return out;
}

bool CompareGrid::hit(const QPoint& pos, int* row, int* column) const {
  for (int r = 0; r < m_rows.size(); ++r)
    for (int c = 0; c < m_columns.size(); ++c)
      if (cellRect(r, c).contains(pos)) {
        *row = r;
        *column = c;
        return true;
      }
  return false;
}

void CompareGrid::mousePressEvent(QMouseEvent* e) {
  int r, c;
  if (!hit(e->position().toPoint(), &r, &c)) return;
  m_selRow = r;
  m_selColumn = c;
  update();
  Q_EMIT cellClicked(r, c);
}

void CompareGrid::mouseDoubleClickEvent(QMouseEvent* e) {
  int r, c;
  if (hit(e->position().toPoint(), &r, &c)) Q_EMIT cellDoubleClicked(r, c);
}

// ---- ComparePanel --------------------------------------------------------------------

ComparePanel::ComparePanel(QWidget* parent) : QWidget(parent) {
  m_worker = new CompareWorker;
  m_worker->moveToThread(&m_thread);
  connect(&m_thread, &QThread::finished, m_worker, &QObject::deleteLater);
  m_thread.setObjectName(QStringLiteral("compare"));
  m_thread.start();
  m_quality = new QualityRunner(this);

  m_rowAxis = new QComboBox(this);
  m_columnAxis = new QComboBox(this);
  m_rowAxis->addItems(compareAxisNames());
  m_columnAxis->addItems(compareAxisNames());
  m_rowAxis->setCurrentIndex(static_cast<int>(CompareAxis::Model));
  m_columnAxis->setCurrentIndex(static_cast<int>(CompareAxis::Sampler));
  for (QComboBox* box : {m_rowAxis, m_columnAxis}) {
    box->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    box->setMinimumContentsLength(8);
  }
  m_rowValues = new QLineEdit(this);
  m_columnValues = new QLineEdit(this);
  m_rowValues->setObjectName(QStringLiteral("compareRowValues"));
  m_columnValues->setObjectName(QStringLiteral("compareColumnValues"));
  m_rowValues->setPlaceholderText(tr("values, separated by commas"));
  m_columnValues->setPlaceholderText(tr("values, separated by commas"));
  m_matched = new QCheckBox(tr("Matched compute"), this);
  m_matched->setToolTip(tr("Choose each cell's steps so that every cell spends about the FLOPs of the base setting "
                           "(steps × evaluations per step × 2 with guidance × the model's forward GFLOPs)"));
  m_run = new QPushButton(tr("Run"), this);
  m_run->setObjectName(QStringLiteral("compareRun"));
  m_cancel = new QPushButton(tr("Cancel"), this);
  m_cancel->setEnabled(false);
  m_progress = new QProgressBar(this);
  m_progress->setMaximumHeight(16);
  m_progress->setFormat(tr("%v of %m cells"));
  m_base_label = new QLabel(this);
  m_base_label->setWordWrap(true);
  m_perClass = new QSpinBox(this);
  m_perClass->setRange(2, 1000);
  m_perClass->setValue(10);
  m_perClass->setSuffix(tr(" per class"));
  m_perClass->setToolTip(tr("Samples per class for eval (Fashion-MNIST models: 10 classes)"));
  m_evalRows = new QPushButton(tr("Quality: rows"), this);
  m_evalColumns = new QPushButton(tr("columns"), this);
  m_evalRows->setToolTip(tr("Class accuracy and FD (tessera-cli eval) for each row's setting, in the background"));
  m_evalColumns->setToolTip(tr("Class accuracy and FD (tessera-cli eval) for each column's setting, in the background"));
  m_qualityProgress = new QProgressBar(this);
  m_qualityProgress->setMaximumHeight(16);
  m_qualityProgress->hide();
  m_progress->setMinimumWidth(40);
  m_qualityProgress->setMinimumWidth(40);
  m_sets = new QComboBox(this);
  m_sets->setMinimumContentsLength(10);
  m_sets->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  m_openSet = new QPushButton(tr("Reopen"), this);
  m_export = new QPushButton(tr("Export PNG…"), this);
  m_open = new QPushButton(tr("Open cell"), this);
  m_open->setToolTip(tr("Generate the selected cell as the studio's current image: its timeline and attention maps (or double-click a cell)"));
  m_open->setEnabled(false);
  m_status = new QLabel(this);
  m_status->setWordWrap(true);
  m_grid = new CompareGrid(this);
  m_scroll = new QScrollArea(this);
  m_scroll->setWidget(m_grid);
  m_scroll->setWidgetResizable(false);

  auto* axes = new QGridLayout;
  axes->addWidget(new QLabel(tr("Rows"), this), 0, 0);
  axes->addWidget(m_rowAxis, 0, 1);
  axes->addWidget(m_rowValues, 0, 2);
  axes->addWidget(new QLabel(tr("Columns"), this), 1, 0);
  axes->addWidget(m_columnAxis, 1, 1);
  axes->addWidget(m_columnValues, 1, 2);
  axes->setColumnStretch(2, 1);
  auto* runRow = new QHBoxLayout;
  runRow->addWidget(m_matched);
  runRow->addWidget(m_run);
  runRow->addWidget(m_cancel);
  runRow->addWidget(m_progress, 1);
  auto* qualityRow = new QHBoxLayout;
  qualityRow->addWidget(m_perClass);
  qualityRow->addWidget(m_evalRows);
  qualityRow->addWidget(m_evalColumns);
  qualityRow->addWidget(m_qualityProgress, 1);
  qualityRow->addStretch(1);
  m_perClass->setSizePolicy(QSizePolicy::Fixed, QSizePolicy::Fixed);
  m_evalRows->setSizePolicy(QSizePolicy::Fixed, QSizePolicy::Fixed);
  m_evalColumns->setSizePolicy(QSizePolicy::Fixed, QSizePolicy::Fixed);
  auto* setRow = new QHBoxLayout;
  setRow->addWidget(new QLabel(tr("Saved"), this));
  setRow->addWidget(m_sets, 1);
  setRow->addWidget(m_openSet);
  auto* cellRow = new QHBoxLayout;
  cellRow->addWidget(m_open);
  cellRow->addWidget(m_export);
  cellRow->addStretch(1);
  auto* layout = new QVBoxLayout(this);
  layout->addWidget(m_base_label);
  layout->addLayout(axes);
  layout->addLayout(runRow);
  layout->addLayout(qualityRow);
  layout->addLayout(setRow);
  layout->addLayout(cellRow);
  layout->addWidget(m_scroll, 1);
  layout->addWidget(m_status);

  connect(m_rowAxis, &QComboBox::currentIndexChanged, this, [this] { updateAxisDefaults(true); });
  connect(m_columnAxis, &QComboBox::currentIndexChanged, this, [this] { updateAxisDefaults(false); });
  connect(m_run, &QPushButton::clicked, this, &ComparePanel::run);
  connect(m_cancel, &QPushButton::clicked, this, &ComparePanel::cancel);
  connect(m_export, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getSaveFileName(this, tr("Export the grid as PNG"), QStringLiteral("comparison.png"), tr("PNG images (*.png)"));
    if (path.isEmpty()) return;
    const QString problem = exportPng(path);
    m_status->setText(problem.isEmpty() ? tr("Wrote %1").arg(path) : problem);
  });
  connect(m_evalRows, &QPushButton::clicked, this, [this] { evaluate(true, m_perClass->value()); });
  connect(m_evalColumns, &QPushButton::clicked, this, [this] { evaluate(false, m_perClass->value()); });
  connect(m_openSet, &QPushButton::clicked, this, [this] {
    if (m_sets->currentIndex() >= 0) openSet(m_sets->currentData().toLongLong());
  });
  auto openCell = [this](int r, int c) {
    if (const CompareCell* cell = m_grid->cell(r, c); cell && cell->done && cell->error.isEmpty()) Q_EMIT openRequested(cell->job);
  };
  connect(m_grid, &CompareGrid::cellClicked, this, [this](int r, int c) {
    const CompareCell* cell = m_grid->cell(r, c);
    m_open->setEnabled(cell && cell->done && cell->error.isEmpty());
  });
  connect(m_grid, &CompareGrid::cellDoubleClicked, this, openCell);
  connect(m_open, &QPushButton::clicked, this, [this, openCell] { openCell(m_grid->selectedRow(), m_grid->selectedColumn()); });

  connect(m_worker, &CompareWorker::planned, this, [this](qint64 id, const QVector<CompareCell>& cells) {
    if (id != m_id) return;
    for (const CompareCell& c : cells) m_grid->setCell(c);
  });
  connect(m_worker, &CompareWorker::cellReady, this, [this](qint64 id, const CompareCell& cell) {
    if (id != m_id) return;
    m_grid->setCell(cell);
    m_progress->setValue(++m_done);
  });
  connect(m_worker, &CompareWorker::finished, this, [this](qint64 id, bool cancelled, qint64 setId) {
    if (id != m_id) return;
    m_running = false;
    m_run->setEnabled(true);
    m_cancel->setEnabled(false);
    m_savedSet = setId;
    m_status->setText(cancelled ? tr("Cancelled after %1 of %2 cells (not saved as a set)").arg(m_done).arg(m_total)
                                : setId > 0 ? tr("Done: saved in the gallery as comparison set %1").arg(setId)
                                            : tr("Done"));
    refreshSets();
    Q_EMIT runFinished(!cancelled);
  });
  connect(m_worker, &CompareWorker::failed, this, [this](qint64 id, const QString& message) {
    if (id != m_id) return;
    m_running = false;
    m_run->setEnabled(true);
    m_cancel->setEnabled(false);
    m_error = message;
    m_status->setText(tr("Comparison failed: %1").arg(message));
    Q_EMIT runFinished(false);
  });
  connect(m_worker, &CompareWorker::loaded, this, [this](qint64 id, const CompareSetup& setup, const QVector<CompareCell>& cells) {
    if (id != m_id) return;
    const QStringList names = compareAxisNames();
    m_grid->setAxes(names.value(static_cast<int>(setup.rowAxis)), setup.rows, names.value(static_cast<int>(setup.columnAxis)), setup.columns);
    for (const CompareCell& c : cells) m_grid->setCell(c);
    {
      const QSignalBlocker a(m_rowAxis), b(m_columnAxis);
      m_rowAxis->setCurrentIndex(static_cast<int>(setup.rowAxis));
      m_columnAxis->setCurrentIndex(static_cast<int>(setup.columnAxis));
    }
    m_rowValues->setText(setup.rows.join(QStringLiteral(", ")));
    m_columnValues->setText(setup.columns.join(QStringLiteral(", ")));
    m_matched->setChecked(setup.matchedCompute);
    m_status->setText(tr("Reopened “%1”").arg(setup.title));
    Q_EMIT setLoaded();
  });
  connect(m_worker, &CompareWorker::listed, this, [this](const QVector<QPair<qint64, QString>>& sets) {
    m_sets->clear();
    for (const auto& [id, title] : sets) m_sets->addItem(title, id);
    m_openSet->setEnabled(!sets.isEmpty());
  });
  connect(m_quality, &QualityRunner::progress, this, [this](int, bool, int done, int total) {
    m_qualityProgress->setRange(0, total);
    m_qualityProgress->setValue(done);
  });
  connect(m_quality, &QualityRunner::ready, this, [this](const CompareQuality& q) {
    m_grid->setQuality(q);
    if (!m_quality->busy()) {
      m_qualityProgress->hide();
      m_evalRows->setEnabled(true);
      m_evalColumns->setEnabled(true);
      Q_EMIT qualityFinished();
    }
  });
}

ComparePanel::~ComparePanel() {
  m_quality->cancelAll();
  if (m_running) m_worker->cancel(m_id);
  m_thread.quit();
  m_thread.wait();
}

void ComparePanel::setModels(const QVector<ModelInfo>& models) {
  m_models = models;
  if (m_rowValues->text().isEmpty()) updateAxisDefaults(true);
  if (m_columnValues->text().isEmpty()) updateAxisDefaults(false);
}

void ComparePanel::setBase(const GenerationJob& base, const QString& description) {
  m_base = base;
  m_base_label->setText(tr("Base setting (from Generate): %1").arg(description));
}

void ComparePanel::setGalleryPath(const QString& path) {
  m_galleryPath = path;
  refreshSets();
}

void ComparePanel::refreshSets() {
  if (m_galleryPath.isEmpty()) return;
  QMetaObject::invokeMethod(m_worker, [w = m_worker, path = m_galleryPath] { w->list(path); }, Qt::QueuedConnection);
}

void ComparePanel::updateAxisDefaults(bool rows) {
  const auto axis = static_cast<CompareAxis>((rows ? m_rowAxis : m_columnAxis)->currentIndex());
  (rows ? m_rowValues : m_columnValues)->setText(defaultAxisValues(axis, m_base, m_models));
}

void ComparePanel::setAxes(CompareAxis rows, const QString& rowValues, CompareAxis columns, const QString& columnValues) {
  m_rowAxis->setCurrentIndex(static_cast<int>(rows));
  m_columnAxis->setCurrentIndex(static_cast<int>(columns));
  m_rowValues->setText(rowValues);
  m_columnValues->setText(columnValues);
}

void ComparePanel::setMatchedCompute(bool on) { m_matched->setChecked(on); }

void ComparePanel::run() {
  if (m_running) return;
  m_error.clear();
  if (m_baseProvider) {
    GenerationJob base = m_baseProvider();
    QString model;
    for (const ModelInfo& m : m_models)
      if (m.path == base.modelPath) model = m.name;
    const int k = static_cast<int>(base.classes.value(0));
    QString className = QString::number(k);
    for (const ModelInfo& m : m_models)
      if (m.path == base.modelPath && k < m.classNames.size()) className = m.classNames[k];
    setBase(base, tr("%1 · class %2 · %3×%4 · seed %5 · %6, %7 steps, CFG %8")
                      .arg(model, className)
                      .arg(base.width)
                      .arg(base.height)
                      .arg(base.seed)
                      .arg(base.sampler)
                      .arg(base.steps)
                      .arg(base.cfg));
  }
  CompareSetup s;
  s.rowAxis = static_cast<CompareAxis>(m_rowAxis->currentIndex());
  s.columnAxis = static_cast<CompareAxis>(m_columnAxis->currentIndex());
  if (s.rowAxis == s.columnAxis) {
    m_error = tr("rows and columns vary the same setting: choose two different ones");
    m_status->setText(m_error);
    return;
  }
  QString problem = parseAxisValues(s.rowAxis, m_rowValues->text(), m_models, &s.rows);
  if (problem.isEmpty()) problem = parseAxisValues(s.columnAxis, m_columnValues->text(), m_models, &s.columns);
  if (m_base.modelPath.isEmpty()) problem = tr("no base setting: choose a model in the Generate panel");
  if (!problem.isEmpty()) {
    m_error = problem;
    m_status->setText(tr("Cannot run: %1").arg(problem));
    return;
  }
  s.matchedCompute = m_matched->isChecked();
  if (s.matchedCompute && (s.rowAxis == CompareAxis::Steps || s.columnAxis == CompareAxis::Steps)) {
    m_error = tr("matched compute chooses the steps itself: do not vary steps as well");
    m_status->setText(m_error);
    return;
  }
  s.base = m_base;
  s.base.classes = {m_base.classes.value(0)};
  if (s.matchedCompute) {
    if (const QString why = matchedComputeProblem(s); !why.isEmpty()) {
      m_error = why;
      m_status->setText(tr("Cannot run: %1").arg(why));
      return;
    }
  }
  s.id = ++m_id;
  s.models = m_models;
  s.galleryPath = m_galleryPath;
  const QStringList names = compareAxisNames();
  s.title = tr("%1 × %2").arg(names.value(static_cast<int>(s.rowAxis)), names.value(static_cast<int>(s.columnAxis)));
  startCells(s);
}

void ComparePanel::startCells(const CompareSetup& s) {
  const QStringList names = compareAxisNames();
  m_grid->setAxes(names.value(static_cast<int>(s.rowAxis)), s.rows, names.value(static_cast<int>(s.columnAxis)), s.columns);
  m_running = true;
  m_done = 0;
  m_total = static_cast<int>(s.rows.size() * s.columns.size());
  m_progress->setRange(0, m_total);
  m_progress->setValue(0);
  m_run->setEnabled(false);
  m_cancel->setEnabled(true);
  m_open->setEnabled(false);
  m_savedSet = 0;
  m_status->setText(tr("Running %1 cells…").arg(m_total));
  QMetaObject::invokeMethod(m_worker, [w = m_worker, s] { w->run(s); }, Qt::QueuedConnection);
}

void ComparePanel::cancel() {
  if (m_running) m_worker->cancel(m_id);
}

QString ComparePanel::exportPng(const QString& path) const {
  if (m_grid->rows() == 0) return tr("nothing to export: run a comparison first");
  return m_grid->render().save(path, "PNG") ? QString() : tr("could not write %1").arg(path);
}

bool ComparePanel::isEvaluating() const { return m_quality->busy(); }

void ComparePanel::evaluate(bool rows, int perClass) {
  const int count = rows ? m_grid->rows() : m_grid->columns();
  if (count == 0) {
    m_status->setText(tr("Run a comparison first: quality is measured for its rows or columns"));
    return;
  }
  m_qualityProgress->show();
  m_evalRows->setEnabled(false);
  m_evalColumns->setEnabled(false);
  for (int i = 0; i < count; ++i) {
    // The row's (column's) setting: its first cell's job, whose other axis is the first value.
    const CompareCell* cell = rows ? m_grid->cell(i, 0) : m_grid->cell(0, i);
    if (!cell) continue;
    m_grid->setQualityText(i, rows, tr("eval queued…"));
    m_quality->enqueue(i, rows, cell->job, perClass);
  }
}

void ComparePanel::openSet(qint64 setId) {
  if (m_galleryPath.isEmpty() || m_running) return;
  const qint64 id = ++m_id;
  QMetaObject::invokeMethod(m_worker, [w = m_worker, id, path = m_galleryPath, setId] { w->load(id, path, setId); }, Qt::QueuedConnection);
}

PanelDescriptor describePanel_compare() {
  PanelDescriptor d;
  d.title = ComparePanel::tr("Compare");
  d.area = Qt::RightDockWidgetArea;
  d.tabbedWith = QStringLiteral("gallery");
  d.create = [](const PanelContext& c) { return new ComparePanel(c.parent); };
  return d;
}

}  // namespace tessera
