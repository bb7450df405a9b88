// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <QImage>
#include <QVector>
#include <QWidget>

namespace tessera {

/// The results of a generation: a grid of images with zoom (wheel), pan (drag),
/// nearest-neighbour scaling, a pixel readout, copy and save as PNG (with metadata).
class ImageCanvas final : public QWidget {
  Q_OBJECT

public:
  explicit ImageCanvas(QWidget* parent = nullptr);

  void clear(int expected = 0);
  /// Sets image `index` (and the PNG bytes, with metadata, that Save writes).
  void setImage(int index, const QImage& image, const QByteArray& png = {});
  int count() const { return m_images.size(); }
  QImage image(int index) const { return index >= 0 && index < m_images.size() ? m_images[index] : QImage(); }
  QByteArray png(int index) const { return index >= 0 && index < m_pngs.size() ? m_pngs[index] : QByteArray(); }
  int current() const { return m_current; }
  void setCurrent(int index);
  double zoom() const { return m_zoom; }
  void setZoom(double zoom);
  void fit();
  bool copyCurrent();
  QString saveCurrent(const QString& path);  ///< empty or the error

Q_SIGNALS:
  void currentChanged(int index);
  /// Pixel under the cursor: image, x, y and its value as text ("" when outside).
  void pixelHovered(const QString& readout);

protected:
  void paintEvent(QPaintEvent*) override;
  void wheelEvent(QWheelEvent*) override;
  void mousePressEvent(QMouseEvent*) override;
  void mouseMoveEvent(QMouseEvent*) override;
  void mouseReleaseEvent(QMouseEvent*) override;
  void mouseDoubleClickEvent(QMouseEvent*) override;
  void resizeEvent(QResizeEvent*) override;
  void contextMenuEvent(QContextMenuEvent*) override;

private:
  QRectF cellRect(int index) const;
  QRectF imageRect(int index) const;
  int hit(const QPointF& p, QPoint* pixel = nullptr) const;
  QSize cellSize() const;
  int columns() const;

  QVector<QImage> m_images;
  QVector<QByteArray> m_pngs;
  int m_current = -1;
  double m_zoom = 1.0;
  bool m_autoFit = true;
  QPointF m_pan;
  QPointF m_dragStart;
  bool m_dragging = false;
};

}  // namespace tessera
