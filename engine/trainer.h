// SPDX-License-Identifier: Apache-2.0
// The trainer behind runTraining (engine/training.h; its notes on randomness hold here),
// as a class whose phases a test can drive:
//   create()  everything before the first step: the configuration, the data and its
//             batches, the network and its EMA copy, the device, AdamW, the ranks, the
//             run directory, resume, and the "start" event;
//   step()    one step of the loop: the step's batch and draws, forward, loss, backward,
//             clipping, AdamW and the EMA, then what the step is due to report (the "step"
//             event, validation, a checkpoint, a sample grid);
//   finish()  the checkpoint of a run that ends early, and the "done" or "stopped" event;
//   run()     steps until the configured number or a stop request, then finish().
// The sources split the phases: trainer.cpp (setting up, the loop), trainer_data.cpp,
// trainer_model.cpp, trainer_step.cpp (optimisation and validation),
// trainer_checkpoint.cpp and trainer_events.cpp.
//
// Two objectives share this machinery (data, AdamW, EMA, checkpoints, resume, ranks,
// events): a backbone learning a diffusion process (in pixels, or in the latents of an
// autoencoder, model.autoencoder, cached by engine/latent_cache.h), and an autoencoder
// learning to reconstruct (model.kind "autoencoder": trainer_autoencoder.cpp). The phases
// that differ ask trainsAutoencoder().
#pragma once

#include "core/config/config.h"
#include "core/data/batching.h"
#include "core/process/process.h"
#include "core/train/distributed.h"
#include "core/util/error.h"
#include "core/util/progress.h"
#include "core/util/run_lock.h"
#include "engine/latent_cache.h"
#include "engine/model_file.h"
#include "engine/trainer_settings.h"
#include "engine/training.h"
#include "models/autoencoders/autoencoder.h"
#include "models/backbone.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/optim/adamw.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tessera {

/// The dtype checkpoint.model_dtype names (float32, float16, bfloat16).
at::ScalarType dtypeNamed(const std::string& name);

/// An autoencoder's reconstructions of the validation images (from the posterior means).
struct ReconstructionScores {
  double loss = 0;  ///< the training objective (reconstruction + KL term)
  double l1 = 0, mse = 0;
  double psnr = 0;  ///< dB, for images in [-1, 1] (peak-to-peak 2)
  std::int64_t images = 0;
};

/// What one step did.
struct TrainStepReport {
  std::int64_t step = 0;       ///< the steps trained so far, this one included
  double loss = 0;             ///< the mean loss over the global batch
  double lr = 0;               ///< the learning rate the step used
  double gradNorm = 0;         ///< the gradients' global norm before clipping
  bool stopRequested = false;  ///< some rank was asked to stop (data-parallel runs stop together)
};

class Trainer {
public:
  /// Sets up a run as runTraining does: the configuration from request.configPath, or the
  /// run's own config.json when resuming without one.
  static Result<std::unique_ptr<Trainer>> create(const TrainRequest& request);
  /// Sets up a run from a configuration in memory (request.configPath is not read); the
  /// run directory request.outDir is still required and written.
  static Result<std::unique_ptr<Trainer>> create(const Config& config, const TrainRequest& request);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// Trains until the configured number of steps or a stop request, then finish().
  Result<TrainSummary> run();
  /// Trains one step and does what the step is due to report; fails on a non-finite loss
  /// (an "error" event) or when the run has no steps left.
  Result<TrainStepReport> step();
  /// Ends the run at the current step: a run ending before its configured steps counts as
  /// stopped and gets a checkpoint. Emits "done" or "stopped".
  Result<TrainSummary> finish();

