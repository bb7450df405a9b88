# SPDX-License-Identifier: Apache-2.0
set(TESSERA_PANEL_SOURCES compare_panel.cpp compare_panel.h)
