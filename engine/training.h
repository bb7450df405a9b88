// SPDX-License-Identifier: Apache-2.0
// The trainer behind `tessera-cli train`: any backbone × process from the registry,
// AdamW with warm-up and clipping, an EMA of the weights, label dropout for guidance,
// atomic checkpoints with exact resume, validation at fixed timesteps and noise, sample
// grids, NaN stops, and data-parallel ranks through c10d. Events are JSON lines.
//
// Randomness: every random draw of step s (timesteps, noise, label dropout, flips, the
// data order) comes from generators seeded with a hash of (seed, s), drawn for the
// global batch and sliced per rank. So a resumed run needs no generator state to
// reproduce the uninterrupted one, and N ranks compute what one process computes on
// the combined batch.
//
// runTraining is a thin front to the Trainer class (engine/trainer.h), which a test can
// drive a step at a time; engine/trainer_settings.h reads the configuration.
#pragma once

#include "core/config/config.h"
#include "core/util/error.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

namespace tessera {

struct TrainRequest {
  std::string configPath;   ///< training configuration (JSON); with resume, optional
  std::string outDir;       ///< the run directory
  bool resume = false;      ///< continue from the newest loadable checkpoint in outDir
  std::string initModel;    ///< fine-tune from this model file
  std::string device = "cpu";
  bool progressBar = false; ///< a bar on stderr (terminals)
  /// JSON-lines events (one object per line); the CLI passes stdout.
  std::ostream* events = nullptr;
  /// Set from a signal handler: the trainer finishes its step, writes a checkpoint and stops.
  const std::atomic<bool>* stop = nullptr;
  /// Set from a signal handler (the studio's "sample now"): the trainer writes a sample
  /// grid after its current step and clears the flag.
  std::atomic<bool>* sampleNow = nullptr;
};

struct TrainSummary {
  std::int64_t steps = 0;        ///< the step the run stopped at
  std::int64_t startStep = 0;    ///< where it started (resume)
  bool stopped = false;          ///< by request, before the configured steps
  double seconds = 0;
  double lastLoss = 0;
  std::string modelPath;         ///< RUN_DIR/model.safetensors (EMA weights)
  std::string checkpointPath;    ///< the newest checkpoint
  nlohmann::json json() const;
};

/// Runs (or resumes) a training job. Bad configuration, data or init model fail with a
/// message naming the field; a non-finite loss fails naming the step and the last good
/// checkpoint, which stays loadable.
Result<TrainSummary> runTraining(const TrainRequest& request);

/// Checks a configuration without training or loading data: every field and its range,
/// unknown keys. Returns the configuration with defaults filled in. With `initModel` (a
/// fine-tune's --init) the model section comes from that model file, as in a run.
/// (Contradictions between the model and the data surface when a run starts.)
Result<nlohmann::json> checkTrainingConfig(const Config& config, const std::string& initModel = {});

/// The newest checkpoint of a run directory that opens and validates ("" when none).
std::string newestCheckpoint(const std::string& runDir, std::string* warnings = nullptr);

}  // namespace tessera
