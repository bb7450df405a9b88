// SPDX-License-Identifier: Apache-2.0
#include "widgets/main_window/main_window.h"

#include "widgets/import/import_dialog.h"

#include "widgets/about/about_dialog.h"
#include "widgets/attention/attention_panel.h"
#include "widgets/canvas/image_canvas.h"
#include "widgets/compare/compare_panel.h"
#include "widgets/gallery/gallery_panel.h"
#include "widgets/generate/generate_panel.h"
#include "widgets/icons.h"
#include "widgets/inspector/inspector_panel.h"
#include "widgets/panel.h"
#include "widgets/preferences/preferences_dialog.h"
#include "widgets/settings.h"
#include "widgets/system/system_page.h"
#include "widgets/timeline/timeline_panel.h"
#include "widgets/training/training_jobs.h"
#include "widgets/training/training_panel.h"

#include <QApplication>
#include <QCloseEvent>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QFileInfo>
#include <QHash>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QMenuBar>
#include <QMimeData>
#include <QSettings>
#include <QStatusBar>
#include <QTimer>
#include <QtConcurrent/QtConcurrentRun>

namespace tessera {

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setWindowTitle(tr("Tessera"));
  setWindowIcon(tesseraIcon());
  setObjectName(QStringLiteral("MainWindow"));
  setDockOptions(QMainWindow::AnimatedDocks | QMainWindow::AllowNestedDocks | QMainWindow::AllowTabbedDocks);
  setDockNestingEnabled(true);

  buildMenus();
  buildStatusBar();
  buildStudio();
  setAcceptDrops(true);

  QSettings settings;
  if (!restoreGeometry(settings.value(settings::windowGeometry()).toByteArray())) resize(1280, 800);
  // The default layout once the window has its size; a saved layout wins.
  if (!restoreState(settings.value(settings::windowState()).toByteArray())) QTimer::singleShot(0, this, m_defaultDocks);

  // The quick facts now; the throughput measurement (about 0.3 s) off the GUI thread.
  m_info = querySystemInfo(false);
  m_systemPage->setInfo(m_info);
  refreshStatus();
  connect(&m_infoWatcher, &QFutureWatcher<SystemInfo>::finished, this, &MainWindow::onSystemInfo);
  m_infoWatcher.setFuture(QtConcurrent::run([] { return querySystemInfo(true); }));
}

MainWindow::~MainWindow() {
  if (m_running) m_worker->cancel(m_jobId);
  m_workerThread.quit();
  m_workerThread.wait();
  if (m_gallery) m_gallery->waitForWrites();
  m_infoWatcher.waitForFinished();
}

namespace {

/// The panel of `docks[id]`, for the studio's wiring, which needs it: a missing line in
/// widgets/panels.def is a build mistake, not a condition to run with.
template <class T>
T* studioPanel(const QHash<QString, QDockWidget*>& docks, const char* id) {
  QDockWidget* dock = docks.value(QLatin1String(id));
  T* panel = dock ? dock->findChild<T*>() : nullptr;
  if (!panel) qFatal("the studio needs the '%s' panel (widgets/panels.def)", id);
  return panel;
}

}  // namespace

