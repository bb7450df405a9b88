# SPDX-License-Identifier: Apache-2.0
set(TESSERA_PANEL_SOURCES imgui_widget.cpp imgui_widget.h inspector_data.h inspector_panel.cpp inspector_panel.h)
