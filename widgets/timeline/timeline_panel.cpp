// SPDX-License-Identifier: Apache-2.0
#include "widgets/timeline/timeline_panel.h"

#include "widgets/panel.h"

#include <QComboBox>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QMessageBox>
#include <QMouseEvent>
#include <QPainter>
#include <QPainterPath>
#include <QSlider>
#include <QSpinBox>
#include <QToolButton>
#include <QVBoxLayout>

#include <cmath>

namespace tessera {

// ---- FrameView ---------------------------------------------------------------------------

FrameView::FrameView(const QString& caption, QWidget* parent) : QWidget(parent), m_caption(caption) {
  setMinimumSize(64, 90);
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Expanding);
}

void FrameView::setImage(const QImage& image) {
  m_image = image;
  update();
}

void FrameView::setCaption(const QString& caption) {
  if (caption == m_caption) return;
  m_caption = caption;
  update();
}

void FrameView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  const int captionH = fontMetrics().height() + 4;
  p.setPen(palette().color(QPalette::WindowText));
  p.drawText(QRect(0, 0, width(), captionH), Qt::AlignCenter, m_caption);
  const QRect area(0, captionH, width(), height() - captionH);
  p.fillRect(area, palette().color(QPalette::Base).darker(108));
  if (m_image.isNull()) {
    p.setPen(palette().color(QPalette::PlaceholderText));
    p.drawText(area, Qt::AlignCenter, tr("—"));
    return;
  }
  const double s = std::min(area.width() / static_cast<double>(m_image.width()), area.height() / static_cast<double>(m_image.height()));
  const double z = s >= 1 ? std::floor(s) : s;
  const QSizeF size(m_image.width() * z, m_image.height() * z);
  const QRectF r(area.center().x() - size.width() / 2, area.center().y() - size.height() / 2, size.width(), size.height());
  p.setRenderHint(QPainter::SmoothPixmapTransform, z < 1);
  p.drawImage(r, m_image);
}

// ---- NoisePlot ---------------------------------------------------------------------------

NoisePlot::NoisePlot(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("noisePlot"));
  setMinimumHeight(110);
  setMouseTracking(true);
  setToolTip(tr("Noise level of every step. The shaded band is the guidance interval: drag its edges."));
}

void NoisePlot::setLevels(const NoiseLevels& levels) {
  m_levels = levels;
  update();
}
void NoisePlot::setAxis(Axis axis) {
  m_axis = axis;
  update();
}
void NoisePlot::setStep(int step) {
  m_step = step;
  update();
}
void NoisePlot::setInterval(double low, double high, bool guided) {
  m_low = low;
  m_high = high;
  m_guided = guided;
  update();
}

QRectF NoisePlot::plotRect() const { return QRectF(44, 8, width() - 56, height() - 30); }

double NoisePlot::value(int i) const {
  const double s = m_levels.sigma.value(i), a = m_levels.alpha.value(i);
  switch (m_axis) {
    case Axis::Time: return m_levels.time.value(i);
    case Axis::Sigma: return s;
    case Axis::LogSnr: return std::log(std::max(1e-12, a * a) / std::max(1e-12, s * s));
  }
  return 0;
}

// The x axis is the step index; the interval is in τ, mapped through the grid.
double NoisePlot::xOfTau(double tau) const {
  const QRectF r = plotRect();
  const int n = m_levels.tau.size();
  if (n < 2) return r.left() + tau * r.width();
  for (int i = 0; i + 1 < n; ++i) {
    const double a = m_levels.tau[i], b = m_levels.tau[i + 1];
    if (tau >= a && tau <= b) {
      const double f = b > a ? (tau - a) / (b - a) : 0;
      return r.left() + (i + f) / (n - 1) * r.width();
    }
  }
  return tau < m_levels.tau.front() ? r.left() : r.right();
}

