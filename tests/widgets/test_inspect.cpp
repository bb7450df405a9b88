// SPDX-License-Identifier: Apache-2.0
// The studio's inspection panels driven through their real widgets (offscreen) with the
// shipped models: attention maps (capture, click a patch, directions, rollout, entropy,
// guidance map, the strip across steps, exports, native sizes at their true aspect),
// the live inspector, and the comparison grid.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/formats/safetensors.h"
#include "engine/checkpoint_import.h"
#include "widgets/studio/studio_service.h"
#include "widgets/attention/attention_panel.h"
#include "widgets/canvas/image_canvas.h"
#include "widgets/compare/compare_panel.h"
#include "widgets/gallery/gallery_panel.h"
#include "widgets/generate/generate_panel.h"
#include "widgets/inspector/imgui_widget.h"
#include "widgets/inspector/inspector_panel.h"
#include "widgets/main_window/main_window.h"
#include "tests/widgets/studio_test_support.h"
#include "tests/support/test_main.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDockWidget>
#include <QDoubleSpinBox>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QListWidget>
#include <QPushButton>
#include <QSignalSpy>
#include <QSlider>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#endif

using namespace tessera;
using tessera::test::child;

namespace {

double sum(const QVector<float>& v) {
  double s = 0;
  for (float x : v) s += x;
  return s;
}

}  // namespace

class TestInspect : public QObject {
  Q_OBJECT

  QTemporaryDir m_dir;
  std::unique_ptr<MainWindow> m_window;

  GeneratePanel* panel() { return m_window->generatePanel(); }

  bool generate(int timeoutMs = 120000) { return test::generateAndWait(*m_window, timeoutMs); }

  bool capture(AttentionPanel* a) {
    QSignalSpy done(a, &AttentionPanel::captureFinished);
    QTest::mouseClick(a->captureButton(), Qt::LeftButton);
    if (!done.wait(120000 * tessera::testing::timeScale()) && done.isEmpty()) return false;
    return done.front().front().toBool();
  }

  void shoot(QWidget* w, const char* name) { QVERIFY2(test::shoot(w, name), name); }

