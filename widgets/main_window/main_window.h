// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <QFutureWatcher>
#include <QMainWindow>

#include "core/system/system_info.h"
#include "widgets/studio/studio_service.h"

#include <QElapsedTimer>
#include <QThread>

#include <functional>

class QDockWidget;
class QLabel;
class QMenu;

namespace tessera {

class SystemPage;
class GeneratePanel;
class ImageCanvas;
class TimelinePanel;
class GalleryPanel;
class GenerationWorker;
class AttentionPanel;
class InspectorPanel;
class ComparePanel;
class TrainingJobs;
class TrainingPanel;

/// The studio's main window: menus, dock areas for panels, a status bar with the
/// compute facts (LibTorch version, threads, device, BLAS kernel), and persisted
/// geometry. It docks every panel of widgets/panels.def (widgets/panel.h), in that
/// order, and connects the ones the generation flow runs through; addPanel() docks
/// more. Every dock is listed in View ▸ Panels.
class MainWindow final : public QMainWindow {
  Q_OBJECT
  Q_DISABLE_COPY_MOVE(MainWindow)

public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  /// Docks `panel` in `area` and lists it in the View menu.
  void addPanel(QDockWidget* panel, Qt::DockWidgetArea area);
  /// True once the start-up work (system facts, BLAS measurement, model list) has finished.
  bool isReady() const { return m_ready && m_modelsReady; }
  const SystemInfo& systemInfo() const { return m_info; }

  GeneratePanel* generatePanel() const { return m_generate; }
  ImageCanvas* canvas() const { return m_canvas; }
  TimelinePanel* timeline() const { return m_timeline; }
  GalleryPanel* gallery() const { return m_gallery; }
  AttentionPanel* attention() const { return m_attention; }
  InspectorPanel* inspector() const { return m_inspector; }
  ComparePanel* compare() const { return m_compare; }
  TrainingPanel* training() const { return m_training; }
  TrainingJobs* trainingJobs() const { return m_trainingJobs; }
  bool isGenerating() const { return m_running; }
  QString lastError() const { return m_lastError; }
  QString lastSummary() const { return m_lastSummary; }
  /// Puts a Tessera PNG's settings into the Generate panel and shows the image; returns
  /// the problem, if any.
  QString openImage(const QString& path);
  /// File ▸ Import…: the import dialog, starting from `file` (a dropped checkpoint) when
  /// given; non-modal, so the studio stays usable while a large checkpoint converts.
  /// The imported model is selected in the Generate panel.
  class ImportDialog* showImport(const QString& file = QString());

Q_SIGNALS:
  /// Everything shown at start-up is loaded: the window is worth a screenshot.
  void ready();
  /// A generation ended (finished, cancelled or failed).
  void generationEnded();

public Q_SLOTS:
  void showAbout();
  void showPreferences();

protected:
  void closeEvent(QCloseEvent* event) override;
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

private:
  void buildMenus();
  void buildStatusBar();
  void refreshStatus();
  void onSystemInfo();
  void buildStudio();
  /// Runs a generation job; `store`: write its images to the gallery.
  void startJob(GenerationJob job, bool store = true);
  void endJob();
  void maybeReady();
  /// Points the inspection panels at canvas image `index` (its PNG settings).
  void updateInspectionSource(int index);

  QMenu* m_panelsMenu = nullptr;
  QLabel* m_torchLabel = nullptr;
  QLabel* m_threadsLabel = nullptr;
  QLabel* m_deviceLabel = nullptr;
  QLabel* m_blasLabel = nullptr;
  SystemPage* m_systemPage = nullptr;
  QFutureWatcher<SystemInfo> m_infoWatcher;
  SystemInfo m_info;
  bool m_ready = false;
  bool m_modelsReady = false;

  GeneratePanel* m_generate = nullptr;
  ImageCanvas* m_canvas = nullptr;
  TimelinePanel* m_timeline = nullptr;
  GalleryPanel* m_gallery = nullptr;
  AttentionPanel* m_attention = nullptr;
  InspectorPanel* m_inspector = nullptr;
  ComparePanel* m_compare = nullptr;
  TrainingJobs* m_trainingJobs = nullptr;
  TrainingPanel* m_training = nullptr;
  QThread m_workerThread;
  GenerationWorker* m_worker = nullptr;
  qint64 m_jobId = 0;
  GenerationJob m_job;
  std::function<void()> m_defaultDocks;  ///< what the running (or last) job asked for
  bool m_running = false;
  int m_jobSteps = 0, m_jobBatches = 1, m_stepsDone = 0;
  QString m_lastError, m_lastSummary;
};

}  // namespace tessera