double NoisePlot::tauOfX(double x) const {
  const QRectF r = plotRect();
  const int n = m_levels.tau.size();
  const double pos = std::clamp((x - r.left()) / r.width(), 0.0, 1.0);
  if (n < 2) return pos;
  const double f = pos * (n - 1);
  const int i = std::min(n - 2, static_cast<int>(f));
  const double t = m_levels.tau[i] + (f - i) * (m_levels.tau[i + 1] - m_levels.tau[i]);
  // The ends of the grid stand for the ends of the interval.
  if (pos <= 0) return 0.0;
  if (pos >= 1) return 1.0;
  return t;
}

void NoisePlot::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  const QRectF r = plotRect();
  p.fillRect(rect(), palette().color(QPalette::Base));
  p.setPen(palette().color(QPalette::Mid));
  p.drawRect(r);
  const int n = m_levels.tau.size();
  if (n < 2) {
    p.setPen(palette().color(QPalette::PlaceholderText));
    p.drawText(r.adjusted(4, 4, -4, -4), Qt::AlignCenter | Qt::TextWordWrap, tr("Noise level per step"));
    return;
  }
  // Guidance band.
  const double x0 = xOfTau(m_low), x1 = xOfTau(m_high);
  QColor band = palette().color(QPalette::Highlight);
  band.setAlpha(m_guided ? 60 : 25);
  p.fillRect(QRectF(QPointF(x0, r.top()), QPointF(x1, r.bottom())), band);
  p.setPen(QPen(palette().color(QPalette::Highlight), 2));
  p.drawLine(QPointF(x0, r.top()), QPointF(x0, r.bottom()));
  p.drawLine(QPointF(x1, r.top()), QPointF(x1, r.bottom()));
  // Curve.
  double lo = value(0), hi = value(0);
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, value(i));
    hi = std::max(hi, value(i));
  }
  if (hi - lo < 1e-9) hi = lo + 1;
  QPainterPath path;
  for (int i = 0; i < n; ++i) {
    const QPointF pt(r.left() + i * r.width() / (n - 1), r.bottom() - (value(i) - lo) / (hi - lo) * r.height());
    i == 0 ? path.moveTo(pt) : path.lineTo(pt);
  }
  p.setPen(QPen(palette().color(QPalette::WindowText), 1.5));
  p.drawPath(path);
  // Current step.
  const double xs = r.left() + std::clamp(m_step, 0, n - 1) * r.width() / (n - 1);
  p.setPen(QPen(QColor(0xe0, 0x60, 0x30), 2));
  p.drawLine(QPointF(xs, r.top()), QPointF(xs, r.bottom()));
  // Labels.
  p.setPen(palette().color(QPalette::WindowText));
  const QString name = m_axis == Axis::Time ? tr("t") : m_axis == Axis::Sigma ? tr("σ") : tr("log SNR");
  p.drawText(QRectF(0, r.top(), 40, 16), Qt::AlignRight, QString::number(hi, 'g', 3));
  p.drawText(QRectF(0, r.bottom() - 16, 40, 16), Qt::AlignRight, QString::number(lo, 'g', 3));
  p.drawText(QRectF(0, r.center().y() - 8, 40, 16), Qt::AlignRight, name);
  p.drawText(QRectF(r.left(), r.bottom() + 2, r.width(), 18), Qt::AlignLeft, tr("noise"));
  if (r.width() > 260)
    p.drawText(QRectF(r.left(), r.bottom() + 2, r.width(), 18), Qt::AlignHCenter,
               tr("guidance %1 … %2").arg(m_low, 0, 'f', 2).arg(m_high, 0, 'f', 2));
  p.drawText(QRectF(r.left(), r.bottom() + 2, r.width(), 18), Qt::AlignRight, tr("data"));
}

void NoisePlot::mousePressEvent(QMouseEvent* e) {
  if (m_levels.tau.size() < 2) return;
  const double x = e->position().x();
  const double d0 = std::abs(x - xOfTau(m_low)), d1 = std::abs(x - xOfTau(m_high));
  if (std::min(d0, d1) <= 6) {
    m_dragEdge = d0 <= d1 ? 1 : 2;
    return;
  }
  const QRectF r = plotRect();
  const int n = m_levels.tau.size();
  Q_EMIT stepClicked(static_cast<int>(std::lround(std::clamp((x - r.left()) / r.width(), 0.0, 1.0) * (n - 1))));
}

