// SPDX-License-Identifier: Apache-2.0
#include "widgets/studio/studio_service.h"

#include "widgets/studio/tensor_image.h"
#include "widgets/studio/text.h"
#include "widgets/studio/job_request.h"

#include "core/data/batching.h"
#include "core/formats/safetensors.h"
#include "core/gallery/gallery_store.h"
#include "core/samplers/observer_fanout.h"
#include "core/samplers/sampler.h"
#include "core/samplers/sampling_space.h"
#include "core/system/resources.h"
#include "engine/generated_image.h"
#include "engine/generation.h"
#include "engine/inspection.h"
#include "engine/model_file.h"
#include "models/common/packing.h"
#include "models/probe.h"

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>
#include <torch/utils.h>
#include <opencv2/videoio.hpp>

#include <QDateTime>
#include <QDir>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QImageReader>
#include <QSet>
#include <QStandardPaths>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <set>

namespace tessera {
namespace {

QString evaluationLine(const nlohmann::json& d) {
  if (!d.contains("evaluation") || !d["evaluation"].is_array() || d["evaluation"].empty()) return {};
  const auto& e = d["evaluation"].back();
  QString line = QStringLiteral("class accuracy %1%, FD %2 (%3× floor), precision %4, recall %5")
                     .arg(e.value("class_accuracy", 0.0) * 100, 0, 'f', 1)
                     .arg(e.value("fd", 0.0), 0, 'f', 1)
                     .arg(e.value("fd_ratio", 0.0), 0, 'f', 1)
                     .arg(e.value("precision", 0.0), 0, 'f', 2)
                     .arg(e.value("recall", 0.0), 0, 'f', 2);
  if (e.contains("sampling")) {
    const auto& s = e["sampling"];
    line += QStringLiteral(" — %1, %2 steps, guidance %3")
                .arg(qs(s.value("sampler", std::string("?"))))
                .arg(s.value("steps", 0))
                .arg(s.contains("guidance") ? s["guidance"].value("scale", 1.0) : 1.0);
  }
  return line;
}

ModelInfo describe(const QString& path, const QString& origin) {
  ModelInfo info;
  info.path = path;
  info.name = QFileInfo(path).completeBaseName();
  info.origin = origin;
  auto loaded = loadModelFile(path.toStdString());
  if (!loaded) {
    info.error = qs(loaded.error().message());
    return info;
  }
  auto traits = modelTraits(*loaded);
  if (!traits) {
    info.error = qs(traits.error().message());
    return info;
  }
  const auto& d = loaded->description;
  info.backbone = qs(d["backbone"].value("kind", std::string()));
  info.process = loaded->process ? qs(loaded->process->kind()) : QString();
  info.dataKind = qs(traits->dataKind);
  for (const auto& p : loaded->backbone->parameters()) info.parameters += p.numel();
  info.trainedWidth = static_cast<int>(traits->trainedWidth);
  info.trainedHeight = static_cast<int>(traits->trainedHeight);
  info.sizeMultiple = static_cast<int>(traits->sizeMultiple);
  info.channels = static_cast<int>(traits->channels);
  if (loaded->autoencoder) {
    info.autoencoder = qs(loaded->autoencoder->network->kind());
    info.pixelFactor = static_cast<int>(traits->pixelFactor);
  }
  const auto caps = loaded->backbone->capabilities();
  info.anySize = caps.anyGrid || caps.packed;
  info.packed = caps.packed;
  if (d.contains("data") && d["data"].contains("trained_sizes")) {
    for (const auto& e : d["data"]["trained_sizes"])
      info.trainedSizes.push_back({QSize(e.value("width", 0), e.value("height", 0)), e.value("count", 0)});
  } else if (info.trainedWidth > 0) {
    info.trainedSizes.push_back({QSize(info.trainedWidth, info.trainedHeight), 1});
  }
  for (const auto& n : traits->classNames) info.classNames << qs(n);
  if (info.classNames.isEmpty())
    for (std::int64_t k = 0; k < traits->numClasses; ++k) info.classNames << QString::number(k);
  info.nullClass = traits->nullClass;
  const SamplingDefaults defaults = SamplingDefaults::of(*loaded);
  info.defaultSampler = qs(defaults.sampler);
  info.defaultSteps = static_cast<int>(defaults.steps);
  info.defaultCfg = defaults.cfg;
  info.defaultCfgLow = defaults.cfgLow;
  info.defaultCfgHigh = defaults.cfgHigh;
  info.defaultClip = defaults.clipX0;
  const auto config = d["backbone"].value("config", nlohmann::json::object());
  info.depth = config.value("depth", 0);
  info.heads = config.value("num_heads", 0);
  if (info.trainedWidth > 0) {
    const auto layers = loaded->backbone->attentionLayers(traits->trainedHeight, traits->trainedWidth);
    if (!layers.empty()) {
      info.depth = static_cast<int>(layers.size());
      info.heads = 0;
      for (const auto& l : layers) {
        info.attentionNames << qs(l.name);
        info.attentionHeads << static_cast<int>(l.heads);
        info.attentionFactors << static_cast<int>(std::max<std::int64_t>(1, traits->trainedHeight / l.gridH));
        info.heads = std::max(info.heads, static_cast<int>(l.heads));
      }
    }
  }
  if ((info.depth > 0 || loaded->backbone->forwardFlops(1, 1)) && info.trainedWidth > 0)
    info.gflops = forwardGflops(*loaded, traits->trainedHeight, traits->trainedWidth);
  info.evaluation = evaluationLine(d);
  return info;
}

}  // namespace

QString userModelFolder() {
  return QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + QStringLiteral("/models");
}

QStringList modelFolders() {
  QStringList dirs;
  for (const auto& d : resourceDirs()) {
    const QString models = qs(d) + QStringLiteral("/models");
    if (QFileInfo(models).isDir() && !dirs.contains(QDir(models).canonicalPath())) dirs << QDir(models).canonicalPath();
  }
  dirs << userModelFolder();
  return dirs;
}

namespace {

/// An autoencoder file (its header names one and no backbone): read only the header.
bool isAutoencoderFile(const QString& path) {
  auto file = SafetensorsFile::open(path.toStdString());
  return file && file->metadata().count(kAutoencoderMetadataKey) && !file->metadata().count("tessera.model");
}

}  // namespace

QVector<ModelInfo> scanModels(const QStringList& extraFiles) {
  QVector<ModelInfo> out;
  std::set<QString> seen;
  const QString user = userModelFolder();
  for (const QString& dir : modelFolders()) {
    const auto files = QDir(dir).entryInfoList({QStringLiteral("*.safetensors")}, QDir::Files, QDir::Name);
    for (const QFileInfo& f : files) {
      if (f.fileName().contains(QStringLiteral("evaluator"))) continue;  // the eval CNN is not a generator
      const QString path = f.canonicalFilePath();
      if (!seen.insert(path).second) continue;
      if (isAutoencoderFile(path)) continue;  // a first stage (kl-fashion), not a generator
      out.push_back(describe(path, dir == user ? QStringLiteral("user") : QStringLiteral("shipped")));
    }
  }
  for (const QString& file : extraFiles) {
    const QString path = QFileInfo(file).canonicalFilePath();
    if (path.isEmpty() || !seen.insert(path).second) continue;
    out.push_back(describe(path, QStringLiteral("opened")));
  }
  return out;
}

QVector<QImage> classExamples(const ModelInfo& model) {
  QVector<QImage> out(model.classNames.size());
  // Only the description matters here: the header, not the weights.
  auto file = SafetensorsFile::open(model.path.toStdString());
  if (!file || !file->metadata().count("tessera.model")) return out;
  const auto d = nlohmann::json::parse(file->metadata().at("tessera.model"), nullptr, false);
  if (d.is_discarded()) return out;
  if (!d.contains("source") || !d["source"].contains("data")) return out;
  const auto& data = d["source"]["data"];
  DataSpec spec;
  spec.source = data.value("source", std::string());
  if (spec.source == "fashion-mnist" || spec.source == "fashion-native") spec.split = "test";
  spec.dir = data.value("dir", std::string());
  if (data.contains("classes") && data["classes"].is_array()) spec.classes = data["classes"].get<std::vector<std::string>>();
  auto images = loadLabelledImages(spec);
  if (!images) return out;
  for (std::size_t i = 0; i < images->labels.size(); ++i) {
    const auto k = images->labels[i];
    if (k < 0 || k >= out.size() || !out[static_cast<int>(k)].isNull()) continue;
    const at::Tensor u8 = images->images[i];  // (C, H, W) uint8
    out[static_cast<int>(k)] = toQImage(u8.to(at::kFloat) / 127.5 - 1.0);
  }
  return out;
}

QString sizeProblem(const ModelInfo& model, int width, int height) {
  ModelTraits t;
  t.sizeMultiple = model.sizeMultiple;
  auto ok = checkSize(t, height, width);
  if (!ok) return qs(ok.error().message());
  if (!model.anySize && (width != model.trainedWidth || height != model.trainedHeight))
    return QStringLiteral("this %1 model generates only its trained size, %2×%3").arg(model.backbone).arg(model.trainedWidth).arg(model.trainedHeight);
  return {};
}

QStringList samplerNames() {
  QStringList out;
  for (const auto& n : samplerRegistry().names()) out << qs(n);
  return out;
}

QString defaultGalleryPath() {
  const QByteArray env = qgetenv("TESSERA_GALLERY");
  if (!env.isEmpty()) return QString::fromLocal8Bit(env);
  return QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + QStringLiteral("/gallery.db");
}

QString writeVideo(const QString& path, const QVector<QImage>& frames, double fps, int minSide) {
  if (frames.isEmpty()) return QStringLiteral("no frames to write");
  const QSize base = frames.front().size();
  const int scale = std::max(1, (minSide + std::max(base.width(), base.height()) - 1) / std::max(base.width(), base.height()));
  const cv::Size size(base.width() * scale, base.height() * scale);
  const bool mp4 = path.endsWith(QStringLiteral(".mp4"), Qt::CaseInsensitive);
  if (!mp4 && !path.endsWith(QStringLiteral(".avi"), Qt::CaseInsensitive))
    return QStringLiteral("%1: expected a .avi or .mp4 file name").arg(path);
  cv::VideoWriter writer(path.toStdString(), mp4 ? cv::VideoWriter::fourcc('m', 'p', '4', 'v') : cv::VideoWriter::fourcc('M', 'J', 'P', 'G'),
                         fps, size, true);
  if (!writer.isOpened())
    return QStringLiteral("%1: OpenCV cannot write this video format here%2").arg(path, mp4 ? QStringLiteral(" (try .avi)") : QString());
  for (const QImage& frame : frames) {
    QImage rgb = frame.convertToFormat(QImage::Format_RGB888).scaled(size.width, size.height, Qt::IgnoreAspectRatio, Qt::FastTransformation);
    cv::Mat view(rgb.height(), rgb.width(), CV_8UC3, rgb.bits(), static_cast<std::size_t>(rgb.bytesPerLine()));
    cv::Mat bgr;
    cv::cvtColor(view, bgr, cv::COLOR_RGB2BGR);
    writer.write(bgr);
  }
  writer.release();
  return {};
}

QByteArray pngSettings(const QString& path) {
  QImageReader reader(path);
  return reader.text(QStringLiteral("tessera")).toUtf8();
}

// ---- the worker -------------------------------------------------------------------------

Result<GenerationRequest> requestFromJob(const GenerationJob& job, const LoadedModel& model, const ModelTraits& traits,
                                         GridSizes* packGrids) {
  GenerationRequest r;
  for (qint64 k : job.classes) r.classes.push_back(k);
  r.width = job.width;
  r.height = job.height;
  if (!job.sizes.isEmpty()) {
    QSet<QPair<int, int>> distinct;
    for (const QSize& s : job.sizes) distinct.insert({s.width(), s.height()});
    if (distinct.size() > 1) {
      if (!model.backbone->capabilities().packed)
        return fail("mixed sizes in one job need a backbone that takes packed sequences (NiT, FiT); "
                    "this model generates one size at a time");
      for (const QSize& s : job.sizes) r.sizes.emplace_back(s.height(), s.width());
      const std::int64_t p = traits.sizeMultiple;
      if (packGrids)
        for (qsizetype i = 0; i < job.classes.size(); ++i) {
          const auto& [h, w] = r.sizes[static_cast<std::size_t>(i) % r.sizes.size()];
          packGrids->emplace_back(h / p, w / p);
        }
    }
    r.width = job.sizes.front().width();
    r.height = job.sizes.front().height();
  }
  r.sampler = job.sampler.toStdString();
  r.options.steps = job.steps;
  r.options.grid = SamplingDefaults::of(model).gridFor(r.sampler, job.grid.toStdString());
  r.options.eta = job.eta;
  r.options.clipDenoised = job.clip;
  r.guidance.scale = job.cfg;
  r.guidance.low = job.cfgLow;
  r.guidance.high = job.cfgHigh;
  r.seed = job.seed;
  r.batch = std::max(1, job.batch);
  if (auto ok = r.guidance.validate(); !ok) return fail(ok.error());
  return r;
}

QString ModelSlot::load(const QString& file, bool withHash) {
  const QDateTime stamp = QFileInfo(file).lastModified();
  if (model && path == file && modified == stamp && (!withHash || !hash.empty())) return {};
  model.reset();
  traits.reset();
  hash.clear();
  auto loaded = loadModelFile(file.toStdString());
  if (!loaded) return qs(loaded.error().message());
  auto t = modelTraits(*loaded);
  if (!t) return qs(t.error().message());
  if (withHash) {
    auto h = sha256File(file.toStdString());
    if (!h) return qs(h.error().message());
    hash = *h;
  }
  model = std::move(*loaded);
  traits = *t;
  path = file;
  modified = stamp;
  return {};
}

/// The live inspector's observer: reads the probe's block statistics and timings after
/// every step, adds the latent's histogram and the guidance difference, and posts it.
class InspectorObserver final : public StepObserver {
public:
  InspectorObserver(Probe& probe, qint64 job, int steps, std::function<void(InspectorStep)> post)
      : m_probe(probe), m_job(job), m_steps(steps), m_post(std::move(post)) {}
  void onStart(const at::Tensor&, double, double) override {
    m_probe.clearResults();
    m_clock.start();
  }
  void onStep(const StepEvent& e) override {
    InspectorStep s;
    s.job = m_job;
    s.step = static_cast<int>(e.index);
    s.steps = m_steps;
    s.tau = e.tauNext;
    s.stepMs = static_cast<double>(m_clock.nsecsElapsed()) / 1e6;
    m_clock.restart();
    std::map<std::string, double> ms;
    for (const auto& [name, t] : m_probe.timings()) ms[name] += t;
    for (const auto& st : m_probe.stats()) {
      BlockStat b;
      b.name = QString::fromStdString(st.name);
      b.mean = static_cast<float>(st.mean);
      b.std = static_cast<float>(st.std);
      b.absMax = static_cast<float>(st.absMax);
      if (auto it = ms.find(st.name); it != ms.end()) b.ms = it->second;
      s.blocks.push_back(b);
    }
    m_probe.clearResults();
    const at::Tensor x = e.x->detach().to(at::kCPU, at::kFloat);
    const float lo = x.min().item<float>(), hi = x.max().item<float>();
    s.histogramMin = lo;
    s.histogramMax = hi;
    const at::Tensor h = at::histc(x, 64, lo, hi > lo ? hi : lo + 1.0f);
    s.histogram.resize(64);
    std::memcpy(s.histogram.data(), h.contiguous().data_ptr<float>(), 64 * sizeof(float));
    if (e.denoised && e.denoised->x0Conditional.defined())
      s.guidanceDifference = (e.denoised->x0Conditional - e.denoised->x0Unconditional).abs().mean().item<double>();
    m_post(std::move(s));
  }

private:
  Probe& m_probe;
  qint64 m_job;
  int m_steps;
  std::function<void(InspectorStep)> m_post;
  QElapsedTimer m_clock;
};

struct GenerationWorker::Cache {
  QString path;
  QDateTime modified;  ///< of the file when loaded: a model retrained in place is loaded again
  std::optional<LoadedModel> model;
  std::optional<ModelTraits> traits;
  std::string hash;
  QString galleryPath;
  std::optional<GalleryStore> gallery;
  // A latent model's x₀ of every step of the last job, for full decodes on request.
  qint64 latentJob = -1;
  std::map<std::pair<int, int>, at::Tensor> x0Latents;  ///< (image, step) → (C, h, w), backbone scale
  std::map<std::pair<int, int>, QImage> decoded;        ///< the decodes made so far
};

GenerationWorker::GenerationWorker() : m_cache(std::make_unique<Cache>()) {
  qRegisterMetaType<GenerationJob>();
  qRegisterMetaType<StepFrame>();
  qRegisterMetaType<QVector<StepFrame>>();
  qRegisterMetaType<NoiseLevels>();
  qRegisterMetaType<InspectorStep>();
}

GenerationWorker::~GenerationWorker() = default;

JobTokens::Scope::Scope(JobTokens& owner, qint64 id) : m_owner(owner), m_token(std::make_shared<CancelToken>()) {
  QMutexLocker lock(&owner.m_mutex);
  owner.m_token = m_token;
  owner.m_job = id;
  if (owner.m_cancelBeforeStart == id) m_token->cancel();
}

JobTokens::Scope::~Scope() {
  QMutexLocker lock(&m_owner.m_mutex);
  m_owner.m_token.reset();
  m_owner.m_job = -1;
}

bool JobTokens::Scope::cancelled() const { return m_token->cancelled(); }

void JobTokens::cancel(qint64 id) {
  QMutexLocker lock(&m_mutex);
  if (m_job == id && m_token) m_token->cancel();
  else m_cancelBeforeStart = id;
}

void GenerationWorker::cancel(qint64 id) { m_tokens.cancel(id); }

namespace {

/// Converts every step of every batch into frames for the timeline.
class FrameObserver final : public StepObserver {
public:
  /// `grids`: for a request of mixed sizes on a packed backbone, each image's token grid
  /// (the states are packs, split back into images here); empty otherwise.
  /// `autoencoder`: a latent model's, whose fitted preview map turns states and estimates
  /// into pictures (a fast linear map per latent cell; the final images are fully decoded).
  /// `keepLatent(image, step, x0)`: a latent model's x₀ of each step, for full decodes later.
  FrameObserver(int batch, GridSizes grids, std::function<void(int, QVector<StepFrame>)> emitFrames,
                const LoadedAutoencoder* autoencoder = nullptr,
                std::function<void(int, int, const at::Tensor&)> keepLatent = {})
      : m_batch(batch),
        m_grids(std::move(grids)),
        m_emit(std::move(emitFrames)),
        m_autoencoder(autoencoder),
        m_keepLatent(std::move(keepLatent)) {}
  void onStart(const at::Tensor& x, double, double) override {
    m_base = m_batches++ * m_batch;
    if (!m_grids.empty()) {
      const auto first = m_grids.begin() + m_base;
      m_current = GridSizes(first, first + std::min<std::int64_t>(m_batch, static_cast<std::int64_t>(m_grids.size()) - m_base));
    }
    const auto xs = images(x);
    QVector<StepFrame> frames;
    for (std::size_t i = 0; i < xs.size(); ++i) {
      StepFrame f;
      f.image = static_cast<int>(m_base + static_cast<std::int64_t>(i));
      f.x = picture(xs[i]);
      frames.push_back(f);
    }
    m_emit(0, frames);
  }
  void onStep(const StepEvent& e) override {
    QVector<StepFrame> frames;
    const auto xs = images(*e.x);
    std::vector<at::Tensor> x0, pred, cond, uncond;
    if (e.denoised) {
      x0 = images(e.denoised->x0);
      if (e.denoised->prediction.defined()) pred = images(e.denoised->prediction);
      if (e.denoised->x0Conditional.defined()) cond = images(e.denoised->x0Conditional), uncond = images(e.denoised->x0Unconditional);
    }
    for (std::size_t i = 0; i < xs.size(); ++i) {
      StepFrame f;
      f.image = static_cast<int>(m_base + static_cast<std::int64_t>(i));
      f.x = picture(xs[i]);
      if (!x0.empty()) f.x0 = picture(x0[i]);
      if (!x0.empty() && m_autoencoder) {
        f.x0Channels = channelStrip(x0[i]);
        if (m_keepLatent) m_keepLatent(f.image, static_cast<int>(e.index + 1), x0[i].to(at::kCPU, at::kFloat).clone());
      }
      if (!pred.empty()) {
        // The prediction is not an image: stretch its own range of this image to [-1, 1].
        const at::Tensor p = pred[i].to(at::kFloat);
        const double lo = p.min().item<double>(), hi = p.max().item<double>();
        f.output = toQImage(hi > lo ? (p - lo) / (hi - lo) * 2.0 - 1.0 : at::zeros_like(p), kMaxSide);
      }
      if (!cond.empty()) {
        f.x0Conditional = picture(cond[i]);
        f.x0Unconditional = picture(uncond[i]);
      }
      frames.push_back(f);
    }
    m_emit(static_cast<int>(e.index + 1), frames);
  }

private:
  /// The images of a state: rows of a batch, or the images of a pack.
  std::vector<at::Tensor> images(const at::Tensor& x) const {
    if (!m_current.empty()) return unpackImages(x.to(at::kCPU, at::kFloat), m_current);
    std::vector<at::Tensor> out;
    for (std::int64_t i = 0; i < x.size(0); ++i) out.push_back(x[i]);
    return out;
  }
  /// A state or estimate as a picture: itself for pixel models, the preview map's colours
  /// enlarged to the picture's size for latent ones.
  QImage picture(const at::Tensor& chw) const {
    if (!m_autoencoder || !m_autoencoder->preview.defined()) return toQImage(chw, kMaxSide);
    const at::Tensor z = m_autoencoder->scaling.fromBackbone(chw.to(at::kCPU, at::kFloat).unsqueeze(0));
    const std::int64_t f = m_autoencoder->network->downsampling();
    const std::int64_t h = chw.size(1) * f, w = chw.size(2) * f;
    const double shrink = std::min(1.0, static_cast<double>(kMaxSide) / static_cast<double>(std::max(h, w)));
    const at::Tensor rgb =
        at::upsample_bilinear2d(previewDecode(m_autoencoder->preview, z),
                                {std::max<std::int64_t>(1, std::llround(static_cast<double>(h) * shrink)),
                                 std::max<std::int64_t>(1, std::llround(static_cast<double>(w) * shrink))},
                                false);
    return toQImage(rgb[0].clamp(-1, 1), kMaxSide);
  }
  /// The channels of a latent (C, h, w) side by side, each stretched from its own minimum
  /// (black) to its maximum (white), a grey line between them.
  static QImage channelStrip(const at::Tensor& chw) {
    const at::Tensor z = chw.to(at::kCPU, at::kFloat);
    const std::int64_t c = z.size(0), h = z.size(1), w = z.size(2);
    at::Tensor strip = at::zeros({1, h, c * (w + 1) - 1});
    for (std::int64_t k = 0; k < c; ++k) {
      const at::Tensor ch = z[k];
      const double lo = ch.min().item<double>(), hi = ch.max().item<double>();
      strip.narrow(2, k * (w + 1), w)[0].copy_(hi > lo ? (ch - lo) / (hi - lo) * 2.0 - 1.0 : at::zeros_like(ch));
      if (k + 1 < c) strip.narrow(2, k * (w + 1) + w, 1).fill_(0.0);
    }
    return toQImage(strip, kMaxSide * 2);
  }
  static constexpr int kMaxSide = 256;  ///< timeline frames of big images are shrunk to bound memory
  int m_batch;
  GridSizes m_grids, m_current;
  std::int64_t m_base = 0, m_batches = 0;
  std::function<void(int, QVector<StepFrame>)> m_emit;
  const LoadedAutoencoder* m_autoencoder = nullptr;
  std::function<void(int, int, const at::Tensor&)> m_keepLatent;
};

}  // namespace

void GenerationWorker::run(const GenerationJob& job) {
  QElapsedTimer clock;
  clock.start();
  JobTokens::Scope token(m_tokens, job.id);
  auto failWith = [&](const QString& message) { Q_EMIT failed(job.id, message); };
  try {
    Cache& c = *m_cache;
    const QDateTime modified = QFileInfo(job.modelPath).lastModified();
    if (!c.model || c.path != job.modelPath || c.modified != modified) {
      c.model.reset();
      auto loaded = loadModelFile(job.modelPath.toStdString());
      if (!loaded) return failWith(qs(loaded.error().message()));
      auto traits = modelTraits(*loaded);
      if (!traits) return failWith(qs(traits.error().message()));
      auto hash = sha256File(job.modelPath.toStdString());
      if (!hash) return failWith(qs(hash.error().message()));
      c.model = std::move(*loaded);
      c.traits = *traits;
      c.hash = *hash;
      c.path = job.modelPath;
      c.modified = modified;
    }
    if (!job.galleryPath.isEmpty() && (!c.gallery || c.galleryPath != job.galleryPath)) {
      c.gallery.reset();
      auto store = GalleryStore::open(job.galleryPath.toStdString());
      if (!store) return failWith(qs(store.error().message()));
      c.gallery.emplace(std::move(*store));
      c.galleryPath = job.galleryPath;
    }

    GridSizes packGrids;
    auto made = requestFromJob(job, *c.model, *c.traits, &packGrids);
    if (!made) return failWith(qs(made.error().message()));
    GenerationRequest r = std::move(*made);
    r.cancel = token.token();
    r.guidanceParts = true;

    // The noise levels of the grid, for the timeline's plot (generate() builds the same grid).
    const SamplerEntry* entry = samplerRegistry().find(r.sampler);
    if (!entry) return failWith(QStringLiteral("unknown sampler '%1'").arg(job.sampler));
    auto space = makeSamplingSpace(*c.model->process);
    if (!space) return failWith(qs(space.error().message()));
    SamplerOptions opts = r.options;
    const auto H = r.height > 0 ? r.height : c.traits->trainedHeight;
    const auto W = r.width > 0 ? r.width : c.traits->trainedWidth;
    opts.resolutionScale = static_cast<double>(H * W) / static_cast<double>(c.traits->trainedHeight * c.traits->trainedWidth);
    auto grid = samplerGrid(*entry, opts, **space);
    if (!grid) return failWith(qs(grid.error().message()));
    NoiseLevels levels;
    for (double tau : *grid) {
      const Schedule s = (*space)->schedule(tau);
      levels.tau << tau;
      levels.time << (*space)->modelTime(tau);
      levels.sigma << s.sigma;
      levels.alpha << s.alpha;
    }
    Q_EMIT started(job.id, static_cast<int>(job.classes.size()), static_cast<int>(grid->size()) - 1, levels);

    c.latentJob = job.id;
    c.x0Latents.clear();
    c.decoded.clear();
    FrameObserver observer(
        r.batch, packGrids,
        [this, id = job.id](int step, QVector<StepFrame> frames) { Q_EMIT stepped(id, step, frames); },
        c.model->autoencoder ? &*c.model->autoencoder : nullptr,
        [&c](int image, int step, const at::Tensor& x0) {
          c.x0Latents[{image, step}] = x0;
        });
    ObserverFanout observers;
    observers.targets.push_back(&observer);
    Probe probe;
    std::optional<InspectorObserver> inspector;
    if (job.inspect) {
      probe.requestActivationStats(true);
      probe.requestTimings(true);
      r.probe = &probe;
      observers.targets.push_back(&inspector.emplace(probe, job.id, static_cast<int>(grid->size()) - 1,
                                                     [this, id = job.id](InspectorStep s) { Q_EMIT inspected(id, s); }));
    }
    r.observer = &observers;
    auto result = generate(*c.model, r);
    if (!result) return failWith(qs(result.error().message()));

    for (std::int64_t i = 0; i < result->completed; ++i) {
      if (!c.traits->makesPictures()) break;
      auto image = describeGeneratedImage(*c.model, *c.traits, *result, r.classes, r.seed, i, job.modelPath.toStdString(), c.hash);
      if (!image) return failWith(qs(image.error().message()));
      qint64 galleryId = 0;
      if (c.gallery && !job.galleryPath.isEmpty()) {
        auto id = c.gallery->add(image->record, image->png, image->thumbnail);
        if (!id) return failWith(qs(id.error().message()));
        galleryId = *id;
      }
      const QByteArray png(image->png.data(), static_cast<int>(image->png.size()));
      Q_EMIT imageReady(job.id, static_cast<int>(i), QImage::fromData(png, "PNG"), png, galleryId);
    }
    const QString summary = QStringLiteral("%1 of %2 images, %3 steps, %4 network evaluations, %5 s")
                                .arg(result->completed)
                                .arg(job.classes.size())
                                .arg(result->steps)
                                .arg(result->nfe)
                                .arg(result->seconds, 0, 'f', 2);
    Q_EMIT finished(job.id, result->cancelled, clock.elapsed() / 1000.0, summary);
  } catch (const std::exception& e) {
    failWith(QStringLiteral("generation failed: %1").arg(QString::fromUtf8(e.what())));
  }
}

void GenerationWorker::decodeStep(qint64 id, int image, int step) {
  Cache& c = *m_cache;
  if (id != c.latentJob || !c.model || !c.model->autoencoder) return;
  const std::pair<int, int> key{image, step};
  if (auto done = c.decoded.find(key); done != c.decoded.end()) {
    Q_EMIT stepDecoded(id, image, step, done->second);
    return;
  }
  const auto latent = c.x0Latents.find(key);
  if (latent == c.x0Latents.end()) return;
  try {
    torch::NoGradGuard noGrad;
    const LoadedAutoencoder& ae = *c.model->autoencoder;
    // As generation decodes its final images: the same tiles, so a big picture stays in bounded memory.
    const GenerationRequest defaults;
    const at::Tensor z = ae.scaling.fromBackbone(latent->second.unsqueeze(0));
    const at::Tensor pixels = decodeTiled(*ae.network, z, defaults.decodeTile, defaults.decodeOverlap);
    const QImage picture = toQImage(pixels[0].clamp(-1, 1));
    c.decoded[key] = picture;
    Q_EMIT stepDecoded(id, image, step, picture);
  } catch (const std::exception& e) {
    qWarning("timeline: decoding step %d of image %d failed: %s", step, image, e.what());
  }
}

}  // namespace tessera
