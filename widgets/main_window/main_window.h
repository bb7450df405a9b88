// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <QFutureWatcher>
#include <QMainWindow>

#include "core/system/system_info.h"

class QDockWidget;
class QLabel;
class QMenu;

namespace tessera {

class SystemPage;

/// The studio's main window: menus, dock areas for panels, a status bar with the
/// compute facts (LibTorch version, threads, device, BLAS kernel), and persisted
/// geometry. Panels register with addPanel() and appear in the View menu.
class MainWindow final : public QMainWindow {
  Q_OBJECT
  Q_DISABLE_COPY_MOVE(MainWindow)

public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  /// Docks `panel` in `area` and lists it in the View menu.
  void addPanel(QDockWidget* panel, Qt::DockWidgetArea area);
  /// True once the start-up work (system facts, BLAS measurement) has finished.
  bool isReady() const { return m_ready; }
  const SystemInfo& systemInfo() const { return m_info; }

Q_SIGNALS:
  /// Everything shown at start-up is loaded: the window is worth a screenshot.
  void ready();

public Q_SLOTS:
  void showAbout();
  void showPreferences();

protected:
  void closeEvent(QCloseEvent* event) override;

private:
  void buildMenus();
  void buildStatusBar();
  void refreshStatus();
  void onSystemInfo();

  QMenu* m_panelsMenu = nullptr;
  QLabel* m_torchLabel = nullptr;
  QLabel* m_threadsLabel = nullptr;
  QLabel* m_deviceLabel = nullptr;
  QLabel* m_blasLabel = nullptr;
  SystemPage* m_systemPage = nullptr;
  QFutureWatcher<SystemInfo> m_infoWatcher;
  SystemInfo m_info;
  bool m_ready = false;
};

}  // namespace tessera
