// SPDX-License-Identifier: Apache-2.0
#include "widgets/attention/attention_panel.h"

#include "widgets/panel.h"

#include <QComboBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QJsonArray>
#include <QLabel>
#include <QListWidget>
#include <QMessageBox>
#include <QMouseEvent>
#include <QPainter>
#include <QProgressBar>
#include <QPushButton>
#include <QSlider>
#include <QSplitter>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

namespace tessera {
namespace {

QString bytesText(quint64 b) {
  const double v = static_cast<double>(b);
  if (v >= 1024.0 * 1024 * 1024) return QStringLiteral("%1 GiB").arg(v / (1024.0 * 1024 * 1024), 0, 'f', 2);
  if (v >= 1024.0 * 1024) return QStringLiteral("%1 MiB").arg(v / (1024.0 * 1024), 0, 'f', 1);
  return QStringLiteral("%1 KiB").arg(v / 1024.0, 0, 'f', 0);
}

/// A sequential colour for a value in [0, 1] (dark blue → yellow), for the entropy cells.
QColor ramp(double v) {
  v = std::clamp(v, 0.0, 1.0);
  return QColor::fromHsvF(0.66 - 0.5 * v, 0.85, 0.35 + 0.65 * v);
}

}  // namespace

// ---- MapView ---------------------------------------------------------------------------

MapView::MapView(QWidget* parent) : QWidget(parent) {
  setMinimumSize(160, 160);
  setCursor(Qt::CrossCursor);
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Expanding);
}

void MapView::setOverlay(const QImage& overlay, int gridW, int gridH) {
  m_overlay = overlay;
  m_gridW = gridW;
  m_gridH = gridH;
  update();
}

void MapView::setSelected(int token) {
  m_selected = token;
  update();
}

QRect MapView::imageRect() const {
  if (m_overlay.isNull()) return {};
  const QSize s = m_overlay.size().scaled(size() - QSize(8, 8), Qt::KeepAspectRatio);
  return QRect(QPoint((width() - s.width()) / 2, (height() - s.height()) / 2), s);
}

QPoint MapView::centreOf(int token) const {
  const QRect r = imageRect();
  if (r.isEmpty() || m_gridW <= 0 || m_gridH <= 0) return {};
  const int gx = token % m_gridW, gy = token / m_gridW;
  return QPoint(r.left() + static_cast<int>((gx + 0.5) * r.width() / m_gridW), r.top() + static_cast<int>((gy + 0.5) * r.height() / m_gridH));
}

void MapView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), palette().base());
  const QRect r = imageRect();
  if (r.isEmpty()) {
    p.setPen(palette().color(QPalette::PlaceholderText));
    p.drawText(rect().adjusted(12, 12, -12, -12), Qt::AlignCenter | Qt::TextWordWrap,
               tr("Capture an image's attention, then click a patch to see where it looks."));
    return;
  }
  p.setRenderHint(QPainter::SmoothPixmapTransform, false);
  p.drawImage(r, m_overlay);
  if (m_gridW <= 0 || m_gridH <= 0) return;
  const double cw = static_cast<double>(r.width()) / m_gridW, ch = static_cast<double>(r.height()) / m_gridH;
  if (cw >= 8 && ch >= 8) {  // patch grid, faint
    p.setPen(QColor(255, 255, 255, 40));
    for (int i = 1; i < m_gridW; ++i) p.drawLine(QPointF(r.left() + i * cw, r.top()), QPointF(r.left() + i * cw, r.bottom()));
    for (int j = 1; j < m_gridH; ++j) p.drawLine(QPointF(r.left(), r.top() + j * ch), QPointF(r.right(), r.top() + j * ch));
  }
  if (m_selected >= 0 && m_selected < m_gridW * m_gridH) {
    const QRectF cell(r.left() + (m_selected % m_gridW) * cw, r.top() + (m_selected / m_gridW) * ch, cw, ch);
    p.setPen(QPen(QColor(0, 0, 0, 200), 3));
    p.drawRect(cell);
    p.setPen(QPen(QColor(80, 220, 255), 1.5));
    p.drawRect(cell);
  }
}

