// SPDX-License-Identifier: Apache-2.0
// What the trainer tells the world: JSON-lines events (rank 0 only), the progress bar,
// the model description written with every checkpoint, and the sample grids (on the
// configured cadence, or when TrainRequest::sampleNow asks, e.g. on SIGUSR1).
#include "engine/trainer.h"

#include "core/formats/png.h"
#include "engine/generation.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <algorithm>
#include <iomanip>
#include <map>
#include <sstream>

namespace tessera {
namespace {

/// A grid of samples (n, C, H, W) in [-1, 1], `columns` wide, with a dark border.
Image8 gridImage(const at::Tensor& samples, std::int64_t columns) {
  const std::int64_t n = samples.size(0), c = samples.size(1), h = samples.size(2), w = samples.size(3);
  const std::int64_t rows = (n + columns - 1) / columns, pad = 2;
  Image8 img;
  img.channels = c;
  img.width = columns * (w + pad) + pad;
  img.height = rows * (h + pad) + pad;
  img.pixels.assign(static_cast<std::size_t>(img.width * img.height * c), 40);
  const at::Tensor u8 = samples.clamp(-1, 1).add(1).mul(127.5).round().to(at::kByte).permute({0, 2, 3, 1}).contiguous();
  const std::uint8_t* src = u8.data_ptr<std::uint8_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t gx = (i % columns) * (w + pad) + pad, gy = (i / columns) * (h + pad) + pad;
    for (std::int64_t y = 0; y < h; ++y)
      std::copy_n(src + ((i * h + y) * w) * c, w * c,
                  img.pixels.begin() + static_cast<std::ptrdiff_t>(((gy + y) * img.width + gx) * c));
  }
  return img;
}

}  // namespace

void Trainer::emit(nlohmann::json event) const {
  if (!m_leader || !m_request.events) return;
  std::ostream& out = *m_request.events;
  out << event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  out.flush();
}

/// The model description every checkpoint's model file carries; its sampling defaults
/// are what the preview grids use.
void Trainer::describeModel() {
  if (m_ae) return describeAutoencoder();
  const SampleGridSettings& g = m_s.samples;
  m_samplerName = g.sampler.empty() ? (m_process.diffusion ? "ddim" : "euler") : g.sampler;
  SamplingDefaults trainedDefaults;
  trainedDefaults.sampler = m_samplerName;
  trainedDefaults.steps = g.steps;
  trainedDefaults.cfg = m_caps.nullClass ? g.cfg : 1.0;
  trainedDefaults.clipX0 = g.clipX0;
  const BatchingOptions& batching = m_s.data.batching;
  m_description = {
      {"backbone", {{"kind", m_s.model["backbone"]}, {"config", m_backboneConfig}}},
      {"process", m_process.toJson()},
      {"classes",
       {{"count", static_cast<std::int64_t>(m_data.classNames.size())},
        {"null_class", m_caps.nullClass},
        {"names", m_data.classNames}}},
      {"data", {{"kind", "image"}, {"channels", m_data.channels}, {"size", {batching.height, batching.width}}}},
      {"defaults", trainedDefaults.toJson()},
      {"source", {{"trained_by", "tessera-cli train"}, {"data", m_data.summary}}},
  };
  m_description["process"]["kind"] = m_process.kind();
  if (m_firstStage) {
    // The backbone's data are the autoencoder's latents; the pictures come from its decoder.
    m_description["data"] = {{"kind", "latent"},
                             {"channels", m_firstStage->network->latentChannels()},
                             {"size", {batching.height / m_pixelFactor, batching.width / m_pixelFactor}}};
    m_description["autoencoder"] = m_firstStage->description;
    m_description["autoencoder"]["sha256"] = m_firstStageSha;
    m_description["source"]["latents"] = m_latentReport;
  }
  // The sizes the model saw in training, for the studio's resolution picker.
  std::map<std::pair<std::int64_t, std::int64_t>, std::int64_t> seen;
  for (std::int64_t i = 0; i < m_batcher->itemCount(); ++i) {
    const auto [h, w] = m_batcher->itemSize(i);
    ++seen[{h / m_pixelFactor, w / m_pixelFactor}];
  }
  nlohmann::json sizes = nlohmann::json::array();
  for (const auto& [hw, count] : seen) sizes.push_back({{"height", hw.first}, {"width", hw.second}, {"count", count}});
  m_description["data"]["trained_sizes"] = sizes;
}