void NoisePlot::mouseMoveEvent(QMouseEvent* e) {
  const double x = e->position().x();
  if (!m_dragEdge) {
    const bool near = std::abs(x - xOfTau(m_low)) <= 6 || std::abs(x - xOfTau(m_high)) <= 6;
    setCursor(near ? Qt::SizeHorCursor : Qt::ArrowCursor);
    return;
  }
  const double tau = std::round(tauOfX(x) * 100) / 100;  // the panel's spin boxes hold two decimals
  if (m_dragEdge == 1) m_low = std::min(tau, m_high);
  else m_high = std::max(tau, m_low);
  update();
  Q_EMIT intervalChanged(m_low, m_high);
}

void NoisePlot::mouseReleaseEvent(QMouseEvent*) { m_dragEdge = 0; }

// ---- TimelinePanel -----------------------------------------------------------------------

TimelinePanel::TimelinePanel(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("timelinePanel"));
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(8, 6, 8, 6);
  auto* bar = new QHBoxLayout;
  bar->addWidget(new QLabel(tr("Image"), this));
  m_image = new QSpinBox(this);
  m_image->setObjectName(QStringLiteral("timelineImage"));
  m_image->setRange(0, 0);
  bar->addWidget(m_image);
  m_play = new QToolButton(this);
  m_play->setObjectName(QStringLiteral("timelinePlay"));
  m_play->setText(tr("Play"));
  m_play->setCheckable(true);
  bar->addWidget(m_play);
  m_speed = new QComboBox(this);
  for (int fps : {2, 5, 10, 25}) m_speed->addItem(tr("%1 steps/s").arg(fps), fps);
  m_speed->setCurrentIndex(2);
  bar->addWidget(m_speed);
  m_slider = new QSlider(Qt::Horizontal, this);
  m_slider->setObjectName(QStringLiteral("timelineSlider"));
  m_slider->setRange(0, 0);
  m_slider->setTickPosition(QSlider::TicksBelow);
  m_stepLabel = new QLabel(this);
  m_stepLabel->setMinimumWidth(90);
  bar->addWidget(m_stepLabel);
  bar->addStretch(1);
  m_axis = new QComboBox(this);
  m_axis->addItem(tr("σ"));
  m_axis->addItem(tr("t"));
  m_axis->addItem(tr("log SNR"));
  m_axis->setToolTip(tr("What the plot shows per step"));
  bar->addWidget(m_axis);
  m_x0Mode = new QComboBox(this);
  m_x0Mode->setObjectName(QStringLiteral("timelineX0Mode"));
  m_x0Mode->addItem(tr("x₀ as picture"));
  m_x0Mode->addItem(tr("x₀ latent channels"));
  m_x0Mode->setToolTip(
      tr("A latent model's x₀: as a picture (a fast preview while scrubbing, the full decode "
         "once you stop on a step), or its latent channels, each stretched to black…white"));
  m_x0Mode->setVisible(false);
  bar->addWidget(m_x0Mode);
  auto* video = new QToolButton(this);
  video->setText(tr("Video…"));
  video->setToolTip(tr("Export x₀ and xₜ of every step side by side as a video (.avi or .mp4)"));
  auto* strip = new QToolButton(this);
  strip->setText(tr("Strip…"));
  strip->setToolTip(tr("Export every step as a PNG strip (xₜ above x₀)"));
  bar->addWidget(video);
  bar->addWidget(strip);
  layout->addLayout(bar);
  layout->addWidget(m_slider);
  m_strip = new QListWidget(this);
  m_strip->setObjectName(QStringLiteral("timelineStrip"));
  m_strip->setViewMode(QListView::IconMode);
  m_strip->setFlow(QListView::LeftToRight);
  m_strip->setWrapping(false);
  m_strip->setMovement(QListView::Static);
  m_strip->setUniformItemSizes(true);
  m_strip->setIconSize(QSize(40, 40));
  m_strip->setFixedHeight(62);
  m_strip->setSpacing(1);
  m_strip->setHorizontalScrollBarPolicy(Qt::ScrollBarAsNeeded);
  m_strip->setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  m_strip->setToolTip(tr("The predicted x₀ of every step: click one to go there"));
  layout->addWidget(m_strip);
  connect(m_strip, &QListWidget::currentRowChanged, this, [this](int row) {
    if (row < 0 || row == m_slider->value()) return;
    m_follow = false;
    m_slider->setValue(row);
  });

  auto* views = new QHBoxLayout;
  m_x = new FrameView(tr("xₜ"), this);
  m_x->setToolTip(tr("The state after this step"));
  m_x0 = new FrameView(tr("x₀"), this);
  m_x0->setToolTip(tr("The predicted clean image (guided) at this step"));
  m_cond = new FrameView(tr("x₀ cond."), this);
  m_cond->setToolTip(tr("x₀ from the conditional half alone (guided steps only)"));
  m_uncond = new FrameView(tr("x₀ uncond."), this);
  m_uncond->setToolTip(tr("x₀ from the unconditional half alone (guided steps only)"));
  m_output = new FrameView(tr("output"), this);
  m_output->setToolTip(tr("What the network predicted at this step (noise, velocity…), its range stretched to black…white"));
  for (auto* v : {m_x, m_x0, m_output, m_cond, m_uncond}) {
    v->setMaximumWidth(180);
    views->addWidget(v, 1);
  }
  m_plot = new NoisePlot(this);
  m_plot->setMinimumWidth(180);
  views->addWidget(m_plot, 3);
  layout->addLayout(views, 1);

  connect(m_image, &QSpinBox::valueChanged, this, [this] {
    m_strip->clear();
    refreshStrip();
    refresh();
  });
  connect(m_slider, &QSlider::valueChanged, this, [this](int v) {
    if (m_slider->isSliderDown()) m_follow = v >= m_slider->maximum();
    refresh();
  });
  connect(m_slider, &QSlider::sliderPressed, this, [this] { m_follow = false; });
  connect(m_x0Mode, &QComboBox::currentIndexChanged, this, [this] { refresh(); });
  // A latent model's step the user rests on gets its full decode (the worker caches it).
  m_settle.setSingleShot(true);
  m_settle.setInterval(250);
  connect(&m_settle, &QTimer::timeout, this, [this] {
    const int i = m_image->value(), s = m_slider->value();
    if (!m_latent || m_follow || m_playTimer.isActive() || m_decoded.contains({i, s})) return;
    if (i < m_frames.size() && s < m_frames[i].size() && !m_frames[i][s].x0.isNull()) Q_EMIT fullDecodeWanted(i, s);
  });
  connect(m_axis, &QComboBox::currentIndexChanged, this, [this](int i) {
    m_plot->setAxis(i == 0 ? NoisePlot::Axis::Sigma : i == 1 ? NoisePlot::Axis::Time : NoisePlot::Axis::LogSnr);
  });
  connect(m_plot, &NoisePlot::stepClicked, this, [this](int s) {
    m_follow = false;
    setStep(s);
  });
  connect(m_plot, &NoisePlot::intervalChanged, this, &TimelinePanel::intervalDragged);
  connect(m_play, &QToolButton::toggled, this, [this](bool on) {
    m_play->setText(on ? tr("Pause") : tr("Play"));
    if (on) {
      m_follow = false;
      if (m_slider->value() >= framesAvailable() - 1) m_slider->setValue(0);
      m_playTimer.start(1000 / std::max(1, m_speed->currentData().toInt()));
    } else {
      m_playTimer.stop();
    }
  });
  connect(m_speed, &QComboBox::currentIndexChanged, this, [this] {
    if (m_playTimer.isActive()) m_playTimer.start(1000 / std::max(1, m_speed->currentData().toInt()));
  });
  connect(&m_playTimer, &QTimer::timeout, this, [this] {
    const int next = m_slider->value() + 1;
    if (next >= framesAvailable()) m_play->setChecked(false);
    else m_slider->setValue(next);
  });
  m_repaint.setSingleShot(true);
  m_repaint.setInterval(33);  // at most ~30 repaints a second however fast steps arrive
  connect(&m_repaint, &QTimer::timeout, this, [this] {
    const int available = framesAvailable();
    m_slider->setMaximum(std::max(0, m_steps));
    if (m_follow && available > 0) m_slider->setValue(available - 1);
    refreshStrip();
    refresh();
  });
  auto exportWith = [this](bool isVideo) {
    const QString path = QFileDialog::getSaveFileName(this, isVideo ? tr("Export video") : tr("Export PNG strip"),
                                                      isVideo ? QStringLiteral("denoising.avi") : QStringLiteral("denoising.png"),
                                                      isVideo ? tr("Video (*.avi *.mp4)") : tr("PNG images (*.png)"));
    if (path.isEmpty()) return;
    const QString error = isVideo ? exportVideo(path, m_speed->currentData().toInt()) : exportStrip(path);
    if (!error.isEmpty()) QMessageBox::warning(this, tr("Export"), error);
  };
  connect(video, &QToolButton::clicked, this, [exportWith] { exportWith(true); });
  connect(strip, &QToolButton::clicked, this, [exportWith] { exportWith(false); });
  refresh();
}

