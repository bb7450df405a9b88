# SPDX-License-Identifier: Apache-2.0
set(TESSERA_PANEL_SOURCES new_job_dialog.cpp new_job_dialog.h training_jobs.cpp training_jobs.h training_panel.cpp training_panel.h)
