// SPDX-License-Identifier: Apache-2.0
#include "widgets/studio/inspection_service.h"

#include "widgets/studio/tensor_image.h"
#include "widgets/studio/text.h"
#include "core/formats/safetensors.h"
#include "core/samplers/sampler.h"
#include "engine/generated_image.h"
#include "engine/inspection.h"
#include "widgets/studio/job_request.h"

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tessera {

struct InspectionData {
  InspectionCapture capture;
  InspectionSummary summary;
};

namespace {

QVector<float> toVector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU, at::kFloat).contiguous();
  QVector<float> out(static_cast<qsizetype>(c.numel()));
  std::memcpy(out.data(), c.data_ptr<float>(), static_cast<std::size_t>(c.numel()) * sizeof(float));
  return out;
}

const int kColorMaps[] = {cv::COLORMAP_INFERNO, cv::COLORMAP_VIRIDIS, cv::COLORMAP_MAGMA, cv::COLORMAP_PLASMA,
                          cv::COLORMAP_TURBO,   cv::COLORMAP_JET,     cv::COLORMAP_HOT,   cv::COLORMAP_BONE};

}  // namespace

InspectionSummary summarize(const InspectionHandle& h) { return h ? h->summary : InspectionSummary(); }

quint64 inspectionBytes(const ModelInfo& m, int width, int height, int capturedSteps, int layer, int totalSteps) {
  quint64 all = 0, largest = 0;
  for (int l = 0; l < m.depth; ++l) {
    if (layer >= 0 && l != layer) continue;
    const bool own = l < m.attentionFactors.size();
    const quint64 p = static_cast<quint64>(own ? m.attentionFactors[l] : std::max(1, m.sizeMultiple));
    const quint64 T = (static_cast<quint64>(height) / p) * (static_cast<quint64>(width) / p);
    const quint64 perLayer = static_cast<quint64>(own ? m.attentionHeads[l] : m.heads) * T * T * sizeof(float);
    all += perLayer;
    largest = std::max(largest, perLayer);
  }
  quint64 bytes = all * static_cast<quint64>(capturedSteps + 2) + 2 * largest;
  return bytes + static_cast<quint64>(totalSteps) * static_cast<quint64>(width) * static_cast<quint64>(height) * sizeof(float);
}

GenerationJob singleImageJob(const GenerationJob& job, int index) {
  GenerationJob one = job;
  one.classes = {job.classes.value(index)};
  one.seed = job.seed + static_cast<quint64>(index);
  if (!job.sizes.isEmpty()) {
    const QSize s = job.sizes[index % job.sizes.size()];
    one.width = s.width();
    one.height = s.height();
  }
  one.sizes.clear();
  one.batch = 1;
  one.galleryPath.clear();
  one.inspect = false;
  return one;
}

GenerationJob jobFromSettings(const QByteArray& settings, const QVector<ModelInfo>& models, QString* problem) {
  GenerationJob job;
  auto complain = [&](const QString& p) {
    if (problem) *problem = p;
    return GenerationJob();
  };
  const QJsonDocument doc = QJsonDocument::fromJson(settings);
  if (!doc.isObject()) return complain(QStringLiteral("the image carries no Tessera settings"));
  const QJsonObject meta = doc.object();
  const QJsonObject model = meta.value(QStringLiteral("model")).toObject();
  const QString path = model.value(QStringLiteral("path")).toString(), file = model.value(QStringLiteral("file")).toString();
  for (const ModelInfo& m : models)
    if (m.error.isEmpty() && (m.path == path || QFileInfo(m.path).canonicalFilePath() == QFileInfo(path).canonicalFilePath()))
      job.modelPath = m.path;
  for (const ModelInfo& m : models)
    if (job.modelPath.isEmpty() && m.error.isEmpty() && QFileInfo(m.path).fileName() == file) job.modelPath = m.path;
  if (job.modelPath.isEmpty()) return complain(QStringLiteral("its model %1 is not in the model list").arg(file));
  const QJsonObject image = meta.value(QStringLiteral("image")).toObject();
  const QJsonObject size = meta.value(QStringLiteral("size")).toObject();
  job.classes = {image.value(QStringLiteral("class")).toInteger(0)};
  job.seed = static_cast<quint64>(image.value(QStringLiteral("seed")).toInteger(0));
  job.width = size.value(QStringLiteral("width")).toInt();
  job.height = size.value(QStringLiteral("height")).toInt();
  job.sampler = meta.value(QStringLiteral("sampler")).toString();
  job.steps = meta.value(QStringLiteral("steps")).toInt(50);
  const QJsonObject guidance = meta.value(QStringLiteral("guidance")).toObject();
  job.cfg = guidance.value(QStringLiteral("scale")).toDouble(1.0);
  const QJsonArray interval = guidance.value(QStringLiteral("interval")).toArray();
  job.cfgLow = interval.size() == 2 ? interval[0].toDouble() : 0.0;
  job.cfgHigh = interval.size() == 2 ? interval[1].toDouble() : 1.0;
  const QJsonObject options = meta.value(QStringLiteral("options")).toObject();
  job.clip = options.value(QStringLiteral("clip_denoised")).toBool(false);
  job.grid = options.value(QStringLiteral("grid")).toString(QStringLiteral("default"));
  job.eta = options.value(QStringLiteral("eta")).toDouble(0.0);
  job.batch = 1;
  if (job.width <= 0 || job.height <= 0 || job.sampler.isEmpty()) return complain(QStringLiteral("its settings name no size or sampler"));
  if (problem) problem->clear();
  return job;
}

