// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "widgets/studio/studio_service.h"

#include <QHash>
#include <QPair>
#include <QTimer>
#include <QWidget>

class QComboBox;
class QLabel;
class QListWidget;
class QSlider;
class QSpinBox;
class QToolButton;

namespace tessera {

/// An image painted with nearest-neighbour scaling under a caption.
class FrameView final : public QWidget {
  Q_OBJECT
public:
  FrameView(const QString& caption, QWidget* parent = nullptr);
  void setImage(const QImage& image);
  void setCaption(const QString& caption);
  QString caption() const { return m_caption; }
  QImage image() const { return m_image; }

protected:
  void paintEvent(QPaintEvent*) override;

private:
  QString m_caption;
  QImage m_image;
};

/// The noise level of every state, the current step, and the guidance interval as a
/// band whose edges can be dragged.
class NoisePlot final : public QWidget {
  Q_OBJECT
public:
  enum class Axis { Time, Sigma, LogSnr };
  explicit NoisePlot(QWidget* parent = nullptr);
  void setLevels(const NoiseLevels& levels);
  void setAxis(Axis axis);
  void setStep(int step);
  void setInterval(double low, double high, bool guided);
  double low() const { return m_low; }
  double high() const { return m_high; }

Q_SIGNALS:
  void intervalChanged(double low, double high);
  void stepClicked(int step);

protected:
  void paintEvent(QPaintEvent*) override;
  void mousePressEvent(QMouseEvent*) override;
  void mouseMoveEvent(QMouseEvent*) override;
  void mouseReleaseEvent(QMouseEvent*) override;

private:
  QRectF plotRect() const;
  double xOfTau(double tau) const;
  double tauOfX(double x) const;
  double value(int i) const;

  NoiseLevels m_levels;
  Axis m_axis = Axis::Sigma;
  int m_step = 0;
  double m_low = 0, m_high = 1;
  bool m_guided = false;
  int m_dragEdge = 0;  ///< 0 none, 1 low, 2 high
};

/// Every step of the current generation: x_t, the predicted x0, and with guidance the
/// conditional-only and unconditional-only x0; a scrubber, play/pause, the noise plot,
/// and export as a video or a PNG strip.
class TimelinePanel final : public QWidget {
  Q_OBJECT

public:
  explicit TimelinePanel(QWidget* parent = nullptr);

  void start(int images, int steps, const NoiseLevels& levels, double cfg, double cfgLow, double cfgHigh);
  void addFrames(int step, const QVector<StepFrame>& frames);
  void setImage(int index);
  void setStep(int step);
  int image() const;
  int step() const;
  int steps() const { return m_steps; }
  /// Steps with frames for the current image.
  int framesAvailable() const;
  QString exportVideo(const QString& path, double fps) const;
  QString exportStrip(const QString& path) const;
  NoisePlot* plot() const { return m_plot; }
  /// A latent model's full decode of x₀ at `step` of image `image` (GenerationWorker::decodeStep's answer):
  /// shown in place of the fast preview from then on.
  void setDecodedFrame(int image, int step, const QImage& picture);
  /// Whether the frames are a latent model's (x₀ as a preview, latent channels available).
  bool latent() const { return m_latent; }
  /// Shows x₀ as its latent channels rather than as a picture.
  void setShowChannels(bool channels);
  /// The x₀ view, for tests and screenshots.
  FrameView* x0View() const { return m_x0; }

Q_SIGNALS:
  void intervalDragged(double low, double high);
  /// The user stopped on a step of a latent model whose x₀ has no full decode yet.
  void fullDecodeWanted(int image, int step);

private:
  void refresh();
  void refreshStrip();
  /// x_t and x0 of every available step of the current image, side by side.
  QVector<QImage> sequence() const;

  QVector<QVector<StepFrame>> m_frames;  ///< [image][step]
  int m_steps = 0;
  QSpinBox* m_image = nullptr;
  QSlider* m_slider = nullptr;
  QListWidget* m_strip = nullptr;  ///< an x0 thumbnail per step along the scrubber
  QLabel* m_stepLabel = nullptr;
  QToolButton* m_play = nullptr;
  QComboBox* m_speed = nullptr;
  QComboBox* m_axis = nullptr;
  FrameView* m_x = nullptr;
  FrameView* m_x0 = nullptr;
  FrameView* m_cond = nullptr;
  FrameView* m_uncond = nullptr;
  FrameView* m_output = nullptr;
  NoisePlot* m_plot = nullptr;
  QTimer m_playTimer;
  QTimer m_repaint;  ///< coalesces incoming steps: painting never falls behind
  bool m_follow = true;  ///< the scrubber follows new steps until the user moves it
  bool m_latent = false;
  QComboBox* m_x0Mode = nullptr;             ///< a latent model's x₀: picture, or latent channels
  QTimer m_settle;                           ///< a step the scrubber rests on this long gets its full decode
  QHash<QPair<int, int>, QImage> m_decoded;  ///< (image, step) → full decode of x₀
};

}  // namespace tessera
