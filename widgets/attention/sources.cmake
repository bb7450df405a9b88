# SPDX-License-Identifier: Apache-2.0
set(TESSERA_PANEL_SOURCES attention_panel.cpp attention_panel.h)
