// SPDX-License-Identifier: Apache-2.0
#include "widgets/training/training_jobs.h"

#include "widgets/studio/text.h"
#include "widgets/studio/compare_service.h"  // tesseraCliPath()
#include "widgets/studio/studio_service.h"   // userModelFolder()

#include "core/util/run_lock.h"

#include <QDateTime>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QRegularExpression>
#include <QSaveFile>
#include <QStandardPaths>
#include <QThread>

#include <signal.h>

#include <algorithm>

namespace tessera {
namespace {

std::string ss(const QString& s) { return s.toStdString(); }

const QString kEvents = QStringLiteral("events.jsonl");
const QString kStderr = QStringLiteral("stderr.log");
const QString kJobConfig = QStringLiteral("job.json");

QString slug(const QString& name) {
  QString s = name.toLower();
  s.replace(QRegularExpression(QStringLiteral("[^a-z0-9]+")), QStringLiteral("-"));
  s.remove(QRegularExpression(QStringLiteral("^-+|-+$")));
  return s.isEmpty() ? QStringLiteral("job") : s.left(40);
}

/// The last `lines` lines of a text file.
QString tail(const QString& path, int lines) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  const qint64 size = f.size();
  f.seek(std::max<qint64>(0, size - 16384));
  QStringList all = QString::fromUtf8(f.readAll()).split(QLatin1Char('\n'));
  while (!all.isEmpty() && all.back().trimmed().isEmpty()) all.pop_back();
  if (all.size() > lines) all = all.mid(all.size() - lines);
  return all.join(QLatin1Char('\n'));
}

bool hasCheckpoint(const QString& runDir) {
  return !QDir(runDir + QStringLiteral("/checkpoints"))
              .entryList({QStringLiteral("*.safetensors")}, QDir::Files)
              .isEmpty();
}

// "starting" is written before a trainer is launched and "running" (with its pid) after, so
// a studio killed in between finds the job in a state that says a trainer may exist.
bool isActive(const std::string& state) { return state == "starting" || state == "running" || state == "stopping"; }

/// How long a job may stay "starting" with no trainer holding its run directory's lock
/// before it counts as never started (a trainer locks its directory within about a second).
constexpr qint64 kStartingGraceSeconds = 30;

/// Whether a job's trainer runs: the holder of its run directory's lock (the kernel drops
/// that lock with the process, and it names the process), else its recorded pid (the
/// first second of a trainer, before it takes the lock). A holder that is not the recorded
/// process (a studio killed between starting a trainer and recording it) is adopted.
bool trainerRuns(TrainingJobRecord& r) {
  const qint64 holder = RunLock::holder(r.runDir);
  if (holder > 0 && holder != r.pid) r.pid = holder;
  return holder != 0 || trainerAlive(r.pid);
}

/// Models of Fashion-MNIST's ten classes are the ones the evaluator can judge.
bool evaluable(const TrainingJobRecord& r) {
  const QJsonObject data =
      QJsonDocument::fromJson(QByteArray::fromStdString(r.config)).object().value(QStringLiteral("data")).toObject();
  return data.value(QStringLiteral("source")).toString() == QLatin1String("fashion-mnist") &&
         !data.contains(QStringLiteral("classes"));
}

}  // namespace

bool trainerAlive(qint64 pid) {
  if (pid <= 0) return false;
  QFile stat(QStringLiteral("/proc/%1/stat").arg(pid));
  if (!stat.open(QIODevice::ReadOnly)) return false;
  const QByteArray s = stat.readAll();
  const int close = s.lastIndexOf(')');
  if (close < 0 || close + 2 >= s.size()) return false;
  const char state = s.at(close + 2);
  if (state == 'Z' || state == 'X') return false;  // ended, not yet reaped
  QFile cmd(QStringLiteral("/proc/%1/cmdline").arg(pid));
  if (!cmd.open(QIODevice::ReadOnly)) return false;
  if (cmd.readAll().contains("tessera-cli")) return true;  // not a recycled pid
  // A trainer just launched is, until its execve, a fork of this program with this
  // program's command line: on a loaded machine a poll once fell in that window, and
  // the job was settled as "ended without a final event" while its trainer went on.
  const QString self = QFileInfo(QStringLiteral("/proc/self/exe")).symLinkTarget();
  return !self.isEmpty() && QFileInfo(QStringLiteral("/proc/%1/exe").arg(pid)).symLinkTarget() == self;
}

