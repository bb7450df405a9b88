// SPDX-License-Identifier: Apache-2.0
// Setting a run up, and the loop. The set-up phases run in the order runTraining always
// ran them: which check fails first, and what draws from the global generator when, are
// part of the behaviour (the initial weights come from it).
#include "engine/trainer.h"

#include <torch/utils.h>

#include <chrono>
#include <cstdlib>
#include <iostream>

namespace tessera {
namespace fs = std::filesystem;

Trainer::Trainer(const TrainRequest& request) : m_request(request), m_startTime(nowSeconds()) {}

// The prefetch (m_next) is the last member, so it is waited for before the batcher goes.
Trainer::~Trainer() = default;

double Trainer::nowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Result<std::unique_ptr<Trainer>> Trainer::create(const TrainRequest& request) {
  std::unique_ptr<Trainer> trainer(new Trainer(request));
  if (auto ok = trainer->setUp(nullptr); !ok) return fail(ok.error());
  return trainer;
}

Result<std::unique_ptr<Trainer>> Trainer::create(const Config& config, const TrainRequest& request) {
  std::unique_ptr<Trainer> trainer(new Trainer(request));
  if (auto ok = trainer->setUp(&config); !ok) return fail(ok.error());
  return trainer;
}

Result<void> Trainer::setUp(const Config* given) {
  if (auto ok = openRun(); !ok) return ok;
  if (auto ok = readSettings(given); !ok) return ok;
  if (auto ok = loadData(); !ok) return ok;
  if (auto ok = buildModels(); !ok) return ok;
  if (auto ok = makeBatchers(); !ok) return ok;
  if (auto ok = applyInit(); !ok) return ok;
  if (auto ok = placeOnDevice(); !ok) return ok;
  makeOptimiser();
  if (auto ok = refuseUsedRunDir(); !ok) return ok;
  if (auto ok = joinRanks(); !ok) return ok;
  if (auto ok = prepareRunDir(); !ok) return ok;
  if (auto ok = resume(); !ok) return ok;
  if (auto ok = saveConfigAndSyncRanks(); !ok) return ok;
  describeModel();
  m_lastCheckpoint = m_resumeFrom;
  emitStart();
  beginLoop();
  return {};
}

/// The rank, the run directory, and with --resume the checkpoint to continue from.
Result<void> Trainer::openRun() {
  auto env = distributedEnvFromEnvironment();
  if (!env) return fail(env.error());
  m_env = *env;
  m_leader = m_env.rank == 0;
  m_runDir = fs::path(m_request.outDir);
  if (m_request.outDir.empty()) return fail("--out: a run directory is required");
  // An existing directory is locked before anything else: a studio that starts a job and
  // is killed before it records the trainer finds it by its lock within a second.
  std::error_code ec;
  if (fs::is_directory(m_runDir, ec))
    if (auto ok = lockRunDir(); !ok) return ok;
  if (!m_request.resume) return {};
  std::string warnings;
  m_resumeFrom = newestCheckpoint(m_request.outDir, &warnings);
  if (!warnings.empty() && m_leader) emit({{"event", "warning"}, {"message", warnings}});
  if (m_resumeFrom.empty())
    return fail("--resume: no loadable checkpoint in " + (m_runDir / "checkpoints").string() +
                (warnings.empty() ? "" : " (" + warnings + ")"));
  return {};
}

/// The configuration (given, the request's file, or the run's own when resuming) and, for
/// a fine-tune, the model it starts from, whose architecture the settings take.
Result<void> Trainer::readSettings(const Config* given) {
  std::optional<Config> config;
  if (given) {
    config = *given;
  } else if (!m_request.configPath.empty()) {
    auto c = Config::fromFile(m_request.configPath);
    if (!c) return fail(c.error());
    config = std::move(*c);
  } else if (m_request.resume) {
    auto c = Config::fromFile((m_runDir / "config.json").string());
    if (!c) return fail(c.error().withContext("--resume"));
    config = std::move(*c);
  } else if (m_request.initModel.empty()) {
    return fail("--config: a training configuration is required");
  } else {
    return fail("--config: a training configuration is required (with --init too: it names the data and the schedule)");
  }
  if (!m_request.initModel.empty()) {
    auto m = loadModelFile(m_request.initModel);
    if (!m) return fail(m.error().withContext("--init"));
    m_initModel = std::move(*m);
  }
  auto settings = m_initModel ? trainSettingsForInit(*config, m_initModel->description, m_request.initModel)
                              : parseTrainSettings(*config);
  if (!settings) return fail(settings.error());
  m_s = std::move(*settings);
  return {};
}

void Trainer::beginLoop() {
  const bool bar = m_request.progressBar && m_leader;
  m_bar = std::make_unique<Progress>("train", m_s.schedule.steps, bar ? Progress::Mode::Bar : Progress::Mode::Silent,
                                     std::cerr);
  const char* fault = std::getenv("TESSERA_TRAIN_FAULT_NAN_STEP");  // test hook: poison one step's loss
  m_faultStep = fault ? std::atoll(fault) : -1;
  m_window.start = nowSeconds();
  m_runStart = nowSeconds();
  m_step = m_startStep;
  m_next = std::async(std::launch::async, [this, st = m_startStep] { return m_batcher->batch(st); });
}

Result<TrainSummary> Trainer::run() {
  while (m_step < m_s.schedule.steps) {
    if (m_world == 1 && m_request.stop && m_request.stop->load()) break;
    auto done = step();
    if (!done) return fail(done.error());
    if (done->stopRequested && m_step < m_s.schedule.steps) break;
  }
  return finish();
}

Result<TrainStepReport> Trainer::step() {
  if (m_finished || m_step >= m_s.schedule.steps)
    return fail("training: no step left to train (the run is at step " + std::to_string(m_step) + " of " +
                std::to_string(m_s.schedule.steps) + (m_finished ? ", finished)" : ")"));
  Batch batch = nextBatch();
  TrainStepReport done;
  done.lr = learningRateAt(m_s.resolved["train"], m_step);
  for (auto& group : m_optimizer->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(done.lr);
  const std::uint64_t seed = mixSeed(m_s.seed, static_cast<std::uint64_t>(m_step) + 0x5EED0000ull);
  const Draws d = sliceFor(drawsFor(batch, seed, true), batch.size());
  countTokens(batch);
  auto optimised = optimise(d, batch.size());
  if (!optimised) return fail(optimised.error());
  ++m_step;
  ++m_window.steps;
  m_window.lossSum += optimised->loss;
  m_lastLoss = optimised->loss;
  done.step = m_step;
  done.loss = optimised->loss;
  done.gradNorm = optimised->gradNorm;
  done.stopRequested = optimised->stopRequested;
  if (auto ok = reportStep(done, batch.epoch); !ok) return fail(ok.error());
  return done;
}

Result<TrainSummary> Trainer::finish() {
  if (m_finished) return fail("training: the run has already finished");
  m_finished = true;
  if (m_next.valid()) m_next.wait();
  // run() stops early only when asked to, so a run short of its steps was stopped.
  const bool stopped = m_step < m_s.schedule.steps;
  if (stopped && m_step > m_startStep && m_step % m_s.checkpoint.every != 0) {
    if (auto ok = writeCheckpoint(m_step, elapsedSeconds(), m_lastLoss); !ok) return fail(ok.error());
  }
  const double rankDifference = m_world > 1 ? rankMaxDifference() : 0.0;
  m_dp->barrier();
  m_bar->finish();
  TrainSummary summary;
  summary.startStep = m_startStep;
  summary.modelPath = (m_runDir / "model.safetensors").string();
  summary.steps = m_step;
  summary.stopped = stopped;
  summary.seconds = nowSeconds() - m_startTime;
  summary.lastLoss = m_lastLoss;
  summary.checkpointPath = m_lastCheckpoint;
  nlohmann::json done = summary.json();
  done["event"] = stopped ? "stopped" : "done";
  done["world_size"] = m_world;
  if (m_world > 1) done["rank_max_difference"] = rankDifference;
  emit(done);
  return summary;
}

}  // namespace tessera