void MapView::mousePressEvent(QMouseEvent* e) {
  const QRect r = imageRect();
  if (r.isEmpty() || !r.contains(e->position().toPoint()) || m_gridW <= 0 || m_gridH <= 0) return;
  const int gx = std::clamp(static_cast<int>((e->position().x() - r.left()) * m_gridW / r.width()), 0, m_gridW - 1);
  const int gy = std::clamp(static_cast<int>((e->position().y() - r.top()) * m_gridH / r.height()), 0, m_gridH - 1);
  m_selected = gy * m_gridW + gx;
  update();
  Q_EMIT tokenClicked(m_selected);
}

// ---- EntropyChart ----------------------------------------------------------------------

EntropyChart::EntropyChart(QWidget* parent) : QWidget(parent) {
  setMinimumHeight(60);
  setToolTip(tr("Attention entropy per block (rows) and head (columns), in nats: dark cells are sharp heads. Click one to show it."));
}

void EntropyChart::setEntropy(const QVector<float>& values, const QVector<int>& layers, int heads, double maximum) {
  m_values = values;
  m_layers = layers;
  m_heads = heads;
  m_max = maximum > 0 ? maximum : 1;
  update();
}

void EntropyChart::setSelection(int layerIndex, int head) {
  m_layer = layerIndex;
  m_head = head;
  update();
}

QRectF EntropyChart::cellRect(int row, int column) const {
  const double left = 34, top = 16, w = (width() - left - 4) / std::max(1, m_heads), h = (height() - top - 4) / std::max(1, static_cast<int>(m_layers.size()));
  return QRectF(left + column * w, top + row * h, w, h);
}

void EntropyChart::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), palette().window());
  if (m_values.isEmpty() || m_heads <= 0) {
    p.setPen(palette().color(QPalette::PlaceholderText));
    p.drawText(rect(), Qt::AlignCenter, tr("Head entropy appears after a capture"));
    return;
  }
  QFont f = font();
  f.setPointSizeF(f.pointSizeF() * 0.8);
  p.setFont(f);
  p.setPen(palette().color(QPalette::WindowText));
  p.drawText(QRectF(0, 0, width(), 14), Qt::AlignLeft | Qt::AlignVCenter, tr("Entropy (nats, max %1): block × head").arg(m_max, 0, 'f', 2));
  for (int r = 0; r < m_layers.size(); ++r) {
    const QRectF first = cellRect(r, 0);
    p.setPen(palette().color(QPalette::WindowText));
    p.drawText(QRectF(0, first.top(), 32, first.height()), Qt::AlignRight | Qt::AlignVCenter, QStringLiteral("B%1").arg(m_layers[r]));
    for (int c = 0; c < m_heads; ++c) {
      const float v = m_values.value(r * m_heads + c);
      const QRectF cell = cellRect(r, c).adjusted(1, 1, -1, -1);
      if (std::isnan(v)) continue;  // a layer with fewer heads than the most (a U-Net's)
      p.fillRect(cell, ramp(v / m_max));
      if (cell.width() > 26 && cell.height() > 9) {
        p.setPen(v / m_max > 0.6 ? Qt::black : Qt::white);
        p.drawText(cell, Qt::AlignCenter, QString::number(v, 'f', 2));
      }
      if (r == m_layer && (c == m_head || m_head < 0)) {
        p.setPen(QPen(palette().color(QPalette::Highlight), 2));
        p.drawRect(cell);
      }
    }
  }
}

void EntropyChart::mousePressEvent(QMouseEvent* e) {
  for (int r = 0; r < m_layers.size(); ++r)
    for (int c = 0; c < m_heads; ++c)
      if (cellRect(r, c).contains(e->position())) {
        setSelection(r, c);
        Q_EMIT cellClicked(r, c);
        return;
      }
}

// ---- AttentionPanel --------------------------------------------------------------------

