# SPDX-License-Identifier: Apache-2.0
set(TESSERA_PANEL_SOURCES aspect_histogram.cpp aspect_histogram.h generate_panel.cpp generate_panel.h)
