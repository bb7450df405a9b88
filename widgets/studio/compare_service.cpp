// SPDX-License-Identifier: Apache-2.0
#include "widgets/studio/compare_service.h"

#include "widgets/studio/text.h"
#include "core/gallery/gallery_store.h"
#include "core/samplers/sampler.h"
#include "engine/generated_image.h"
#include "engine/inspection.h"
#include "widgets/studio/job_request.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QRegularExpression>
#include <QStandardPaths>

#include <cmath>
#include <optional>

namespace tessera {
namespace {

const ModelInfo* findModel(const QVector<ModelInfo>& models, const QString& nameOrPath) {
  for (const ModelInfo& m : models)
    if (m.error.isEmpty() && (m.name == nameOrPath || m.path == nameOrPath)) return &m;
  return nullptr;
}

QJsonObject jobToJson(const GenerationJob& j) {
  return {{QStringLiteral("model"), j.modelPath},
          {QStringLiteral("class"), j.classes.value(0)},
          {QStringLiteral("width"), j.width},
          {QStringLiteral("height"), j.height},
          {QStringLiteral("sampler"), j.sampler},
          {QStringLiteral("steps"), j.steps},
          {QStringLiteral("grid"), j.grid},
          {QStringLiteral("eta"), j.eta},
          {QStringLiteral("cfg"), j.cfg},
          {QStringLiteral("cfg_low"), j.cfgLow},
          {QStringLiteral("cfg_high"), j.cfgHigh},
          {QStringLiteral("clip"), j.clip},
          {QStringLiteral("seed"), QString::number(j.seed)}};
}

GenerationJob jobFromJson(const QJsonObject& o) {
  GenerationJob j;
  j.modelPath = o.value(QStringLiteral("model")).toString();
  j.classes = {o.value(QStringLiteral("class")).toInteger()};
  j.width = o.value(QStringLiteral("width")).toInt();
  j.height = o.value(QStringLiteral("height")).toInt();
  j.sampler = o.value(QStringLiteral("sampler")).toString();
  j.steps = o.value(QStringLiteral("steps")).toInt(50);
  j.grid = o.value(QStringLiteral("grid")).toString(QStringLiteral("default"));
  j.eta = o.value(QStringLiteral("eta")).toDouble();
  j.cfg = o.value(QStringLiteral("cfg")).toDouble(1.0);
  j.cfgLow = o.value(QStringLiteral("cfg_low")).toDouble(0.0);
  j.cfgHigh = o.value(QStringLiteral("cfg_high")).toDouble(1.0);
  j.clip = o.value(QStringLiteral("clip")).toBool();
  j.seed = o.value(QStringLiteral("seed")).toString().toULongLong();
  j.batch = 1;
  return j;
}

QJsonObject cellMetrics(const CompareCell& c) {
  return {{QStringLiteral("seconds"), c.seconds},           {QStringLiteral("nfe"), c.nfe},
          {QStringLiteral("forward_rows"), c.forwardRows},  {QStringLiteral("gflops_per_forward"), c.gflopsPerForward},
          {QStringLiteral("steps"), c.job.steps},           {QStringLiteral("error"), c.error},
          {QStringLiteral("job"), jobToJson(c.job)}};
}

}  // namespace

QStringList compareAxisNames() {
  return {QObject::tr("Models"), QObject::tr("Samplers"), QObject::tr("Steps"), QObject::tr("Guidance scales"), QObject::tr("Seeds"),
          QObject::tr("Sizes")};
}

int evaluationsPerStep(const QString& sampler) {
  const SamplerEntry* entry = samplerRegistry().find(sampler.toStdString());
  return entry ? entry->evaluationsPerStep : -1;
}

QString defaultAxisValues(CompareAxis axis, const GenerationJob& base, const QVector<ModelInfo>& models) {
  switch (axis) {
    case CompareAxis::Model: {
      QStringList names;
      for (const ModelInfo& m : models)
        if (m.error.isEmpty() && m.classNames.size() > base.classes.value(0)) names << m.name;
      return names.join(QStringLiteral(", "));
    }
    case CompareAxis::Sampler: {
      // Stochastic samplers would differ by their noise as well, and adaptive ones cannot
      // take part in matched compute: neither belongs in a default.
      QStringList names;
      for (const std::string& name : samplerRegistry().names()) {
        const SamplerEntry* entry = samplerRegistry().find(name);
        if (!entry->stochastic && !entry->adaptive()) names << qs(entry->name);
      }
      return names.join(QStringLiteral(", "));
    }
    case CompareAxis::Steps: return QStringLiteral("10, 25, 50");
    case CompareAxis::Guidance: return QStringLiteral("1, 2, 4");
    case CompareAxis::Seed:
      return QStringLiteral("%1, %2, %3").arg(base.seed).arg(base.seed + 1).arg(base.seed + 2);
    case CompareAxis::Size: return QStringLiteral("%1x%2").arg(base.width).arg(base.height);
  }
  return {};
}

QString parseAxisValues(CompareAxis axis, const QString& text, const QVector<ModelInfo>& models, QStringList* values) {
  QStringList out;
  const QStringList known = samplerNames();
  for (QString v : text.split(QLatin1Char(','), Qt::SkipEmptyParts)) {
    v = v.trimmed();
    if (v.isEmpty()) continue;
    bool ok = true;
    switch (axis) {
      case CompareAxis::Model:
        if (!findModel(models, v)) return QObject::tr("'%1' is not a model in the list").arg(v);
        break;
      case CompareAxis::Sampler:
        if (!known.contains(v)) return QObject::tr("'%1' is not a sampler (expected one of: %2)").arg(v, known.join(QStringLiteral(", ")));
        break;
      case CompareAxis::Steps:
        if (v.toInt(&ok) < 1 || !ok) return QObject::tr("steps '%1': expected a whole number of at least 1").arg(v);
        break;
      case CompareAxis::Guidance:
        if (v.toDouble(&ok) < 0 || !ok) return QObject::tr("guidance '%1': expected a number of at least 0").arg(v);
        break;
      case CompareAxis::Seed:
        v.toULongLong(&ok);
        if (!ok) return QObject::tr("seed '%1': expected a whole number of at least 0").arg(v);
        break;
      case CompareAxis::Size: {
        const auto m = QRegularExpression(QStringLiteral("^(\\d{1,5})[xX×](\\d{1,5})$")).match(v);
        if (!m.hasMatch()) return QObject::tr("size '%1': expected WxH, e.g. 28x28").arg(v);
        break;
      }
    }
    out << v;
  }
  if (out.isEmpty()) return QObject::tr("no values");
  if (values) *values = out;
  return {};
}

GenerationJob applyAxis(GenerationJob job, CompareAxis axis, const QString& value, const QVector<ModelInfo>& models) {
  switch (axis) {
    case CompareAxis::Model:
      if (const ModelInfo* m = findModel(models, value)) job.modelPath = m->path;
      break;
    case CompareAxis::Sampler: job.sampler = value; break;
    case CompareAxis::Steps: job.steps = value.toInt(); break;
    case CompareAxis::Guidance: job.cfg = value.toDouble(); break;
    case CompareAxis::Seed: job.seed = value.toULongLong(); break;
    case CompareAxis::Size: {
      const auto m = QRegularExpression(QStringLiteral("^(\\d{1,5})[xX×](\\d{1,5})$")).match(value);
      if (m.hasMatch()) job.width = m.captured(1).toInt(), job.height = m.captured(2).toInt();
      break;
    }
  }
  return job;
}

QJsonObject setupToJson(const CompareSetup& s) {
  return {{QStringLiteral("title"), s.title},
          {QStringLiteral("row_axis"), static_cast<int>(s.rowAxis)},
          {QStringLiteral("column_axis"), static_cast<int>(s.columnAxis)},
          {QStringLiteral("rows"), QJsonArray::fromStringList(s.rows)},
          {QStringLiteral("columns"), QJsonArray::fromStringList(s.columns)},
          {QStringLiteral("matched_compute"), s.matchedCompute},
          {QStringLiteral("base"), jobToJson(s.base)}};
}

QString matchedComputeProblem(const CompareSetup& setup) {
  QStringList samplers = {setup.base.sampler};
  if (setup.rowAxis == CompareAxis::Sampler) samplers << setup.rows;
  if (setup.columnAxis == CompareAxis::Sampler) samplers << setup.columns;
  for (const QString& sampler : samplers) {
    const int evals = evaluationsPerStep(sampler);
    if (evals < 0) return QObject::tr("matched compute: '%1' is not a sampler").arg(sampler);
    if (evals == 0)
      return QObject::tr(
                 "matched compute: %1 is adaptive, it chooses its own steps and network evaluations, so it has no "
                 "fixed cost per step to match; compare it without matched compute")
          .arg(sampler);
  }
  return {};
}

// ---- worker -------------------------------------------------------------------------

struct CompareWorker::Cache {
  std::map<QString, ModelSlot> models;  ///< every model of the grid, loaded once for the run
};

CompareWorker::CompareWorker() : m_cache(std::make_unique<Cache>()) {
  qRegisterMetaType<CompareSetup>();
  qRegisterMetaType<CompareCell>();
  qRegisterMetaType<QVector<CompareCell>>();
  qRegisterMetaType<CompareQuality>();
  qRegisterMetaType<QVector<QPair<qint64, QString>>>();
}

CompareWorker::~CompareWorker() = default;

void CompareWorker::cancel(qint64 id) { m_tokens.cancel(id); }

void CompareWorker::run(const CompareSetup& setup) {
  JobTokens::Scope token(m_tokens, setup.id);
  try {
    // The cells' jobs; every model loaded once.
    QVector<CompareCell> cells;
    for (int r = 0; r < setup.rows.size(); ++r)
      for (int c = 0; c < setup.columns.size(); ++c) {
        CompareCell cell;
        cell.row = r;
        cell.column = c;
        cell.job = applyAxis(applyAxis(setup.base, setup.rowAxis, setup.rows[r], setup.models), setup.columnAxis, setup.columns[c],
                             setup.models);
        cell.job.classes = {setup.base.classes.value(0)};
        cell.job.batch = 1;
        cell.job.sizes.clear();
        cells.push_back(cell);
      }
    auto slotFor = [&](const QString& path) -> ModelSlot* {
      ModelSlot& slot = m_cache->models[path];
      if (const QString problem = slot.load(path, !setup.galleryPath.isEmpty()); !problem.isEmpty()) return nullptr;
      return &slot;
    };
    auto gflopsOf = [&](const GenerationJob& j) {
      ModelSlot* s = slotFor(j.modelPath);
      return s ? forwardGflops(*s->model, j.height, j.width) : 0.0;
    };
    if (setup.matchedCompute) {
      if (const QString problem = matchedComputeProblem(setup); !problem.isEmpty())
        return Q_EMIT failed(setup.id, problem);
      const double budget = setup.base.steps * evaluationsPerStep(setup.base.sampler) *
                            (setup.base.cfg != 1.0 ? 2 : 1) * gflopsOf(setup.base);
      for (CompareCell& cell : cells) {
        const double perStep =
            evaluationsPerStep(cell.job.sampler) * (cell.job.cfg != 1.0 ? 2 : 1) * gflopsOf(cell.job);
        if (perStep > 0 && budget > 0) cell.job.steps = std::max(1, static_cast<int>(std::lround(budget / perStep)));
      }
    }
    Q_EMIT planned(setup.id, cells);

    std::optional<GalleryStore> gallery;
    if (!setup.galleryPath.isEmpty()) {
      auto store = GalleryStore::open(setup.galleryPath.toStdString());
      if (!store) return Q_EMIT failed(setup.id, qs(store.error().message()));
      gallery.emplace(std::move(*store));
    }
    bool cancelled = false;
    for (CompareCell& cell : cells) {
      if (token.cancelled()) {
        cancelled = true;
        break;
      }
      ModelSlot* slot = slotFor(cell.job.modelPath);
      if (!slot) {
        cell.error = tr("cannot load %1").arg(cell.job.modelPath);
        cell.done = true;
        Q_EMIT cellReady(setup.id, cell);
        continue;
      }
      auto made = requestFromJob(cell.job, *slot->model, *slot->traits);
      if (!made) {
        cell.error = qs(made.error().message());
        cell.done = true;
        Q_EMIT cellReady(setup.id, cell);
        continue;
      }
      GenerationRequest r = std::move(*made);
      r.cancel = token.token();
      auto result = generate(*slot->model, r);
      if (!result) {
        cell.error = qs(result.error().message());
      } else if (result->cancelled) {
        cancelled = true;
        break;
      } else {
        cell.seconds = result->seconds;
        cell.nfe = static_cast<int>(result->nfe);
        cell.forwardRows = static_cast<int>(result->forwardRows);
        cell.gflopsPerForward = forwardGflops(*slot->model, cell.job.height, cell.job.width);
        auto image = describeGeneratedImage(*slot->model, *slot->traits, *result, r.classes, r.seed, 0, cell.job.modelPath.toStdString(),
                                            slot->hash);
        if (!image) {
          cell.error = qs(image.error().message());
        } else {
          cell.png = QByteArray(image->png.data(), static_cast<int>(image->png.size()));
          cell.image = QImage::fromData(cell.png, "PNG");
          if (gallery) {
            auto id = gallery->add(image->record, image->png, image->thumbnail);
            if (!id) return Q_EMIT failed(setup.id, qs(id.error().message()));
            cell.galleryId = *id;
          }
        }
      }
      cell.done = true;
      Q_EMIT cellReady(setup.id, cell);
    }
    qint64 setId = 0;
    if (gallery && !cancelled) {
      ComparisonRecord rec;
      rec.title = setup.title.toStdString();
      rec.layout = QJsonDocument(setupToJson(setup)).toJson(QJsonDocument::Compact).toStdString();
      for (const CompareCell& c : cells) {
        ComparisonCell cc;
        cc.row = c.row;
        cc.column = c.column;
        if (c.galleryId > 0) cc.imageId = c.galleryId;
        cc.metrics = QJsonDocument(cellMetrics(c)).toJson(QJsonDocument::Compact).toStdString();
        rec.cells.push_back(cc);
      }
      auto id = gallery->addComparison(rec);
      if (!id) return Q_EMIT failed(setup.id, qs(id.error().message()));
      setId = *id;
    }
    m_cache->models.clear();  // a grid of large models should not stay in memory after it ran
    Q_EMIT finished(setup.id, cancelled, setId);
  } catch (const std::exception& e) {
    m_cache->models.clear();
    Q_EMIT failed(setup.id, tr("comparison failed: %1").arg(QString::fromUtf8(e.what())));
  }
}

void CompareWorker::load(qint64 id, const QString& galleryPath, qint64 setId) {
  auto store = GalleryStore::open(galleryPath.toStdString());
  if (!store) return Q_EMIT failed(id, qs(store.error().message()));
  auto rec = store->comparison(setId);
  if (!rec) return Q_EMIT failed(id, qs(rec.error().message()));
  const QJsonObject layout = QJsonDocument::fromJson(QByteArray::fromStdString(rec->layout)).object();
  CompareSetup setup;
  setup.id = id;
  setup.title = qs(rec->title);
  setup.rowAxis = static_cast<CompareAxis>(layout.value(QStringLiteral("row_axis")).toInt());
  setup.columnAxis = static_cast<CompareAxis>(layout.value(QStringLiteral("column_axis")).toInt());
  for (const auto& v : layout.value(QStringLiteral("rows")).toArray()) setup.rows << v.toString();
  for (const auto& v : layout.value(QStringLiteral("columns")).toArray()) setup.columns << v.toString();
  setup.matchedCompute = layout.value(QStringLiteral("matched_compute")).toBool();
  setup.base = jobFromJson(layout.value(QStringLiteral("base")).toObject());
  setup.galleryPath = galleryPath;
  QVector<CompareCell> cells;
  for (const ComparisonCell& cc : rec->cells) {
    CompareCell c;
    c.row = cc.row;
    c.column = cc.column;
    c.done = true;
    const QJsonObject m = QJsonDocument::fromJson(QByteArray::fromStdString(cc.metrics)).object();
    c.seconds = m.value(QStringLiteral("seconds")).toDouble();
    c.nfe = m.value(QStringLiteral("nfe")).toInt();
    c.forwardRows = m.value(QStringLiteral("forward_rows")).toInt();
    c.gflopsPerForward = m.value(QStringLiteral("gflops_per_forward")).toDouble();
    c.error = m.value(QStringLiteral("error")).toString();
    c.job = jobFromJson(m.value(QStringLiteral("job")).toObject());
    if (cc.imageId) {
      c.galleryId = *cc.imageId;
      if (auto png = store->png(*cc.imageId)) {
        c.png = QByteArray::fromStdString(*png);
        c.image = QImage::fromData(c.png, "PNG");
      }
    } else if (c.error.isEmpty()) {
      c.error = tr("its image was deleted from the gallery");
    }
    cells.push_back(c);
  }
  Q_EMIT loaded(id, setup, cells);
}

void CompareWorker::list(const QString& galleryPath) {
  QVector<QPair<qint64, QString>> out;
  if (auto store = GalleryStore::open(galleryPath.toStdString()))
    if (auto sets = store->comparisons())
      for (const ComparisonRecord& r : *sets) out.push_back({r.id, qs(r.title) + QStringLiteral(" — ") + qs(r.createdAt).left(16)});
  Q_EMIT listed(out);
}

// ---- quality ------------------------------------------------------------------------

QString tesseraCliPath() {
  const QByteArray env = qgetenv("TESSERA_CLI");
  if (!env.isEmpty()) return QString::fromLocal8Bit(env);
  const QString dir = QCoreApplication::applicationDirPath();
  for (const QString& candidate : {dir + QStringLiteral("/tessera-cli"), dir + QStringLiteral("/../app/tessera-cli")})
    if (QFileInfo(candidate).isExecutable()) return QFileInfo(candidate).canonicalFilePath();
  return QStandardPaths::findExecutable(QStringLiteral("tessera-cli"));
}

QualityRunner::QualityRunner(QObject* parent) : QObject(parent) {}

QualityRunner::~QualityRunner() { cancelAll(); }

bool QualityRunner::busy() const { return m_process != nullptr || !m_queue.isEmpty(); }

void QualityRunner::enqueue(int index, bool rows, const GenerationJob& job, int perClass) {
  m_queue.push_back({index, rows, job, perClass});
  if (!m_process) startNext();
}

void QualityRunner::cancelAll() {
  m_queue.clear();
  if (m_process) {
    m_process->disconnect(this);
    m_process->kill();
    m_process->waitForFinished(2000);
    m_process->deleteLater();
    m_process = nullptr;
  }
}

void QualityRunner::startNext() {
  if (m_queue.isEmpty()) return;
  m_current = m_queue.takeFirst();
  const QString cli = tesseraCliPath();
  if (cli.isEmpty()) {
    CompareQuality q;
    q.index = m_current.index;
    q.rows = m_current.rows;
    q.error = tr("tessera-cli was not found next to this program (set TESSERA_CLI)");
    Q_EMIT ready(q);
    return startNext();
  }
  const GenerationJob& j = m_current.job;
  QStringList args = {QStringLiteral("--json"), QStringLiteral("eval"), QStringLiteral("--model"), j.modelPath,
                      QStringLiteral("-n"),     QString::number(m_current.perClass),
                      QStringLiteral("--sampler"), j.sampler, QStringLiteral("--steps"), QString::number(j.steps),
                      QStringLiteral("--cfg"),  QString::number(j.cfg), QStringLiteral("--seed"), QString::number(j.seed),
                      QStringLiteral("--clip-x0"), j.clip ? QStringLiteral("on") : QStringLiteral("off")};
  if (j.width > 0 && j.height > 0) args << QStringLiteral("--size") << QStringLiteral("%1x%2").arg(j.width).arg(j.height);
  m_stderr.clear();
  m_stdout.clear();
  m_process = new QProcess(this);
  connect(m_process, &QProcess::readyReadStandardError, this, [this] {
    m_stderr += m_process->readAllStandardError();
    int nl;
    while ((nl = m_stderr.indexOf('\n')) >= 0) {
      const QJsonObject e = QJsonDocument::fromJson(m_stderr.left(nl)).object();
      m_stderr.remove(0, nl + 1);
      if (e.value(QStringLiteral("event")).toString() == QLatin1String("progress"))
        Q_EMIT progress(m_current.index, m_current.rows, e.value(QStringLiteral("done")).toInt(), e.value(QStringLiteral("total")).toInt());
    }
  });
  connect(m_process, &QProcess::readyReadStandardOutput, this, [this] { m_stdout += m_process->readAllStandardOutput(); });
  connect(m_process, &QProcess::finished, this, [this](int code, QProcess::ExitStatus status) {
    m_stdout += m_process->readAllStandardOutput();
    CompareQuality q;
    q.index = m_current.index;
    q.rows = m_current.rows;
    q.samples = m_current.perClass * 10;
    const QJsonObject o = QJsonDocument::fromJson(m_stdout.trimmed()).object();
    if (status != QProcess::NormalExit || code != 0 || o.isEmpty()) {
      q.error = QString::fromUtf8(m_stderr + m_stdout).trimmed().right(300);
      if (q.error.isEmpty()) q.error = tr("tessera-cli eval exited with %1").arg(code);
    } else {
      q.accuracy = o.value(QStringLiteral("class_accuracy")).toDouble();
      q.fdRatio = o.value(QStringLiteral("fd_ratio")).toDouble();
    }
    m_process->deleteLater();
    m_process = nullptr;
    Q_EMIT ready(q);
    startNext();
  });
  m_process->start(cli, args);
}

}  // namespace tessera
