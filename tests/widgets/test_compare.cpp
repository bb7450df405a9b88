// SPDX-License-Identifier: Apache-2.0
// The Compare panel and its service against the sampler registry: matched compute counts
// each sampler's network evaluations per step as its registry entry states them (and
// refuses adaptive ones), and the panel's default axes, built from the registry, pass
// its own check and run in the real window (offscreen).
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/samplers/sampler.h"
#include "tests/widgets/studio_test_support.h"
#include "widgets/compare/compare_panel.h"
#include "widgets/generate/generate_panel.h"
#include "widgets/main_window/main_window.h"
#include "widgets/studio/compare_service.h"
#include "tests/support/test_main.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QLineEdit>
#include <QListWidget>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>
#endif

using namespace tessera;
using tessera::test::child;

namespace {

const ModelInfo* findModel(const QVector<ModelInfo>& models, const QString& name) {
  for (const ModelInfo& m : models)
    if (m.name == name && m.error.isEmpty()) return &m;
  return nullptr;
}

/// What the worker plans for a one-row grid of `samplers` (columns) against `base`:
/// each cell's steps, or the worker's failure. Nothing is generated (the run is
/// cancelled before it starts; the plan comes first).
struct Plan {
  QVector<int> steps;
  QString failure;
};

Plan plan(const GenerationJob& base, const QString& samplers, const QVector<ModelInfo>& models) {
  CompareSetup setup;
  setup.id = 1;
  setup.base = base;
  setup.rowAxis = CompareAxis::Seed;
  setup.rows = {QString::number(base.seed)};
  setup.columnAxis = CompareAxis::Sampler;
  for (const QString& s : samplers.split(QLatin1Char(','))) setup.columns << s.trimmed();
  setup.matchedCompute = true;
  setup.models = models;
  CompareWorker worker;
  Plan out;
  QObject::connect(&worker, &CompareWorker::planned, [&out](qint64, const QVector<CompareCell>& cells) {
    for (const CompareCell& c : cells) out.steps << c.job.steps;
  });
  QObject::connect(&worker, &CompareWorker::failed, [&out](qint64, const QString& message) { out.failure = message; });
  worker.cancel(setup.id);  // remembered: the run stops before its first cell
  worker.run(setup);
  return out;
}

}  // namespace

class TestCompare : public QObject {
  Q_OBJECT

