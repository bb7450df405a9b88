// SPDX-License-Identifier: Apache-2.0
// The studio's service layer: the only widgets code that touches LibTorch (in its .cpp).
// Model discovery, class examples, size checks, and the generation worker that runs on
// its own QThread, posts every step's images back through queued signals and writes
// each finished image to the gallery, so the GUI thread only paints.
#pragma once

#include <QImage>
#include <QMetaType>
#include <QMutex>
#include <QObject>
#include <QSize>
#include <QString>
#include <QStringList>
#include <QVector>

#include <memory>

#include "widgets/inspector/inspector_data.h"

namespace tessera {

class CancelToken;

/// What the model picker shows, read from a model file.
struct ModelInfo {
  QString path, name, backbone, process, dataKind, origin;  ///< origin: "shipped", "user" or "opened"
  qint64 parameters = 0;
  int trainedWidth = 0, trainedHeight = 0, sizeMultiple = 1, channels = 0;
  bool anySize = false;  ///< the backbone takes other grids than the trained one
  bool packed = false;   ///< one forward per step for images of mixed sizes (NiT, FiT)
  /// A latent model's autoencoder kind ("kl", "vq"; empty for pixel models) and its
  /// downsampling: sizes are latent cells, pictures pixelFactor times larger.
  QString autoencoder;
  int pixelFactor = 1;
  /// The sizes (W × H) the model saw in training, with how many images had each.
  QVector<QPair<QSize, int>> trainedSizes;
  QStringList classNames;
  bool nullClass = false;
  QString defaultSampler;
  int defaultSteps = 50;
  double defaultCfg = 1.0;
  double defaultCfgLow = 0.0, defaultCfgHigh = 1.0;  ///< the recommended guidance interval
  bool defaultClip = false;
  int depth = 0, heads = 0;  ///< attention layers and the most heads one has (0: no attention taps)
  /// Per attention layer where they differ (a U-Net's): its name, heads, and how many
  /// times smaller than the image its grid is. Empty: `depth` blocks of `heads` on the patch grid.
  QStringList attentionNames;
  QVector<int> attentionHeads, attentionFactors;
  double gflops = 0;         ///< one forward pass of one image at the trained size
  QString evaluation;  ///< one line: class accuracy, FD ratio… of the newest eval record
  QString error;       ///< non-empty: the file could not be read (shown, not hidden)
};

/// Where models are looked for: the shipped models, then the user's model folder.
QStringList modelFolders();
/// The user's model folder (trained or imported models dropped here appear in the picker).
QString userModelFolder();
/// Reads every *.safetensors model in modelFolders() plus `extraFiles`. Loads each model:
/// call it off the GUI thread.
QVector<ModelInfo> scanModels(const QStringList& extraFiles);
/// One example image per class from the model's training data (Fashion-MNIST test split
/// for models trained on it; nulls where no data set is on this machine). Off the GUI thread.
QVector<QImage> classExamples(const ModelInfo& model);
/// Empty when the model can generate W×H, else the reason and the nearest valid sizes.
QString sizeProblem(const ModelInfo& model, int width, int height);
/// The sampler names, in the registry's order.
QStringList samplerNames();
/// The studio's gallery file (in the user's data folder unless TESSERA_GALLERY is set).
QString defaultGalleryPath();

/// The cancel token of the job a worker thread runs, for cancel() calls from any thread:
/// a cancel that arrives before its job starts is remembered and applied at start.
class JobTokens {
public:
  /// Scope of one job on the worker thread.
  class Scope {
  public:
    Scope(JobTokens& owner, qint64 id);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    const CancelToken* token() const { return m_token.get(); }
    bool cancelled() const;