AttentionPanel::AttentionPanel(QWidget* parent) : QWidget(parent) {
  m_worker = new InspectionWorker;
  m_worker->moveToThread(&m_thread);
  connect(&m_thread, &QThread::finished, m_worker, &QObject::deleteLater);
  m_thread.setObjectName(QStringLiteral("inspection"));
  m_thread.start();

  m_source = new QLabel(tr("No image yet: generate one, or open one from the gallery."), this);
  m_source->setWordWrap(true);
  m_captureSteps = new QComboBox(this);
  m_captureSteps->addItems({tr("Every step"), tr("Every 5th step"), tr("10 steps, evenly spaced"), tr("First, middle, last"), tr("Last step only")});
  m_captureSteps->setCurrentIndex(2);
  m_captureLayers = new QComboBox(this);
  m_capture = new QPushButton(tr("Capture"), this);
  m_capture->setObjectName(QStringLiteral("attentionCapture"));
  m_capture->setToolTip(tr("Generate this image again with the attention taps on at the chosen steps"));
  m_cancel = new QPushButton(tr("Cancel"), this);
  m_cancel->setEnabled(false);
  m_estimate = new QLabel(this);
  m_estimate->setWordWrap(true);
  m_progress = new QProgressBar(this);
  m_progress->setTextVisible(true);
  m_progress->setMaximumHeight(16);
  m_progress->hide();

  m_kind = new QComboBox(this);
  m_kind->addItems({tr("Attention"), tr("Guidance (cond − uncond)")});
  m_layer = new QComboBox(this);
  m_head = new QComboBox(this);
  m_direction = new QComboBox(this);
  m_direction->addItems({tr("What the patch attends to"), tr("Who attends to the patch")});
  m_colors = new QComboBox(this);
  m_colors->addItems(colorMapNames());
  m_opacity = new QSlider(Qt::Horizontal, this);
  m_opacity->setRange(0, 100);
  m_opacity->setValue(65);
  m_step = new QSlider(Qt::Horizontal, this);
  m_step->setRange(0, 0);
  m_stepLabel = new QLabel(this);
  m_stepLabel->setToolTip(tr("τ: progress of the run, 0 pure noise, 1 data"));
  m_status = new QLabel(this);
  m_status->setWordWrap(true);
  m_view = new MapView(this);
  m_entropy = new EntropyChart(this);
  m_strip = new QListWidget(this);
  m_strip->setViewMode(QListView::IconMode);
  m_strip->setFlow(QListView::LeftToRight);
  m_strip->setWrapping(false);
  m_strip->setIconSize(QSize(64, 64));
  m_strip->setFixedHeight(96);
  m_strip->setMovement(QListView::Static);
  m_strip->setToolTip(tr("The map at every captured step: click one to show it"));
  m_exportPng = new QPushButton(tr("PNG…"), this);
  m_exportPng->setToolTip(tr("Export the map over the image as PNG"));
  m_exportTensor = new QPushButton(tr("Map…"), this);
  m_exportTensor->setToolTip(tr("Export the map's raw values as safetensors"));
  m_exportCapture = new QPushButton(tr("Capture…"), this);
  m_exportCapture->setToolTip(tr("Every captured probability and guidance map, as safetensors"));

  for (QComboBox* box : {m_captureSteps, m_captureLayers}) {
    box->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    box->setMinimumContentsLength(6);
  }
  auto* captureRow = new QHBoxLayout;
  captureRow->addWidget(new QLabel(tr("Steps"), this));
  captureRow->addWidget(m_captureSteps, 2);
  captureRow->addWidget(new QLabel(tr("Blocks"), this));
  captureRow->addWidget(m_captureLayers, 1);
  auto* estimateRow = new QHBoxLayout;
  estimateRow->addWidget(m_estimate, 1);
  estimateRow->addWidget(m_capture);
  estimateRow->addWidget(m_cancel);

  auto* controls = new QFormLayout;
  controls->addRow(tr("Show"), m_kind);
  controls->addRow(tr("Block"), m_layer);
  controls->addRow(tr("Head"), m_head);
  controls->addRow(tr("Direction"), m_direction);
  controls->addRow(tr("Colours"), m_colors);
  controls->addRow(tr("Opacity"), m_opacity);
  controls->addRow(tr("Step"), m_step);
  controls->addRow(QString(), m_stepLabel);
  auto* right = new QVBoxLayout;
  right->addLayout(controls);
  right->addWidget(m_entropy, 1);
  auto* exports = new QHBoxLayout;
  exports->addWidget(new QLabel(tr("Export"), this));
  exports->addWidget(m_exportPng);
  exports->addWidget(m_exportTensor);
  exports->addWidget(m_exportCapture);
  exports->addStretch(1);
  auto* rightBox = new QWidget(this);
  rightBox->setLayout(right);
  rightBox->setMaximumWidth(290);
  for (QComboBox* box : {m_kind, m_layer, m_head, m_direction, m_colors}) {
    box->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    box->setMinimumContentsLength(8);
  }
  auto* split = new QSplitter(Qt::Horizontal, this);
  split->addWidget(m_view);
  split->addWidget(rightBox);
  split->setStretchFactor(0, 1);
  split->setStretchFactor(1, 0);
  split->setChildrenCollapsible(false);
  m_view->setMinimumSize(160, 160);

  auto* layout = new QVBoxLayout(this);
  layout->addWidget(m_source);
  layout->addLayout(captureRow);
  layout->addLayout(estimateRow);
  layout->addWidget(m_progress);
  layout->addWidget(split, 1);
  layout->addWidget(m_strip);
  layout->addLayout(exports);
  layout->addWidget(m_status);

  connect(m_capture, &QPushButton::clicked, this, &AttentionPanel::capture);
  connect(m_cancel, &QPushButton::clicked, this, &AttentionPanel::cancel);
  connect(m_captureSteps, &QComboBox::currentIndexChanged, this, &AttentionPanel::updateEstimate);
  connect(m_captureLayers, &QComboBox::currentIndexChanged, this, &AttentionPanel::updateEstimate);
  for (QComboBox* box : {m_kind, m_layer, m_head, m_direction, m_colors})
    connect(box, &QComboBox::currentIndexChanged, this, [this] {
      refresh();
      refreshStrip();
    });
  connect(m_opacity, &QSlider::valueChanged, this, [this] {
    refresh();
    refreshStrip();
  });
  connect(m_step, &QSlider::valueChanged, this, [this](int v) {
    refresh();
    if (v >= 0 && v < m_strip->count()) m_strip->setCurrentRow(v);
  });
  connect(m_strip, &QListWidget::currentRowChanged, this, [this](int row) {
    if (row >= 0 && row != m_step->value()) m_step->setValue(row);
  });
  connect(m_view, &MapView::tokenClicked, this, [this] {
    refresh();
    refreshStrip();
  });
  connect(m_entropy, &EntropyChart::cellClicked, this, [this](int layerIndex, int head) {
    const QSignalBlocker a(m_layer), b(m_head);
    m_layer->setCurrentIndex(layerIndex + 2);
    m_head->setCurrentIndex(head + 1);
    refresh();
    refreshStrip();
  });
  connect(m_exportPng, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getSaveFileName(this, tr("Export map as PNG"), QStringLiteral("attention.png"), tr("PNG images (*.png)"));
    if (path.isEmpty()) return;
    const QString problem = exportPng(path);
    m_status->setText(problem.isEmpty() ? tr("Wrote %1").arg(path) : problem);
  });
  connect(m_exportTensor, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getSaveFileName(this, tr("Export map tensor"), QStringLiteral("attention-map.safetensors"),
                                                      tr("safetensors (*.safetensors)"));
    if (path.isEmpty()) return;
    const QString problem = exportTensor(path);
    m_status->setText(problem.isEmpty() ? tr("Wrote %1").arg(path) : problem);
  });
  connect(m_exportCapture, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getSaveFileName(this, tr("Export the whole capture"), QStringLiteral("capture.safetensors"),
                                                      tr("safetensors (*.safetensors)"));
    if (path.isEmpty()) return;
    const QString problem = exportCapture(m_data, path);
    m_status->setText(problem.isEmpty() ? tr("Wrote %1").arg(path) : problem);
  });

  connect(m_worker, &InspectionWorker::progress, this, [this](qint64 id, int done, int total) {
    if (id != m_id) return;
    m_progress->setRange(0, total);
    m_progress->setValue(done);
    m_progress->setFormat(tr("step %v of %m"));
  });
  connect(m_worker, &InspectionWorker::finished, this, [this](qint64 id, const InspectionHandle& data) {
    if (id != m_id) return;
    m_running = false;
    m_capture->setEnabled(m_hasSource);
    m_cancel->setEnabled(false);
    m_progress->hide();
    m_data = data;
    m_summary = summarize(data);
    {
      const QSignalBlocker a(m_layer), b(m_head), c(m_kind);
      m_layer->clear();
      m_layer->addItems({tr("Mean of captured blocks"), tr("Rollout across blocks")});
      for (const QString& name : m_summary.layerNames) m_layer->addItem(name);
      m_layer->setCurrentIndex(m_summary.layers.size() > 1 ? 0 : 2);
      m_head->clear();
      m_head->addItem(tr("Mean of heads"));
      for (int h = 0; h < m_summary.heads; ++h) m_head->addItem(tr("Head %1").arg(h));
      if (!m_summary.hasAttention()) m_kind->setCurrentIndex(1);
    }
    const int tokens = m_summary.gridW * m_summary.gridH;
    m_view->setSelected(m_summary.gridW * (m_summary.gridH / 2) + m_summary.gridW / 2);  // the centre patch
    if (m_view->selected() >= tokens) m_view->setSelected(0);
    m_status->setText(m_summary.hasGuidance() ? QString()
                                              : tr("This image was made without guidance (scale 1, or outside the guidance interval): no guidance map."));
    const QSignalBlocker s(m_step);
    m_step->setValue(0);
    refresh();
    refreshStrip();
    const int last = m_step->maximum();
    m_step->setValue(last);  // the end of the run first: the map of the finished image
    Q_EMIT captureFinished(true);
  });
  connect(m_worker, &InspectionWorker::failed, this, [this](qint64 id, const QString& message) {
    if (id != m_id) return;
    m_running = false;
    m_capture->setEnabled(m_hasSource);
    m_cancel->setEnabled(false);
    m_progress->hide();
    m_error = message;
    m_status->setText(tr("Capture failed: %1").arg(message));
    Q_EMIT captureFinished(false);
  });
  clearSource(tr("No image yet: generate one, or open one from the gallery."));
}

