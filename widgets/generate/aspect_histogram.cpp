// SPDX-License-Identifier: Apache-2.0
#include "widgets/generate/aspect_histogram.h"

#include <QHelpEvent>
#include <QMouseEvent>
#include <QPainter>
#include <QToolTip>

#include <algorithm>
#include <cmath>

namespace tessera {

AspectHistogram::AspectHistogram(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("aspectHistogram"));
  setMinimumHeight(48);
  setCursor(Qt::PointingHandCursor);
}

int AspectHistogram::binOf(const QSize& size) {
  if (size.width() <= 0 || size.height() <= 0) return -1;
  const double r = std::log2(static_cast<double>(size.height()) / static_cast<double>(size.width()));  // −2 … 2
  const int b = static_cast<int>(std::lround((r + 2.0) / 4.0 * (kBins - 1)));
  return std::clamp(b, 0, kBins - 1);
}

void AspectHistogram::setSizes(const QVector<QPair<QSize, int>>& sizes) {
  m_sizes = sizes;
  m_counts.fill(0);
  for (const auto& [s, n] : sizes)
    if (int b = binOf(s); b >= 0) m_counts[b] += n;
  update();
}

void AspectHistogram::setCurrent(const QSize& size) {
  m_current = binOf(size);
  update();
}

QSize AspectHistogram::commonSize(int bin) const {
  QSize best;
  int bestCount = 0;
  for (const auto& [s, n] : m_sizes)
    if (binOf(s) == bin && n > bestCount) best = s, bestCount = n;
  return best;
}

int AspectHistogram::binAt(int x) const {
  const int w = std::max(1, width());
  return std::clamp(x * kBins / w, 0, kBins - 1);
}

void AspectHistogram::paintEvent(QPaintEvent*) {
  QPainter p(this);
  const QPalette pal = palette();
  p.fillRect(rect(), pal.color(QPalette::Base));
  const int label = fontMetrics().height();
  const QRect plot = rect().adjusted(1, 1, -1, -label - 1);
  const int top = *std::max_element(m_counts.begin(), m_counts.end());
  const double barW = static_cast<double>(plot.width()) / kBins;
  for (int b = 0; b < kBins; ++b) {
    const QRectF cell(plot.left() + b * barW, plot.top(), barW, plot.height());
    if (b == m_current) p.fillRect(cell, pal.color(QPalette::Highlight).lighter(170));
    if (top <= 0 || m_counts[b] == 0) continue;
    // Square-root heights: rare shapes stay visible next to the common ones.
    const double h = std::sqrt(static_cast<double>(m_counts[b]) / top) * (plot.height() - 2);
    p.fillRect(QRectF(cell.left() + 1, cell.bottom() - h, barW - 2, h), b == m_current ? pal.color(QPalette::Highlight) : pal.color(QPalette::Mid));
  }
  p.setPen(pal.color(QPalette::PlaceholderText));
  const QRect labels(plot.left(), plot.bottom() + 1, plot.width(), label);
  p.drawText(labels, Qt::AlignLeft | Qt::AlignVCenter, tr("wide"));
  p.drawText(labels, Qt::AlignHCenter | Qt::AlignVCenter, tr("square"));
  p.drawText(labels, Qt::AlignRight | Qt::AlignVCenter, tr("tall"));
  p.setPen(pal.color(QPalette::Mid));
  p.drawRect(rect().adjusted(0, 0, -1, -1));
}

void AspectHistogram::mousePressEvent(QMouseEvent* e) {
  const QSize s = commonSize(binAt(static_cast<int>(e->position().x())));
  if (s.isValid()) Q_EMIT sizePicked(s);
}

bool AspectHistogram::event(QEvent* e) {
  if (e->type() == QEvent::ToolTip) {
    auto* help = static_cast<QHelpEvent*>(e);
    const int b = binAt(help->pos().x());
    const double ratio = std::exp2(static_cast<double>(b) / (kBins - 1) * 4.0 - 2.0);
    const QSize s = commonSize(b);
    QToolTip::showText(help->globalPos(),
                       m_counts[b] == 0 ? tr("H/W ≈ %1: no training image").arg(ratio, 0, 'f', 2)
                                        : tr("H/W ≈ %1: %2 training images; most common %3×%4 (click to use)")
                                              .arg(ratio, 0, 'f', 2)
                                              .arg(m_counts[b])
                                              .arg(s.width())
                                              .arg(s.height()),
                       this);
    return true;
  }
  return QWidget::event(e);
}

}  // namespace tessera