void Trainer::emitStart() {
  std::int64_t parameters = 0;
  for (const auto& p : m_params) parameters += p.numel();
  emit({{"event", "start"},
        {"step", m_startStep},
        {"steps", m_s.schedule.steps},
        {"resumed_from", m_resumeFrom},
        {"world_size", m_world},
        {"parameters", parameters},
        {"data", m_data.summary},
        {"batching", m_batcher->describe()},
        {"validation_images", m_validation.size()},
        {"latents", m_latentReport},
        {"init", m_initReport},
        {"config", m_s.resolved}});
}

/// What a finished step is due to report, in this order: the "step" event, validation,
/// a checkpoint, a sample grid.
Result<void> Trainer::reportStep(const TrainStepReport& done, std::int64_t epoch) {
  const std::int64_t step = m_step;
  const bool last = step == m_s.schedule.steps;
  if (step % m_s.logEvery == 0 || last)
    logStep(done, epoch);
  else
    m_bar->update(step);
  if (m_s.validation.every > 0 && (step % m_s.validation.every == 0 || last) && m_valBatcher && m_ae) {
    reportReconstructions(step);
  } else if (m_s.validation.every > 0 && (step % m_s.validation.every == 0 || last) && m_valBatcher) {
    const double v = validationLoss(*m_net), ve = validationLoss(*m_ema);
    emit({{"event", "validation"},
          {"step", step},
          {"loss", v},
          {"loss_ema", ve},
          {"images", m_valBatcher->itemCount()},
          {"timesteps", m_s.validation.timesteps}});
  }
  const double elapsed = elapsedSeconds();
  if (step % m_s.checkpoint.every == 0 || last) {
    if (auto ok = writeCheckpoint(step, elapsed, done.loss); !ok) return ok;
  }
  const bool asked = m_request.sampleNow && m_request.sampleNow->exchange(false);
  if (asked || (m_s.samples.every > 0 && (step % m_s.samples.every == 0 || last))) {
    if (auto ok = m_ae ? writeReconstructions(step) : writeSamples(step); !ok) return ok;
  }
  return {};
}

/// The "step" event: the window's mean loss and throughput since the last one.
void Trainer::logStep(const TrainStepReport& done, std::int64_t epoch) {
  Window& w = m_window;
  const double now = nowSeconds();
  const double elapsed = now - w.start;
  const double perStep = elapsed / static_cast<double>(std::max<std::int64_t>(1, w.steps));
  const double steps = static_cast<double>(w.steps);
  emit({{"event", "step"},
        {"step", done.step},
        {"epoch", epoch},
        {"loss", w.lossSum / steps},
        {"last_loss", done.loss},
        {"lr", done.lr},
        {"grad_norm", done.gradNorm},
        {"images_per_s", static_cast<double>(w.images) / (perStep * steps)},
        {"images", w.images},
        {"tokens_computed", w.tokens},
        {"real_token_fraction", w.tokens > 0 ? static_cast<double>(w.realTokens) / static_cast<double>(w.tokens) : 1.0},
        {"eta_s", perStep * static_cast<double>(m_s.schedule.steps - done.step)},
        {"data_wait_fraction", elapsed > 0 ? w.wait / elapsed : 0.0}});
  std::ostringstream note;
  note << "loss " << std::setprecision(4) << w.lossSum / steps;
  m_bar->update(done.step, note.str());
  w = Window{};
  w.start = now;
}