AttentionPanel::~AttentionPanel() {
  if (m_running) m_worker->cancel(m_id);
  m_thread.quit();
  m_thread.wait();
}

namespace {
QString jobKey(const GenerationJob& j) {
  return QStringLiteral("%1|%2|%3|%4x%5|%6|%7|%8|%9|%10|%11|%12")
      .arg(j.modelPath)
      .arg(j.classes.value(0))
      .arg(j.seed)
      .arg(j.width)
      .arg(j.height)
      .arg(j.sampler)
      .arg(j.steps)
      .arg(j.cfg)
      .arg(j.cfgLow)
      .arg(j.cfgHigh)
      .arg(j.grid)
      .arg(j.clip);
}
}  // namespace

void AttentionPanel::setSource(const GenerationJob& job, const ModelInfo& model, const QString& title) {
  if (m_data && jobKey(job) != jobKey(m_job)) {
    // Another image: the old capture would be shown over the wrong picture.
    m_data.reset();
    m_summary = InspectionSummary();
    m_map.clear();
    m_overlay = QImage();
    refresh();
    refreshStrip();
    m_entropy->setEntropy({}, {}, 0, 1);
    m_status->setText(tr("Press Capture to see this image's maps."));
  }
  m_job = job;
  m_model = model;
  m_hasSource = true;
  m_source->setText(title);
  {
    const QSignalBlocker b(m_captureLayers);
    const int keep = m_captureLayers->currentIndex();
    m_captureLayers->clear();
    m_captureLayers->addItem(tr("All (%1)").arg(model.depth));
    for (int l = 0; l < model.depth; ++l)
      m_captureLayers->addItem(l < model.attentionNames.size() ? model.attentionNames[l] : tr("Block %1").arg(l));
    m_captureLayers->setCurrentIndex(keep > 0 && keep < m_captureLayers->count() ? keep : 0);
  }
  m_capture->setEnabled(!m_running && model.depth > 0);
  updateEstimate();
  if (model.depth <= 0) m_estimate->setText(tr("The %1 backbone has no attention taps.").arg(model.backbone));
}

