// SPDX-License-Identifier: Apache-2.0
// Fault injection (label `slow`, minutes): `train` killed with SIGKILL at 100 random
// moments, each time resumed. Every resume starts from the newest complete checkpoint, and
// the whole interrupted run reproduces the uninterrupted run exactly: every step's loss
// and the final weights, bit for bit.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "cli_runner.h"
#include "core/formats/safetensors.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QElapsedTimer>
#include <QRandomGenerator>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#endif

using namespace tessera;

namespace fault_injection {  // named: the unity build shares anonymous namespaces between test files

nlohmann::json config(std::int64_t steps) {
  return {{"model",
           {{"backbone", "dit"},
            {"config", {{"patch_size", 4}, {"hidden_size", 32}, {"depth", 2}, {"num_heads", 2}}},
            {"process", {{"kind", "gaussian_diffusion"}, {"learn_sigma", true}}}}},
          {"data", {{"source", "fashion-mnist"}, {"batch", 8}, {"size", {28, 28}}, {"validation", 16}}},
          // A constant learning rate: the run length changes nothing before the end, so an
          // uninterrupted run of any length is the reference for the steps they share.
          {"train", {{"steps", steps}, {"lr", 1e-3}, {"ema", 0.9}, {"limit", 256}, {"seed", 3}}},
          {"log", {{"every", 1}}},
          {"checkpoint", {{"every", 1}, {"keep", 2}}},  // a save after every step: kills land inside saves
          {"validation", {{"every", 0}}},
          {"samples", {{"every", 0}}}};
}

QString writeConfig(const QTemporaryDir& dir, const QString& name, const nlohmann::json& c) {
  const QString path = dir.filePath(name);
  std::ofstream(path.toStdString()) << c.dump(2);
  return path;
}

/// The newest checkpoint that opens, by step (-1: none).
std::int64_t newestCompleteCheckpoint(const std::string& run) {
  std::int64_t newest = -1;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(run + "/checkpoints", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step_", 0) != 0 || name.size() != 25 || name.find(".tmp") != std::string::npos) continue;
    if (!SafetensorsFile::open(e.path().string())) continue;
    newest = std::max(newest, static_cast<std::int64_t>(std::stoll(name.substr(5, 8))));
  }
  return newest;
}

/// Every JSON line of a run's output.
std::vector<nlohmann::json> events(const QByteArray& out) {
  std::vector<nlohmann::json> e;
  for (const QByteArray& line : out.split('\n')) {
    const auto j = nlohmann::json::parse(line.toStdString(), nullptr, false);
    if (j.is_object()) e.push_back(j);
  }
  return e;
}

QStringList trainArgs(const QString& cfg, const QString& out, bool resume) {
  QStringList a{QStringLiteral("--threads"),
                QStringLiteral("1"),
                QStringLiteral("train"),
                QStringLiteral("--config"),
                cfg,
                QStringLiteral("--out"),
                out};
  if (resume) a << QStringLiteral("--resume");
  return a;
}

}  // namespace fault_injection

namespace fi = fault_injection;