  /// The steps trained so far (resumed steps included).
  std::int64_t currentStep() const { return m_step; }
  /// The step the run started at (0, or the resumed checkpoint's step).
  std::int64_t startStep() const { return m_startStep; }
  /// The configured length of the run.
  std::int64_t totalSteps() const { return m_s.schedule.steps; }
  /// The configuration as read, with the defaults and the data-derived model fields.
  const TrainSettings& settings() const { return m_s; }
  /// Whether the run trains an autoencoder (model.kind "autoencoder") rather than a backbone.
  bool trainsAutoencoder() const { return m_s.autoencoderRun; }
  /// The backbone being trained (not in an autoencoder run).
  BackboneImpl& network() { return *m_net; }
  /// The exponential moving average of the backbone's weights (what the model file holds).
  BackboneImpl& emaNetwork() { return *m_ema; }
  /// The autoencoder being trained, and its EMA (an autoencoder run).
  AutoencoderImpl& autoencoderNetwork() { return *m_ae; }
  AutoencoderImpl& emaAutoencoder() { return *m_aeEma; }
  /// A latent run's autoencoder (model.autoencoder), or nullptr.
  const LoadedAutoencoder* firstStage() const { return m_firstStage ? &*m_firstStage : nullptr; }
  /// The diffusion process or interpolant the network is trained for.
  const Process& process() const { return m_process; }
  /// The "tessera.model" description written with every checkpoint.
  const nlohmann::json& modelDescription() const { return m_description; }
  /// The validation loss of `model` at the fixed timesteps and noise (NaN without
  /// validation images); a collective call in data-parallel runs.
  double validationLoss(BackboneImpl& model);
  /// An autoencoder's reconstruction scores on the validation images; a collective call.
  ReconstructionScores reconstructionScores(AutoencoderImpl& model);

private:
  /// One global batch's random draws, from the step's own generator, sliced for this
  /// rank. Packed batches: x0 and noise are packs (L, C, p, p); t and labels per image,
  /// and the token → image index and per-image sizes for the backbone.
  struct Draws {
    at::Tensor x0, labels, t, noise;
    at::Tensor sizes, tokenImage, tokenCounts;
  };
  /// The running sums between two "step" events.
  struct Window {
    double start = 0, wait = 0, lossSum = 0;
    std::int64_t steps = 0, images = 0, tokens = 0, realTokens = 0;
  };
  /// One optimisation step's outcome, before the step counts.
  struct Optimised {
    double loss = 0, gradNorm = 0;
    bool stopRequested = false;
  };

  explicit Trainer(const TrainRequest& request);

  // Setting up (trainer.cpp); the order is the order of the checks a user sees fail.
  Result<void> setUp(const Config* given);
  Result<void> openRun();
  Result<void> readSettings(const Config* given);
  void beginLoop();
  static double nowSeconds();

  // Data (trainer_data.cpp): the data set, its batches, the per-step draws.
  Result<void> loadData();
  Result<void> makeBatchers();
  Batch nextBatch();
  void countTokens(const Batch& batch);
  Draws drawsFor(const Batch& batch, std::uint64_t seed, bool training) const;
  Draws sliceFor(Draws d, std::int64_t n) const;
  std::int64_t patch() const;

  // The model (trainer_model.cpp): the network, its EMA copy, the device, the optimiser.
  Result<void> buildModels();
  Result<void> applyInit();
  Result<void> placeOnDevice();
  void makeOptimiser();
  Result<void> joinRanks();

  // One step and validation (trainer_step.cpp).
  Result<Optimised> optimise(const Draws& d, std::int64_t batchSize);
  tl::unexpected<Error> stopOnNonFinite(double loss);
  double clipGradients();
  void updateEma();
  at::Tensor lossOf(BackboneImpl& model, const Draws& d) const;
  at::Tensor packedLossOf(BackboneImpl& model, const Draws& d) const;
  at::Tensor fixedTimesteps(std::int64_t k, std::int64_t n) const;
  double rankMaxDifference();

  // The trained network and its EMA twin, whichever the objective.
  torch::nn::Module& trained() const;
  torch::nn::Module& averaged() const;

  // Latent training (trainer_data.cpp): the first stage and the cached posteriors.
  Result<void> loadFirstStage();
  Result<void> encodeLatents();
  void latentDraws(const Batch& b, bool training, Draws& d, at::Generator& gen) const;

