// SPDX-License-Identifier: Apache-2.0
// The comparison grid's service: rows and columns chosen from models, samplers, steps,
// guidance scales, seeds and sizes applied to one base setting (same class, seed and
// noise); every cell generated on a worker thread with its time, network evaluations and
// compute; "matched compute" steps; the finished grid saved in the gallery as a set and
// reopened from it; class accuracy and FD per row through `tessera-cli eval`.
#pragma once

#include "widgets/studio/studio_service.h"

#include <QImage>
#include <QJsonObject>
#include <QMutex>
#include <QObject>
#include <QProcess>
#include <QString>
#include <QStringList>
#include <QVector>

#include <memory>

namespace tessera {

class CancelToken;

enum class CompareAxis { Model, Sampler, Steps, Guidance, Seed, Size };
/// In the order of CompareAxis.
QStringList compareAxisNames();
/// A reasonable list of values for an axis (every model; the registry's deterministic
/// samplers of fixed cost…).
QString defaultAxisValues(CompareAxis axis, const GenerationJob& base, const QVector<ModelInfo>& models);
/// Parses "a, b, c" into values, each checked (a known model or sampler, steps ≥ 1, a
/// scale ≥ 0, a seed, a size WxH); empty string or what is wrong.
QString parseAxisValues(CompareAxis axis, const QString& text, const QVector<ModelInfo>& models, QStringList* values);
/// The base job with one axis set to `value`.
GenerationJob applyAxis(GenerationJob job, CompareAxis axis, const QString& value, const QVector<ModelInfo>& models);
/// Network evaluations per step of a sampler (name or alias), as its registry entry
/// states: 1, 2 for Heun-type…; 0 = adaptive (no fixed count); -1 = no such sampler.
int evaluationsPerStep(const QString& sampler);

struct CompareSetup {
  qint64 id = 0;
  QString title;
  GenerationJob base;  ///< one image: class, seed, size, sampler, steps, guidance, model
  CompareAxis rowAxis = CompareAxis::Model, columnAxis = CompareAxis::Sampler;
  QStringList rows, columns;
  /// Each cell's steps chosen so that steps × evaluations per step × rows per evaluation
  /// (2 with guidance) × forward GFLOPs is about the base setting's budget. Refused
  /// when a sampler has no fixed cost per step (matchedComputeProblem()).
  bool matchedCompute = false;
  QVector<ModelInfo> models;
  QString galleryPath;  ///< cells stored here, the finished grid saved as a set
};
QJsonObject setupToJson(const CompareSetup& setup);
/// Empty, or why matched compute cannot choose the steps of `setup`: a sampler of the
/// base setting or of an axis has no fixed cost per step (adaptive, or unknown).
QString matchedComputeProblem(const CompareSetup& setup);

struct CompareCell {
  int row = 0, column = 0;
  GenerationJob job;
  bool done = false;
  QImage image;
  QByteArray png;
  double seconds = 0;
  int nfe = 0;
  int forwardRows = 0;           ///< images through the network (2 per guided evaluation)
  double gflopsPerForward = 0;   ///< one image, one forward, at the cell's size
  double gflops() const { return forwardRows * gflopsPerForward; }
  qint64 galleryId = 0;
  QString error;
};

/// One row's (or column's) quality, from `tessera-cli eval`.
struct CompareQuality {
  int index = 0;
  bool rows = true;
  double accuracy = 0, fdRatio = 0;
  int samples = 0;
  QString error;
};

class CompareWorker final : public QObject {
  Q_OBJECT
public:
  CompareWorker();
  ~CompareWorker() override;
  /// Thread-safe: stops run `id` before its next step (its finished cells stay).
  void cancel(qint64 id);

public Q_SLOTS:
  void run(const tessera::CompareSetup& setup);
  /// Reads saved set `setId` from the gallery at `galleryPath`.
  void load(qint64 id, const QString& galleryPath, qint64 setId);
  /// Lists the saved sets (id, title, created) of the gallery.
  void list(const QString& galleryPath);

Q_SIGNALS:
  void planned(qint64 id, const QVector<tessera::CompareCell>& cells);
  void cellReady(qint64 id, const tessera::CompareCell& cell);
  void finished(qint64 id, bool cancelled, qint64 savedSetId);
  void failed(qint64 id, const QString& message);
  void loaded(qint64 id, const tessera::CompareSetup& setup, const QVector<tessera::CompareCell>& cells);
  void listed(const QVector<QPair<qint64, QString>>& sets);

private:
  struct Cache;
  std::unique_ptr<Cache> m_cache;
  JobTokens m_tokens;
};

/// The tessera-cli next to this program (or TESSERA_CLI); empty when none is found.
QString tesseraCliPath();

/// Runs `tessera-cli eval` for one row or column setting in a child process, reporting
/// progress from its JSON lines; one at a time.
class QualityRunner final : public QObject {
  Q_OBJECT
public:
  explicit QualityRunner(QObject* parent = nullptr);
  ~QualityRunner() override;
  /// Queues an evaluation of `job`'s model and settings with `perClass` samples per class.
  void enqueue(int index, bool rows, const GenerationJob& job, int perClass);
  void cancelAll();
  bool busy() const;

Q_SIGNALS:
  void progress(int index, bool rows, int done, int total);
  void ready(const tessera::CompareQuality& quality);

private:
  struct Item {
    int index;
    bool rows;
    GenerationJob job;
    int perClass;
  };
  void startNext();
  QVector<Item> m_queue;
  QProcess* m_process = nullptr;
  Item m_current{};
  QByteArray m_stderr, m_stdout;
};

}  // namespace tessera

Q_DECLARE_METATYPE(tessera::CompareSetup)
Q_DECLARE_METATYPE(tessera::CompareCell)
Q_DECLARE_METATYPE(tessera::CompareQuality)
