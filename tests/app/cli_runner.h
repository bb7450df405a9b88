// SPDX-License-Identifier: Apache-2.0
// Runs tessera-cli for the CLI tests and reads what it printed.
#pragma once

#include <QJsonDocument>
#include <QJsonObject>
#include <QMap>
#include <QProcess>
#include <QString>
#include <QStringList>

#include "tests/support/test_main.h"

namespace tessera::test {

struct Run {
  int code = -1;
  QByteArray out;
  QByteArray err;
};

inline Run cli(const QStringList& args, const QMap<QString, QString>& env = {}, const QStringList& unset = {},
               int timeoutMs = 120000) {
  QProcess p;
  QProcessEnvironment e = QProcessEnvironment::systemEnvironment();
  // Already what the program would set for itself: no re-execution (about 0.4 s a call)
  // unless a test removes it to watch that happen.
  if (!e.contains(QStringLiteral("OMP_WAIT_POLICY"))) e.insert(QStringLiteral("OMP_WAIT_POLICY"), QStringLiteral("PASSIVE"));
  for (const auto& k : unset) e.remove(k);
  for (auto it = env.begin(); it != env.end(); ++it) e.insert(it.key(), it.value());
  p.setProcessEnvironment(e);
  p.start(QStringLiteral(TESSERA_CLI), args);
  if (!p.waitForFinished(timeoutMs * tessera::testing::timeScale())) return {};
  return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2, p.readAllStandardOutput(), p.readAllStandardError()};
}

inline QString data(const char* name) { return QStringLiteral(TESSERA_TEST_DATA_DIR "/") + QString::fromUtf8(name); }

inline QJsonObject json(const QByteArray& text) {
  QJsonParseError e{};
  auto doc = QJsonDocument::fromJson(text, &e);
  return doc.object();
}


}  // namespace tessera::test