TrainingJobs::TrainingJobs(QObject* parent) : QObject(parent) {
  m_timer.setInterval(250);
  connect(&m_timer, &QTimer::timeout, this, &TrainingJobs::poll);
}

TrainingJobs::~TrainingJobs() {
  // Trainers keep running (they are detached); an evaluation in progress is dropped and
  // the model stays in the folder without one.
  if (m_eval) {
    m_eval->disconnect(this);
    m_eval->kill();
    m_eval->waitForFinished(2000);
  }
}

QString TrainingJobs::jobsFolder() {
  const QByteArray env = qgetenv("TESSERA_JOBS_DIR");
  if (!env.isEmpty()) return QString::fromLocal8Bit(env);
  return QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + QStringLiteral("/jobs");
}

QString TrainingJobs::open(const QString& galleryPath) {
  auto store = GalleryStore::open(ss(galleryPath));
  if (!store) return qs(store.error().message());
  auto rows = store->trainingJobs();
  if (!rows) return qs(rows.error().message());
  m_store = std::make_unique<GalleryStore>(std::move(*store));
  m_jobs.clear();
  for (auto& r : *rows) {
    // A submission killed before its run directory was recorded: it never ran.
    if (r.runDir.empty() && r.state == "queued") {
      (void)m_store->deleteTrainingJob(r.id);
      continue;
    }
    TrainingJobView v;
    v.record = std::move(r);
    readEvents(v);
    m_jobs.push_back(std::move(v));
  }
  poll();  // settles the jobs whose trainer ended while the studio was closed
  for (auto& j : m_jobs) {
    if (j.record.state != "finished") continue;
    // Finished while the studio was closed, or killed while it published the model or
    // evaluated it: that is done now.
    // (A recorded model that is missing with its ".part" beside it was being copied; one
    // missing without it was deleted by the user, and stays deleted.)
    const QString model = qs(j.record.modelPath);
    if (model.isEmpty() || (!QFileInfo::exists(model) && QFileInfo::exists(model + QStringLiteral(".part")))) {
      publishModel(j);
    } else if (!j.evaluating && j.record.evaluation.empty() && m_evalPerClass > 0 && evaluable(j.record)) {
      j.evaluating = true;
      m_evalQueue.push_back(j.record.id);
    }
  }
  startNextEval();
  m_timer.start();
  schedule();
  Q_EMIT jobsChanged();
  return {};
}

TrainingJobView* TrainingJobs::find(qint64 id) {
  for (auto& j : m_jobs)
    if (j.record.id == id) return &j;
  return nullptr;
}

const TrainingJobView* TrainingJobs::job(qint64 id) const {
  for (const auto& j : m_jobs)
    if (j.record.id == id) return &j;
  return nullptr;
}

void TrainingJobs::save(TrainingJobView& job) {
  if (!m_store) return;
  if (auto ok = m_store->updateTrainingJob(job.record); !ok) qWarning("%s", ok.error().message().c_str());
}

qint64 TrainingJobs::nextQueueOrder() const {
  qint64 order = 0;
  for (const auto& j : m_jobs) order = std::max<qint64>(order, j.record.queueOrder);
  return order + 1;
}

int TrainingJobs::threadCount() const { return m_threads > 0 ? m_threads : std::max(1, QThread::idealThreadCount()); }

int TrainingJobs::runningCount() const {
  return static_cast<int>(std::count_if(m_jobs.begin(), m_jobs.end(), [](const TrainingJobView& j) {
    return isActive(j.record.state);
  }));
}

void TrainingJobs::setMaxConcurrent(int n) {
  m_maxConcurrent = std::max(1, n);
  schedule();
}

