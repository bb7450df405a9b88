// SPDX-License-Identifier: Apache-2.0
// tessera-cli train and eval as processes: two c10d ranks on localhost stay identical and
// equal one process on the combined batch; SIGKILL during checkpointing never leaves an
// unloadable newest checkpoint; SIGTERM stops cleanly for --resume; eval on real images
// gives the floor; eval --record-defaults writes the settings that sample then uses.
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
#endif

using namespace tessera;
using tessera::test::cli;

namespace {

/// Arguments from a mix of string literals and QStrings (this project builds with
/// QT_NO_CAST_FROM_ASCII).
struct Arg {
  QString s;
  Arg(const char* c) : s(QString::fromUtf8(c)) {}
  Arg(QString q) : s(std::move(q)) {}
};
QStringList args(std::initializer_list<Arg> list) {
  QStringList out;
  for (const Arg& a : list) out << a.s;
  return out;
}

nlohmann::json tinyConfig() {
  return {{"model",
           {{"backbone", "dit"},
            {"config", {{"patch_size", 4}, {"hidden_size", 64}, {"depth", 2}, {"num_heads", 4}}},
            {"process", {{"kind", "gaussian_diffusion"}, {"learn_sigma", true}}}}},
          {"data", {{"source", "fashion-mnist"}, {"batch", 16}, {"size", {28, 28}}, {"validation", 32}, {"flip", true}}},
          {"train", {{"steps", 4}, {"lr", 1e-3}, {"ema", 0.9}, {"limit", 256}}},
          {"log", {{"every", 1}}},
          {"checkpoint", {{"every", 2}}},
          {"validation", {{"every", 2}, {"timesteps", 2}}},
          {"samples", {{"every", 4}, {"steps", 4}, {"classes", {"Trouser", "Bag"}}}}};
}

QString writeConfig(const QTemporaryDir& dir, const char* name, const nlohmann::json& c) {
  const QString path = dir.filePath(QString::fromUtf8(name));
  std::ofstream(path.toStdString()) << c.dump(2);
  return path;
}

std::vector<nlohmann::json> events(const QByteArray& out) {
  std::vector<nlohmann::json> e;
  for (const QByteArray& line : out.split('\n'))
    if (!line.trimmed().isEmpty()) e.push_back(nlohmann::json::parse(line.toStdString()));
  return e;
}

}  // namespace

