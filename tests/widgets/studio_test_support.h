// SPDX-License-Identifier: Apache-2.0
// Test helpers for the studio's GUI tests: widgets by object name, a Generate press that
// waits for the job to end, and screenshots into $TESSERA_SCREENSHOT_DIR.
#pragma once

#include "widgets/generate/generate_panel.h"
#include "widgets/main_window/main_window.h"

#include <QCoreApplication>
#include <QPushButton>
#include <QSignalSpy>
#include <QtTest>

namespace tessera::test {

template <class T>
T* child(QWidget* root, const char* name) {
  T* w = root->findChild<T*>(QString::fromLatin1(name));
  if (!w) qFatal("no widget named %s", name);
  return w;
}

/// Presses Generate and waits for the job to finish, fail or be cancelled.
inline bool generateAndWait(MainWindow& window, int timeoutMs = 120000) {
  QSignalSpy ended(&window, &MainWindow::generationEnded);
  QTest::mouseClick(child<QPushButton>(window.generatePanel(), "generateButton"), Qt::LeftButton);
  return ended.wait(timeoutMs) || ended.count() > 0;
}

/// Saves `w` as $TESSERA_SCREENSHOT_DIR/name when that variable is set; true otherwise too.
inline bool shoot(QWidget* w, const char* name) {
  const QByteArray dir = qgetenv("TESSERA_SCREENSHOT_DIR");
  if (dir.isEmpty()) return true;
  QCoreApplication::processEvents();
  return w->grab().save(QString::fromLocal8Bit(dir) + QLatin1Char('/') + QString::fromLatin1(name));
}

}  // namespace tessera::test
