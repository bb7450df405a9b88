// SPDX-License-Identifier: Apache-2.0
#pragma once
// A training run driven in-process (runTraining) with its JSON-lines events kept, for the
// trainer's tests.
#include "engine/training.h"

#include <QTemporaryDir>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace tessera::test {

/// A run's result and its events, parsed.
struct TrainingRun {
  Result<TrainSummary> summary;
  std::vector<nlohmann::json> events;
  /// Every "step" event's last_loss.
  std::vector<double> losses() const {
    std::vector<double> l;
    for (const auto& e : events)
      if (e["event"] == "step") l.push_back(e["last_loss"].get<double>());
    return l;
  }
  /// Every "validation" event's loss_ema.
  std::vector<double> validation() const {
    std::vector<double> v;
    for (const auto& e : events)
      if (e["event"] == "validation") v.push_back(e["loss_ema"].get<double>());
    return v;
  }
  /// The first and the last event of a kind (null when none).
  nlohmann::json first(const std::string& kind) const {
    for (const auto& e : events)
      if (e["event"] == kind) return e;
    return nlohmann::json();
  }
  nlohmann::json last(const std::string& kind) const {
    nlohmann::json found;
    for (const auto& e : events)
      if (e["event"] == kind) found = e;
    return found;
  }
};

/// Trains (or resumes, or fine-tunes from `init`) with the configuration file `config` into `out`.
inline TrainingRun trainRun(const std::string& config, const std::string& out, bool resume = false,
                            const std::string& init = {}) {
  std::ostringstream events;
  TrainRequest r;
  r.configPath = config;
  r.outDir = out;
  r.resume = resume;
  r.initModel = init;
  r.events = &events;
  TrainingRun run{runTraining(r), {}};
  std::istringstream in(events.str());
  for (std::string line; std::getline(in, line);) run.events.push_back(nlohmann::json::parse(line));
  return run;
}

/// Writes `json` as DIR/name; returns the path.
inline std::string writeJsonFile(const QTemporaryDir& dir, const std::string& name, const nlohmann::json& json) {
  const std::string path = dir.path().toStdString() + "/" + name;
  std::ofstream(path) << json.dump(2);
  return path;
}

}  // namespace tessera::test
