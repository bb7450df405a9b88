// SPDX-License-Identifier: Apache-2.0
#include "widgets/canvas/image_canvas.h"

#include <QApplication>
#include <QClipboard>
#include <QContextMenuEvent>
#include <QFile>
#include <QFileDialog>
#include <QMenu>
#include <QMouseEvent>
#include <QPainter>
#include <QSaveFile>
#include <QWheelEvent>

#include <cmath>

namespace tessera {

namespace {
constexpr int kGap = 8;
}

ImageCanvas::ImageCanvas(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("imageCanvas"));
  setMouseTracking(true);
  setMinimumSize(240, 240);
  setFocusPolicy(Qt::StrongFocus);
  setAutoFillBackground(false);
}

void ImageCanvas::clear(int expected) {
  m_images = QVector<QImage>(expected);
  m_pngs = QVector<QByteArray>(expected);
  m_current = expected > 0 ? 0 : -1;
  m_pan = {};
  m_autoFit = true;
  update();
}

void ImageCanvas::setImage(int index, const QImage& image, const QByteArray& png) {
  if (index < 0) return;
  if (index >= m_images.size()) {
    m_images.resize(index + 1);
    m_pngs.resize(index + 1);
  }
  m_images[index] = image;
  m_pngs[index] = png;
  if (m_current < 0) m_current = index;
  if (m_autoFit) fit();
  update();
}

void ImageCanvas::setCurrent(int index) {
  if (index == m_current || index < 0 || index >= m_images.size()) return;
  m_current = index;
  update();
  Q_EMIT currentChanged(index);
}

QSize ImageCanvas::cellSize() const {
  QSize s(1, 1);
  for (const auto& img : m_images)
    if (!img.isNull()) s = s.expandedTo(img.size());
  return s;
}

int ImageCanvas::columns() const {
  const int n = std::max(1, static_cast<int>(m_images.size()));
  return std::max(1, static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n) * width() / std::max(1, height())))));
}

void ImageCanvas::fit() {
  const int n = std::max(1, static_cast<int>(m_images.size()));
  const int cols = std::min(n, columns());
  const int rows = (n + cols - 1) / cols;
  const QSize cell = cellSize();
  const double zx = (width() - kGap * (cols + 1)) / static_cast<double>(cols * cell.width());
  const double zy = (height() - kGap * (rows + 1)) / static_cast<double>(rows * cell.height());
  double z = std::max(0.05, std::min(zx, zy));
  if (z >= 1.0) z = std::floor(z);  // whole factors keep nearest-neighbour pixels square
  m_zoom = z;
  m_pan = {};
  m_autoFit = true;
  update();
}

void ImageCanvas::setZoom(double zoom) {
  m_zoom = std::clamp(zoom, 0.05, 64.0);
  m_autoFit = false;
  update();
}

QRectF ImageCanvas::cellRect(int index) const {
  const int n = std::max(1, static_cast<int>(m_images.size()));
  const int cols = std::min(n, columns());
  const int rows = (n + cols - 1) / cols;
  const QSizeF cell = QSizeF(cellSize()) * m_zoom;
  const QSizeF total(cols * cell.width() + (cols - 1) * kGap, rows * cell.height() + (rows - 1) * kGap);
  const QPointF origin = QPointF((width() - total.width()) / 2, (height() - total.height()) / 2) + m_pan;
  const int r = index / cols, c = index % cols;
  return QRectF(origin + QPointF(c * (cell.width() + kGap), r * (cell.height() + kGap)), cell);
}

QRectF ImageCanvas::imageRect(int index) const {
  // Each image at its own size (same scale for all), centred in its cell: a mixed-size
  // job shows its images at their true sizes side by side.
  const QRectF cell = cellRect(index);
  const QImage& img = m_images[index];
  if (img.isNull() || img.size() == cellSize()) return cell;
  const QSizeF size = QSizeF(img.size()) * m_zoom;
  return QRectF(cell.center() - QPointF(size.width() / 2, size.height() / 2), size);
}

int ImageCanvas::hit(const QPointF& p, QPoint* pixel) const {
  for (int i = 0; i < m_images.size(); ++i) {
    const QRectF r = imageRect(i);
    if (!r.contains(p) || m_images[i].isNull()) continue;
    if (pixel) {
      const QImage& img = m_images[i];
      *pixel = QPoint(static_cast<int>((p.x() - r.left()) / r.width() * img.width()),
                      static_cast<int>((p.y() - r.top()) / r.height() * img.height()));
    }
    return i;
  }
  return -1;
}