qint64 TrainingJobs::submit(const TrainingJobSpec& spec, QString* error) {
  auto failWith = [&](const QString& message) -> qint64 {
    if (error) *error = message;
    return 0;
  };
  if (!m_store) return failWith(tr("the job table is not open"));
  if (spec.name.trimmed().isEmpty()) return failWith(tr("a job needs a name"));
  if (!spec.initModel.isEmpty() && !QFileInfo(spec.initModel).isFile())
    return failWith(tr("the model to fine-tune, %1, does not exist").arg(spec.initModel));
  TrainingJobRecord r;
  r.name = ss(spec.name.trimmed());
  r.kind = spec.initModel.isEmpty() ? "scratch" : "finetune";
  r.config = QJsonDocument(spec.config).toJson(QJsonDocument::Compact).toStdString();
  r.initModel = ss(spec.initModel);
  r.state = "queued";
  r.steps = spec.config.value(QStringLiteral("train")).toObject().value(QStringLiteral("steps")).toInteger();
  r.queueOrder = nextQueueOrder();
  auto id = m_store->addTrainingJob(r);
  if (!id) return failWith(qs(id.error().message()));
  r.id = *id;
  const QString runDir = jobsFolder() + QStringLiteral("/%1-%2").arg(r.id).arg(slug(spec.name));
  QSaveFile cfg(runDir + QLatin1Char('/') + kJobConfig);
  if (!QDir().mkpath(runDir) || !cfg.open(QIODevice::WriteOnly) ||
      cfg.write(QJsonDocument(spec.config).toJson()) < 0 || !cfg.commit()) {
    (void)m_store->deleteTrainingJob(r.id);
    return failWith(tr("could not write the job's configuration into %1").arg(runDir));
  }
  r.runDir = ss(runDir);
  TrainingJobView v;
  v.record = r;
  m_jobs.push_back(v);
  save(m_jobs.back());
  schedule();
  Q_EMIT jobsChanged();
  return r.id;
}

bool TrainingJobs::stop(qint64 id) {
  TrainingJobView* j = find(id);
  if (!j) return false;
  if (j->record.state == "queued") {
    j->record.state = "stopped";
    save(*j);
    Q_EMIT jobsChanged();
    return true;
  }
  if (j->record.state != "running") return false;
  if (::kill(static_cast<pid_t>(j->record.pid), SIGTERM) != 0) return false;
  j->record.state = "stopping";
  save(*j);
  Q_EMIT jobsChanged();
  return true;
}

bool TrainingJobs::resume(qint64 id) {
  TrainingJobView* j = find(id);
  if (!j || (j->record.state != "stopped" && j->record.state != "failed")) return false;
  j->record.state = "queued";
  j->record.queueOrder = nextQueueOrder();
  j->record.lastOutput.clear();
  j->error.clear();
  j->finalEvent.clear();
  save(*j);
  schedule();
  Q_EMIT jobsChanged();
  return true;
}

bool TrainingJobs::sampleNow(qint64 id) {
  TrainingJobView* j = find(id);
  return j && j->record.state == "running" && ::kill(static_cast<pid_t>(j->record.pid), SIGUSR1) == 0;
}

bool TrainingJobs::remove(qint64 id, QString* error) {
  TrainingJobView* j = find(id);
  if (!j) return false;
  if (isActive(j->record.state)) {
    if (error) *error = tr("stop the job before removing it");
    return false;
  }
  if (auto ok = m_store->deleteTrainingJob(id); !ok) {
    if (error) *error = qs(ok.error().message());
    return false;
  }
  const QString runDir = qs(j->record.runDir);
  // Only a directory this service made (it holds the job's configuration).
  if (!runDir.isEmpty() && QFileInfo(runDir + QLatin1Char('/') + kJobConfig).isFile()) QDir(runDir).removeRecursively();
  m_evalQueue.removeAll(id);
  m_jobs.erase(std::remove_if(m_jobs.begin(), m_jobs.end(), [id](const TrainingJobView& v) { return v.record.id == id; }),
               m_jobs.end());
  Q_EMIT jobsChanged();
  return true;
}

