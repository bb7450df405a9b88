// SPDX-License-Identifier: Apache-2.0
#include "widgets/panel.h"

namespace tessera {

#define TESSERA_PANEL(name) PanelDescriptor describePanel_##name();
#include "widgets/panels.def"
#undef TESSERA_PANEL

QString dockObjectName(const QString& id) {
  return id.isEmpty() ? QString() : QStringLiteral("dock") + id.front().toUpper() + id.mid(1);
}

std::vector<PanelDescriptor> panelDescriptors() {
  std::vector<PanelDescriptor> panels;
#define TESSERA_PANEL(name)                 \
  panels.push_back(describePanel_##name()); \
  panels.back().id = QStringLiteral(#name);
#include "widgets/panels.def"
#undef TESSERA_PANEL
  return panels;
}

}  // namespace tessera