  private:
    JobTokens& m_owner;
    std::shared_ptr<CancelToken> m_token;
  };
  /// Thread-safe: cancels job `id` now, or as soon as it starts.
  void cancel(qint64 id);

private:
  QMutex m_mutex;
  std::shared_ptr<CancelToken> m_token;
  qint64 m_job = -1, m_cancelBeforeStart = -1;
};

/// Everything one press of Generate asked for, captured at that moment.
struct GenerationJob {
  qint64 id = 0;
  QString modelPath;
  QVector<qint64> classes;  ///< one per image
  int width = 0, height = 0;
  /// Mixed sizes (W × H): image i gets sizes[i mod k]; empty = width × height.
  QVector<QSize> sizes;
  QString sampler;
  int steps = 50;
  QString grid = QStringLiteral("default");
  double eta = 0.0;
  double cfg = 1.0, cfgLow = 0.0, cfgHigh = 1.0;
  bool clip = false;
  quint64 seed = 0;
  int batch = 8;
  QString galleryPath;  ///< empty: do not store
  /// Live inspector: attach the probe (block statistics and timings) to every step and
  /// post an InspectorStep per step. Off: the generation pays nothing.
  bool inspect = false;
};

/// The timeline's view of one step of one image.
struct StepFrame {
  int image = 0;  ///< index in the job
  QImage x, x0, x0Conditional, x0Unconditional;  ///< the last two only on guided steps
  QImage output;  ///< the network's (guided) prediction (noise, velocity…), its own range stretched to grey
  /// A latent model's x₀ as its latent channels, each stretched to grey, side by side
  /// (null for pixel models); x and x0 are then the fast preview-map pictures.
  QImage x0Channels;
};

/// The noise level of every state of a job's grid (index 0 = pure noise).
struct NoiseLevels {
  QVector<double> tau, time, sigma, alpha;
};

class GenerationWorker final : public QObject {
  Q_OBJECT

public:
  GenerationWorker();
  ~GenerationWorker() override;
  /// Thread-safe: asks job `id` to stop before its next step.
  void cancel(qint64 id);

public Q_SLOTS:
  void run(const tessera::GenerationJob& job);
  /// A latent model's x₀ of `step` of image `image` of the last job, decoded in full by the
  /// autoencoder (once: decodes are cached until the next job); answered by stepDecoded.
  /// Ignored for another job's id or a step without a latent x₀.
  void decodeStep(qint64 id, int image, int step);

Q_SIGNALS:
  void started(qint64 id, int images, int steps, const tessera::NoiseLevels& levels);
  /// One per step and batch: the frames of the batch's images after `step`.
  void stepped(qint64 id, int step, const QVector<tessera::StepFrame>& frames);
  /// A finished image, encoded and (when asked) stored: galleryId 0 when not stored.
  void imageReady(qint64 id, int index, const QImage& image, const QByteArray& png, qint64 galleryId);
  void finished(qint64 id, bool cancelled, double seconds, const QString& summary);
  void failed(qint64 id, const QString& message);
  /// With GenerationJob::inspect: one record per step of every batch.
  void inspected(qint64 id, const tessera::InspectorStep& step);
  /// The full decode decodeStep asked for.
  void stepDecoded(qint64 id, int image, int step, const QImage& picture);

private:
  struct Cache;
  std::unique_ptr<Cache> m_cache;
  JobTokens m_tokens;
};

/// Writes frames as a video with OpenCV's writer: ".avi" (Motion JPEG, always available) or
/// ".mp4" (when OpenCV has a backend for it). Frames are scaled up with nearest neighbour to
/// at least `minSide` pixels. Returns an empty string or what went wrong.
QString writeVideo(const QString& path, const QVector<QImage>& frames, double fps, int minSide = 256);

/// Reads a PNG's "tessera" settings (empty when the file has none).
QByteArray pngSettings(const QString& path);

}  // namespace tessera

Q_DECLARE_METATYPE(tessera::GenerationJob)
Q_DECLARE_METATYPE(tessera::StepFrame)
Q_DECLARE_METATYPE(tessera::NoiseLevels)