void AttentionPanel::clearSource(const QString& why) {
  m_hasSource = false;
  m_source->setText(why);
  m_capture->setEnabled(false);
  m_estimate->clear();
}

QVector<int> AttentionPanel::stepsToCapture() const {
  const int n = std::max(1, m_job.steps);
  QVector<int> out;
  switch (m_captureSteps->currentIndex()) {
    case 0: break;  // every step: empty means all
    case 1:
      for (int s = 0; s < n; s += 5) out << s;
      if (out.back() != n - 1) out << n - 1;
      break;
    case 2:
      for (int i = 0; i < std::min(10, n); ++i) {
        const int s = std::min(10, n) == 1 ? n - 1 : static_cast<int>(std::lround(i * (n - 1.0) / (std::min(10, n) - 1.0)));
        if (out.isEmpty() || out.back() != s) out << s;
      }
      break;
    case 3:
      out << 0;
      if (n > 2) out << n / 2;
      if (n > 1) out << n - 1;
      break;
    default: out << n - 1; break;
  }
  return out;
}

quint64 AttentionPanel::estimatedBytes() const {
  if (!m_hasSource) return 0;
  const QVector<int> steps = stepsToCapture();
  const int captured = steps.isEmpty() ? m_job.steps : static_cast<int>(steps.size());
  return inspectionBytes(m_model, m_job.width, m_job.height, captured, m_captureLayers->currentIndex() - 1,
                         m_job.steps);
}