QVector<float> attentionMapOf(const InspectionHandle& h, int stepIndex, int layer, int head, int token, bool reverse, QString* error) {
  if (!h) return {};
  auto map = attentionMap(h->capture, stepIndex, layer, head, token, reverse);
  if (!map) {
    if (error) *error = qs(map.error().message());
    return {};
  }
  return toVector(*map);
}

QVector<float> entropyOf(const InspectionHandle& h, int stepIndex) {
  if (!h) return {};
  auto e = headEntropy(h->capture, stepIndex);
  return e ? toVector(*e) : QVector<float>();
}

QVector<float> guidanceMapOf(const InspectionHandle& h, int index) {
  if (!h || !h->capture.guidance.defined() || index < 0 || index >= h->capture.guidance.size(0)) return {};
  return toVector(h->capture.guidance[index]);
}

QStringList colorMapNames() {
  return {QStringLiteral("Inferno"), QStringLiteral("Viridis"), QStringLiteral("Magma"), QStringLiteral("Plasma"),
          QStringLiteral("Turbo"),   QStringLiteral("Jet"),     QStringLiteral("Hot"),   QStringLiteral("Bone")};
}

QImage heatOverlay(const QImage& base, const QVector<float>& map, int mapW, int mapH, int colorMap, double opacity, int scale) {
  if (base.isNull()) return {};
  scale = std::max(1, scale);
  const QImage rgb = base.convertToFormat(QImage::Format_RGB888).scaled(base.width() * scale, base.height() * scale, Qt::IgnoreAspectRatio,
                                                                         Qt::FastTransformation);
  if (map.size() != static_cast<qsizetype>(mapW) * mapH || mapW <= 0 || mapH <= 0) return rgb;
  cv::Mat m(mapH, mapW, CV_32F, const_cast<float*>(map.data()));
  double lo = 0, hi = 0;
  cv::minMaxLoc(m, &lo, &hi);
  cv::Mat u8;
  m.convertTo(u8, CV_8U, hi > 0 ? 255.0 / hi : 0.0);
  cv::Mat big;  // patches stay crisp squares: nearest neighbour
  cv::resize(u8, big, cv::Size(rgb.width(), rgb.height()), 0, 0, cv::INTER_NEAREST);
  cv::Mat colored;
  cv::applyColorMap(big, colored, kColorMaps[std::clamp(colorMap, 0, static_cast<int>(std::size(kColorMaps)) - 1)]);
  cv::cvtColor(colored, colored, cv::COLOR_BGR2RGB);
  cv::Mat under(rgb.height(), rgb.width(), CV_8UC3, const_cast<uchar*>(rgb.constBits()), static_cast<std::size_t>(rgb.bytesPerLine()));
  cv::Mat blended;
  cv::addWeighted(colored, std::clamp(opacity, 0.0, 1.0), under, 1.0 - std::clamp(opacity, 0.0, 1.0), 0.0, blended);
  QImage out(blended.cols, blended.rows, QImage::Format_RGB888);
  for (int y = 0; y < out.height(); ++y) std::memcpy(out.scanLine(y), blended.ptr(y), static_cast<std::size_t>(blended.cols) * 3);
  return out;
}

