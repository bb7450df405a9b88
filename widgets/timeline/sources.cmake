# SPDX-License-Identifier: Apache-2.0
set(TESSERA_PANEL_SOURCES timeline_panel.cpp timeline_panel.h)