void AttentionPanel::updateEstimate() {
  if (!m_hasSource || m_model.depth <= 0) return;
  const QVector<int> steps = stepsToCapture();
  const int captured = steps.isEmpty() ? m_job.steps : static_cast<int>(steps.size());
  const int layers = m_captureLayers->currentIndex() <= 0 ? m_model.depth : 1;
  // The finest grid among the layers captured (a U-Net's differ).
  int p = std::max(1, m_model.sizeMultiple);
  if (!m_model.attentionFactors.isEmpty()) {
    const int chosen = m_captureLayers->currentIndex() - 1;
    p = chosen >= 0 ? m_model.attentionFactors.value(chosen, p)
                    : *std::min_element(m_model.attentionFactors.begin(), m_model.attentionFactors.end());
  }
  const int tokens = (m_job.width / p) * (m_job.height / p);
  const quint64 bytes = estimatedBytes();
  const double gflops = m_model.gflops * (m_job.cfg != 1.0 ? 2 : 1);
  QString text = tr("%1 of %2 steps × %3 block(s) × %4 heads × T × T (T = %5 tokens) ≈ <b>%6</b>; the run repeats the image's %2 steps")
                     .arg(captured)
                     .arg(m_job.steps)
                     .arg(layers)
                     .arg(m_model.heads)
                     .arg(tokens)
                     .arg(bytesText(bytes));
  if (gflops > 0) text += tr(" (≈ %1 GFLOP)").arg(gflops * m_job.steps, 0, 'f', gflops * m_job.steps < 10 ? 2 : 0);
  if (bytes > (1ull << 30)) text = QStringLiteral("<span style='color:#d08000'>%1</span>").arg(text);
  m_estimate->setText(text);
}