void TrainingJobs::schedule() {
  if (!m_store) return;
  while (runningCount() < m_maxConcurrent) {
    TrainingJobView* next = nullptr;
    for (auto& j : m_jobs)
      if (j.record.state == "queued" && (!next || j.record.queueOrder < next->record.queueOrder)) next = &j;
    if (!next) return;
    if (!startProcess(*next)) {
      save(*next);
      Q_EMIT jobsChanged();
    }
  }
}

bool TrainingJobs::startProcess(TrainingJobView& job) {
  const QString runDir = qs(job.record.runDir);
  const QString cli = tesseraCliPath();
  if (cli.isEmpty()) {
    job.record.state = "failed";
    job.record.lastOutput = ss(tr("tessera-cli was not found next to this program (set TESSERA_CLI)"));
    return false;
  }
  QStringList args = {QStringLiteral("--threads"), QString::number(threadCount()), QStringLiteral("train"),
                      QStringLiteral("--out"), runDir};
  if (hasCheckpoint(runDir)) {
    args << QStringLiteral("--resume");
  } else {
    args << QStringLiteral("--config") << runDir + QLatin1Char('/') + kJobConfig;
    if (!job.record.initModel.empty()) args << QStringLiteral("--init") << qs(job.record.initModel);
  }
  // A trainer already in the directory (started by a studio that was killed before it
  // recorded it) is this job's trainer: a second one would be refused by its lock.
  if (const qint64 holder = RunLock::holder(job.record.runDir); holder != 0) {
    job.record.state = "running";
    job.record.pid = std::max<qint64>(holder, 0);
    save(job);
    Q_EMIT jobsChanged();
    return true;
  }
  job.record.state = "starting";
  job.record.pid = 0;
  save(job);
  QProcess p;
  p.setProgram(cli);
  p.setArguments(args);
  p.setWorkingDirectory(runDir);
  p.setStandardInputFile(QProcess::nullDevice());
  p.setStandardOutputFile(runDir + QLatin1Char('/') + kEvents, QIODevice::Append);
  p.setStandardErrorFile(runDir + QLatin1Char('/') + kStderr, QIODevice::Append);
  qint64 pid = 0;
  if (!p.startDetached(&pid)) {
    job.record.state = "failed";
    job.record.lastOutput = ss(tr("could not start %1: %2").arg(cli, p.errorString()));
    return false;
  }
  job.record.state = "running";
  job.record.pid = pid;
  job.finalEvent.clear();
  save(job);
  Q_EMIT jobsChanged();
  return true;
}

void TrainingJobs::readEvents(TrainingJobView& job) {
  QFile f(qs(job.record.runDir) + QLatin1Char('/') + kEvents);
  if (!f.open(QIODevice::ReadOnly)) return;
  if (f.size() < job.eventsRead) job.eventsRead = 0;  // replaced: read again
  if (f.size() == job.eventsRead) return;
  f.seek(job.eventsRead);
  const QByteArray chunk = f.readAll();
  const int lastNewline = chunk.lastIndexOf('\n');
  if (lastNewline < 0) return;  // a line still being written
  job.eventsRead += lastNewline + 1;
  for (const QByteArray& line : chunk.left(lastNewline).split('\n')) {
    if (line.trimmed().isEmpty()) continue;
    const QJsonDocument doc = QJsonDocument::fromJson(line);
    if (doc.isObject()) applyEvent(job, doc.object());
  }
  Q_EMIT jobUpdated(job.record.id);
}

