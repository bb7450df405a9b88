// SPDX-License-Identifier: Apache-2.0
// The live inspector's Dear ImGui view in a real OpenGL context (run under a virtual X
// server: CTest wraps it in xvfb-run): it draws, redraws when steps arrive, and our Qt
// glue delivers mouse clicks (clicking the "Per step" header folds the plots away).
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "widgets/inspector/imgui_widget.h"
#include "widgets/inspector/inspector_panel.h"
#include "tests/support/test_main.h"

#include <QSet>
#include <QtTest>
#endif

using namespace tessera;

namespace {

InspectorStep step(int i) {
  InspectorStep s;
  s.job = 1;
  s.step = i;
  s.steps = 20;
  s.tau = (i + 1) / 20.0;
  s.stepMs = 10 + i % 3;
  s.guidanceDifference = 1.0 / (1 + i);
  for (int b = 0; b < 4; ++b) {
    BlockStat st;
    st.name = b == 0 ? QStringLiteral("x_embedder") : QStringLiteral("blocks.%1").arg(b - 1);
    st.mean = 0.1f * b;
    st.std = 1.0f + 0.05f * i + b;
    st.absMax = 3.0f + b;
    st.ms = 1.0 + b;
    s.blocks.push_back(st);
  }
  for (int k = 0; k < 64; ++k) s.histogram.push_back(static_cast<float>((k - 32) * (k - 32) % 17));
  s.histogramMin = -3;
  s.histogramMax = 3;
  return s;
}

int colours(const QImage& image) {
  QSet<QRgb> seen;
  for (int y = 0; y < image.height(); y += 2)
    for (int x = 0; x < image.width(); x += 2) seen.insert(image.pixel(x, y));
  return static_cast<int>(seen.size());
}

}  // namespace

class TestImGui : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void drawsRedrawsAndTakesClicks() {
    if (!openGLProblem().isEmpty()) QFAIL(qPrintable(QStringLiteral("no OpenGL here (run under xvfb-run): ") + openGLProblem()));
    InspectorPanel panel;
    panel.resize(480, 420);  // narrow: one column, "Per step" first
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));
    ImGuiWidget* view = panel.view();
    QVERIFY(view);
    QTRY_VERIFY(view->glReady());
    const QImage empty = view->grabFramebuffer();
    for (int i = 0; i < 20; ++i) panel.addStep(step(i));
    QCOMPARE(panel.history().steps().size(), std::size_t(20));
    QTest::qWait(120);
    const QImage full = view->grabFramebuffer();
    QVERIFY(full != empty);
    QVERIFY2(colours(full) > colours(empty), "the plots added no colours");
    // Hover the "Per step" header (the second line), then click it twice: the first click
    // folds the plots away, the second brings back exactly the hovered picture.
    const QPoint header(60, 4 + 2 * 17);
    QTest::mouseMove(view, header);
    QTest::qWait(150);
    const QImage hovered = view->grabFramebuffer();
    QTest::mouseClick(view, Qt::LeftButton, {}, header);
    QTest::qWait(150);
    const QImage folded = view->grabFramebuffer();
    QVERIFY2(folded != hovered, "a click on the header changed nothing");
    QTest::mouseClick(view, Qt::LeftButton, {}, header);
    QTest::qWait(150);
    QCOMPARE(view->grabFramebuffer(), hovered);
    // The history stays bounded.
    for (int i = 0; i < 2100; ++i) panel.addStep(step(i));
    QCOMPARE(panel.history().steps().size(), panel.history().capacity());
  }
};

TESSERA_TEST_MAIN(TestImGui, Gui)
#include "test_imgui.moc"