void AttentionPanel::capture() {
  if (!m_hasSource || m_running) return;
  const quint64 bytes = estimatedBytes();
  if (bytes > (2ull << 30) && isVisible() &&
      QMessageBox::question(this, tr("Large capture"),
                            tr("This capture holds about %1 in memory. Capture fewer steps or one block to make it smaller. Go on?")
                                .arg(bytesText(bytes))) != QMessageBox::Yes)
    return;
  InspectionSetup setup;
  setup.id = ++m_id;
  setup.job = m_job;
  setup.steps = stepsToCapture();
  if (m_captureLayers->currentIndex() > 0) setup.layers = {m_captureLayers->currentIndex() - 1};
  m_running = true;
  m_error.clear();
  m_capture->setEnabled(false);
  m_cancel->setEnabled(true);
  m_progress->setRange(0, std::max(1, m_job.steps));
  m_progress->setValue(0);
  m_progress->show();
  m_status->setText(tr("Capturing…"));
  QMetaObject::invokeMethod(m_worker, [w = m_worker, setup] { w->run(setup); }, Qt::QueuedConnection);
}

void AttentionPanel::cancel() {
  if (m_running) m_worker->cancel(m_id);
}

QString AttentionPanel::statusText() const { return m_status->text(); }

QVector<float> AttentionPanel::mapAt(int stepIndex) const {
  if (!m_data) return {};
  if (m_kind->currentIndex() == 1) return guidanceMapOf(m_data, stepIndex);
  if (!m_summary.hasAttention()) return {};
  const int layer = m_layer->currentIndex() == 0 ? kMeanLayers : m_layer->currentIndex() == 1 ? kRolloutLayers : m_layer->currentIndex() - 2;
  const int head = m_head->currentIndex() <= 0 ? kMeanHeads : m_head->currentIndex() - 1;
  QString error;
  QVector<float> map = attentionMapOf(m_data, stepIndex, layer, head, std::max(0, m_view->selected()),
                                      m_direction->currentIndex() == 1, &error);
  m_mapError = error;
  return map;
}

void AttentionPanel::refresh() {
  if (!m_data) {
    m_view->setOverlay({}, 0, 0);
    return;
  }
  const bool guidance = m_kind->currentIndex() == 1;
  m_layer->setEnabled(!guidance);
  m_head->setEnabled(!guidance);
  m_direction->setEnabled(!guidance);
  const int count = static_cast<int>(guidance ? m_summary.guidanceSteps.size() : m_summary.steps.size());
  {
    const QSignalBlocker b(m_step);
    m_step->setRange(0, std::max(0, count - 1));
  }
  const int index = m_step->value();
  m_map = mapAt(index);
  // Why a map cannot be made (rollout over layers of several grids), until one can.
  if (!m_mapError.isEmpty())
    m_status->setText(m_mapError);
  else if (m_status->text() == m_shownMapError)
    m_status->clear();
  m_shownMapError = m_mapError;
  m_mapSize = guidance ? QSize(m_summary.width, m_summary.height) : QSize(m_summary.gridW, m_summary.gridH);
  if (count > 0) {
    const int step = guidance ? m_summary.guidanceSteps.value(index) : m_summary.steps.value(index);
    const double tau = guidance ? m_summary.guidanceTaus.value(index) : m_summary.taus.value(index);
    const int total = m_summary.totalSteps > 0 ? m_summary.totalSteps : m_job.steps;
    m_stepLabel->setText(tr("step %1 of %2 · τ %3").arg(step + 1).arg(total).arg(tau, 0, 'f', 3));
  } else {
    m_stepLabel->setText(guidance ? tr("no guided step") : tr("no attention captured"));
  }
  const int longest = std::max(m_summary.width, m_summary.height);
  const int scale = std::max(1, (384 + longest - 1) / std::max(1, longest));
  m_overlay = heatOverlay(m_summary.image, m_map, m_mapSize.width(), m_mapSize.height(), m_colors->currentIndex(),
                          m_opacity->value() / 100.0, scale);
  // Guidance maps are per pixel: no patch grid, no selected patch.
  m_view->setOverlay(m_overlay, guidance ? 0 : m_summary.gridW, guidance ? 0 : m_summary.gridH);
  if (!guidance && m_summary.hasAttention()) {
    const int tokens = m_summary.gridW * m_summary.gridH;
    m_entropy->setEntropy(entropyOf(m_data, index), m_summary.layers, m_summary.heads, std::log(static_cast<double>(tokens)));
    m_entropy->setSelection(m_layer->currentIndex() - 2, m_head->currentIndex() - 1);
  } else {
    m_entropy->setEntropy({}, {}, 0, 1);
  }
  m_entropy->setVisible(!guidance);
  m_exportPng->setEnabled(!m_map.isEmpty());
  m_exportTensor->setEnabled(!m_map.isEmpty());
  m_exportCapture->setEnabled(true);
}

