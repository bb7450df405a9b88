// SPDX-License-Identifier: Apache-2.0
#include "widgets/inspector/imgui_widget.h"

#include <QClipboard>
#include <QEnterEvent>
#include <QFocusEvent>
#include <QGuiApplication>
#include <QInputMethod>
#include <QInputMethodEvent>
#include <QKeyEvent>
#include <QMouseEvent>
#include <QOpenGLContext>
#include <QPainter>
#include <QPalette>
#include <QSurfaceFormat>
#include <QWheelEvent>
#include <QtGlobal>

#include <imgui.h>
#include <imgui_internal.h>  // ImGui::ErrorCheckEndFrameRecover
#include <backends/imgui_impl_opengl3.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <exception>

namespace tessera {

namespace {

/// Makes an ImGui context current for a scope and restores the previous one: several
/// ImGuiWidgets (each with its own context) may exist in the process.
class CurrentContext {
public:
  explicit CurrentContext(ImGuiContext* ctx) : m_previous(ImGui::GetCurrentContext()) {
    ImGui::SetCurrentContext(ctx);
  }
  ~CurrentContext() { ImGui::SetCurrentContext(m_previous); }
  CurrentContext(const CurrentContext&) = delete;
  CurrentContext& operator=(const CurrentContext&) = delete;

private:
  ImGuiContext* m_previous;
};

/// io.KeysDown[] indices of the keys that have no ASCII code of their own.
enum KeySlot : int {
  kKeyTab = 256,
  kKeyLeft,
  kKeyRight,
  kKeyUp,
  kKeyDown,
  kKeyPageUp,
  kKeyPageDown,
  kKeyHome,
  kKeyEnd,
  kKeyInsert,
  kKeyDelete,
  kKeyBackspace,
  kKeyReturn,
  kKeyEnter,  // keypad Enter
  kKeyEscape,
  kKeyCtrl,
  kKeyShift,
  kKeyAlt,
  kKeySuper,
  kKeyF1 = 288,  // F1 … F12 = 288 … 299
};

int mouseButtonIndex(Qt::MouseButton button) {
  switch (button) {
    case Qt::LeftButton: return 0;
    case Qt::RightButton: return 1;
    case Qt::MiddleButton: return 2;
    case Qt::BackButton: return 3;
    case Qt::ForwardButton: return 4;
    default: return -1;
  }
}

/// "4.6 (Compatibility Profile) Mesa …", "OpenGL ES 3.2 Mesa …" → major, minor.
bool parseGlVersion(const char* text, int* major, int* minor) {
  if (!text) return false;
  while (*text && (*text < '0' || *text > '9')) ++text;
  if (!*text) return false;
  char* end = nullptr;
  const long ma = std::strtol(text, &end, 10);
  if (!end || *end != '.') return false;
  const long mi = std::strtol(end + 1, nullptr, 10);
  *major = static_cast<int>(ma);
  *minor = static_cast<int>(mi);
  return true;
}

ImVec4 toImVec4(const QColor& c, float alpha = -1.0f) {
  return ImVec4(static_cast<float>(c.redF()), static_cast<float>(c.greenF()),
                static_cast<float>(c.blueF()),
                alpha >= 0.0f ? alpha : static_cast<float>(c.alphaF()));
}

}  // namespace

int ImGuiWidget::keyIndex(int qtKey) {
  if (qtKey >= Qt::Key_A && qtKey <= Qt::Key_Z) return qtKey;  // ASCII 'A'…'Z'
  if (qtKey >= Qt::Key_0 && qtKey <= Qt::Key_9) return qtKey;  // ASCII '0'…'9'
  if (qtKey >= Qt::Key_F1 && qtKey <= Qt::Key_F12) return kKeyF1 + (qtKey - Qt::Key_F1);
  switch (qtKey) {
    case Qt::Key_Space: return ' ';
    case Qt::Key_Tab:
    case Qt::Key_Backtab: return kKeyTab;
    case Qt::Key_Left: return kKeyLeft;
    case Qt::Key_Right: return kKeyRight;
    case Qt::Key_Up: return kKeyUp;
    case Qt::Key_Down: return kKeyDown;
    case Qt::Key_PageUp: return kKeyPageUp;
    case Qt::Key_PageDown: return kKeyPageDown;
    case Qt::Key_Home: return kKeyHome;
    case Qt::Key_End: return kKeyEnd;
    case Qt::Key_Insert: return kKeyInsert;
    case Qt::Key_Delete: return kKeyDelete;
    case Qt::Key_Backspace: return kKeyBackspace;
    case Qt::Key_Return: return kKeyReturn;
    case Qt::Key_Enter: return kKeyEnter;
    case Qt::Key_Escape: return kKeyEscape;
    case Qt::Key_Control: return kKeyCtrl;
    case Qt::Key_Shift: return kKeyShift;
    case Qt::Key_Alt:
    case Qt::Key_AltGr: return kKeyAlt;
    case Qt::Key_Meta:
    case Qt::Key_Super_L:
    case Qt::Key_Super_R: return kKeySuper;
    default: return -1;
  }
}

ImGuiWidget::ImGuiWidget(QWidget* parent) : QOpenGLWidget(parent) {
  IMGUI_CHECKVERSION();
  m_ctx = ImGui::CreateContext();
  {
    CurrentContext current(m_ctx);
    ImGuiIO& io = ImGui::GetIO();
    io.IniFilename = nullptr;  // no imgui.ini in the working directory
    io.LogFilename = nullptr;
    io.BackendPlatformName = "tessera-qt";
    io.BackendFlags |= ImGuiBackendFlags_HasMouseCursors;
    io.ConfigWindowsMoveFromTitleBarOnly = true;
    io.GetClipboardTextFn = &ImGuiWidget::clipboardText;
    io.SetClipboardTextFn = &ImGuiWidget::setClipboardText;
    io.ClipboardUserData = this;

    io.KeyMap[ImGuiKey_Tab] = kKeyTab;
    io.KeyMap[ImGuiKey_LeftArrow] = kKeyLeft;
    io.KeyMap[ImGuiKey_RightArrow] = kKeyRight;
    io.KeyMap[ImGuiKey_UpArrow] = kKeyUp;
    io.KeyMap[ImGuiKey_DownArrow] = kKeyDown;
    io.KeyMap[ImGuiKey_PageUp] = kKeyPageUp;
    io.KeyMap[ImGuiKey_PageDown] = kKeyPageDown;
    io.KeyMap[ImGuiKey_Home] = kKeyHome;
    io.KeyMap[ImGuiKey_End] = kKeyEnd;
    io.KeyMap[ImGuiKey_Insert] = kKeyInsert;
    io.KeyMap[ImGuiKey_Delete] = kKeyDelete;
    io.KeyMap[ImGuiKey_Backspace] = kKeyBackspace;
    io.KeyMap[ImGuiKey_Space] = ' ';
    io.KeyMap[ImGuiKey_Enter] = kKeyReturn;
    io.KeyMap[ImGuiKey_Escape] = kKeyEscape;
    io.KeyMap[ImGuiKey_KeyPadEnter] = kKeyEnter;
    io.KeyMap[ImGuiKey_A] = 'A';
    io.KeyMap[ImGuiKey_C] = 'C';
    io.KeyMap[ImGuiKey_V] = 'V';
    io.KeyMap[ImGuiKey_X] = 'X';
    io.KeyMap[ImGuiKey_Y] = 'Y';
    io.KeyMap[ImGuiKey_Z] = 'Z';
  }
  applyPaletteStyle();

  setFocusPolicy(Qt::StrongFocus);
  setMouseTracking(true);
  m_frameTimer.setSingleShot(true);
  connect(&m_frameTimer, &QTimer::timeout, this, [this] { update(); });
}

ImGuiWidget::~ImGuiWidget() {
  // The context outlives this part of the object (QOpenGLWidget's destructor destroys
  // it): drop the connection so aboutToBeDestroyed cannot call into a dead subclass.
  if (QOpenGLContext* ctx = context()) disconnect(ctx, nullptr, this, nullptr);
  releaseGl();
  ImGui::DestroyContext(m_ctx);
  m_ctx = nullptr;
}

void ImGuiWidget::drawUi() {}

// --- OpenGL ---------------------------------------------------------------------------

void ImGuiWidget::initializeGL() {
  initializeOpenGLFunctions();
  QOpenGLContext* ctx = context();
  // The context is recreated when the widget moves to another top-level window (a dock
  // being floated): shut the renderer down with the old one, initializeGL runs again.
  connect(ctx, &QOpenGLContext::aboutToBeDestroyed, this, &ImGuiWidget::releaseGl,
          Qt::UniqueConnection);

  m_glReady = false;
  m_glProblem.clear();
  const QSurfaceFormat format = ctx->format();
  const bool es = ctx->isOpenGLES();
  int major = format.majorVersion(), minor = format.minorVersion();
  parseGlVersion(reinterpret_cast<const char*>(glGetString(GL_VERSION)), &major, &minor);
  const bool core = format.profile() == QSurfaceFormat::CoreProfile;

  const char* glsl = nullptr;
  if (es) {
    if (major >= 3) glsl = "#version 300 es";
  } else if (major >= 3) {
    if (core && (major > 3 || minor >= 3))
      glsl = "#version 330 core";
    else if (core && minor == 2)
      glsl = "#version 150";
    else
      glsl = "#version 130";
  }
  if (!glsl) {
    m_glProblem = es ? tr("The live inspector needs OpenGL ES 3.0 or newer; this context is "
                          "OpenGL ES %1.%2.")
                           .arg(major)
                           .arg(minor)
                     : tr("The live inspector needs OpenGL 3.0 or newer; this context is %1.%2.")
                           .arg(major)
                           .arg(minor);
    Q_EMIT glReadyChanged(false);
    return;
  }

  {
    CurrentContext current(m_ctx);
    // CPU side only; ImGui_ImplOpenGL3_NewFrame uploads it with its device objects.
    buildFontAtlas(devicePixelRatioF());
    if (!ImGui_ImplOpenGL3_Init(glsl)) {
      m_glProblem = tr("The live inspector could not load the OpenGL functions (libGL.so.1).");
      Q_EMIT glReadyChanged(false);
      return;
    }
  }
  m_glReady = true;
  m_cursor = -2;
  m_frameClock.start();
  Q_EMIT glReadyChanged(true);
}

void ImGuiWidget::releaseGl() {
  if (!m_glReady) return;
  m_glReady = false;
  makeCurrent();
  {
    CurrentContext current(m_ctx);
    ImGui_ImplOpenGL3_Shutdown();  // deletes shaders, buffers and the font texture
  }
  doneCurrent();
}

void ImGuiWidget::buildFontAtlas(qreal dpr) {
  // Rasterise at device pixels, draw at 1/dpr: crisp text on high-DPI screens while
  // ImGui works in logical (widget) coordinates.
  ImGuiIO& io = ImGui::GetIO();
  const float scale = static_cast<float>(std::max<qreal>(dpr, 0.5));
  io.Fonts->Clear();
  ImFontConfig config;
  config.OversampleH = config.OversampleV = 1;
  config.PixelSnapH = true;
  config.SizePixels = std::round(13.0f * scale);
  io.Fonts->AddFontDefault(&config);
  io.FontGlobalScale = 1.0f / scale;
  m_fontDpr = dpr;
}

void ImGuiWidget::applyPaletteStyle() {
  CurrentContext current(m_ctx);
  const QPalette pal = palette();
  const QColor window = pal.color(QPalette::Window);
  const QColor highlight = pal.color(QPalette::Highlight);
  ImGuiStyle& style = ImGui::GetStyle();
  if (window.lightnessF() < 0.5)
    ImGui::StyleColorsDark(&style);
  else
    ImGui::StyleColorsLight(&style);
  style.WindowRounding = 0.0f;
  style.WindowBorderSize = 0.0f;
  style.Colors[ImGuiCol_WindowBg] = toImVec4(window, 1.0f);
  style.Colors[ImGuiCol_Text] = toImVec4(pal.color(QPalette::WindowText), 1.0f);
  style.Colors[ImGuiCol_TextDisabled] =
      toImVec4(pal.color(QPalette::Disabled, QPalette::WindowText), 1.0f);
  style.Colors[ImGuiCol_PlotLines] = toImVec4(highlight, 1.0f);
  style.Colors[ImGuiCol_PlotHistogram] = toImVec4(highlight, 0.85f);
  style.Colors[ImGuiCol_Header] = toImVec4(highlight, 0.35f);
  style.Colors[ImGuiCol_HeaderHovered] = toImVec4(highlight, 0.50f);
  style.Colors[ImGuiCol_HeaderActive] = toImVec4(highlight, 0.70f);
  style.Colors[ImGuiCol_TextSelectedBg] = toImVec4(highlight, 0.40f);
}

void ImGuiWidget::paintGL() {
  if (!m_glReady) {
    paintProblem();
    return;
  }
  CurrentContext current(m_ctx);
  ImGuiIO& io = ImGui::GetIO();
  const qreal dpr = devicePixelRatioF();
  io.DisplaySize = ImVec2(static_cast<float>(width()), static_cast<float>(height()));
  io.DisplayFramebufferScale = ImVec2(static_cast<float>(dpr), static_cast<float>(dpr));
  const double seconds =
      m_frameClock.isValid() ? static_cast<double>(m_frameClock.nsecsElapsed()) * 1e-9 : 0.0;
  m_frameClock.restart();
  io.DeltaTime = static_cast<float>(std::max(seconds, 1e-4));
  feedInput(io);

  ImGui_ImplOpenGL3_NewFrame();  // creates shaders, buffers, font texture on first use
  if (!qFuzzyCompare(dpr, m_fontDpr)) {
    // Moved to a screen with another scale: re-rasterise the font and re-upload it (the
    // device objects exist now, so only the font texture is replaced).
    ImGui_ImplOpenGL3_DestroyFontsTexture();
    buildFontAtlas(dpr);
    ImGui_ImplOpenGL3_CreateFontsTexture();
  }
  ImGui::NewFrame();
  try {
    drawUi();
  } catch (const std::exception& e) {
    qWarning("ImGuiWidget: drawUi threw: %s", e.what());
    ImGui::ErrorCheckEndFrameRecover(nullptr);
  } catch (...) {
    qWarning("ImGuiWidget: drawUi threw");
    ImGui::ErrorCheckEndFrameRecover(nullptr);
  }
  applyCursor(io.MouseDrawCursor ? ImGuiMouseCursor_None : ImGui::GetMouseCursor());
  ImGui::Render();

  glViewport(0, 0, qRound(width() * dpr), qRound(height() * dpr));
  const QColor background = palette().color(QPalette::Window);
  glClearColor(static_cast<float>(background.redF()), static_cast<float>(background.greenF()),
               static_cast<float>(background.blueF()), 1.0f);
  glClear(GL_COLOR_BUFFER_BIT);
  ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
  afterFrame(io);
}

void ImGuiWidget::paintProblem() {
  QPainter painter(this);
  painter.fillRect(rect(), palette().color(QPalette::Window));
  painter.setPen(palette().color(QPalette::WindowText));
  painter.drawText(rect().adjusted(16, 16, -16, -16), Qt::AlignCenter | Qt::TextWordWrap,
                   m_glProblem);
}

void ImGuiWidget::feedInput(ImGuiIO& io) {
  for (int i = 0; i < 5; ++i) {
    io.MouseDown[i] = m_mouseHeld[i] || m_mouseLatched[i];
    m_mouseLatched[i] = false;
  }
  for (std::size_t i = 0; i < m_keysHeld.size(); ++i)
    io.KeysDown[i] = m_keysHeld[i] || m_keysLatched[i];
  m_keysLatched.reset();
}

void ImGuiWidget::applyCursor(int imguiCursor) {
  if (imguiCursor == m_cursor) return;
  m_cursor = imguiCursor;
  switch (imguiCursor) {
    case ImGuiMouseCursor_None: setCursor(Qt::BlankCursor); break;
    case ImGuiMouseCursor_TextInput: setCursor(Qt::IBeamCursor); break;
    case ImGuiMouseCursor_ResizeAll: setCursor(Qt::SizeAllCursor); break;
    case ImGuiMouseCursor_ResizeNS: setCursor(Qt::SizeVerCursor); break;
    case ImGuiMouseCursor_ResizeEW: setCursor(Qt::SizeHorCursor); break;
    case ImGuiMouseCursor_ResizeNESW: setCursor(Qt::SizeBDiagCursor); break;
    case ImGuiMouseCursor_ResizeNWSE: setCursor(Qt::SizeFDiagCursor); break;
    case ImGuiMouseCursor_Hand: setCursor(Qt::PointingHandCursor); break;
    case ImGuiMouseCursor_NotAllowed: setCursor(Qt::ForbiddenCursor); break;
    case ImGuiMouseCursor_Arrow:
    default: unsetCursor(); break;
  }
}

void ImGuiWidget::afterFrame(const ImGuiIO& io) {
  m_sincePaint.restart();
  if (io.WantTextInput != m_imeEnabled) {
    m_imeEnabled = io.WantTextInput;
    setAttribute(Qt::WA_InputMethodEnabled, m_imeEnabled);
    if (hasFocus()) QGuiApplication::inputMethod()->update(Qt::ImEnabled);
  }
  if (m_settleFrames > 0) {
    --m_settleFrames;
    scheduleFrame(16);
  } else if (m_imeEnabled && hasFocus()) {
    scheduleFrame(100);  // the text cursor blinks
  }
}

// --- Redraw policy --------------------------------------------------------------------

void ImGuiWidget::scheduleFrame(int delayMs) {
  if (m_frameTimer.isActive() && m_frameTimer.remainingTime() <= delayMs) return;
  m_frameTimer.start(delayMs);
}

void ImGuiWidget::requestRedraw() {
  int delay = 0;
  if (m_sincePaint.isValid())
    delay = static_cast<int>(
        std::max<qint64>(0, kMinRedrawIntervalMs - m_sincePaint.elapsed()));
  scheduleFrame(delay);
}

void ImGuiWidget::noteInput() {
  m_settleFrames = kSettleFrames;
  update();
}

// --- Input ----------------------------------------------------------------------------

void ImGuiWidget::setMouseButton(Qt::MouseButton button, bool down, bool pressed) {
  const int index = mouseButtonIndex(button);
  if (index < 0) return;
  m_mouseHeld[index] = down;
  if (pressed) m_mouseLatched[index] = true;
}

void ImGuiWidget::setModifiers(Qt::KeyboardModifiers modifiers) {
  ImGuiIO& io = ImGui::GetIO();
  io.KeyCtrl = modifiers.testFlag(Qt::ControlModifier);
  io.KeyShift = modifiers.testFlag(Qt::ShiftModifier);
  io.KeyAlt = modifiers.testFlag(Qt::AltModifier);
  io.KeySuper = modifiers.testFlag(Qt::MetaModifier);
}

void ImGuiWidget::setKey(int qtKey, bool down) {
  const int index = keyIndex(qtKey);
  if (index < 0 || index >= static_cast<int>(m_keysHeld.size())) return;
  m_keysHeld[static_cast<std::size_t>(index)] = down;
  if (down) m_keysLatched[static_cast<std::size_t>(index)] = true;
}

void ImGuiWidget::mouseMoveEvent(QMouseEvent* event) {
  CurrentContext current(m_ctx);
  const QPointF p = event->position();
  ImGui::GetIO().MousePos = ImVec2(static_cast<float>(p.x()), static_cast<float>(p.y()));
  setModifiers(event->modifiers());
  noteInput();
  event->accept();
}

void ImGuiWidget::mousePressEvent(QMouseEvent* event) {
  CurrentContext current(m_ctx);
  const QPointF p = event->position();
  ImGui::GetIO().MousePos = ImVec2(static_cast<float>(p.x()), static_cast<float>(p.y()));
  setModifiers(event->modifiers());
  setMouseButton(event->button(), true, true);
  noteInput();
  event->accept();
}

void ImGuiWidget::mouseDoubleClickEvent(QMouseEvent* event) {
  // Qt sends press, release, double-click, release: the double-click is the second
  // press; ImGui detects double-clicks itself from the timing.
  mousePressEvent(event);
}

void ImGuiWidget::mouseReleaseEvent(QMouseEvent* event) {
  CurrentContext current(m_ctx);
  const QPointF p = event->position();
  ImGui::GetIO().MousePos = ImVec2(static_cast<float>(p.x()), static_cast<float>(p.y()));
  setModifiers(event->modifiers());
  setMouseButton(event->button(), false, false);
  noteInput();
  event->accept();
}

void ImGuiWidget::wheelEvent(QWheelEvent* event) {
  CurrentContext current(m_ctx);
  ImGuiIO& io = ImGui::GetIO();
  const QPointF p = event->position();
  io.MousePos = ImVec2(static_cast<float>(p.x()), static_cast<float>(p.y()));
  setModifiers(event->modifiers());
  // One notch = 120 eighths of a degree = one ImGui wheel unit. Both conventions agree
  // on sign: positive y scrolls up, positive x scrolls left. Accumulated until
  // the next frame; ImGui clears them in EndFrame.
  const QPoint delta = event->angleDelta();
  io.MouseWheel += static_cast<float>(delta.y()) / 120.0f;
  io.MouseWheelH += static_cast<float>(delta.x()) / 120.0f;
  noteInput();
  event->accept();
}

void ImGuiWidget::keyPressEvent(QKeyEvent* event) {
  CurrentContext current(m_ctx);
  Qt::KeyboardModifiers modifiers = event->modifiers();
  // On X11 a modifier key's own event carries the state before it: fix it up.
  switch (event->key()) {
    case Qt::Key_Control: modifiers |= Qt::ControlModifier; break;
    case Qt::Key_Shift: modifiers |= Qt::ShiftModifier; break;
    case Qt::Key_Alt: modifiers |= Qt::AltModifier; break;
    case Qt::Key_Meta:
    case Qt::Key_Super_L:
    case Qt::Key_Super_R: modifiers |= Qt::MetaModifier; break;
    default: break;
  }
  setModifiers(modifiers);
  if (!event->isAutoRepeat()) setKey(event->key(), true);  // ImGui repeats by itself

  const QString text = event->text();
  if (!text.isEmpty()) {
    QString printable;
    printable.reserve(text.size());
    for (const QChar c : text)
      if (c.category() != QChar::Other_Control) printable.append(c);
    if (!printable.isEmpty())
      ImGui::GetIO().AddInputCharactersUTF8(printable.toUtf8().constData());
  }
  noteInput();
  event->accept();
}

void ImGuiWidget::keyReleaseEvent(QKeyEvent* event) {
  if (event->isAutoRepeat()) {
    event->accept();
    return;
  }
  CurrentContext current(m_ctx);
  Qt::KeyboardModifiers modifiers = event->modifiers();
  switch (event->key()) {
    case Qt::Key_Control: modifiers &= ~Qt::KeyboardModifiers(Qt::ControlModifier); break;
    case Qt::Key_Shift: modifiers &= ~Qt::KeyboardModifiers(Qt::ShiftModifier); break;
    case Qt::Key_Alt: modifiers &= ~Qt::KeyboardModifiers(Qt::AltModifier); break;
    case Qt::Key_Meta:
    case Qt::Key_Super_L:
    case Qt::Key_Super_R: modifiers &= ~Qt::KeyboardModifiers(Qt::MetaModifier); break;
    default: break;
  }
  setModifiers(modifiers);
  setKey(event->key(), false);
  noteInput();
  event->accept();
}

void ImGuiWidget::inputMethodEvent(QInputMethodEvent* event) {
  const QString commit = event->commitString();
  if (!commit.isEmpty()) {
    CurrentContext current(m_ctx);
    ImGui::GetIO().AddInputCharactersUTF8(commit.toUtf8().constData());
  }
  noteInput();
  event->accept();
}

QVariant ImGuiWidget::inputMethodQuery(Qt::InputMethodQuery query) const {
  if (query == Qt::ImEnabled) return m_imeEnabled;
  return QOpenGLWidget::inputMethodQuery(query);
}

void ImGuiWidget::focusInEvent(QFocusEvent* event) {
  {
    CurrentContext current(m_ctx);
    ImGui::GetIO().AddFocusEvent(true);
  }
  noteInput();
  QOpenGLWidget::focusInEvent(event);
}

void ImGuiWidget::focusOutEvent(QFocusEvent* event) {
  {
    CurrentContext current(m_ctx);
    ImGui::GetIO().AddFocusEvent(false);  // 1.86: ImGui releases its keys next frame
  }
  m_keysHeld.reset();
  m_keysLatched.reset();
  noteInput();
  QOpenGLWidget::focusOutEvent(event);
}

void ImGuiWidget::enterEvent(QEnterEvent* event) {
  {
    CurrentContext current(m_ctx);
    const QPointF p = event->position();
    ImGui::GetIO().MousePos = ImVec2(static_cast<float>(p.x()), static_cast<float>(p.y()));
  }
  noteInput();
  QOpenGLWidget::enterEvent(event);
}

void ImGuiWidget::leaveEvent(QEvent* event) {
  {
    CurrentContext current(m_ctx);
    ImGui::GetIO().MousePos = ImVec2(-FLT_MAX, -FLT_MAX);  // mouse unavailable
  }
  noteInput();
  QOpenGLWidget::leaveEvent(event);
}

bool ImGuiWidget::focusNextPrevChild(bool next) {
  // While an ImGui text field has the keyboard, Tab belongs to it.
  if (m_imeEnabled) return false;
  return QOpenGLWidget::focusNextPrevChild(next);
}

bool ImGuiWidget::event(QEvent* event) {
  switch (event->type()) {
    case QEvent::ShortcutOverride:
      // Typing into an ImGui text field must not trigger the window's shortcuts
      // (Delete, Ctrl+C, single-letter actions…).
      if (m_imeEnabled) {
        event->accept();
        return true;
      }
      break;
    case QEvent::ScreenChangeInternal:
      update();  // paintGL notices a new devicePixelRatio and rebuilds the font
      break;
    default: break;
  }
  return QOpenGLWidget::event(event);
}

void ImGuiWidget::changeEvent(QEvent* event) {
  if (event->type() == QEvent::PaletteChange || event->type() == QEvent::StyleChange) {
    applyPaletteStyle();
    update();
  }
  QOpenGLWidget::changeEvent(event);
}

// --- Clipboard ------------------------------------------------------------------------

const char* ImGuiWidget::clipboardText(void* userData) {
  auto* self = static_cast<ImGuiWidget*>(userData);
  const QClipboard* clipboard = QGuiApplication::clipboard();
  self->m_clipboard = clipboard ? clipboard->text().toUtf8() : QByteArray();
  return self->m_clipboard.constData();  // valid until the next call
}

void ImGuiWidget::setClipboardText(void* /*userData*/, const char* text) {
  if (QClipboard* clipboard = QGuiApplication::clipboard())
    clipboard->setText(QString::fromUtf8(text ? text : ""));
}

}  // namespace tessera
