// SPDX-License-Identifier: Apache-2.0
// InspectorPanel: the "live inspector" dock panel. A Qt header row (summary label and a
// Clear button) above an ImGui view (ImGuiWidget subclass) that draws, from the
// bounded InspectorHistory of the newest job: step time, guidance difference and one
// block's std per step, the newest latent histogram, time per block, and a table of the
// newest step's blocks with a std sparkline each. addStep() only appends and schedules
// a coalesced redraw; plots use at most 512 points whatever the history length. The
// panel "collects" while it is shown, so the main window attaches the probe only when
// someone looks.
#pragma once

#include "widgets/inspector/inspector_data.h"

#include <QTimer>
#include <QWidget>

class QLabel;
class QPushButton;

namespace tessera {

class ImGuiWidget;
class InspectorView;  // the ImGui view, private to inspector_panel.cpp

/// Empty when an OpenGL context can be made here, else why not (checked once).
QString openGLProblem();

class InspectorPanel : public QWidget {
  Q_OBJECT
public:
  /// Steps kept (the newest of the newest job).
  static constexpr std::size_t kHistoryCapacity = 2000;

  explicit InspectorPanel(QWidget* parent = nullptr);
  ~InspectorPanel() override;

  const InspectorHistory& history() const { return m_history; }
  /// The ImGui view; null where OpenGL is not available (see openGLProblem()).
  ImGuiWidget* view() const;
  /// True while the panel is on screen (a tabbed-away or closed dock is not).
  bool isCollecting() const { return isVisible() && !visibleRegion().isEmpty(); }
  /// The header row's text for the current history ("job 12 · step 34/50 · 6 blocks").
  QString summaryText() const;

public Q_SLOTS:
  /// Appends one step (a new job clears the history first) and schedules a redraw.
  void addStep(const tessera::InspectorStep& step);
  /// Forgets every step.
  void clear();

private:
  void refreshSummary();

  InspectorHistory m_history{kHistoryCapacity};
  InspectorView* m_view = nullptr;
  QLabel* m_summary = nullptr;
  QPushButton* m_clear = nullptr;
  QTimer m_summaryTimer;  ///< coalesces label updates (addStep may come fast)
};

}  // namespace tessera