/// The "validation" event of an autoencoder run: reconstruction scores of the network
/// and of its EMA.
void Trainer::reportReconstructions(std::int64_t step) {
  const ReconstructionScores v = reconstructionScores(*m_ae), ve = reconstructionScores(*m_aeEma);
  emit({{"event", "validation"},
        {"step", step},
        {"loss", v.loss},
        {"loss_ema", ve.loss},
        {"l1", v.l1},
        {"l1_ema", ve.l1},
        {"mse", v.mse},
        {"mse_ema", ve.mse},
        {"psnr", v.psnr},
        {"psnr_ema", ve.psnr},
        {"images", ve.images}});
}

/// An autoencoder run's grid: rows of up to 8 validation images (training images when
/// there are none), each followed by the EMA's reconstructions of them.
Result<void> Trainer::writeReconstructions(std::int64_t step) {
  if (!m_leader) return {};
  const double start = nowSeconds();
  torch::NoGradGuard g;
  const Batcher& source = m_valBatcher ? *m_valBatcher : *m_batcher;
  const at::Tensor x = frontItems(source, 16);
  const at::Tensor xr = m_aeEma->decode(m_aeEma->encode(x.to(m_device)).mean).to(at::kCPU).to(at::kFloat);
  const std::int64_t columns = std::min<std::int64_t>(8, x.size(0));
  std::vector<at::Tensor> rows;
  for (std::int64_t r = 0; r < x.size(0); r += columns) {
    const std::int64_t e = std::min(x.size(0), r + columns);
    rows.push_back(x.slice(0, r, e));
    rows.push_back(xr.slice(0, r, e));
  }
  std::ostringstream name;
  name << "step_" << std::setw(8) << std::setfill('0') << step << ".png";
  const std::string path = (m_runDir / "samples" / name.str()).string();
  const nlohmann::json meta = {{"kind", "reconstructions"}, {"step", step}, {"images", x.size(0)}};
  if (auto ok = writePng(path, gridImage(at::cat(rows), columns), {{"tessera", meta.dump()}}); !ok) return ok;
  emit({{"event", "samples"},
        {"step", step},
        {"path", path},
        {"kind", "reconstructions"},
        {"images", x.size(0)},
        {"seconds", nowSeconds() - start}});
  return {};
}

/// A grid from the EMA model: samples.per_class rows of the chosen classes, the fixed
/// sample seed, written to RUN_DIR/samples/step_NNNNNNNN.png with its settings.
Result<void> Trainer::writeSamples(std::int64_t step) {
  if (!m_leader) return {};
  const SampleGridSettings& s = m_s.samples;
  LoadedModel m{"", m_description, m_ema, m_process};
  if (m_firstStage) m.autoencoder = m_firstStage;
  auto traits = modelTraits(m);
  if (!traits) return fail(traits.error());
  std::vector<std::int64_t> columns;
  if (s.classes.empty())
    for (std::int64_t k = 0; k < traits->numClasses; ++k) columns.push_back(k);
  for (const auto& token : s.classes) {
    auto k = resolveClass(*traits, token);
    if (!k) return fail(k.error().withContext("samples.classes"));
    columns.push_back(*k);
  }
  GenerationRequest g;
  for (std::int64_t r = 0; r < s.perClass; ++r) g.classes.insert(g.classes.end(), columns.begin(), columns.end());
  g.sampler = m_samplerName;
  g.options.steps = s.steps;
  g.options.clipDenoised = s.clipX0;
  g.guidance.scale = m_caps.nullClass ? s.cfg : 1.0;
  g.seed = s.seed;
  g.batch = 64;
  auto result = generate(m, g);
  if (!result) return fail(result.error().withContext("sample grid"));
  std::ostringstream name;
  name << "step_" << std::setw(8) << std::setfill('0') << step << ".png";
  const std::string path = (m_runDir / "samples" / name.str()).string();
  nlohmann::json meta = result->settings;
  meta["step"] = step;
  if (auto ok = writePng(path, gridImage(result->samples, static_cast<std::int64_t>(columns.size())),
                         {{"tessera", meta.dump()}});
      !ok)
    return ok;
  emit({{"event", "samples"}, {"step", step}, {"path", path}, {"classes", columns}, {"seconds", result->seconds}});
  return {};
}

}  // namespace tessera