void TrainingJobs::applyEvent(TrainingJobView& job, const QJsonObject& e) {
  const QString kind = e.value(QStringLiteral("event")).toString();
  const qint64 step = e.value(QStringLiteral("step")).toInteger();
  if (kind == QLatin1String("start")) {
    job.record.steps = e.value(QStringLiteral("steps")).toInteger(job.record.steps);
    job.record.step = step;
    job.parameters = e.value(QStringLiteral("parameters")).toInteger();
    job.finalEvent.clear();
    // A resumed run repeats nothing, but points past its checkpoint (a crash after the
    // last checkpoint) are redone: keep the chart monotonic.
    auto trim = [step](QVector<QPointF>& v) {
      while (!v.isEmpty() && v.back().x() > static_cast<double>(step)) v.pop_back();
    };
    trim(job.loss);
    trim(job.learningRate);
    trim(job.validation);
    trim(job.validationEma);
  } else if (kind == QLatin1String("step")) {
    job.record.step = step;
    job.loss.push_back(QPointF(static_cast<double>(step), e.value(QStringLiteral("loss")).toDouble()));
    job.learningRate.push_back(QPointF(static_cast<double>(step), e.value(QStringLiteral("lr")).toDouble()));
    job.imagesPerSecond = e.value(QStringLiteral("images_per_s")).toDouble();
    job.etaSeconds = e.value(QStringLiteral("eta_s")).toDouble(-1);
  } else if (kind == QLatin1String("validation")) {
    job.validation.push_back(QPointF(static_cast<double>(step), e.value(QStringLiteral("loss")).toDouble()));
    job.validationEma.push_back(QPointF(static_cast<double>(step), e.value(QStringLiteral("loss_ema")).toDouble()));
  } else if (kind == QLatin1String("checkpoint")) {
    QString path = e.value(QStringLiteral("path")).toString();
    if (QFileInfo(path).isRelative()) path = qs(job.record.runDir) + QLatin1Char('/') + path;
    job.checkpoints.push_back(path);
  } else if (kind == QLatin1String("samples")) {
    QString path = e.value(QStringLiteral("path")).toString();
    if (QFileInfo(path).isRelative()) path = qs(job.record.runDir) + QLatin1Char('/') + path;
    job.previews.push_back({step, path});
  } else if (kind == QLatin1String("error")) {
    job.finalEvent = kind;
    job.error = tr("step %1: %2").arg(step).arg(e.value(QStringLiteral("reason")).toString());
  } else if (kind == QLatin1String("done") || kind == QLatin1String("stopped")) {
    job.finalEvent = kind;
    job.record.step = e.value(QStringLiteral("steps")).toInteger(job.record.step);
    job.etaSeconds = 0;
  }
}

void TrainingJobs::poll() {
  bool changed = false;
  for (auto& j : m_jobs) {
    if (!isActive(j.record.state)) continue;
    readEvents(j);
    if (j.record.state == "starting") {
      changed |= settleStarting(j);
      continue;
    }
    const qint64 recorded = j.record.pid;
    if (!trainerRuns(j.record)) {
      settle(j);
      changed = true;
    } else if (j.record.pid != recorded) {
      save(j);
    }
  }
  if (changed) {
    schedule();
    Q_EMIT jobsChanged();
  }
}

bool TrainingJobs::settleStarting(TrainingJobView& job) {
  // Only a studio killed between launching a trainer and recording it leaves a job here.
  if (trainerRuns(job.record)) {
    job.record.state = "running";
    save(job);
    return true;
  }
  const QDateTime since = QDateTime::fromString(qs(job.record.updatedAt), Qt::ISODate);
  if (since.isValid() && since.secsTo(QDateTime::currentDateTimeUtc()) < kStartingGraceSeconds) return false;
  if (job.finalEvent == QLatin1String("error")) {  // it started and refused to run: say why
    job.record.state = "running";
    settle(job);
    return true;
  }
  job.record.state = "queued";  // it never ran: its turn comes again
  save(job);
  return true;
}

void TrainingJobs::settle(TrainingJobView& job) {
  readEvents(job);
  const QString runDir = qs(job.record.runDir);
  job.record.pid = 0;
  if (job.finalEvent == QLatin1String("done")) {
    job.record.state = "finished";
  } else if (job.finalEvent == QLatin1String("stopped")) {
    job.record.state = "stopped";
  } else if (job.record.state == "stopping" && job.finalEvent.isEmpty()) {
    // Stopped before the trainer had installed its signal handler (while starting up):
    // nothing was lost, the newest checkpoint is where a resume starts.
    job.record.state = "stopped";
  } else {
    job.record.state = "failed";
    QString out = tail(runDir + QLatin1Char('/') + kStderr, 20);
    if (out.isEmpty() && job.error.isEmpty())
      out = tr("the trainer ended without a final event (killed or crashed)");
    if (!job.error.isEmpty()) out = job.error + (out.isEmpty() ? QString() : QStringLiteral("\n") + out);
    if (hasCheckpoint(runDir)) out += tr("\n(checkpoints kept: Resume continues from the newest)");
    job.record.lastOutput = ss(out);
  }
  save(job);
  if (job.record.state == "finished") publishModel(job);
}