void TimelinePanel::start(int images, int steps, const NoiseLevels& levels, double cfg, double cfgLow, double cfgHigh) {
  m_frames = QVector<QVector<StepFrame>>(images, QVector<StepFrame>(steps + 1));
  m_steps = steps;
  m_follow = true;
  m_play->setChecked(false);
  m_image->setRange(0, std::max(0, images - 1));
  m_slider->setRange(0, steps);
  m_slider->setValue(0);
  m_plot->setLevels(levels);
  m_plot->setInterval(cfgLow, cfgHigh, cfg != 1.0);
  m_strip->clear();
  m_decoded.clear();
  m_latent = false;
  m_x0Mode->setVisible(false);
  refresh();
}

void TimelinePanel::setDecodedFrame(int image, int step, const QImage& picture) {
  if (picture.isNull()) return;
  m_decoded.insert({image, step}, picture);
  if (image == m_image->value() && step == m_slider->value()) refresh();
}

void TimelinePanel::setShowChannels(bool channels) { m_x0Mode->setCurrentIndex(channels ? 1 : 0); }

void TimelinePanel::refreshStrip() {
  // Appends the thumbnails of steps that arrived since the last call.
  const int i = m_image->value();
  if (i < 0 || i >= m_frames.size()) return;
  const int available = framesAvailable();
  for (int s = m_strip->count(); s < available; ++s) {
    const StepFrame& f = m_frames[i][s];
    const QImage& img = f.x0.isNull() ? f.x : f.x0;
    auto* item = new QListWidgetItem(QIcon(QPixmap::fromImage(img.scaled(40, 40, Qt::KeepAspectRatio, Qt::FastTransformation))),
                                     QString(), m_strip);
    item->setToolTip(tr("step %1").arg(s));
  }
}