void MainWindow::buildStudio() {
  m_canvas = new ImageCanvas(this);
  setCentralWidget(m_canvas);
  m_trainingJobs = new TrainingJobs(this);

  // Every panel of widgets/panels.def, docked in its order; a tab group shows its first
  // panel on top.
  const PanelContext context{this, m_trainingJobs};
  QHash<QString, QDockWidget*> docks;
  QList<QDockWidget*> tabHeads, wide, tall;
  QList<int> widths, heights;
  for (const PanelDescriptor& p : panelDescriptors()) {
    auto* dock = new QDockWidget(p.title, this);
    dock->setObjectName(dockObjectName(p.id));
    dock->setWidget(p.create(context));
    addPanel(dock, p.area);
    if (!p.tabbedWith.isEmpty()) {
      QDockWidget* head = docks.value(p.tabbedWith);
      if (!head)
        qFatal("panel '%s' is tabbed with '%s', which is not listed before it in widgets/panels.def", qPrintable(p.id),
               qPrintable(p.tabbedWith));
      tabifyDockWidget(head, dock);
      if (!tabHeads.contains(head)) tabHeads << head;
    }
    if (p.defaultExtent > 0) {
      const bool sides = p.area == Qt::LeftDockWidgetArea || p.area == Qt::RightDockWidgetArea;
      (sides ? wide : tall) << dock;
      (sides ? widths : heights) << p.defaultExtent;
    }
    docks.insert(p.id, dock);
  }
  for (QDockWidget* head : tabHeads) head->raise();
  setCorner(Qt::BottomLeftCorner, Qt::LeftDockWidgetArea);
  setCorner(Qt::BottomRightCorner, Qt::RightDockWidgetArea);
  m_defaultDocks = [this, wide, widths, tall, heights] {
    resizeDocks(wide, widths, Qt::Horizontal);
    resizeDocks(tall, heights, Qt::Vertical);
  };

  // The studio's generation flow runs through these panels; the wiring below connects
  // them to the worker and to each other.
  m_generate = studioPanel<GeneratePanel>(docks, "generate");
  m_timeline = studioPanel<TimelinePanel>(docks, "timeline");
  m_inspector = studioPanel<InspectorPanel>(docks, "inspector");
  m_training = studioPanel<TrainingPanel>(docks, "training");
  m_gallery = studioPanel<GalleryPanel>(docks, "gallery");
  m_systemPage = studioPanel<SystemPage>(docks, "system");
  m_attention = studioPanel<AttentionPanel>(docks, "attention");
  m_compare = studioPanel<ComparePanel>(docks, "compare");

  m_worker = new GenerationWorker;
  m_worker->moveToThread(&m_workerThread);
  connect(&m_workerThread, &QThread::finished, m_worker, &QObject::deleteLater);
  m_workerThread.setObjectName(QStringLiteral("generation"));
  m_workerThread.start();

  if (const QString error = m_gallery->open(defaultGalleryPath()); !error.isEmpty()) {
    m_lastError = error;
    statusBar()->showMessage(tr("Gallery unavailable: %1").arg(error));
  }

  if (const QString error = m_trainingJobs->open(m_gallery->model()->path()); !error.isEmpty())
    statusBar()->showMessage(tr("Training jobs unavailable: %1").arg(error));
  m_training->setModelsProvider([this] { return m_generate->models(); });
  connect(m_trainingJobs, &TrainingJobs::modelReady, this, [this](qint64, const QString& path) {
    statusBar()->showMessage(tr("A training job finished: %1 is in the model picker").arg(QFileInfo(path).fileName()), 8000);
    m_generate->refreshModels();
  });
  connect(m_training, &TrainingPanel::useModelRequested, this, [this](const QString& path) {
    if (m_generate->selectModel(path)) {
      if (auto* dock = findChild<QDockWidget*>(QStringLiteral("dockGenerate"))) dock->raise();
    } else {
      statusBar()->showMessage(tr("%1 is not in the model list yet").arg(path), 5000);
    }
  });

  connect(m_generate, &GeneratePanel::generateRequested, this, [this](const GenerationJob& job) { startJob(job); });
  m_compare->setGalleryPath(m_gallery->model()->path());
  m_compare->setBaseProvider([this] {
    GenerationJob base = m_generate->captureJob();
    base.classes = {base.classes.value(0)};
    base.sizes.clear();
    base.batch = 1;
    return base;
  });
  connect(m_compare, &ComparePanel::openRequested, this, [this](const GenerationJob& job) {
    // The cell becomes the studio's current image (already in the gallery: not stored again).
    if (auto* dock = findChild<QDockWidget*>(QStringLiteral("dockTimeline"))) dock->raise();
    startJob(job, false);
  });
  connect(m_compare, &ComparePanel::runFinished, m_gallery, &GalleryPanel::refresh);
  connect(m_generate, &GeneratePanel::cancelRequested, this, [this] {
    if (m_running) m_worker->cancel(m_jobId);
  });
  connect(m_generate, &GeneratePanel::modelsLoaded, this, [this] {
    m_compare->setModels(m_generate->models());
    m_modelsReady = true;
    maybeReady();
  });
  connect(m_generate, &GeneratePanel::guidanceIntervalChanged, this, [this](double lo, double hi) {
    m_timeline->plot()->setInterval(lo, hi, true);
  });
  connect(m_timeline, &TimelinePanel::intervalDragged, m_generate, &GeneratePanel::setGuidanceInterval);
  // A latent model's step the user stops on is decoded in full by the worker (after any running job).
  connect(m_timeline, &TimelinePanel::fullDecodeWanted, this, [this](int image, int step) {
    QMetaObject::invokeMethod(
        m_worker, [worker = m_worker, id = m_jobId, image, step] { worker->decodeStep(id, image, step); },
        Qt::QueuedConnection);
  });
  connect(m_canvas, &ImageCanvas::currentChanged, m_timeline, &TimelinePanel::setImage);
  connect(m_canvas, &ImageCanvas::currentChanged, this, &MainWindow::updateInspectionSource);
  connect(m_canvas, &ImageCanvas::pixelHovered, this, [this](const QString& text) {
    if (!text.isEmpty()) statusBar()->showMessage(text, 3000);
  });
  connect(m_gallery, &GalleryPanel::reproduceRequested, this, [this](const QByteArray& settings) {
    const QString missing = m_generate->applySettings(QJsonDocument::fromJson(settings).object());
    statusBar()->showMessage(missing.isEmpty() ? tr("Settings restored: Generate makes the same image")
                                               : tr("Restored, except: %1").arg(missing));
  });
  connect(m_gallery, &GalleryPanel::showRequested, this, [this](const QImage& image, const QByteArray& png) {
    m_canvas->clear(1);
    m_canvas->setImage(0, image, png);
    updateInspectionSource(0);
  });

  connect(m_worker, &GenerationWorker::started, this, [this](qint64 id, int images, int steps, const NoiseLevels& levels) {
    if (id != m_jobId) return;
    m_jobSteps = steps;
    m_timeline->start(images, steps, levels, m_job.cfg, m_job.cfgLow, m_job.cfgHigh);
  });
  connect(m_worker, &GenerationWorker::stepped, this, [this](qint64 id, int step, const QVector<StepFrame>& frames) {
    if (id != m_jobId) return;
    m_timeline->addFrames(step, frames);
    if (step > 0) m_generate->setProgress(++m_stepsDone, m_jobSteps * m_jobBatches);
  });
  connect(m_worker, &GenerationWorker::stepDecoded, this,
          [this](qint64 id, int image, int step, const QImage& picture) {
            if (id == m_jobId) m_timeline->setDecodedFrame(image, step, picture);
          });
  connect(m_worker, &GenerationWorker::inspected, this, [this](qint64 id, const InspectorStep& step) {
    if (id == m_jobId) m_inspector->addStep(step);
  });
  connect(m_worker, &GenerationWorker::imageReady, this, [this](qint64 id, int index, const QImage& image, const QByteArray& png, qint64) {
    if (id != m_jobId) return;
    m_canvas->setImage(index, image, png);
    if (index == std::max(0, m_canvas->current())) updateInspectionSource(index);
  });
  connect(m_worker, &GenerationWorker::finished, this, [this](qint64 id, bool cancelled, double seconds, const QString& summary) {
    if (id != m_jobId) return;
    m_lastSummary = summary;
    statusBar()->showMessage((cancelled ? tr("Cancelled: %1") : tr("Done: %1")).arg(summary) + tr(" (%1 s in all)").arg(seconds, 0, 'f', 1));
    endJob();
  });
  connect(m_worker, &GenerationWorker::failed, this, [this](qint64 id, const QString& message) {
    if (id != m_jobId) return;
    m_lastError = message;
    statusBar()->showMessage(tr("Generation failed: %1").arg(message));
    endJob();
  });
}

