# SPDX-License-Identifier: Apache-2.0
set(TESSERA_PANEL_SOURCES system_page.cpp system_page.h)