void TimelinePanel::addFrames(int step, const QVector<StepFrame>& frames) {
  for (const auto& f : frames) {
    if (f.image < 0 || f.image >= m_frames.size() || step < 0 || step >= m_frames[f.image].size()) continue;
    m_frames[f.image][step] = f;
    if (!f.x0Channels.isNull() && !m_latent) {
      m_latent = true;
      m_x0Mode->setVisible(true);
    }
  }
  if (!m_repaint.isActive()) m_repaint.start();
}

void TimelinePanel::setImage(int index) { m_image->setValue(index); }
void TimelinePanel::setStep(int step) { m_slider->setValue(step); }
int TimelinePanel::image() const { return m_image->value(); }
int TimelinePanel::step() const { return m_slider->value(); }

int TimelinePanel::framesAvailable() const {
  const int i = m_image->value();
  if (i < 0 || i >= m_frames.size()) return 0;
  int n = 0;
  while (n < m_frames[i].size() && !m_frames[i][n].x.isNull()) ++n;
  return n;
}

void TimelinePanel::refresh() {
  const int i = m_image->value(), s = m_slider->value();
  const StepFrame* f = i < m_frames.size() && s < m_frames[i].size() ? &m_frames[i][s] : nullptr;
  m_x->setImage(f ? f->x : QImage());
  if (m_latent && m_x0Mode->currentIndex() == 1) {
    m_x0->setCaption(tr("x₀ channels"));
    m_x0->setImage(f ? f->x0Channels : QImage());
  } else if (m_latent && m_decoded.contains({i, s})) {
    m_x0->setCaption(tr("x₀ decoded"));
    m_x0->setImage(m_decoded.value({i, s}));
  } else {
    m_x0->setCaption(m_latent ? tr("x₀ preview") : tr("x₀"));
    m_x0->setImage(f ? f->x0 : QImage());
    if (m_latent) m_settle.start();
  }
  m_cond->setImage(f ? f->x0Conditional : QImage());
  m_uncond->setImage(f ? f->x0Unconditional : QImage());
  m_output->setImage(f ? f->output : QImage());
  m_stepLabel->setText(m_steps ? tr("step %1 / %2").arg(s).arg(m_steps) : tr("no run yet"));
  if (s < m_strip->count() && m_strip->currentRow() != s) {
    const QSignalBlocker block(m_strip);
    m_strip->setCurrentRow(s);
    m_strip->scrollToItem(m_strip->item(s));
  }
  m_slider->setTickInterval(std::max(1, m_steps / 10));
  m_plot->setStep(s);
}