void MainWindow::startJob(GenerationJob job, bool store) {
  if (m_running) return;
  job.id = ++m_jobId;
  job.galleryPath = store ? m_gallery->model()->path() : QString();
  job.inspect = m_inspector->isCollecting();  // the probe rides along only while someone looks
  m_job = job;
  m_running = true;
  m_lastError.clear();
  m_stepsDone = 0;
  m_jobBatches = std::max(1, (static_cast<int>(job.classes.size()) + job.batch - 1) / std::max(1, job.batch));
  m_generate->setRunning(true);
  m_generate->setProgress(0, 1);
  m_canvas->clear(static_cast<int>(job.classes.size()));
  m_timeline->plot()->setInterval(job.cfgLow, job.cfgHigh, job.cfg != 1.0);
  statusBar()->showMessage(tr("Generating %n image(s)…", nullptr, static_cast<int>(job.classes.size())));
  QMetaObject::invokeMethod(m_worker, [worker = m_worker, job] { worker->run(job); }, Qt::QueuedConnection);
}

void MainWindow::endJob() {
  m_running = false;
  m_generate->setRunning(false);
  m_gallery->refresh();
  Q_EMIT generationEnded();
}

void MainWindow::updateInspectionSource(int index) {
  const QByteArray png = m_canvas->png(index);
  if (png.isEmpty()) return;
  const QByteArray settings = QImage::fromData(png, "PNG").text(QStringLiteral("tessera")).toUtf8();
  QString problem;
  const GenerationJob job = jobFromSettings(settings, m_generate->models(), &problem);
  if (!problem.isEmpty()) {
    m_attention->clearSource(tr("This image cannot be inspected: %1.").arg(problem));
    return;
  }
  const ModelInfo* model = nullptr;
  for (const ModelInfo& m : m_generate->models())
    if (m.path == job.modelPath) model = &m;
  if (!model) return;
  const QJsonObject image = QJsonDocument::fromJson(settings).object().value(QStringLiteral("image")).toObject();
  const QString title = tr("<b>%1</b> · %2×%3 · seed %4 · %5, %6 steps, CFG %7 · %8")
                            .arg(image.value(QStringLiteral("class_name")).toString(), QString::number(job.width), QString::number(job.height))
                            .arg(job.seed)
                            .arg(job.sampler)
                            .arg(job.steps)
                            .arg(job.cfg)
                            .arg(model->name);
  m_attention->setSource(job, *model, title);
}

