// SPDX-License-Identifier: Apache-2.0
// The public face of the trainer (engine/training.h); the work is engine/trainer.h's
// Trainer. newestCheckpoint lives with the checkpoints, in trainer_checkpoint.cpp.
#include "engine/training.h"

#include "engine/model_file.h"
#include "engine/trainer.h"
#include "engine/trainer_settings.h"

namespace tessera {

nlohmann::json TrainSummary::json() const {
  return {{"steps", steps},        {"start_step", startStep}, {"stopped", stopped},          {"seconds", seconds},
          {"last_loss", lastLoss}, {"model", modelPath},      {"checkpoint", checkpointPath}};
}

Result<nlohmann::json> checkTrainingConfig(const Config& config, const std::string& initModel) {
  if (initModel.empty()) {
    auto s = parseTrainSettings(config);
    if (!s) return fail(s.error());
    return s->resolved;
  }
  auto m = loadModelFile(initModel);
  if (!m) return fail(m.error().withContext("--init"));
  auto s = trainSettingsForInit(config, m->description, initModel);
  if (!s) return fail(s.error());
  return s->resolved;
}

Result<TrainSummary> runTraining(const TrainRequest& request) {
  auto trainer = Trainer::create(request);
  if (!trainer) return fail(trainer.error());
  return (*trainer)->run();
}

}  // namespace tessera