QVector<QImage> TimelinePanel::sequence() const {
  // x_t and x0 of every available step of the current image, side by side.
  QVector<QImage> out;
  const int i = m_image->value();
  if (i < 0 || i >= m_frames.size()) return out;
  for (int s = 0; s < framesAvailable(); ++s) {
    const StepFrame& f = m_frames[i][s];
    QImage pair(f.x.width() * 2 + 2, f.x.height(), QImage::Format_RGB888);
    pair.fill(Qt::black);
    QPainter p(&pair);
    p.drawImage(0, 0, f.x);
    if (!f.x0.isNull()) p.drawImage(f.x.width() + 2, 0, f.x0);
    p.end();
    out << pair;
  }
  return out;
}

QString TimelinePanel::exportVideo(const QString& path, double fps) const {
  const auto frames = sequence();
  if (frames.isEmpty()) return tr("Nothing to export yet: generate first.");
  return writeVideo(path, frames, fps);
}

QString TimelinePanel::exportStrip(const QString& path) const {
  const int i = m_image->value();
  const int n = framesAvailable();
  if (n == 0) return tr("Nothing to export yet: generate first.");
  const QSize cell = m_frames[i][0].x.size();
  QImage strip(n * (cell.width() + 1), cell.height() * 2 + 1, QImage::Format_RGB888);
  strip.fill(Qt::black);
  QPainter p(&strip);
  for (int s = 0; s < n; ++s) {
    p.drawImage(s * (cell.width() + 1), 0, m_frames[i][s].x);
    if (!m_frames[i][s].x0.isNull()) p.drawImage(s * (cell.width() + 1), cell.height() + 1, m_frames[i][s].x0);
  }
  p.end();
  if (!strip.save(path, "PNG")) return tr("%1: cannot write the PNG").arg(path);
  return {};
}

PanelDescriptor describePanel_timeline() {
  PanelDescriptor d;
  d.title = TimelinePanel::tr("Denoising timeline");
  d.area = Qt::BottomDockWidgetArea;
  d.defaultExtent = 270;
  d.create = [](const PanelContext& c) { return new TimelinePanel(c.parent); };
  return d;
}

}  // namespace tessera