void MainWindow::maybeReady() {
  if (isReady()) Q_EMIT ready();
}

QString MainWindow::openImage(const QString& path) {
  const QByteArray settings = pngSettings(path);
  if (settings.isEmpty()) return tr("%1 carries no Tessera settings (it was not made by Tessera, or they were stripped)").arg(path);
  const QJsonDocument doc = QJsonDocument::fromJson(settings);
  if (!doc.isObject()) return tr("%1: its Tessera settings are not valid JSON").arg(path);
  const QString missing = m_generate->applySettings(doc.object());
  QImage image(path);
  QFile file(path);
  QByteArray png;
  if (file.open(QIODevice::ReadOnly)) png = file.readAll();
  m_canvas->clear(1);
  m_canvas->setImage(0, image, png);
  updateInspectionSource(0);
  statusBar()->showMessage(missing.isEmpty() ? tr("Settings of %1 restored").arg(QFileInfo(path).fileName())
                                             : tr("Restored, except: %1").arg(missing));
  return missing;
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  if (event->mimeData()->hasUrls()) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
  static const QStringList checkpoints{QStringLiteral("pt"), QStringLiteral("pth"), QStringLiteral("ckpt"),
                                       QStringLiteral("safetensors"), QStringLiteral("bin")};
  for (const QUrl& url : event->mimeData()->urls()) {
    if (!url.isLocalFile()) continue;
    if (checkpoints.contains(QFileInfo(url.toLocalFile()).suffix().toLower())) {
      showImport(url.toLocalFile());
      event->acceptProposedAction();
      return;
    }
    const QString problem = openImage(url.toLocalFile());
    if (!problem.isEmpty()) statusBar()->showMessage(problem);
    event->acceptProposedAction();
    return;
  }
}

