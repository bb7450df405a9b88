// SPDX-License-Identifier: Apache-2.0
// The studio's inspection service: captures an image's attention and guidance maps on a
// worker thread (the image's generation run again with the probe attached only at the
// asked steps) and turns a capture into maps, entropies and heat-map overlays. No
// LibTorch in this header: a capture travels as an opaque shared handle.
#pragma once

#include "widgets/studio/studio_service.h"

#include <QImage>
#include <QJsonObject>
#include <QMutex>
#include <QObject>
#include <QString>
#include <QStringList>
#include <QVector>

#include <memory>

namespace tessera {

class CancelToken;
struct InspectionData;
using InspectionHandle = std::shared_ptr<const InspectionData>;

/// What to capture for one image.
struct InspectionSetup {
  qint64 id = 0;
  GenerationJob job;     ///< exactly one image
  QVector<int> steps;    ///< steps to capture; empty: every step
  QVector<int> layers;   ///< blocks to capture; empty: every block
  bool attention = true; ///< false: the guidance map only
};

/// The shape of a finished capture, for the panel's controls.
struct InspectionSummary {
  int width = 0, height = 0, patch = 1, gridW = 0, gridH = 0, depth = 0, heads = 0;
  QVector<int> layers;        ///< captured blocks
  QStringList layerNames;     ///< their names ("Block 3", or a U-Net's "input 16×16 (input_blocks.4)")
  QVector<int> steps;         ///< captured steps
  int totalSteps = 0;         ///< steps the run took
  QVector<double> taus;
  QVector<int> guidanceSteps; ///< steps with a guidance map (guided steps)
  QVector<double> guidanceTaus;
  QImage image;               ///< the finished image (true size)
  QJsonObject settings;
  bool hasAttention() const { return !steps.isEmpty(); }
  bool hasGuidance() const { return !guidanceSteps.isEmpty(); }
};
InspectionSummary summarize(const InspectionHandle& capture);

/// Bytes a capture will hold (kept probabilities plus the largest transient copy), from the
/// model's description: the same formula as the core's estimate.
/// `layer` is the one layer captured, or −1 for all of them.
quint64 inspectionBytes(const ModelInfo& model, int width, int height, int capturedSteps, int layer, int totalSteps);

/// One image of a job as its own one-image job (its class, size and seed).
GenerationJob singleImageJob(const GenerationJob& job, int index);
/// The one-image job a Tessera PNG's settings describe, with its model found among
/// `models` by path or file name; `problem` says what is missing.
GenerationJob jobFromSettings(const QByteArray& settings, const QVector<ModelInfo>& models, QString* problem);

/// Maps. Layer: a position in the summary's `layers`, or kMeanLayers / kRolloutLayers;
/// head: a head or kMeanHeads. Row-major gridH × gridW; empty with `error` set on bad input.
constexpr int kMeanLayers = -1, kRolloutLayers = -2, kMeanHeads = -1;
QVector<float> attentionMapOf(const InspectionHandle& capture, int stepIndex, int layer, int head, int token, bool reverse,
                              QString* error = nullptr);
/// Entropy (nats) of every captured layer × head, row-major; its maximum is log(T).
QVector<float> entropyOf(const InspectionHandle& capture, int stepIndex);
/// Guidance map of guided step `index` (H × W, row-major).
QVector<float> guidanceMapOf(const InspectionHandle& capture, int index);

/// OpenCV's colour maps, by name.
QStringList colorMapNames();
/// `base` scaled by `scale` (nearest) with `map` (mapW × mapH, stretched to the base)
/// coloured by colour map `colorMap` (an index of colorMapNames()) and blended with
/// `opacity`; values are scaled so the map's maximum is the top colour.
QImage heatOverlay(const QImage& base, const QVector<float>& map, int mapW, int mapH, int colorMap, double opacity, int scale);

/// Writes the whole capture (safetensors); empty string or the problem.
QString exportCapture(const InspectionHandle& capture, const QString& path);
/// Writes one map as safetensors tensor "map" (mapH, mapW) with `meta` in the metadata.
QString exportMap(const QString& path, const QVector<float>& map, int mapW, int mapH, const QJsonObject& meta);

class InspectionWorker final : public QObject {
  Q_OBJECT

public:
  InspectionWorker();
  ~InspectionWorker() override;
  /// Thread-safe: stops capture `id` before its next step.
  void cancel(qint64 id);

public Q_SLOTS:
  void run(const tessera::InspectionSetup& setup);

Q_SIGNALS:
  void progress(qint64 id, int done, int total);
  void finished(qint64 id, const tessera::InspectionHandle& capture);
  void failed(qint64 id, const QString& message);

private:
  struct Cache;
  std::unique_ptr<Cache> m_cache;
  JobTokens m_tokens;
};

}  // namespace tessera

Q_DECLARE_METATYPE(tessera::InspectionSetup)
Q_DECLARE_METATYPE(tessera::InspectionHandle)
