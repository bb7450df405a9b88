// SPDX-License-Identifier: Apache-2.0
// ImGuiWidget: a reusable QOpenGLWidget that hosts one Dear ImGui (1.86) context.
// ImGui's own OpenGL 3 renderer (imgui_impl_opengl3, from Debian's libimgui.a) draws;
// this class is the Qt "platform backend": display size and DPI, delta time, mouse,
// wheel, keyboard, text and IME input, focus, clipboard and mouse cursor shapes.
// Subclasses override drawUi() and call ImGui there (the right ImGui context is
// current during drawUi()). Redraws are lazy: input repaints at once (plus a few
// frames so hover state settles), requestRedraw() coalesces data-driven repaints to
// at most one every kMinRedrawIntervalMs. Contexts older than OpenGL 3.0 / ES 3.0
// get a plain QPainter message instead (glReady() false, glProblem() says why).
#pragma once

#include <QByteArray>
#include <QElapsedTimer>
#include <QOpenGLFunctions>
#include <QOpenGLWidget>
#include <QPointF>
#include <QString>
#include <QTimer>

#include <bitset>

struct ImGuiContext;
struct ImGuiIO;

namespace tessera {

class ImGuiWidget : public QOpenGLWidget, protected QOpenGLFunctions {
  Q_OBJECT
public:
  /// Data-driven repaints (requestRedraw) happen at most this often.
  static constexpr int kMinRedrawIntervalMs = 33;
  /// Frames drawn after each input event so that hover / active state settles.
  static constexpr int kSettleFrames = 4;

  explicit ImGuiWidget(QWidget* parent = nullptr);
  ~ImGuiWidget() override;

  /// True once ImGui's OpenGL renderer is initialised on this widget's context.
  bool glReady() const { return m_glReady; }
  /// Why glReady() is false (empty while it is true or before initializeGL ran).
  QString glProblem() const { return m_glProblem; }
  /// This widget's ImGui context (for ImGui calls outside drawUi: make it current).
  ImGuiContext* imguiContext() const { return m_ctx; }

  /// The io.KeysDown[] index this host uses for a Qt::Key, or −1 when not mapped:
  /// letters A–Z and digits 0–9 map to their ASCII code, space to 32, navigation and
  /// editing keys, F1–F12 and the modifier keys to indices ≥ 256. Use it with
  /// ImGui::IsKeyPressed(ImGuiWidget::keyIndex(Qt::Key_F5)).
  static int keyIndex(int qtKey);

public Q_SLOTS:
  /// Schedules a repaint, coalesced: at most one every kMinRedrawIntervalMs. Never
  /// blocks; does nothing visible while the widget is hidden.
  void requestRedraw();

Q_SIGNALS:
  /// Emitted after initializeGL (also after the context was recreated, e.g. when a
  /// dock is floated): whether ImGui could be initialised.
  void glReadyChanged(bool ready);

protected:
  /// Draw the UI with ImGui calls; this widget's ImGui context is current and a frame
  /// is open (between ImGui::NewFrame and ImGui::Render). Default: nothing.
  virtual void drawUi();

  void initializeGL() override;
  void paintGL() override;

  bool event(QEvent* event) override;
  void changeEvent(QEvent* event) override;
  void mouseMoveEvent(QMouseEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;
  void mouseReleaseEvent(QMouseEvent* event) override;
  void mouseDoubleClickEvent(QMouseEvent* event) override;
  void wheelEvent(QWheelEvent* event) override;
  void keyPressEvent(QKeyEvent* event) override;
  void keyReleaseEvent(QKeyEvent* event) override;
  void focusInEvent(QFocusEvent* event) override;
  void focusOutEvent(QFocusEvent* event) override;
  void enterEvent(QEnterEvent* event) override;
  void leaveEvent(QEvent* event) override;
  void inputMethodEvent(QInputMethodEvent* event) override;
  QVariant inputMethodQuery(Qt::InputMethodQuery query) const override;
  bool focusNextPrevChild(bool next) override;

private:
  static const char* clipboardText(void* userData);
  static void setClipboardText(void* userData, const char* text);

  void releaseGl();
  void buildFontAtlas(qreal dpr);
  void applyPaletteStyle();
  void feedInput(ImGuiIO& io);
  void applyCursor(int imguiCursor);
  void afterFrame(const ImGuiIO& io);
  void paintProblem();
  void noteInput();
  void scheduleFrame(int delayMs);
  void setMouseButton(Qt::MouseButton button, bool down, bool pressed);
  void setModifiers(Qt::KeyboardModifiers modifiers);
  void setKey(int qtKey, bool down);

  ImGuiContext* m_ctx = nullptr;
  bool m_glReady = false;
  QString m_glProblem;
  QByteArray m_clipboard;  ///< keeps the UTF-8 text returned to ImGui alive

  qreal m_fontDpr = 0;  ///< devicePixelRatio the font atlas was built for
  QElapsedTimer m_frameClock;
  QElapsedTimer m_sincePaint;
  QTimer m_frameTimer;
  int m_settleFrames = 0;
  int m_cursor = -2;  ///< last ImGuiMouseCursor applied (−2: none yet)
  bool m_imeEnabled = false;

  // Input state fed into ImGui at the start of each frame. 1.86 has no input event
  // queue (that came in 1.87), so presses are latched: a press and release between
  // two frames still shows as "down" for one frame and ImGui sees the click.
  bool m_mouseHeld[5] = {};
  bool m_mouseLatched[5] = {};
  std::bitset<512> m_keysHeld;
  std::bitset<512> m_keysLatched;
};

}  // namespace tessera