  QTemporaryDir m_dir;

private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QVERIFY(m_dir.isValid());
    qputenv("TESSERA_GALLERY", m_dir.filePath(QStringLiteral("gallery.db")).toLocal8Bit());
  }

  void evaluationsPerStepComeFromTheRegistry() {
    for (const std::string& name : samplerRegistry().names())
      QCOMPARE(evaluationsPerStep(QString::fromStdString(name)), samplerRegistry().find(name)->evaluationsPerStep);
    QCOMPARE(evaluationsPerStep(QStringLiteral("heun")), 2);
    QCOMPARE(evaluationsPerStep(QStringLiteral("sde-heun")), 2);
    QCOMPARE(evaluationsPerStep(QStringLiteral("euler")), 1);
    QCOMPARE(evaluationsPerStep(QStringLiteral("dpmpp-2m")), 1);
    QCOMPARE(evaluationsPerStep(QStringLiteral("DPM++2M")), 1);  // aliases too
    QCOMPARE(evaluationsPerStep(QStringLiteral("dopri5")), 0);   // adaptive
    QCOMPARE(evaluationsPerStep(QStringLiteral("no-such-sampler")), -1);
  }

  void matchedComputeCountsEachSamplersEvaluations() {
    const QVector<ModelInfo> models = scanModels({});
    const ModelInfo* sit = findModel(models, QStringLiteral("sit-fashion"));
    QVERIFY(sit);
    GenerationJob base;
    base.modelPath = sit->path;
    base.classes = {3};
    base.width = base.height = 28;
    base.seed = 4;
    base.batch = 1;
    base.cfg = 2.0;  // guidance doubles every cell's rows alike
    base.sampler = QStringLiteral("euler");
    base.steps = 12;

    Plan p = plan(base, QStringLiteral("euler, heun, sde-heun, sde-euler, dpmpp-2m, ddim"), models);
    QVERIFY2(p.failure.isEmpty(), qPrintable(p.failure));
    QCOMPARE(p.steps, (QVector<int>{12, 6, 6, 12, 12, 12}));

    base.sampler = QStringLiteral("sde-heun");  // a two-evaluation base doubles the one-evaluation cells
    base.steps = 10;
    p = plan(base, QStringLiteral("euler, heun, sde-heun"), models);
    QVERIFY2(p.failure.isEmpty(), qPrintable(p.failure));
    QCOMPARE(p.steps, (QVector<int>{20, 10, 10}));

    // An adaptive solver has no fixed cost per step: refused, on an axis or as the base.
    base.sampler = QStringLiteral("euler");
    p = plan(base, QStringLiteral("euler, dopri5"), models);
    QVERIFY(p.steps.isEmpty());
    QVERIFY2(p.failure.contains(QStringLiteral("dopri5")) && p.failure.contains(QStringLiteral("adaptive")),
             qPrintable(p.failure));
    base.sampler = QStringLiteral("dopri5");
    p = plan(base, QStringLiteral("euler, heun"), models);
    QVERIFY2(p.failure.contains(QStringLiteral("adaptive")), qPrintable(p.failure));
  }

  void defaultAxesPassTheirCheckAndRun() {
    MainWindow window;
    window.resize(1400, 900);
    window.show();
    QTRY_VERIFY_WITH_TIMEOUT(window.isReady(), 60000 * tessera::testing::timeScale());
    GeneratePanel* generate = window.generatePanel();
    QVERIFY(generate->selectModel(QStringLiteral("dit-fashion")));
    auto* classes = child<QListWidget>(generate, "classList");
    classes->clearSelection();
    classes->item(0)->setSelected(true);
    child<QSpinBox>(generate, "imageCount")->setValue(1);
    child<QSpinBox>(generate, "steps")->setValue(2);
    child<QDoubleSpinBox>(generate, "cfgScale")->setValue(1.0);

    ComparePanel* c = window.compare();
    const QString rows = child<QLineEdit>(c, "compareRowValues")->text();
    const QString columns = child<QLineEdit>(c, "compareColumnValues")->text();
    QVERIFY2(rows.contains(QStringLiteral("dit-fashion")), qPrintable(rows));
    // The default samplers: the registry's deterministic ones of fixed cost, by their names.
    QStringList samplers;
    QCOMPARE(parseAxisValues(CompareAxis::Sampler, columns, generate->models(), &samplers), QString());
    QVERIFY2(samplers.size() >= 4, qPrintable(columns));
    for (const QString& s : samplers) {
      const SamplerEntry* entry = samplerRegistry().find(s.toStdString());
      QVERIFY2(entry && entry->name == s.toStdString() && !entry->stochastic && !entry->adaptive(), qPrintable(s));
    }
    QVERIFY(samplers.contains(QStringLiteral("heun")) && samplers.contains(QStringLiteral("dpmpp-2m")));

    // Run as they are: every cell made.
    QSignalSpy done(c, &ComparePanel::runFinished);
    c->run();
    QVERIFY2(c->lastError().isEmpty(), qPrintable(c->lastError()));
    QVERIFY(c->isRunning());
    QVERIFY(done.wait(180000 * tessera::testing::timeScale()));
    QVERIFY2(done.front().front().toBool(), qPrintable(c->lastError()));
    QCOMPARE(c->grid()->columns(), static_cast<int>(samplers.size()));
    QCOMPARE(c->grid()->rows(), static_cast<int>(rows.split(QLatin1Char(',')).size()));
    for (int r = 0; r < c->grid()->rows(); ++r)
      for (int k = 0; k < c->grid()->columns(); ++k) {
        const CompareCell* cell = c->grid()->cell(r, k);
        QVERIFY(cell && cell->done);
        QVERIFY2(cell->error.isEmpty(), qPrintable(QStringLiteral("%1 × %2: %3").arg(r).arg(samplers[k], cell->error)));
        QVERIFY(!cell->image.isNull());
      }

    // With matched compute as well (an Euler base): the same defaults pass.
    auto* sampler = child<QComboBox>(generate, "samplerCombo");
    sampler->setCurrentIndex(sampler->findText(QString::fromStdString(samplerRegistry().find("euler")->name)));
    c->setMatchedCompute(true);
    done.clear();
    c->run();
    QVERIFY2(c->lastError().isEmpty(), qPrintable(c->lastError()));
    QVERIFY(done.wait(180000 * tessera::testing::timeScale()));
    QVERIFY2(done.front().front().toBool(), qPrintable(c->lastError()));
    const int heun = static_cast<int>(samplers.indexOf(QStringLiteral("heun")));
    const int euler = static_cast<int>(samplers.indexOf(QStringLiteral("euler")));
    QCOMPARE(c->grid()->cell(0, euler)->job.steps, 2);
    QCOMPARE(c->grid()->cell(0, heun)->job.steps, 1);

    // An adaptive solver on an axis with matched compute: refused before anything runs.
    c->setAxes(CompareAxis::Model, QStringLiteral("dit-fashion"), CompareAxis::Sampler,
               QStringLiteral("euler, dopri5"));
    c->run();
    QVERIFY(!c->isRunning());
    QVERIFY2(c->lastError().contains(QStringLiteral("adaptive")), qPrintable(c->lastError()));
    c->setMatchedCompute(false);
  }
};

TESSERA_TEST_MAIN(TestCompare, Gui)
#include "test_compare.moc"