  // The autoencoder objective (trainer_autoencoder.cpp).
  Result<void> buildAutoencoders();
  at::Tensor autoencoderLossOf(AutoencoderImpl& model, const Draws& d) const;
  void describeAutoencoder();
  Result<void> writeAutoencoderModel(const std::string& path, std::int64_t step, double elapsed);
  Result<void> writeReconstructions(std::int64_t step);
  void reportReconstructions(std::int64_t step);
  /// Up to `count` items of one size from the front of a batcher, (N, C, H, W) in [-1, 1]:
  /// fixed inputs for the scale factor, the preview map and the reconstruction grids.
  static at::Tensor frontItems(const Batcher& batcher, std::int64_t count);

  // Checkpoints (trainer_checkpoint.cpp): the run directory, resume, atomic saves.
  Result<void> refuseUsedRunDir() const;
  Result<void> prepareRunDir();
  Result<void> lockRunDir();
  Result<void> resume();
  Result<void> saveConfigAndSyncRanks();
  Result<void> writeCheckpoint(std::int64_t step, double elapsed, double loss);
  void pruneCheckpoints() const;
  double elapsedSeconds() const;

  // Events (trainer_events.cpp): JSON lines, progress, sample grids.
  void emit(nlohmann::json event) const;
  void describeModel();
  void emitStart();
  Result<void> reportStep(const TrainStepReport& done, std::int64_t epoch);
  void logStep(const TrainStepReport& done, std::int64_t epoch);
  Result<void> writeSamples(std::int64_t step);

  TrainRequest m_request;
  double m_startTime = 0;
  DistributedEnv m_env;
  bool m_leader = true;
  std::filesystem::path m_runDir;
  RunLock m_runLock;  ///< the leader's hold on the run directory (one trainer per directory)
  std::string m_resumeFrom;
  std::optional<LoadedModel> m_initModel;  ///< --init's model, until its weights are copied
  TrainSettings m_s;
  nlohmann::json m_initReport;
  LabelledImages m_data, m_validation;
  nlohmann::json m_backboneConfig;
  std::shared_ptr<BackboneImpl> m_net, m_ema;
  std::shared_ptr<AutoencoderImpl> m_ae, m_aeEma;  ///< an autoencoder run's network and EMA
  std::optional<LoadedAutoencoder> m_firstStage;   ///< a latent run's autoencoder
  std::string m_firstStageSha;                     ///< its SHA-256 (autoencoderSha256)
  LatentSet m_latents, m_valLatents;               ///< the posteriors of the data and validation items
  std::int64_t m_pixelFactor = 1;                  ///< pixels per latent cell (1 in pixel space)
  nlohmann::json m_latentReport;                   ///< the caches used, for the "start" event
  Process m_process;
  Capabilities m_caps;
  std::optional<Batcher> m_batcher, m_valBatcher;
  at::Device m_device{at::kCPU};
  std::vector<at::Tensor> m_params, m_emaParams;  ///< the trained parameters, and their EMA twins
  std::vector<std::string> m_paramNames;
  std::unique_ptr<torch::optim::AdamW> m_optimizer;
  std::unique_ptr<DataParallel> m_dp;
  int m_world = 1, m_rank = 0;
  std::int64_t m_startStep = 0;
  double m_elapsedBefore = 0;  ///< training time of the run before this resume
  nlohmann::json m_description;
  std::string m_samplerName;
  std::string m_lastCheckpoint;
  // The loop.
  std::unique_ptr<Progress> m_bar;
  std::int64_t m_faultStep = -1;  ///< TESSERA_TRAIN_FAULT_NAN_STEP, a test hook
  Window m_window;
  double m_runStart = 0, m_lastLoss = 0;
  std::int64_t m_step = 0;
  bool m_finished = false;
  std::future<Batch> m_next;  ///< the next step's batch; last, so it is waited for first
};

}  // namespace tessera
