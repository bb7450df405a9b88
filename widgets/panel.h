// SPDX-License-Identifier: Apache-2.0
// The studio's dock panels register through widgets/panels.def: one line per panel,
// TESSERA_PANEL(name), where widgets/<name>/ holds the panel (its sources listed in
// widgets/<name>/sources.cmake) and defines `PanelDescriptor describePanel_<name>()`.
// The main window docks them in that order, so adding a panel is one folder plus one
// line there.
#pragma once

#include <QString>
#include <Qt>

#include <functional>
#include <vector>

class QWidget;

namespace tessera {

class TrainingJobs;

/// What a panel's factory may use: the window's shared services.
struct PanelContext {
  QWidget* parent = nullptr;             ///< the main window: every panel's parent
  TrainingJobs* trainingJobs = nullptr;  ///< the studio's training jobs (opened once the gallery is)
};

/// One dock panel: where it docks in the default layout and how it is made.
struct PanelDescriptor {
  /// The name in panels.def (filled in by panelDescriptors()). The dock's object name,
  /// which saved layouts are restored by, is made from it: see dockObjectName().
  QString id;
  QString title;  ///< the dock's title and its entry in View ▸ Panels
  Qt::DockWidgetArea area = Qt::RightDockWidgetArea;
  /// The id of an earlier panel whose dock this one joins as a tab; that panel's tab is
  /// the one shown in the default layout. Empty: a dock of its own.
  QString tabbedWith;
  /// Width (left, right) or height (top, bottom) in the default layout; 0: Qt's choice.
  int defaultExtent = 0;
  /// Makes the panel's widget, parented to context.parent.
  std::function<QWidget*(const PanelContext& context)> create;
};

/// "gallery" → "dockGallery".
QString dockObjectName(const QString& id);

/// Every panel in widgets/panels.def, in its order (View ▸ Panels lists them so).
std::vector<PanelDescriptor> panelDescriptors();

}  // namespace tessera
