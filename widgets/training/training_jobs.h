// SPDX-License-Identifier: Apache-2.0
// Training jobs started from the studio. Each job is a `tessera-cli train` child process,
// started detached so that it outlives the studio: its JSON-lines events go to
// RUN_DIR/events.jsonl and its stderr to RUN_DIR/stderr.log, which this service tails.
// Job state lives in the gallery database, so a restarted studio finds running, queued
// and finished jobs again; a job whose process died without a final event is a crash,
// shown with its last lines of output, its checkpoints kept for a resume.
#pragma once

#include "core/gallery/gallery_store.h"

#include <QJsonObject>
#include <QObject>
#include <QPointF>
#include <QProcess>
#include <QString>
#include <QStringList>
#include <QTimer>
#include <QVector>

#include <memory>

namespace tessera {

/// What the New job dialog hands over.
struct TrainingJobSpec {
  QString name;
  QJsonObject config;  ///< a complete training configuration (docs/training.md)
  QString initModel;   ///< fine-tuning: the model file to start from; empty: from scratch
};

/// A job as the panel shows it: the database row plus what its events said.
struct TrainingJobView {
  TrainingJobRecord record;
  QVector<QPointF> loss;                 ///< (step, mean loss since the previous step event)
  QVector<QPointF> validation;           ///< (step, validation loss of the live weights)
  QVector<QPointF> validationEma;        ///< (step, validation loss of the EMA weights)
  QVector<QPointF> learningRate;         ///< (step, lr)
  struct Preview {
    qint64 step = 0;
    QString path;
  };
  QVector<Preview> previews;             ///< sample grids, oldest first
  QStringList checkpoints;
  double imagesPerSecond = 0;
  double etaSeconds = -1;
  qint64 parameters = 0;
  QString error;                         ///< the trainer's own error event, if any
  QString finalEvent;                    ///< "done", "stopped", "error" or empty
  qint64 eventsRead = 0;                 ///< bytes of events.jsonl parsed so far
  bool evaluating = false;

  QString state() const { return QString::fromStdString(record.state); }
  qint64 id() const { return record.id; }
};

/// Starts, watches, stops and resumes training jobs; one at a time unless
/// setMaxConcurrent() allows more. Lives on the GUI thread; every call is cheap.
class TrainingJobs final : public QObject {
  Q_OBJECT
  Q_DISABLE_COPY_MOVE(TrainingJobs)

public:
  explicit TrainingJobs(QObject* parent = nullptr);
  ~TrainingJobs() override;

  /// Opens the job table of the gallery at `galleryPath`, re-attaches to jobs whose
  /// process still runs and settles those that ended while the studio was closed.
  /// Returns the problem, or an empty string.
  QString open(const QString& galleryPath);
  bool isOpen() const { return m_store != nullptr; }

  /// Where run directories go: $TESSERA_JOBS_DIR, else the user's data folder/jobs.
  static QString jobsFolder();

  /// Queues a job (it starts when its turn comes); returns its id, or 0 with `error` set.
  qint64 submit(const TrainingJobSpec& spec, QString* error = nullptr);
  /// A running job: SIGTERM (the trainer finishes its step, checkpoints and exits); a
  /// queued one leaves the queue.
  bool stop(qint64 id);
  /// Queues a stopped or failed job again; it continues from its newest checkpoint.
  bool resume(qint64 id);
  /// Asks a running trainer for a sample grid now (SIGUSR1).
  bool sampleNow(qint64 id);
  /// Forgets a job that is not running and deletes its run directory (a finished job's
  /// model stays in the model folder).
  bool remove(qint64 id, QString* error = nullptr);

  const QVector<TrainingJobView>& jobs() const { return m_jobs; }
  const TrainingJobView* job(qint64 id) const;

  void setMaxConcurrent(int n);
  int maxConcurrent() const { return m_maxConcurrent; }
  /// LibTorch threads per trainer (0: all hardware threads).
  void setThreads(int threads) { m_threads = threads; }
  /// Models of finished jobs are evaluated (tessera-cli eval --record) when they were
  /// trained on Fashion-MNIST; this many samples per class (0: no evaluation).
  void setEvalSamplesPerClass(int n) { m_evalPerClass = n; }

  /// Reads new events and checks the processes (a timer calls it; tests may too).
  void poll();

Q_SIGNALS:
  /// Jobs were added, removed or changed state.
  void jobsChanged();
  /// New events arrived for this job.
  void jobUpdated(qint64 id);
  /// A finished job's model is in the model folder (evaluated when it could be).
  void modelReady(qint64 id, const QString& path);

private:
  TrainingJobView* find(qint64 id);
  void save(TrainingJobView& job);
  void readEvents(TrainingJobView& job);
  void applyEvent(TrainingJobView& job, const QJsonObject& event);
  void schedule();
  bool startProcess(TrainingJobView& job);
  void settle(TrainingJobView& job);
  /// A job left "starting": running when its trainer is found, else queued again (or
  /// failed, when a trainer said why it would not run) once the grace period is over.
  bool settleStarting(TrainingJobView& job);
  void publishModel(TrainingJobView& job);
  void startNextEval();
  int runningCount() const;
  qint64 nextQueueOrder() const;
  /// LibTorch threads for a trainer or an eval child.
  int threadCount() const;

  std::unique_ptr<GalleryStore> m_store;
  QVector<TrainingJobView> m_jobs;
  QTimer m_timer;
  int m_maxConcurrent = 1;
  int m_threads = 0;
  int m_evalPerClass = 20;
  QProcess* m_eval = nullptr;
  qint64 m_evalJob = 0;
  QVector<qint64> m_evalQueue;
};

/// True while `pid` is a live (not zombie) tessera-cli process, or a fork of this program
/// that has not yet become one (a trainer being launched).
bool trainerAlive(qint64 pid);

}  // namespace tessera
