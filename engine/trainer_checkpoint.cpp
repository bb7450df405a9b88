// SPDX-License-Identifier: Apache-2.0
// The run directory and its checkpoints: step_NNNNNNNN.safetensors holds the network, its
// EMA and AdamW's moments, with the step, the elapsed time and the resolved configuration
// as metadata; RUN_DIR/model.safetensors is the EMA as a model file. Both are written
// atomically, so a killed run leaves its last complete checkpoint loadable, and resuming
// from one continues the uninterrupted run exactly.
#include "engine/trainer.h"

#include "core/formats/safetensors.h"
#include "core/util/atomic_file.h"
#include "models/state_dict.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <algorithm>
#include <iomanip>
#include <regex>
#include <sstream>

namespace tessera {
namespace fs = std::filesystem;
namespace {

constexpr const char* kTrainMetadataKey = "tessera.train";
constexpr int kCheckpointFormat = 1;

std::string checkpointName(std::int64_t step) {
  std::ostringstream s;
  s << "step_" << std::setw(8) << std::setfill('0') << step << ".safetensors";
  return s.str();
}

std::int64_t stepOfCheckpoint(const std::string& name) {
  static const std::regex pattern(R"(^step_(\d+)\.safetensors$)");
  std::smatch m;
  if (!std::regex_match(name, m, pattern)) return -1;
  return std::stoll(m[1].str());
}

}  // namespace

at::ScalarType dtypeNamed(const std::string& name) {
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  return at::kFloat;
}

namespace {

using AdamWState = torch::optim::AdamWParamState;

/// The optimiser's per-parameter state map is keyed by the parameter's TensorImpl, as a
/// string in LibTorch 1.x and as a pointer in 2.x.
template <typename Map>
auto stateKey(const at::Tensor& p) {
  using Key = typename std::decay_t<Map>::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    return c10::guts::to_string(p.unsafeGetTensorImpl());
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

AdamWState* adamState(torch::optim::AdamW& opt, const at::Tensor& p) {
  auto& map = opt.state();
  auto it = map.find(stateKey<decltype(map)>(p));
  if (it == map.end()) return nullptr;
  return static_cast<AdamWState*>(it->second.get());
}

void setAdamState(torch::optim::AdamW& opt, const at::Tensor& p, std::int64_t step, at::Tensor expAvg,
                  at::Tensor expAvgSq) {
  auto state = std::make_unique<AdamWState>();
  state->step(step);
  state->exp_avg(std::move(expAvg));
  state->exp_avg_sq(std::move(expAvgSq));
  auto& map = opt.state();
  map[stateKey<decltype(map)>(p)] = std::move(state);
}

/// Reads `prefix` + each tensor's name from a checkpoint into the tensors, in place.
Result<void> readAllInto(const SafetensorsFile& file, const std::string& prefix, NamedTensors tensors) {
  for (auto& [name, t] : tensors)
    if (auto ok = file.readInto(prefix + name, t); !ok) return fail(ok.error().withContext("--resume"));
  return {};
}

}  // namespace

std::string newestCheckpoint(const std::string& runDir, std::string* warnings) {
  const fs::path dir = fs::path(runDir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  std::vector<std::pair<std::int64_t, std::string>> found;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::int64_t step = stepOfCheckpoint(e.path().filename().string());
    if (step >= 0) found.emplace_back(step, e.path().string());
  }
  std::sort(found.rbegin(), found.rend());
  for (const auto& [step, path] : found) {
    auto file = SafetensorsFile::open(path);
    if (file && file->metadata().count(kTrainMetadataKey)) return path;
    if (warnings)
      *warnings += path + " is not a loadable checkpoint (" +
                   (file ? std::string("no training state") : file.error().message()) + "); ";
  }
  return {};
}

/// A new run must not mix its checkpoints with another run's.
Result<void> Trainer::refuseUsedRunDir() const {
  if (!m_request.resume && !newestCheckpoint(m_request.outDir).empty())
    return fail("--out " + m_runDir.string() +
                " already holds checkpoints; use --resume to continue it or choose another directory");
  return {};
}

Result<void> Trainer::lockRunDir() {
  if (!m_leader || m_runLock.held()) return {};
  auto lock = RunLock::acquire(m_runDir.string());
  if (!lock) return fail(lock.error().withContext("--out"));
  m_runLock = std::move(*lock);
  return {};
}

Result<void> Trainer::prepareRunDir() {
  if (!m_leader) return {};
  std::error_code ec;
  fs::create_directories(m_runDir / "checkpoints", ec);
  if (ec) return fail("--out " + m_runDir.string() + ": cannot create it: " + ec.message());
  // Before anything in it is touched (the temporary files below may be another trainer's).
  if (auto ok = lockRunDir(); !ok) return ok;
  fs::create_directories(m_runDir / "samples", ec);
  // Temporary files a killed save left behind.
  for (const auto& e : fs::directory_iterator(m_runDir / "checkpoints", ec))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) fs::remove(e.path(), ec);
  return {};
}

/// The weights, the EMA and AdamW's moments of the checkpoint being resumed; its step
/// and elapsed time. The configuration may differ only as checkResumable allows.
Result<void> Trainer::resume() {
  if (!m_request.resume) return {};
  auto file = SafetensorsFile::open(m_resumeFrom);
  if (!file) return fail(file.error());
  auto meta = Config::fromString(file->metadata().at(kTrainMetadataKey), m_resumeFrom);
  if (!meta) return fail(meta.error());
  const nlohmann::json resumeMeta = meta->json();
  m_startStep = resumeMeta.value("step", std::int64_t{0});
  if (auto ok = checkResumable(resumeMeta.value("config", nlohmann::json()), m_s.resolved, m_startStep); !ok)
    return fail(ok.error());
  m_elapsedBefore = resumeMeta.value("elapsed_s", 0.0);
  const std::int64_t adamStep = resumeMeta.value("adam_step", std::int64_t{0});
  torch::NoGradGuard g;
  if (auto ok = readAllInto(*file, "model/", stateDict(trained())); !ok) return ok;
  if (auto ok = readAllInto(*file, "ema/", stateDict(averaged())); !ok) return ok;
  if (adamStep <= 0) return {};
  for (std::size_t i = 0; i < m_params.size(); ++i) {
    at::Tensor m1 = at::zeros_like(m_params[i]), m2 = at::zeros_like(m_params[i]);
    if (auto ok = file->readInto("adam/exp_avg/" + m_paramNames[i], m1); !ok)
      return fail(ok.error().withContext("--resume"));
    if (auto ok = file->readInto("adam/exp_avg_sq/" + m_paramNames[i], m2); !ok)
      return fail(ok.error().withContext("--resume"));
    setAdamState(*m_optimizer, m_params[i], adamStep, m1, m2);
  }
  return {};
}

/// RUN_DIR/config.json (the resolved configuration), and every rank starts from rank 0's
/// weights (they already agree, from the seed; this makes it a fact).
Result<void> Trainer::saveConfigAndSyncRanks() {
  if (m_leader) {
    const std::string path = (m_runDir / "config.json").string();
    if (auto ok = writeFileAtomically(path, m_s.resolved.dump(2) + "\n"); !ok) return fail(ok.error());
  }
  torch::NoGradGuard g;
  std::vector<at::Tensor> all;
  for (auto& [n, t] : stateDict(trained())) all.push_back(t);
  m_dp->broadcastFromRankZero(all);
  std::vector<at::Tensor> allEma;
  for (auto& [n, t] : stateDict(averaged())) allEma.push_back(t);
  m_dp->broadcastFromRankZero(allEma);
  return {};
}

double Trainer::elapsedSeconds() const { return m_elapsedBefore + (nowSeconds() - m_runStart); }

/// The checkpoint of `step` and the model file beside it (rank 0 writes; the others
/// hold the same weights).
Result<void> Trainer::writeCheckpoint(std::int64_t step, double elapsed, double loss) {
  if (!m_leader) return {};
  NamedTensors tensors;
  for (auto& [n, t] : stateDict(trained())) tensors.emplace_back("model/" + n, t.detach().to(at::kCPU));
  for (auto& [n, t] : stateDict(averaged())) tensors.emplace_back("ema/" + n, t.detach().to(at::kCPU));
  std::int64_t adamStep = 0;
  for (std::size_t i = 0; i < m_params.size(); ++i) {
    if (AdamWState* st = adamState(*m_optimizer, m_params[i])) {
      adamStep = st->step();
      tensors.emplace_back("adam/exp_avg/" + m_paramNames[i], st->exp_avg().to(at::kCPU));
      tensors.emplace_back("adam/exp_avg_sq/" + m_paramNames[i], st->exp_avg_sq().to(at::kCPU));
    }
  }
  const nlohmann::json meta = {{"format", kCheckpointFormat}, {"step", step},        {"adam_step", adamStep},
                               {"elapsed_s", elapsed},        {"loss", loss},        {"world_size", m_world},
                               {"config", m_s.resolved},      {"init", m_initReport}};
  const std::string path = (m_runDir / "checkpoints" / checkpointName(step)).string();
  if (auto ok = writeSafetensors(path, tensors, {{kTrainMetadataKey, meta.dump()}}); !ok) return ok;
  // The model file: EMA weights, usable by sample and eval while training goes on.
  const std::string modelPath = (m_runDir / "model.safetensors").string();
  if (m_s.autoencoderRun) {
    if (auto ok = writeAutoencoderModel(modelPath, step, elapsed); !ok) return ok;
  } else {
    nlohmann::json d = m_description;
    d["source"]["training"] = {
        {"step", step}, {"elapsed_s", elapsed}, {"config", m_s.resolved}, {"init", m_initReport}};
    NamedTensors weights;
    const at::ScalarType dtype = dtypeNamed(m_s.checkpoint.modelDtype);
    for (auto& [n, t] : stateDict(averaged())) weights.emplace_back(n, t.detach().to(at::kCPU).to(dtype));
    // A latent model carries its autoencoder, so that it decodes wherever it is copied.
    if (m_firstStage)
      for (auto& [n, t] : stateDict(*m_firstStage->network))
        weights.emplace_back(kAutoencoderTensorPrefix + n, t.detach().to(at::kCPU).to(dtype));
    if (auto ok = writeModelFile(modelPath, d, weights); !ok) return ok;
  }
  m_lastCheckpoint = path;
  pruneCheckpoints();
  emit({{"event", "checkpoint"}, {"step", step}, {"path", path}, {"model", modelPath}});
  return {};
}

/// Keeps the newest checkpoint.keep checkpoints.
void Trainer::pruneCheckpoints() const {
  std::vector<std::pair<std::int64_t, fs::path>> all;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(m_runDir / "checkpoints", ec)) {
    const std::int64_t st = stepOfCheckpoint(e.path().filename().string());
    if (st >= 0) all.emplace_back(st, e.path());
  }
  std::sort(all.rbegin(), all.rend());
  for (std::size_t i = static_cast<std::size_t>(m_s.checkpoint.keep); i < all.size(); ++i)
    fs::remove(all[i].second, ec);
}

}  // namespace tessera