class TestCliTrain : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void twoRanksEqualOneProcessOnTheCombinedBatch() {
    QTemporaryDir dir;
    const QString cfg = writeConfig(dir, "c.json", tinyConfig());
    const auto one = cli(args({"--threads", "2", "train", "--config", cfg, "--out", dir.filePath(QStringLiteral("one"))}));
    QVERIFY2(one.code == 0, one.err.constData());
    const auto two = cli(args({"--threads", "2", "train", "--config", cfg, "--out", dir.filePath(QStringLiteral("two")), "--nproc", "2"}));
    QVERIFY2(two.code == 0, two.err.constData());
    const auto ev = events(two.out);
    QCOMPARE(ev.back()["event"].get<std::string>(), std::string("done"));
    QCOMPARE(ev.back()["world_size"].get<int>(), 2);
    QCOMPARE(ev.back()["rank_max_difference"].get<double>(), 0.0);  // the ranks hold identical weights
    // Only rank 0 reports: one start event.
    int starts = 0;
    for (const auto& e : ev) starts += e["event"] == "start";
    QCOMPARE(starts, 1);
    auto a = SafetensorsFile::open(dir.filePath(QStringLiteral("one/checkpoints/step_00000004.safetensors")).toStdString());
    auto b = SafetensorsFile::open(dir.filePath(QStringLiteral("two/checkpoints/step_00000004.safetensors")).toStdString());
    QVERIFY(a && b);
    double worst = 0;
    for (const auto& e : a->entries()) {
      if (e.name.rfind("model/", 0) != 0) continue;
      worst = std::max(worst, (*a->load(e.name) - *b->load(e.name)).abs().max().item<double>());
    }
    QVERIFY2(worst < 2e-5, qPrintable(QStringLiteral("largest weight difference %1").arg(worst)));
    // The losses agree too (the same samples, noise and timesteps, summed in another order).
    const auto e1 = events(one.out);
    for (std::size_t i = 0; i < ev.size(); ++i)
      if (ev[i]["event"] == "step")
        for (const auto& f : e1)
          if (f["event"] == "step" && f["step"] == ev[i]["step"])
            QVERIFY(std::abs(f["last_loss"].get<double>() - ev[i]["last_loss"].get<double>()) < 1e-5);
    // Samples were written, and the run's model samples.
    QVERIFY(QFile::exists(dir.filePath(QStringLiteral("two/samples/step_00000004.png"))));
  }

  void killDuringCheckpointingLeavesALoadableCheckpoint() {
    QTemporaryDir dir;
    nlohmann::json c = tinyConfig();
    c["train"]["steps"] = 100000;
    c["checkpoint"]["every"] = 1;  // a save after every step: kills land inside saves
    c["validation"]["every"] = 0;
    c["samples"]["every"] = 0;
    const QString cfg = writeConfig(dir, "c.json", c);
    const QString out = dir.filePath(QStringLiteral("run"));
    auto* rng = QRandomGenerator::global();
    for (int round = 0; round < 4; ++round) {
      QProcess p;
      QStringList a = args({"--threads", "1", "train", "--config", cfg, "--out", out});
      if (round > 0) a << QStringLiteral("--resume");
      p.start(QStringLiteral(TESSERA_CLI), a);
      QVERIFY(p.waitForStarted());
      // Wait until it has written at least one checkpoint, then kill at a random moment.
      QElapsedTimer t;
      t.start();
      // (The event itself: the start event's configuration names "checkpoint" too.)
      QByteArray printed;
      while (!printed.contains("\"event\":\"checkpoint\"") && t.elapsed() < 60000 * tessera::testing::timeScale()) {
        p.waitForReadyRead(200);
        printed += p.readAllStandardOutput();
      }
      QTest::qWait(static_cast<int>(rng->bounded(30, 400)));
      ::kill(static_cast<pid_t>(p.processId()), SIGKILL);
      p.waitForFinished();
      // The newest checkpoint always opens, whatever the kill interrupted.
      std::string newest;
      std::int64_t newestStep = -1;
      for (const auto& e : std::filesystem::directory_iterator(out.toStdString() + "/checkpoints")) {
        const std::string name = e.path().filename().string();
        if (name.rfind("step_", 0) != 0 || name.find(".tmp") != std::string::npos) continue;
        const std::int64_t step = std::stoll(name.substr(5, 8));
        if (step > newestStep) newestStep = step, newest = e.path().string();
      }
      QVERIFY(newestStep > 0);
      auto file = SafetensorsFile::open(newest);
      QVERIFY2(file, file ? "" : file.error().message().c_str());
      QVERIFY(file->metadata().count("tessera.train"));
      QVERIFY(file->load("model/pos_embed").has_value());
    }
    // And the run continues from it to the end.
    c["train"]["steps"] = 1;  // already past: resume checks, writes nothing new, says done
    const auto finish = cli(args({"train", "--config", writeConfig(dir, "end.json", c), "--out", out, "--resume"}));
    QVERIFY2(finish.code == 0, finish.err.constData());
  }

  void sigtermStopsWithACheckpointForResume() {
    QTemporaryDir dir;
    nlohmann::json c = tinyConfig();
    c["train"]["steps"] = 100000;
    c["checkpoint"]["every"] = 100000;
    c["validation"]["every"] = 0;
    c["samples"]["every"] = 0;
    const QString cfg = writeConfig(dir, "c.json", c);
    QProcess p;
    p.start(QStringLiteral(TESSERA_CLI), args({"--threads", "1", "train", "--config", cfg, "--out", dir.filePath(QStringLiteral("run"))}));
    QVERIFY(p.waitForStarted());
    QByteArray out;
    QElapsedTimer t;
    t.start();
    while (!out.contains("\"step\":3,") && t.elapsed() < 60000 * tessera::testing::timeScale()) {
      p.waitForReadyRead(200);
      out += p.readAllStandardOutput();
    }
    // One trainer per run directory: a second one, resuming or not, is refused by the
    // first one's lock and touches nothing (issue 22: a studio killed while starting a job).
    const QString run = dir.filePath(QStringLiteral("run"));
    for (const char* extra : {"--resume", "--config"}) {
      QStringList a = args({"train", "--out", run, extra});
      if (QLatin1String(extra) == QLatin1String("--config")) a << cfg;
      const auto second = cli(a);
      QCOMPARE(second.code, 2);
      QVERIFY2(
          second.err.contains(
              QStringLiteral("another trainer (process %1) is using this run directory").arg(p.processId()).toUtf8()),
          second.err.constData());
    }
    ::kill(static_cast<pid_t>(p.processId()), SIGTERM);
    QVERIFY(p.waitForFinished(60000 * tessera::testing::timeScale()));
    out += p.readAllStandardOutput();
    QCOMPARE(p.exitCode(), 0);
    const auto ev = events(out);
    QCOMPARE(ev.back()["event"].get<std::string>(), std::string("stopped"));
    const int stoppedAt = ev.back()["steps"].get<int>();
    QVERIFY(stoppedAt >= 3);
    QVERIFY(QFile::exists(dir.filePath(QStringLiteral("run/checkpoints/step_%1.safetensors").arg(stoppedAt, 8, 10, QLatin1Char('0')))));
  }

  void checkPrintsTheResolvedConfiguration() {
    QTemporaryDir dir;
    const auto r = cli(args({"train", "--check", "--config", writeConfig(dir, "c.json", tinyConfig()), "--out", dir.filePath(QStringLiteral("x"))}));
    QVERIFY2(r.code == 0, r.err.constData());
    const auto j = nlohmann::json::parse(r.out.toStdString());
    QCOMPARE(j["train"]["clip"].get<double>(), 1.0);  // a default filled in
    QVERIFY(!QFile::exists(dir.filePath(QStringLiteral("x"))));
    nlohmann::json bad = tinyConfig();
    bad["data"]["batching"] = "bucket";
    const auto b = cli(args({"train", "--check", "--config", writeConfig(dir, "b.json", bad), "--out", dir.filePath(QStringLiteral("x"))}));
    QCOMPARE(b.code, 2);
    QVERIFY2(b.err.contains("data.batching") && b.err.contains("buckets"), b.err.constData());
    // Issue 22: --check passed a data folder that does not exist, which train then refused.
    nlohmann::json missing = tinyConfig();
    missing["data"]["source"] = dir.filePath(QStringLiteral("no-such-folder")).toStdString();
    const auto m = cli(args({"train", "--check", "--config", writeConfig(dir, "m.json", missing), "--out",
                             dir.filePath(QStringLiteral("x"))}));
    QCOMPARE(m.code, 2);
    QVERIFY2(m.err.contains("data.source") && m.err.contains("no-such-folder"), m.err.constData());
  }

  void evalOnRealImagesGivesTheFloor() {
    const auto r = cli(args({"--threads", "2", "eval", "--real", "-n", "100"}));
    QVERIFY2(r.code == 0, r.err.constData());
    const auto j = nlohmann::json::parse(r.out.toStdString());
    // Real images are what a perfect model makes: their FD is the floor's, up to sampling noise.
    const double ratio = j["fd_ratio"].get<double>();
    QVERIFY2(ratio > 0.6 && ratio < 1.6, qPrintable(QStringLiteral("fd %1, floor %2").arg(j["fd"].get<double>()).arg(j["fd_floor"].get<double>())));
    QVERIFY(j["fd_floor"].get<double>() > 0);
    QVERIFY(j["fd_floor_test_halves"].get<double>() < j["fd_floor"].get<double>());  // 5000 vs 1000 images: less noise
    QVERIFY(j["class_accuracy"].get<double>() > 0.88);
    QVERIFY(j["precision"].get<double>() > 0.6 && j["recall"].get<double>() > 0.6);
    // A model file that is not one is refused clearly.
    QTemporaryDir dir;
    std::ofstream(dir.filePath(QStringLiteral("junk.safetensors")).toStdString()) << "junk";
    const auto bad = cli(args({"eval", "--model", dir.filePath(QStringLiteral("junk.safetensors"))}));
    QCOMPARE(bad.code, 2);
  }

  void evalRecordsTheSamplingDefaults() {  // --record-defaults: the evaluated settings become what sample uses
    QTemporaryDir dir;
    nlohmann::json c = tinyConfig();
    c["train"]["steps"] = 2;
    const auto t = cli(args({"--threads", "2", "-q", "train", "--config", writeConfig(dir, "c.json", c), "--out", dir.filePath(QStringLiteral("run"))}));
    QVERIFY2(t.code == 0, t.err.constData());
    const QString model = dir.filePath(QStringLiteral("run/model.safetensors"));
    auto e = cli(args({"--threads", "2", "-q", "eval", "--model", model, "-n", "2", "--steps", "2", "--cfg", "2",
                       "--cfg-interval", "0.3,0.9", "--record-defaults"}));
    QVERIFY2(e.code == 0, e.err.constData());
    const auto result = nlohmann::json::parse(e.out.toStdString());
    QCOMPARE(result["sampling"]["guidance"]["interval"], nlohmann::json({0.3, 0.9}));
    auto file = SafetensorsFile::open(model.toStdString());
    QVERIFY(file);
    const auto description = nlohmann::json::parse(file->metadata().at("tessera.model"));
    QCOMPARE(description["defaults"]["cfg"].get<double>(), 2.0);
    QCOMPARE(description["defaults"]["cfg_interval"], nlohmann::json({0.3, 0.9}));
    QCOMPARE(description["evaluation"].size(), std::size_t(1));
    // Evaluated again without settings: the recorded ones are used.
    e = cli(args({"--threads", "2", "-q", "eval", "--model", model, "-n", "2", "--steps", "2"}));
    QVERIFY2(e.code == 0, e.err.constData());
    const auto again = nlohmann::json::parse(e.out.toStdString());
    QCOMPARE(again["sampling"]["guidance"]["scale"].get<double>(), 2.0);
    QCOMPARE(again["sampling"]["guidance"]["interval"], nlohmann::json({0.3, 0.9}));
    const auto bad = cli(args({"eval", "--model", model, "-n", "2", "--cfg-interval", "0.9,0.3"}));
    QCOMPARE(bad.code, 2);
    QVERIFY2(bad.err.contains("0 <= LO <= HI <= 1"), bad.err.constData());
  }
};

TESSERA_TEST_MAIN(TestCliTrain, Guiless)
#include "test_cli_train.moc"