void MainWindow::buildMenus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  QAction* import = file->addAction(tr("&Import…"), this, [this] { showImport(); });
  import->setObjectName(QStringLiteral("actionImport"));
  import->setShortcut(QKeySequence(tr("Ctrl+I")));
  import->setToolTip(tr("Convert an official checkpoint (DiT, SiT, FiT, NiT, or an autoencoder) into a model"));
  file->addSeparator();
  QAction* prefs = file->addAction(tr("&Preferences…"), this, &MainWindow::showPreferences);
  prefs->setObjectName(QStringLiteral("actionPreferences"));
  prefs->setShortcut(QKeySequence::Preferences);
  prefs->setMenuRole(QAction::PreferencesRole);
  file->addSeparator();
  QAction* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
  quit->setShortcut(QKeySequence::Quit);
  quit->setMenuRole(QAction::QuitRole);

  QMenu* view = menuBar()->addMenu(tr("&View"));
  m_panelsMenu = view->addMenu(tr("&Panels"));
  m_panelsMenu->setObjectName(QStringLiteral("menuPanels"));
  m_panelsMenu->setEnabled(false);  // enabled by the first addPanel()
  QAction* full = view->addAction(tr("&Full Screen"));
  full->setCheckable(true);
  full->setShortcut(QKeySequence::FullScreen);
  connect(full, &QAction::toggled, this, [this](bool on) { on ? showFullScreen() : showNormal(); });

  QMenu* help = menuBar()->addMenu(tr("&Help"));
  QAction* about = help->addAction(tr("&About Tessera"), this, &MainWindow::showAbout);
  about->setObjectName(QStringLiteral("actionAbout"));
  about->setMenuRole(QAction::AboutRole);
  help->addAction(tr("About &Qt"), qApp, &QApplication::aboutQt)->setMenuRole(QAction::AboutQtRole);
}

void MainWindow::buildStatusBar() {
  auto make = [this](const char* name) {
    auto* label = new QLabel(this);
    label->setObjectName(QString::fromLatin1(name));
    label->setContentsMargins(8, 0, 8, 0);
    statusBar()->addPermanentWidget(label);
    return label;
  };
  m_torchLabel = make("statusTorch");
  m_threadsLabel = make("statusThreads");
  m_deviceLabel = make("statusDevice");
  m_blasLabel = make("statusBlas");
  statusBar()->showMessage(tr("Ready"));
}

void MainWindow::refreshStatus() {
  m_torchLabel->setText(tr("LibTorch %1").arg(QString::fromStdString(m_info.torchVersion)));
  m_threadsLabel->setText(tr("%n thread(s)", nullptr, m_info.intraOpThreads));
  m_deviceLabel->setText(QString::fromStdString(m_info.device));
  QString blas = m_info.blasKernel.empty() ? tr("BLAS: not OpenBLAS") : tr("BLAS %1").arg(QString::fromStdString(m_info.blasKernel));
  if (m_info.gemmGflops >= 0) blas += tr(" · %1 GFLOP/s").arg(m_info.gemmGflops, 0, 'f', 0);
  m_blasLabel->setText(blas);
  m_blasLabel->setToolTip(m_info.blasWarning.empty() ? tr("OpenBLAS kernel %1, chosen by %2")
                                                           .arg(QString::fromStdString(m_info.blasKernel),
                                                                QString::fromStdString(m_info.blasKernelSource))
                                                     : QString::fromStdString(m_info.blasWarning));
}

void MainWindow::onSystemInfo() {
  m_info = m_infoWatcher.result();
  m_systemPage->setInfo(m_info);
  refreshStatus();
  if (!m_info.blasWarning.empty()) statusBar()->showMessage(QString::fromStdString(m_info.blasWarning));
  m_ready = true;
  maybeReady();
}

void MainWindow::addPanel(QDockWidget* panel, Qt::DockWidgetArea area) {
  Q_ASSERT(!panel->objectName().isEmpty());  // saveState() needs it
  addDockWidget(area, panel);
  m_panelsMenu->addAction(panel->toggleViewAction());
  m_panelsMenu->setEnabled(true);
}

void MainWindow::showAbout() {
  AboutDialog dialog(m_info, this);
  dialog.exec();
}

ImportDialog* MainWindow::showImport(const QString& file) {
  auto* dialog = new ImportDialog(file, this);
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  connect(dialog, &ImportDialog::imported, this, [this](const QString& path) {
    m_generate->refreshModels(path);
    statusBar()->showMessage(tr("Imported %1").arg(QFileInfo(path).fileName()));
  });
  dialog->show();
  return dialog;
}

void MainWindow::showPreferences() {
  PreferencesDialog dialog(this);
  if (dialog.exec() == QDialog::Accepted) {
    m_info.intraOpThreads = settings::threadCount();
    m_systemPage->setInfo(m_info);
    refreshStatus();
  }
}

void MainWindow::closeEvent(QCloseEvent* event) {
  QSettings settings;
  settings.setValue(settings::windowGeometry(), saveGeometry());
  settings.setValue(settings::windowState(), saveState());
  event->accept();
}

}  // namespace tessera