  /// The shipped models may record a guidance interval as their default; these checks
  /// count guided steps, so they guide all of them.
  void guideEveryStep() {
    child<QDoubleSpinBox>(panel(), "cfgLow")->setValue(0.0);
    child<QDoubleSpinBox>(panel(), "cfgHigh")->setValue(1.0);
  }

private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QVERIFY(m_dir.isValid());
    qputenv("TESSERA_GALLERY", m_dir.filePath(QStringLiteral("gallery.db")).toLocal8Bit());
    // A U-Net in the user's model folder: the LDM parity fixture (a tiny cin256-v2 with its
    // VQ first stage: 8×8×3 latents, 16×16 pictures), imported as `tessera-cli import` does.
    QVERIFY(QDir().mkpath(userModelFolder()));
    ModelImportRequest ldm;
    ldm.in = std::string(TESSERA_TEST_DATA_DIR) + "/unet/ldm_cin.ckpt";
    ldm.from = "ldm";
    ldm.heads = 1;
    ldm.imageSize = 8;
    auto imported = importModel(ldm);
    QVERIFY2(imported, imported ? "" : imported.error().message().c_str());
    QVERIFY(writeImport((userModelFolder() + QStringLiteral("/ldm-tiny.safetensors")).toStdString(), *imported));
    m_window = std::make_unique<MainWindow>();
    m_window->resize(1500, 950);
    m_window->show();
    QTRY_VERIFY_WITH_TIMEOUT(m_window->isReady(), 60000 * tessera::testing::timeScale());
    QVERIFY2(m_window->lastError().isEmpty(), qPrintable(m_window->lastError()));
  }

  void attentionMapsOfAGeneratedImage() {
    QVERIFY(panel()->selectModel(QStringLiteral("dit-fashion")));
    auto* list = child<QListWidget>(panel(), "classList");
    list->clearSelection();
    list->item(7)->setSelected(true);  // Sneaker
    child<QSpinBox>(panel(), "imageCount")->setValue(1);
    child<QSpinBox>(panel(), "steps")->setValue(12);
    child<QDoubleSpinBox>(panel(), "cfgScale")->setValue(2.0);
    guideEveryStep();
    child<QSpinBox>(panel(), "seed")->setValue(5);
    QVERIFY(generate());
    QVERIFY2(m_window->lastError().isEmpty(), qPrintable(m_window->lastError()));

    AttentionPanel* a = m_window->attention();
    QVERIFY(a->hasSource());
    a->captureStepsBox()->setCurrentIndex(0);  // every step
    QVERIFY(a->estimatedBytes() > 0);
    QVERIFY(capture(a));
    const InspectionSummary s = a->summary();
    QCOMPARE(s.steps.size(), 12);
    QCOMPARE(s.layers.size(), s.depth);
    QCOMPARE(s.gridW * s.gridH, (28 / s.patch) * (28 / s.patch));
    // The capture ran the same generation: the same pixels as the canvas.
    QCOMPARE(s.image.convertToFormat(QImage::Format_Grayscale8), m_window->canvas()->image(0).convertToFormat(QImage::Format_Grayscale8));
    QCOMPARE(a->strip()->count(), 12);

    // One block, one head: a distribution over keys that changes with the clicked patch.
    a->layerBox()->setCurrentIndex(2 + s.depth - 1);
    a->headBox()->setCurrentIndex(1);
    const QVector<float> before = a->currentMap();
    QCOMPARE(before.size(), s.gridW * s.gridH);
    QVERIFY(std::abs(sum(before) - 1.0) < 1e-4);
    const int corner = 0;
    QTest::mouseClick(a->mapView(), Qt::LeftButton, {}, a->mapView()->centreOf(corner));
    QCOMPARE(a->mapView()->selected(), corner);
    const QVector<float> after = a->currentMap();
    QVERIFY(std::abs(sum(after) - 1.0) < 1e-4);
    QVERIFY(after != before);
    // The reverse view is a column, not a distribution; rollout and the means are.
    a->directionBox()->setCurrentIndex(1);
    QVERIFY(a->currentMap() != after);
    a->directionBox()->setCurrentIndex(0);
    for (int layer : {0, 1}) {
      a->layerBox()->setCurrentIndex(layer);
      a->headBox()->setCurrentIndex(0);
      QVERIFY(std::abs(sum(a->currentMap()) - 1.0) < 1e-4);
    }
    // Entropy cells pick a block and head.
    Q_EMIT a->entropyChart()->cellClicked(1, 2);
    QCOMPARE(a->layerBox()->currentIndex(), 3);
    QCOMPARE(a->headBox()->currentIndex(), 3);
    // Steps: the slider and the strip move together, and the map evolves.
    a->stepSlider()->setValue(0);
    const QVector<float> early = a->currentMap();
    a->stepSlider()->setValue(11);
    QCOMPARE(a->strip()->currentRow(), 11);
    QVERIFY(a->currentMap() != early);
    shoot(a, "attention-panel.png");
    if (auto* dock = m_window->findChild<QDockWidget*>(QStringLiteral("dockAttention"))) dock->raise();
    shoot(m_window.get(), "studio-attention.png");

    // Exports: the overlay as PNG, the map as a safetensors tensor, the whole capture.
    const QString png = m_dir.filePath(QStringLiteral("map.png")), tensor = m_dir.filePath(QStringLiteral("map.safetensors"));
    QCOMPARE(a->exportPng(png), QString());
    QVERIFY(QImage(png).width() >= 28 * 8);
    QCOMPARE(a->exportTensor(tensor), QString());
    auto file = SafetensorsFile::open(tensor.toStdString());
    QVERIFY(file);
    auto map = file->load("map");
    QVERIFY(map);
    QCOMPARE(map->size(0), std::int64_t(s.gridH));
    QVERIFY(file->metadata().count("tessera.map"));

    // The guidance map: per pixel, every guided step.
    a->kindBox()->setCurrentIndex(1);
    QCOMPARE(a->currentMapSize(), QSize(28, 28));
    QCOMPARE(a->strip()->count(), s.guidanceSteps.size());
    QVERIFY(s.guidanceSteps.size() == 12);
    QVERIFY(sum(a->currentMap()) > 0);
    for (float v : a->currentMap()) QVERIFY(v >= 0);
    shoot(a, "guidance-map.png");
    a->kindBox()->setCurrentIndex(0);
  }

  // A U-Net's attention layers each have their own grid (8×8 and 4×4 here): a coarse
  // layer answers for the cell that holds the clicked token and its map covers the fine
  // grid; rollout, which multiplies layers of one grid, says why it cannot.
  void unetAttentionOnEveryGrid() {
    QVERIFY(panel()->selectModel(QStringLiteral("ldm-tiny.safetensors")));
    QCOMPARE(panel()->currentModel()->depth, 7);
    QCOMPARE(panel()->currentModel()->attentionNames.front(), QStringLiteral("input 8×8 (input_blocks.1)"));
    child<QSpinBox>(panel(), "imageCount")->setValue(1);
    child<QSpinBox>(panel(), "steps")->setValue(6);
    child<QDoubleSpinBox>(panel(), "cfgScale")->setValue(3.0);
    guideEveryStep();
    QVERIFY(generate());
    QVERIFY2(m_window->lastError().isEmpty(), qPrintable(m_window->lastError()));
    AttentionPanel* a = m_window->attention();
    QVERIFY(a->hasSource());
    a->captureStepsBox()->setCurrentIndex(0);  // every step
    QVERIFY(a->estimatedBytes() > 0);
    QVERIFY(capture(a));
    const InspectionSummary s = a->summary();
    QCOMPARE(s.layers.size(), 7);
    QCOMPARE(QSize(s.gridW, s.gridH), QSize(8, 8));  // the finest layer's grid (latent cells)
    QCOMPARE(s.layerNames.at(2), QStringLiteral("middle 4×4 (middle_block)"));
    a->layerBox()->setCurrentIndex(2 + 2);  // the middle block, 4×4
    a->headBox()->setCurrentIndex(0);
    const QVector<float> coarse = a->currentMap();
    QCOMPARE(coarse.size(), 64);
    QVERIFY(std::abs(sum(coarse) - 1.0) < 1e-4);
    QVERIFY(coarse[0] == coarse[1] && coarse[0] == coarse[8]);  // one 4×4 token covers 2×2 cells
    QTest::mouseClick(a->mapView(), Qt::LeftButton, {}, a->mapView()->centreOf(63));
    QVERIFY(a->currentMap() != coarse);
    a->layerBox()->setCurrentIndex(0);  // the mean over every grid
    QVERIFY(std::abs(sum(a->currentMap()) - 1.0) < 1e-4);
    a->layerBox()->setCurrentIndex(1);  // rollout
    QVERIFY(a->currentMap().isEmpty());
    QVERIFY(a->statusText().contains(QStringLiteral("rollout")));
    a->layerBox()->setCurrentIndex(2);
    QVERIFY(std::abs(sum(a->currentMap()) - 1.0) < 1e-4);
    QVERIFY(!a->statusText().contains(QStringLiteral("rollout")));
    // LDM's timesteps for 6 steps on 1000: a stride of 166 from 1, so 7 steps, as LDM takes.
    QCOMPARE(s.totalSteps, 7);
    shoot(a, "attention-panel-unet.png");
  }

  void nativeSizesKeepTheirAspect() {
    QVERIFY(panel()->selectModel(QStringLiteral("nit-fashion")));
    panel()->setMixedSizes(true, QStringLiteral("12x28, 28x16"));
    child<QSpinBox>(panel(), "imageCount")->setValue(2);
    child<QSpinBox>(panel(), "steps")->setValue(8);
    QVERIFY(generate());
    QVERIFY2(m_window->lastError().isEmpty(), qPrintable(m_window->lastError()));
    m_window->canvas()->setCurrent(0);
    AttentionPanel* a = m_window->attention();
    QVERIFY(a->hasSource());
    a->captureStepsBox()->setCurrentIndex(4);  // the last step only
    QVERIFY(capture(a));
    const InspectionSummary s = a->summary();
    QCOMPARE(QSize(s.width, s.height), QSize(12, 28));
    QCOMPARE(QSize(s.gridW, s.gridH), QSize(3, 7));
    QCOMPARE(s.image.convertToFormat(QImage::Format_Grayscale8), m_window->canvas()->image(0).convertToFormat(QImage::Format_Grayscale8));
    const QRect r = a->mapView()->imageRect();
    QVERIFY(std::abs(static_cast<double>(r.width()) / r.height() - 12.0 / 28.0) < 0.03);
    QVERIFY(std::abs(sum(a->currentMap()) - 1.0) < 1e-4);
    panel()->setMixedSizes(false, QString());
  }

  void liveInspectorGetsEveryBlockEveryStep() {
    auto* dock = m_window->findChild<QDockWidget*>(QStringLiteral("dockInspector"));
    QVERIFY(dock);
    dock->show();
    dock->raise();
    InspectorPanel* inspector = m_window->inspector();
    QTRY_VERIFY(inspector->isCollecting());
    QVERIFY(panel()->selectModel(QStringLiteral("dit-fashion")));
    const int depth = panel()->currentModel()->depth;
    QVERIFY(depth > 0);
    child<QSpinBox>(panel(), "imageCount")->setValue(2);
    child<QSpinBox>(panel(), "steps")->setValue(9);
    child<QDoubleSpinBox>(panel(), "cfgScale")->setValue(2.0);
    guideEveryStep();
    QVERIFY(generate());
    QVERIFY2(m_window->lastError().isEmpty(), qPrintable(m_window->lastError()));
    const auto& steps = inspector->history().steps();
    QTRY_COMPARE(steps.size(), std::size_t(9));
    for (std::size_t i = 0; i < steps.size(); ++i) {
      const InspectorStep& s = steps[i];
      QCOMPARE(s.step, static_cast<int>(i));
      QCOMPARE(s.steps, 9);
      QCOMPARE(s.blocks.size(), depth + 2);  // the patch embedding, every block, the final layer
      QCOMPARE(s.blocks.front().name, QStringLiteral("x_embedder"));
      for (int b = 0; b < depth; ++b) {
        QCOMPARE(s.blocks[1 + b].name, QStringLiteral("blocks.%1").arg(b));
        QVERIFY(s.blocks[1 + b].ms >= 0);
        QVERIFY(s.blocks[1 + b].std > 0);
      }
      QCOMPARE(s.histogram.size(), 64);
      double count = 0;
      for (float c : s.histogram) count += c;
      QCOMPARE(count, 2.0 * 28 * 28);  // every value of both images' state
      QVERIFY(s.guidanceDifference > 0);
      QVERIFY(s.stepMs > 0);
    }
    QVERIFY(!inspector->summaryText().isEmpty());
    QTest::qWait(200);  // the view redraws at most every 33 ms; the header label every 100 ms
    shoot(m_window.get(), "studio-inspector.png");
    shoot(inspector, "inspector-panel.png");
    // Out of sight, nothing is collected: the next job runs without taps.
    m_window->findChild<QDockWidget*>(QStringLiteral("dockTimeline"))->raise();
    QTRY_VERIFY(!inspector->isCollecting());
    const quint64 revision = inspector->history().revision();
    QVERIFY(generate());
    QCOMPARE(inspector->history().revision(), revision);
  }

  void compareGridMatchesSingleGenerations() {
    QVERIFY(panel()->selectModel(QStringLiteral("dit-fashion")));
    auto* list = child<QListWidget>(panel(), "classList");
    list->clearSelection();
    list->item(2)->setSelected(true);  // Pullover
    child<QSpinBox>(panel(), "imageCount")->setValue(1);
    child<QSpinBox>(panel(), "steps")->setValue(6);
    child<QDoubleSpinBox>(panel(), "cfgScale")->setValue(2.0);
    guideEveryStep();
    child<QSpinBox>(panel(), "seed")->setValue(11);
    ComparePanel* c = m_window->compare();
    c->setAxes(CompareAxis::Model, QStringLiteral("dit-fashion, sit-fashion"), CompareAxis::Sampler, QStringLiteral("ddim, euler"));
    c->setMatchedCompute(false);
    QSignalSpy done(c, &ComparePanel::runFinished);
    c->run();
    QVERIFY(done.wait(120000 * tessera::testing::timeScale()));
    QVERIFY2(done.front().front().toBool(), qPrintable(c->lastError()));
    CompareGrid* grid = c->grid();
    QCOMPARE(grid->rows(), 2);
    QCOMPARE(grid->columns(), 2);
    for (int r = 0; r < 2; ++r)
      for (int k = 0; k < 2; ++k) {
        const CompareCell* cell = grid->cell(r, k);
        QVERIFY(cell->done);
        QVERIFY2(cell->error.isEmpty(), qPrintable(cell->error));
        QCOMPARE(cell->image.size(), QSize(28, 28));
        QCOMPARE(cell->nfe, 6);
        QCOMPARE(cell->forwardRows, 12);  // guided: cond and uncond per evaluation
        QVERIFY(cell->gflopsPerForward > 0);
        QCOMPARE(cell->job.seed, quint64(11));
        QCOMPARE(cell->job.classes.value(0), qint64(2));
      }
    QVERIFY(grid->cell(0, 0)->image != grid->cell(1, 0)->image);  // the models differ
    QVERIFY(c->lastSavedSet() > 0);

    // Each cell is the image a single generation with its settings makes.
    for (int r = 0; r < 2; ++r)
      for (int k = 0; k < 2; ++k) {
        const CompareCell* cell = grid->cell(r, k);
        const QJsonObject meta = QJsonDocument::fromJson(QImage::fromData(cell->png, "PNG").text(QStringLiteral("tessera")).toUtf8()).object();
        QCOMPARE(panel()->applySettings(meta), QString());
        QVERIFY(generate());
        QCOMPARE(m_window->canvas()->image(0).convertToFormat(QImage::Format_Grayscale8), cell->image.convertToFormat(QImage::Format_Grayscale8));
      }

    // The labelled grid as one PNG.
    const QString png = m_dir.filePath(QStringLiteral("grid.png"));
    QCOMPARE(c->exportPng(png), QString());
    const QImage exported(png);
    QCOMPARE(exported.size(), grid->sizeHint());
    QVERIFY(exported.width() > 2 * 128);

    // Reopened from the gallery: the same cells.
    const qint64 set = c->lastSavedSet();
    QSignalSpy loaded(c, &ComparePanel::setLoaded);
    c->openSet(set);
    QVERIFY(loaded.wait(30000 * tessera::testing::timeScale()));
    QCOMPARE(grid->rows(), 2);
    QCOMPARE(grid->cell(1, 1)->nfe, 6);
    QVERIFY(!grid->cell(1, 1)->image.isNull());

    // Any cell opens in the studio: the canvas, the timeline and the attention source follow it.
    QSignalSpy ended(m_window.get(), &MainWindow::generationEnded);
    Q_EMIT grid->cellDoubleClicked(1, 1);
    QVERIFY(ended.wait(60000 * tessera::testing::timeScale()));
    QCOMPARE(m_window->canvas()->image(0).convertToFormat(QImage::Format_Grayscale8), grid->cell(1, 1)->image.convertToFormat(QImage::Format_Grayscale8));
    QVERIFY(m_window->attention()->hasSource());

    // Quality per row through tessera-cli eval, in the background.
    QSignalSpy quality(c, &ComparePanel::qualityFinished);
    c->evaluate(true, 2);
    QVERIFY(c->isEvaluating());
    QVERIFY(quality.wait(180000 * tessera::testing::timeScale()));
    for (int r = 0; r < grid->rows(); ++r) {  // each row's figures, not "eval failed"
      const QString text = grid->qualityText(r, true);
      QVERIFY2(text.startsWith(QStringLiteral("acc ")) && text.contains(QStringLiteral("× floor")), qPrintable(text));
    }
    if (!qEnvironmentVariableIsEmpty("TESSERA_SCREENSHOT_DIR")) {
      auto* dock = m_window->findChild<QDockWidget*>(QStringLiteral("dockCompare"));
      dock->setFloating(true);
      dock->resize(900, 640);
      QTest::qWait(100);
      shoot(c, "compare-panel.png");
      dock->setFloating(false);
    }
  }

  void matchedComputeSpendsTheSameFlops() {
    QVERIFY(panel()->selectModel(QStringLiteral("dit-fashion")));
    child<QSpinBox>(panel(), "steps")->setValue(12);
    child<QDoubleSpinBox>(panel(), "cfgScale")->setValue(2.0);
    guideEveryStep();
    ComparePanel* c = m_window->compare();
    c->setAxes(CompareAxis::Model, QStringLiteral("dit-fashion, nit-fashion"), CompareAxis::Sampler, QStringLiteral("euler, heun"));
    c->setMatchedCompute(true);
    QSignalSpy done(c, &ComparePanel::runFinished);
    c->run();
    QVERIFY(done.wait(120000 * tessera::testing::timeScale()));
    QVERIFY2(done.front().front().toBool(), qPrintable(c->lastError()));
    const CompareCell* base = c->grid()->cell(0, 0);
    const double budget = base->gflops();
    QVERIFY(budget > 0);
    QCOMPARE(c->grid()->cell(0, 1)->job.steps, base->job.steps / 2);  // Heun evaluates twice per step
    for (int r = 0; r < 2; ++r)
      for (int k = 0; k < 2; ++k) {
        const double g = c->grid()->cell(r, k)->gflops();
        QVERIFY2(std::abs(g - budget) <= 0.2 * budget, qPrintable(QStringLiteral("cell %1,%2: %3 vs %4 GFLOP").arg(r).arg(k).arg(g).arg(budget)));
      }
    c->setMatchedCompute(false);
  }

  void cleanupTestCase() { m_window.reset(); }
};

TESSERA_TEST_MAIN(TestInspect, Gui)
#include "test_inspect.moc"
