// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <QPair>
#include <QSize>
#include <QVector>
#include <QWidget>

namespace tessera {

/// The aspect ratios (H / W) a model saw in training, as a small histogram on a log
/// scale from 1:4 (wide) to 4:1 (tall). Clicking a bar picks the most common size in it.
class AspectHistogram final : public QWidget {
  Q_OBJECT

public:
  explicit AspectHistogram(QWidget* parent = nullptr);
  void setSizes(const QVector<QPair<QSize, int>>& sizes);
  /// Marks the bar of this size (the current W × H).
  void setCurrent(const QSize& size);
  static constexpr int kBins = 17;
  /// The bin of an aspect ratio H / W (clamped to the ends).
  static int binOf(const QSize& size);
  /// The most common size in bin `bin` (invalid when the bin is empty).
  QSize commonSize(int bin) const;
  int count(int bin) const { return bin >= 0 && bin < kBins ? m_counts[bin] : 0; }
  QSize sizeHint() const override { return {200, 56}; }

Q_SIGNALS:
  void sizePicked(const QSize& size);

protected:
  void paintEvent(QPaintEvent*) override;
  void mousePressEvent(QMouseEvent*) override;
  bool event(QEvent*) override;

private:
  int binAt(int x) const;
  QVector<QPair<QSize, int>> m_sizes;
  QVector<int> m_counts = QVector<int>(kBins, 0);
  int m_current = -1;
};

}  // namespace tessera
