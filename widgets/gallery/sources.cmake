# SPDX-License-Identifier: Apache-2.0
set(TESSERA_PANEL_SOURCES gallery_bench.cpp gallery_bench.h gallery_panel.cpp gallery_panel.h)