void ImageCanvas::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), palette().color(QPalette::Base).darker(m_images.isEmpty() ? 100 : 108));
  if (m_images.isEmpty()) {
    p.setPen(palette().color(QPalette::PlaceholderText));
    p.drawText(rect(), Qt::AlignCenter, tr("Pick a model and a class, then Generate.\nResults appear here: wheel to zoom, drag to pan,\nright-click to copy or save."));
    return;
  }
  // Nearest neighbour when enlarging: every model pixel stays a crisp square.
  p.setRenderHint(QPainter::SmoothPixmapTransform, m_zoom < 1.0);
  for (int i = 0; i < m_images.size(); ++i) {
    const QRectF r = imageRect(i);
    if (m_images[i].isNull()) {
      p.fillRect(r, palette().color(QPalette::Mid));
      p.setPen(palette().color(QPalette::PlaceholderText));
      p.drawText(r, Qt::AlignCenter, tr("…"));
    } else {
      p.drawImage(r, m_images[i]);
    }
    if (i == m_current && m_images.size() > 1) {
      p.setPen(QPen(palette().color(QPalette::Highlight), 2));
      p.drawRect(r.adjusted(-2, -2, 2, 2));
    }
  }
}

void ImageCanvas::wheelEvent(QWheelEvent* e) {
  const double factor = e->angleDelta().y() > 0 ? 1.25 : 0.8;
  const QPointF c = e->position() - QPointF(width() / 2.0, height() / 2.0);
  m_pan = c - (c - m_pan) * factor;
  setZoom(m_zoom * factor);
}

void ImageCanvas::mousePressEvent(QMouseEvent* e) {
  if (e->button() != Qt::LeftButton) return;
  m_dragging = true;
  m_dragStart = e->position();
  const int i = hit(e->position());
  if (i >= 0) setCurrent(i);
}

void ImageCanvas::mouseMoveEvent(QMouseEvent* e) {
  if (m_dragging) {
    m_pan += e->position() - m_dragStart;
    m_dragStart = e->position();
    m_autoFit = false;
    update();
  }
  QPoint px;
  const int i = hit(e->position(), &px);
  if (i < 0) {
    Q_EMIT pixelHovered(QString());
    return;
  }
  const QImage& img = m_images[i];
  const QRgb v = img.pixel(px);
  const QString value = img.isGrayscale() ? QString::number(qGray(v))
                                          : QStringLiteral("%1, %2, %3").arg(qRed(v)).arg(qGreen(v)).arg(qBlue(v));
  Q_EMIT pixelHovered(tr("image %1 · x %2 y %3 · %4").arg(i).arg(px.x()).arg(px.y()).arg(value));
}

void ImageCanvas::mouseReleaseEvent(QMouseEvent*) { m_dragging = false; }

void ImageCanvas::mouseDoubleClickEvent(QMouseEvent*) { fit(); }

void ImageCanvas::resizeEvent(QResizeEvent*) {
  if (m_autoFit) fit();
}

bool ImageCanvas::copyCurrent() {
  const QImage img = image(m_current);
  if (img.isNull()) return false;
  QApplication::clipboard()->setImage(img);
  return true;
}

QString ImageCanvas::saveCurrent(const QString& path) {
  const QByteArray bytes = png(m_current);
  QSaveFile file(path);  // atomic: a temporary file renamed on commit
  if (!file.open(QIODevice::WriteOnly)) return tr("%1: %2").arg(path, file.errorString());
  if (!bytes.isEmpty()) file.write(bytes);
  else if (!image(m_current).save(&file, "PNG")) return tr("%1: cannot encode the image").arg(path);
  if (!file.commit()) return tr("%1: %2").arg(path, file.errorString());
  return {};
}

void ImageCanvas::contextMenuEvent(QContextMenuEvent* e) {
  const int i = hit(e->pos());
  if (i >= 0) setCurrent(i);
  QMenu menu(this);
  QAction* copy = menu.addAction(tr("Copy image"));
  QAction* save = menu.addAction(tr("Save as PNG…"));
  copy->setEnabled(!image(m_current).isNull());
  save->setEnabled(!image(m_current).isNull());
  menu.addSeparator();
  QAction* fitAction = menu.addAction(tr("Fit to window"));
  QAction* actual = menu.addAction(tr("Zoom 8×"));
  QAction* chosen = menu.exec(e->globalPos());
  if (chosen == copy) copyCurrent();
  else if (chosen == save) {
    const QString path = QFileDialog::getSaveFileName(this, tr("Save image"), QStringLiteral("tessera.png"), tr("PNG images (*.png)"));
    if (!path.isEmpty()) saveCurrent(path);
  } else if (chosen == fitAction) fit();
  else if (chosen == actual) setZoom(8.0);
}

}  // namespace tessera