void TrainingJobs::publishModel(TrainingJobView& job) {
  const QString source = qs(job.record.runDir) + QStringLiteral("/model.safetensors");
  if (!QFileInfo(source).isFile()) {
    job.record.lastOutput = ss(tr("the run finished but %1 is missing").arg(source));
    save(job);
    return;
  }
  const QString folder = userModelFolder();
  QDir().mkpath(folder);
  QString target = qs(job.record.modelPath);
  if (target.isEmpty() || QFileInfo::exists(target)) {
    const QString base = slug(qs(job.record.name));
    target = folder + QLatin1Char('/') + base + QStringLiteral(".safetensors");
    for (int k = 2; QFileInfo::exists(target); ++k)
      target = folder + QLatin1Char('/') + base + QStringLiteral("-%1.safetensors").arg(k);
    // Recorded before the copy: a studio killed during it copies to the same name again
    // on its next start, instead of publishing a second copy.
    job.record.modelPath = ss(target);
    save(job);
  }
  // Copy beside the target and rename, so the picker never sees half a file.
  const QString partial = target + QStringLiteral(".part");
  QFile::remove(partial);
  if (!QFile::copy(source, partial) || !QFile::rename(partial, target)) {
    QFile::remove(partial);
    job.record.modelPath.clear();
    job.record.lastOutput = ss(tr("could not copy the model into %1").arg(folder));
    save(job);
    return;
  }
  // The evaluator knows Fashion-MNIST's ten classes: only such models are evaluated.
  if (m_evalPerClass > 0 && evaluable(job.record)) {
    job.evaluating = true;
    m_evalQueue.push_back(job.record.id);
    startNextEval();
  } else {
    Q_EMIT modelReady(job.record.id, target);
  }
}

void TrainingJobs::startNextEval() {
  if (m_eval || m_evalQueue.isEmpty()) return;
  m_evalJob = m_evalQueue.takeFirst();
  TrainingJobView* j = find(m_evalJob);
  if (!j) return startNextEval();
  const QString model = qs(j->record.modelPath);
  m_eval = new QProcess(this);
  m_eval->setProgram(tesseraCliPath());
  m_eval->setArguments({QStringLiteral("--json"), QStringLiteral("--threads"),
                        QString::number(threadCount()),
                        QStringLiteral("eval"), QStringLiteral("--model"), model, QStringLiteral("-n"),
                        QString::number(m_evalPerClass), QStringLiteral("--record")});
  connect(m_eval, &QProcess::finished, this, [this, model](int code, QProcess::ExitStatus status) {
    const QByteArray out = m_eval->readAllStandardOutput();
    const QByteArray err = m_eval->readAllStandardError();
    m_eval->deleteLater();
    m_eval = nullptr;
    TrainingJobView* j = find(m_evalJob);
    if (j) {
      j->evaluating = false;
      const QJsonDocument doc = QJsonDocument::fromJson(out);
      if (status == QProcess::NormalExit && code == 0 && doc.isObject()) {
        j->record.evaluation = doc.toJson(QJsonDocument::Compact).toStdString();
      } else {
        // --json reports errors as one JSON line on stderr.
        QString message = QString::fromUtf8(err).trimmed().split(QLatin1Char('\n')).constLast();
        const QJsonObject e = QJsonDocument::fromJson(message.toUtf8()).object();
        if (e.contains(QStringLiteral("message"))) message = e.value(QStringLiteral("message")).toString();
        j->record.evaluation = QJsonDocument(QJsonObject{{QStringLiteral("error"), message}})
                                   .toJson(QJsonDocument::Compact)
                                   .toStdString();
      }
      save(*j);
      Q_EMIT modelReady(j->record.id, model);
      Q_EMIT jobsChanged();
    }
    startNextEval();
  });
  m_eval->start();
}

}  // namespace tessera