QString exportCapture(const InspectionHandle& h, const QString& path) {
  if (!h) return QStringLiteral("nothing captured yet");
  auto ok = writeInspection(path.toStdString(), h->capture);
  return ok ? QString() : qs(ok.error().message());
}

QString exportMap(const QString& path, const QVector<float>& map, int mapW, int mapH, const QJsonObject& meta) {
  if (map.size() != static_cast<qsizetype>(mapW) * mapH || map.isEmpty()) return QStringLiteral("no map to export");
  const at::Tensor t = at::from_blob(const_cast<float*>(map.data()), {mapH, mapW}, at::kFloat).clone();
  auto ok = writeSafetensors(path.toStdString(), {{"map", t}},
                             {{"tessera.map", QJsonDocument(meta).toJson(QJsonDocument::Compact).toStdString()}});
  return ok ? QString() : qs(ok.error().message());
}

// ---- worker -------------------------------------------------------------------------

struct InspectionWorker::Cache {
  ModelSlot slot;
};

InspectionWorker::InspectionWorker() : m_cache(std::make_unique<Cache>()) {
  qRegisterMetaType<InspectionSetup>();
  qRegisterMetaType<InspectionHandle>();
}

InspectionWorker::~InspectionWorker() = default;

void InspectionWorker::cancel(qint64 id) { m_tokens.cancel(id); }

void InspectionWorker::run(const InspectionSetup& setup) {
  JobTokens::Scope token(m_tokens, setup.id);
  try {
    ModelSlot& slot = m_cache->slot;
    if (const QString problem = slot.load(setup.job.modelPath); !problem.isEmpty()) return Q_EMIT failed(setup.id, problem);
    auto made = requestFromJob(setup.job, *slot.model, *slot.traits);
    if (!made) return Q_EMIT failed(setup.id, qs(made.error().message()));
    InspectionRequest r;
    r.generation = std::move(*made);
    r.generation.cancel = token.token();
    for (int s : setup.steps) r.steps.push_back(s);
    for (int l : setup.layers) r.layers.insert(l);
    r.attention = setup.attention;
    r.progress = [this, id = setup.id](std::int64_t done, std::int64_t total) {
      Q_EMIT progress(id, static_cast<int>(done), static_cast<int>(total));
    };
    auto cap = captureInspection(*slot.model, r);
    if (!cap) return Q_EMIT failed(setup.id, qs(cap.error().message()));
    auto data = std::make_shared<InspectionData>();
    data->capture = std::move(*cap);
    const InspectionCapture& c = data->capture;
    InspectionSummary& s = data->summary;
    s.width = static_cast<int>(c.width);
    s.height = static_cast<int>(c.height);
    s.patch = static_cast<int>(c.patch);
    s.gridW = static_cast<int>(c.gridW);
    s.gridH = static_cast<int>(c.gridH);
    s.depth = static_cast<int>(c.depth);
    s.heads = static_cast<int>(c.heads);
    for (int l : c.layers) s.layers << l;
    for (std::size_t i = 0; i < c.layerInfo.size(); ++i)
      s.layerNames << (c.layerInfo[i].name.rfind("block ", 0) == 0 ? QStringLiteral("Block %1").arg(c.layers[i])
                                                                   : qs(c.layerInfo[i].name));
    for (auto k : c.steps) s.steps << static_cast<int>(k);
    s.totalSteps = static_cast<int>(c.totalSteps);
    for (double t : c.taus) s.taus << t;
    for (auto k : c.guidanceSteps) s.guidanceSteps << static_cast<int>(k);
    for (double t : c.guidanceTaus) s.guidanceTaus << t;
    s.image = toQImage(c.image);
    s.settings = QJsonDocument::fromJson(QByteArray::fromStdString(c.settings.dump())).object();
    Q_EMIT finished(setup.id, InspectionHandle(std::move(data)));
  } catch (const std::exception& e) {
    Q_EMIT failed(setup.id, QStringLiteral("inspection failed: %1").arg(QString::fromUtf8(e.what())));
  }
}

}  // namespace tessera