class TestFaultInjection : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void killedTrainingResumesExactly() {
    QTemporaryDir dir;
    const QString out = dir.filePath(QStringLiteral("run"));
    const QString cfg = fi::writeConfig(dir, QStringLiteral("long.json"), fi::config(100000));
    std::map<std::int64_t, double> losses;  // step -> last_loss, over every attempt
    auto* rng = QRandomGenerator::global();
    int resumedFromNewest = 0;
    QElapsedTimer clock;
    clock.start();
    for (int trial = 0; trial < 100; ++trial) {
      const std::int64_t newest = fi::newestCompleteCheckpoint(out.toStdString());
      if (newest < 0)
        std::filesystem::remove_all(out.toStdString());  // killed before its first checkpoint: start again
      QProcess p;
      QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
      env.insert(QStringLiteral("OMP_WAIT_POLICY"), QStringLiteral("PASSIVE"));
      p.setProcessEnvironment(env);
      p.start(QStringLiteral(TESSERA_CLI), fi::trainArgs(cfg, out, newest >= 0));
      QVERIFY(p.waitForStarted());
      // A random moment: one trial in five during start-up (loading the data or the
      // checkpoint), the others 0-1.5 s after the run said where it starts (stepping, or
      // inside a checkpoint's write: one is written after every step).
      QByteArray printed;
      if (rng->bounded(5) == 0) {
        QTest::qWait(static_cast<int>(rng->bounded(0, 1500)));
      } else {
        QElapsedTimer started;
        started.start();
        while (!printed.contains("\"event\":\"start\"") && started.elapsed() < 120000 * tessera::testing::timeScale()) {
          p.waitForReadyRead(50);
          printed += p.readAllStandardOutput();
        }
        QTest::qWait(static_cast<int>(rng->bounded(0, 1500)));
      }
      ::kill(static_cast<pid_t>(p.processId()), SIGKILL);
      QVERIFY(p.waitForFinished(30000 * tessera::testing::timeScale()));
      printed += p.readAllStandardOutput();
      for (const auto& e : fi::events(printed)) {
        const std::string kind = e.value("event", "");
        if (kind == "start" && newest >= 0) {
          // It resumed from the newest checkpoint that was complete when it started.
          QCOMPARE(e.at("step").get<std::int64_t>(), newest);
          ++resumedFromNewest;
        } else if (kind == "step") {
          const std::int64_t step = e.at("step").get<std::int64_t>();
          const double loss = e.at("last_loss").get<double>();
          const auto [it, added] = losses.emplace(step, loss);
          // A step done again after a kill gives the same loss, bit for bit.
          QVERIFY2(added || it->second == loss, qPrintable(QStringLiteral("step %1 gave %2, then %3")
                                                               .arg(step)
                                                               .arg(it->second, 0, 'g', 17)
                                                               .arg(loss, 0, 'g', 17)));
        }
      }
    }
    const std::int64_t reached = fi::newestCompleteCheckpoint(out.toStdString());
    qInfo("100 kills in %.0f s: %lld steps reached, %d resumes checked, %zu step losses", clock.elapsed() / 1000.0,
          static_cast<long long>(reached), resumedFromNewest, losses.size());
    QVERIFY2(reached >= 20, qPrintable(QStringLiteral("only %1 steps in 100 trials").arg(reached)));
    QVERIFY(resumedFromNewest >= 60);  // the four trials in five that waited for the start

    // The uninterrupted run to the same step, and the interrupted run finished to it.
    const QString straight = dir.filePath(QStringLiteral("straight"));
    const auto ref =
        test::cli(fi::trainArgs(fi::writeConfig(dir, QStringLiteral("ref.json"), fi::config(reached)), straight, false),
                  {}, {}, 1800000);
    QVERIFY2(ref.code == 0, ref.err.constData());
    std::int64_t compared = 0;
    for (const auto& e : fi::events(ref.out)) {
      if (e.value("event", "") != "step") continue;
      const auto it = losses.find(e.at("step").get<std::int64_t>());
      if (it == losses.end()) continue;  // a step whose event a kill swallowed
      QCOMPARE(it->second, e.at("last_loss").get<double>());
      ++compared;
    }
    QVERIFY(compared >= reached / 2);
    const QString name = QStringLiteral("/checkpoints/step_%1.safetensors").arg(reached, 8, 10, QLatin1Char('0'));
    auto a = SafetensorsFile::open((out + name).toStdString());
    auto b = SafetensorsFile::open((straight + name).toStdString());
    QVERIFY(a && b);
    QCOMPARE(a->entries().size(), b->entries().size());
    for (const auto& entry : a->entries()) {
      auto x = a->load(entry.name);
      auto y = b->load(entry.name);
      QVERIFY(x && y);
      QVERIFY2(at::equal(*x, *y), entry.name.c_str());  // bit for bit: weights, EMA, optimiser state
    }
    qInfo("%lld step losses and %zu checkpoint tensors equal the uninterrupted run's", static_cast<long long>(compared),
          a->entries().size());
  }
};

TESSERA_TEST_MAIN(TestFaultInjection, Appless)
#include "test_fault_injection.moc"