void AttentionPanel::refreshStrip() {
  const QSignalBlocker b(m_strip);
  m_strip->clear();
  if (!m_data) return;
  const bool guidance = m_kind->currentIndex() == 1;
  const int count = static_cast<int>(guidance ? m_summary.guidanceSteps.size() : m_summary.steps.size());
  const QSize mapSize = guidance ? QSize(m_summary.width, m_summary.height) : QSize(m_summary.gridW, m_summary.gridH);
  const int longest = std::max(m_summary.width, m_summary.height);
  const int scale = std::max(1, (64 + longest - 1) / std::max(1, longest));
  for (int i = 0; i < count; ++i) {
    const QImage thumb = heatOverlay(m_summary.image, mapAt(i), mapSize.width(), mapSize.height(), m_colors->currentIndex(),
                                     m_opacity->value() / 100.0, scale);
    const int step = guidance ? m_summary.guidanceSteps.value(i) : m_summary.steps.value(i);
    auto* item = new QListWidgetItem(QIcon(QPixmap::fromImage(thumb)), tr("step %1").arg(step + 1));
    m_strip->addItem(item);
  }
  m_strip->setCurrentRow(m_step->value());
}

QJsonObject AttentionPanel::mapMeta() const {
  const bool guidance = m_kind->currentIndex() == 1;
  const int index = m_step->value();
  QJsonObject meta{{QStringLiteral("kind"), guidance ? QStringLiteral("guidance") : QStringLiteral("attention")},
                   {QStringLiteral("step"), guidance ? m_summary.guidanceSteps.value(index) : m_summary.steps.value(index)},
                   {QStringLiteral("model"), m_job.modelPath},
                   {QStringLiteral("settings"), m_summary.settings}};
  if (!guidance) {
    meta[QStringLiteral("block")] = m_layer->currentText();
    meta[QStringLiteral("head")] = m_head->currentText();
    meta[QStringLiteral("direction")] = m_direction->currentIndex() == 1 ? QStringLiteral("attended-by") : QStringLiteral("attends-to");
    meta[QStringLiteral("token")] = m_view->selected();
    meta[QStringLiteral("grid")] = QJsonArray{m_summary.gridH, m_summary.gridW};
  }
  return meta;
}

QString AttentionPanel::exportPng(const QString& path) const {
  if (m_overlay.isNull()) return tr("nothing to export: capture first");
  return m_overlay.save(path, "PNG") ? QString() : tr("could not write %1").arg(path);
}

QString AttentionPanel::exportTensor(const QString& path) const {
  return exportMap(path, m_map, m_mapSize.width(), m_mapSize.height(), mapMeta());
}

PanelDescriptor describePanel_attention() {
  PanelDescriptor d;
  d.title = AttentionPanel::tr("Attention maps");
  d.area = Qt::RightDockWidgetArea;
  d.tabbedWith = QStringLiteral("gallery");
  d.create = [](const PanelContext& c) { return new AttentionPanel(c.parent); };
  return d;
}

}  // namespace tessera
