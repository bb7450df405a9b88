// SPDX-License-Identifier: Apache-2.0
#include "widgets/main_window/main_window.h"

#include "widgets/about/about_dialog.h"
#include "widgets/icons.h"
#include "widgets/main_window/system_page.h"
#include "widgets/preferences/preferences_dialog.h"
#include "widgets/settings.h"

#include <QApplication>
#include <QCloseEvent>
#include <QDockWidget>
#include <QLabel>
#include <QMenuBar>
#include <QSettings>
#include <QStatusBar>
#include <QtConcurrent/QtConcurrentRun>

namespace tessera {

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setWindowTitle(tr("Tessera"));
  setWindowIcon(tesseraIcon());
  setObjectName(QStringLiteral("MainWindow"));
  setDockOptions(QMainWindow::AnimatedDocks | QMainWindow::AllowNestedDocks | QMainWindow::AllowTabbedDocks);
  setDockNestingEnabled(true);

  m_systemPage = new SystemPage(this);
  setCentralWidget(m_systemPage);
  buildMenus();
  buildStatusBar();

  QSettings settings;
  if (!restoreGeometry(settings.value(settings::windowGeometry()).toByteArray())) resize(1280, 800);
  restoreState(settings.value(settings::windowState()).toByteArray());

  // The quick facts now; the throughput measurement (about 0.3 s) off the GUI thread.
  m_info = querySystemInfo(false);
  m_systemPage->setInfo(m_info);
  refreshStatus();
  connect(&m_infoWatcher, &QFutureWatcher<SystemInfo>::finished, this, &MainWindow::onSystemInfo);
  m_infoWatcher.setFuture(QtConcurrent::run([] { return querySystemInfo(true); }));
}

MainWindow::~MainWindow() { m_infoWatcher.waitForFinished(); }

void MainWindow::buildMenus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
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
  Q_EMIT ready();
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
