// SPDX-License-Identifier: Apache-2.0
#include "widgets/training/training_panel.h"

#include "widgets/studio/text.h"
#include "widgets/panel.h"
#include "widgets/training/new_job_dialog.h"
#include "widgets/training/training_jobs.h"

#include <QChart>
#include <QChartView>
#include <QFileInfo>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLegend>
#include <QLegendMarker>
#include <QLineSeries>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QScatterSeries>
#include <QSlider>
#include <QSpinBox>
#include <QTableWidget>
#include <QValueAxis>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

namespace tessera {
namespace {

QString duration(double seconds) {
  if (seconds < 0) return QStringLiteral("–");
  const qint64 s = static_cast<qint64>(std::llround(seconds));
  if (s < 120) return QStringLiteral("%1 s").arg(s);
  if (s < 7200) return QStringLiteral("%1 min").arg(s / 60);
  return QStringLiteral("%1 h %2 min").arg(s / 3600).arg((s % 3600) / 60);
}

/// TensorBoard's smoothing: an exponential moving average with its start-up bias removed.
QList<QPointF> smoothed(const QVector<QPointF>& raw, double weight) {
  QList<QPointF> out;
  double last = 0, debias = 0;
  for (const QPointF& p : raw) {
    last = last * weight + (1 - weight) * p.y();
    debias = debias * weight + (1 - weight);
    out.push_back(QPointF(p.x(), last / debias));
  }
  return out;
}

QString stateLabel(const QString& state) {
  if (state == QLatin1String("queued")) return QObject::tr("queued");
  if (state == QLatin1String("starting")) return QObject::tr("starting…");
  if (state == QLatin1String("running")) return QObject::tr("running");
  if (state == QLatin1String("stopping")) return QObject::tr("stopping…");
  if (state == QLatin1String("stopped")) return QObject::tr("stopped");
  if (state == QLatin1String("finished")) return QObject::tr("finished");
  if (state == QLatin1String("failed")) return QObject::tr("failed");
  return state;
}

/// One line of a finished model's eval record.
QString evaluationLine(const std::string& json) {
  if (json.empty()) return {};
  const QJsonObject e = QJsonDocument::fromJson(QByteArray::fromStdString(json)).object();
  if (e.contains(QStringLiteral("error")))
    return QObject::tr("Evaluation failed: %1").arg(e.value(QStringLiteral("error")).toString());
  return QObject::tr("Eval (%1 per class): class accuracy %2%, FD %3 (%4× the floor)")
      .arg(e.value(QStringLiteral("samples_per_class")).toInt())
      .arg(100 * e.value(QStringLiteral("class_accuracy")).toDouble(), 0, 'f', 1)
      .arg(e.value(QStringLiteral("fd")).toDouble(), 0, 'g', 4)
      .arg(e.value(QStringLiteral("fd_ratio")).toDouble(), 0, 'g', 3);
}

}  // namespace

TrainingPanel::TrainingPanel(TrainingJobs* jobs, QWidget* parent) : QWidget(parent), m_jobs(jobs) {
  setObjectName(QStringLiteral("trainingPanel"));
  buildUi();
  connect(m_jobs, &TrainingJobs::jobsChanged, this, &TrainingPanel::refreshList);
  connect(m_jobs, &TrainingJobs::jobUpdated, this, [this](qint64 id) {
    if (id == m_current) refreshJob();
    // The list's step column follows too, cheaply.
    for (int r = 0; r < m_list->rowCount(); ++r) {
      if (m_list->item(r, 0)->data(Qt::UserRole).toLongLong() != id) continue;
      if (const TrainingJobView* j = m_jobs->job(id))
        m_list->item(r, 2)->setText(QStringLiteral("%1 / %2").arg(j->record.step).arg(j->record.steps));
    }
  });
  refreshList();
}

void TrainingPanel::buildUi() {
  // Left: the jobs and their controls.
  m_list = new QTableWidget(0, 3, this);
  m_list->setObjectName(QStringLiteral("jobList"));
  m_list->setHorizontalHeaderLabels({tr("Job"), tr("State"), tr("Step")});
  m_list->horizontalHeader()->setSectionResizeMode(0, QHeaderView::Stretch);
  m_list->horizontalHeader()->setSectionResizeMode(1, QHeaderView::ResizeToContents);
  m_list->horizontalHeader()->setSectionResizeMode(2, QHeaderView::ResizeToContents);
  m_list->verticalHeader()->hide();
  m_list->setSelectionBehavior(QAbstractItemView::SelectRows);
  m_list->setSelectionMode(QAbstractItemView::SingleSelection);
  m_list->setEditTriggers(QAbstractItemView::NoEditTriggers);
  m_list->setMinimumWidth(150);
  auto button = [this](const QString& text, const char* name, const QString& tip) {
    auto* b = new QPushButton(text, this);
    b->setObjectName(QString::fromLatin1(name));
    b->setToolTip(tip);
    return b;
  };
  m_new = button(tr("New job…"), "newJobButton", tr("Train from scratch or fine-tune a model"));
  m_stop = button(tr("Stop"), "stopJobButton", tr("Finish the current step, write a checkpoint and stop (Resume continues)"));
  m_resume = button(tr("Resume"), "resumeJobButton", tr("Queue the job again; it continues from its newest checkpoint"));
  m_sampleNow = button(tr("Sample now"), "sampleNowButton", tr("Write a preview grid after the current step"));
  m_remove = button(tr("Remove"), "removeJobButton", tr("Forget the job and delete its run folder (its model stays)"));
  m_use = button(tr("Generate with it"), "useModelButton", tr("Select the finished model in the Generate panel"));
  m_concurrent = new QSpinBox(this);
  m_concurrent->setObjectName(QStringLiteral("concurrentJobs"));
  m_concurrent->setRange(1, 8);
  m_concurrent->setPrefix(tr("Run "));
  m_concurrent->setSuffix(tr(" at once"));
  m_concurrent->setToolTip(tr("Queued jobs start when a running one ends; more at once share the CPU"));
  auto* controls = new QGridLayout;
  controls->addWidget(m_new, 0, 0);
  controls->addWidget(m_concurrent, 0, 1);
  controls->addWidget(m_stop, 1, 0);
  controls->addWidget(m_resume, 1, 1);
  controls->addWidget(m_sampleNow, 2, 0);
  controls->addWidget(m_remove, 2, 1);
  auto* left = new QVBoxLayout;
  left->addWidget(m_list, 1);
  left->addLayout(controls);

  // Centre: numbers and the chart.
  m_stats = new QLabel(tr("No job selected"), this);
  m_stats->setObjectName(QStringLiteral("jobStats"));
  m_stats->setWordWrap(true);
  m_progress = new QProgressBar(this);
  m_progress->setObjectName(QStringLiteral("jobProgress"));
  m_progress->setMaximumHeight(14);
  m_progress->setTextVisible(false);
  m_chart = new QChart;
  m_chart->setMargins(QMargins(2, 2, 2, 2));
  m_chart->legend()->setAlignment(Qt::AlignTop);
  m_chart->legend()->setFont(font());
  m_raw = new QLineSeries;
  m_raw->setName(tr("loss"));
  m_raw->setPen(QPen(QColor(120, 160, 220, 110), 1));
  m_smooth = new QLineSeries;
  m_smooth->setName(tr("smooth"));
  m_smooth->setPen(QPen(QColor(40, 110, 210), 2));
  m_validation = new QLineSeries;
  m_validation->setName(tr("val"));
  m_validation->setPen(QPen(QColor(230, 120, 30), 2));
  m_validationDots = new QScatterSeries;
  m_validationDots->setMarkerSize(6);
  m_validationDots->setColor(QColor(230, 120, 30));
  m_validationDots->setBorderColor(QColor(230, 120, 30));
  m_lr = new QLineSeries;
  m_lr->setName(tr("lr"));
  m_lr->setPen(QPen(QColor(120, 120, 120), 1, Qt::DashLine));
  for (QAbstractSeries* s : std::initializer_list<QAbstractSeries*>{m_raw, m_smooth, m_validation, m_validationDots, m_lr})
    m_chart->addSeries(s);
  m_chart->legend()->markers(m_validationDots).front()->setVisible(false);
  m_stepAxis = new QValueAxis;
  m_stepAxis->setTitleText(tr("step"));
  m_stepAxis->setLabelFormat(QStringLiteral("%d"));
  m_lossAxis = new QValueAxis;
  m_lossAxis->setTitleText(tr("loss"));
  m_lrAxis = new QValueAxis;
  m_lrAxis->setTitleText(tr("lr"));
  m_lrAxis->setLabelFormat(QStringLiteral("%.0e"));
  m_chart->addAxis(m_stepAxis, Qt::AlignBottom);
  m_chart->addAxis(m_lossAxis, Qt::AlignLeft);
  m_chart->addAxis(m_lrAxis, Qt::AlignRight);
  for (QAbstractSeries* s : std::initializer_list<QAbstractSeries*>{m_raw, m_smooth, m_validation, m_validationDots}) {
    s->attachAxis(m_stepAxis);
    s->attachAxis(m_lossAxis);
  }
  m_lr->attachAxis(m_stepAxis);
  m_lr->attachAxis(m_lrAxis);
  for (QValueAxis* a : {m_stepAxis, m_lossAxis, m_lrAxis}) {
    QFont f = font();
    f.setPointSizeF(f.pointSizeF() * 0.85);
    a->setLabelsFont(f);
    a->setTitleFont(f);
  }
  m_chartView = new QChartView(m_chart, this);
  m_chartView->setObjectName(QStringLiteral("lossChart"));
  m_chartView->setRenderHint(QPainter::Antialiasing);
  m_chartView->setToolTip(tr("loss: mean training loss per report; smooth: its moving average; val: the EMA weights' loss on held-out images at fixed timesteps and noise; lr: learning rate (right axis)"));
  m_chartView->setMinimumSize(200, 140);
  auto* centre = new QVBoxLayout;
  centre->addWidget(m_stats);
  centre->addWidget(m_progress);
  centre->addWidget(m_chartView, 1);

  // Right: the preview grids by step, the eval, the output of a failed run.
  m_preview = new QLabel(this);
  m_preview->setObjectName(QStringLiteral("jobPreview"));
  m_preview->setAlignment(Qt::AlignCenter);
  m_preview->setMinimumSize(120, 60);
  m_preview->setText(tr("No preview yet"));
  m_previewSlider = new QSlider(Qt::Horizontal, this);
  m_previewSlider->setObjectName(QStringLiteral("previewSlider"));
  m_previewSlider->setToolTip(tr("Step through the preview grids (same seed and classes each time)"));
  m_previewLabel = new QLabel(this);
  m_evaluation = new QLabel(this);
  m_evaluation->setObjectName(QStringLiteral("jobEvaluation"));
  m_evaluation->setWordWrap(true);
  m_output = new QPlainTextEdit(this);
  m_output->setObjectName(QStringLiteral("jobOutput"));
  m_output->setReadOnly(true);
  m_output->setMaximumHeight(90);
  m_output->setPlaceholderText(tr("The trainer's last output, when a run fails"));
  auto* right = new QVBoxLayout;
  right->addWidget(m_preview, 1);
  auto* sliderRow = new QHBoxLayout;
  sliderRow->addWidget(m_previewSlider, 1);
  sliderRow->addWidget(m_previewLabel);
  right->addLayout(sliderRow);
  right->addWidget(m_evaluation);
  right->addWidget(m_use);
  right->addWidget(m_output);

  auto* layout = new QHBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addLayout(left, 3);
  layout->addLayout(centre, 6);
  layout->addLayout(right, 3);

  connect(m_list, &QTableWidget::itemSelectionChanged, this, [this] {
    const auto rows = m_list->selectionModel()->selectedRows();
    m_current = rows.isEmpty() ? 0 : m_list->item(rows.front().row(), 0)->data(Qt::UserRole).toLongLong();
    refreshJob();
  });
  connect(m_new, &QPushButton::clicked, this, &TrainingPanel::newJob);
  connect(m_stop, &QPushButton::clicked, this, [this] { m_jobs->stop(m_current); });
  connect(m_resume, &QPushButton::clicked, this, [this] { m_jobs->resume(m_current); });
  connect(m_sampleNow, &QPushButton::clicked, this, [this] { m_jobs->sampleNow(m_current); });
  connect(m_remove, &QPushButton::clicked, this, [this] {
    const TrainingJobView* j = m_jobs->job(m_current);
    if (!j) return;
    if (QMessageBox::question(this, tr("Remove job"),
                              tr("Remove '%1' and delete its run folder (checkpoints and previews)?%2")
                                  .arg(qs(j->record.name),
                                       j->record.modelPath.empty() ? QString()
                                                                   : tr(" Its model stays in the model folder.")))
        != QMessageBox::Yes)
      return;
    QString error;
    if (!m_jobs->remove(m_current, &error) && !error.isEmpty()) QMessageBox::warning(this, tr("Remove job"), error);
  });
  connect(m_use, &QPushButton::clicked, this, [this] {
    if (const TrainingJobView* j = m_jobs->job(m_current); j && !j->record.modelPath.empty())
      Q_EMIT useModelRequested(qs(j->record.modelPath));
  });
  connect(m_concurrent, qOverload<int>(&QSpinBox::valueChanged), m_jobs, &TrainingJobs::setMaxConcurrent);
  connect(m_previewSlider, &QSlider::valueChanged, this, &TrainingPanel::showPreview);
}

void TrainingPanel::newJob() {
  NewJobDialog dialog(m_models ? m_models() : QVector<ModelInfo>{}, this);
  if (dialog.exec() != QDialog::Accepted) return;
  QString error;
  const qint64 id = m_jobs->submit(dialog.spec(), &error);
  if (!id) {
    QMessageBox::warning(this, tr("New training job"), error);
    return;
  }
  selectJob(id);
}

void TrainingPanel::selectJob(qint64 id) {
  for (int r = 0; r < m_list->rowCount(); ++r)
    if (m_list->item(r, 0)->data(Qt::UserRole).toLongLong() == id) m_list->selectRow(r);
}

int TrainingPanel::lossPoints() const { return m_raw->count(); }
int TrainingPanel::previewCount() const {
  const TrainingJobView* j = m_jobs->job(m_current);
  return j ? j->previews.size() : 0;
}

void TrainingPanel::refreshList() {
  const qint64 keep = m_current;
  {
    QSignalBlocker block(m_list);
    m_list->setRowCount(0);
    for (const TrainingJobView& j : m_jobs->jobs()) {
      const int r = m_list->rowCount();
      m_list->insertRow(r);
      auto* name = new QTableWidgetItem(qs(j.record.name));
      name->setData(Qt::UserRole, j.id());
      name->setToolTip(tr("%1\n%2").arg(qs(j.record.runDir), j.record.kind == "finetune"
                                                                   ? tr("fine-tuning %1").arg(qs(j.record.initModel))
                                                                   : tr("from scratch")));
      m_list->setItem(r, 0, name);
      auto* state = new QTableWidgetItem(stateLabel(j.state()) + (j.evaluating ? tr(", evaluating") : QString()));
      if (j.state() == QLatin1String("failed")) state->setForeground(QColor(217, 83, 79));
      m_list->setItem(r, 1, state);
      m_list->setItem(r, 2, new QTableWidgetItem(QStringLiteral("%1 / %2").arg(j.record.step).arg(j.record.steps)));
    }
  }
  if (m_jobs->job(keep)) {
    selectJob(keep);
  } else if (m_list->rowCount() > 0) {
    m_list->selectRow(m_list->rowCount() - 1);
  } else {
    m_current = 0;
  }
  refreshJob();
}

void TrainingPanel::refreshButtons() {
  const TrainingJobView* j = m_jobs->job(m_current);
  const QString state = j ? j->state() : QString();
  m_stop->setEnabled(state == QLatin1String("running") || state == QLatin1String("queued"));
  m_resume->setEnabled(state == QLatin1String("stopped") || state == QLatin1String("failed"));
  m_sampleNow->setEnabled(state == QLatin1String("running"));
  m_remove->setEnabled(j && state != QLatin1String("running") && state != QLatin1String("stopping"));
  m_use->setEnabled(j && !j->record.modelPath.empty() && QFileInfo::exists(qs(j->record.modelPath)));
  m_concurrent->setValue(m_jobs->maxConcurrent());
}

void TrainingPanel::refreshJob() {
  refreshButtons();
  const TrainingJobView* j = m_jobs->job(m_current);
  if (!j) {
    for (QXYSeries* s : std::initializer_list<QXYSeries*>{m_raw, m_smooth, m_validation, m_validationDots, m_lr}) s->clear();
    m_stats->setText(tr("No job selected: New job… trains from scratch or fine-tunes a model"));
    m_progress->setValue(0);
    m_preview->setPixmap({});
    m_preview->setText(tr("No preview yet"));
    m_previewSlider->setRange(0, 0);
    m_evaluation->clear();
    m_output->clear();
    m_output->hide();
    return;
  }
  m_raw->replace(QList<QPointF>(j->loss.begin(), j->loss.end()));
  m_smooth->replace(smoothed(j->loss, j->loss.size() > 50 ? 0.9 : 0.6));
  m_validation->replace(QList<QPointF>(j->validationEma.begin(), j->validationEma.end()));
  m_validationDots->replace(QList<QPointF>(j->validationEma.begin(), j->validationEma.end()));
  m_lr->replace(QList<QPointF>(j->learningRate.begin(), j->learningRate.end()));
  // Axes: steps from 0 to the run's length; loss over what is shown, robust to the first
  // steps' large values (the 2nd to 98th percentile, padded).
  const double steps = std::max<double>(1, static_cast<double>(j->record.steps));
  m_stepAxis->setRange(0, steps);
  // Ticks at round steps (1, 2 or 5 × 10^k apart, at most 6 intervals), axis ending at the run's end.
  double interval = std::pow(10.0, std::floor(std::log10(steps)));
  for (double f : {0.1, 0.2, 0.5, 1.0})
    if (steps / (interval * f) <= 6) {
      interval *= f;
      break;
    }
  m_stepAxis->setTickType(QValueAxis::TicksDynamic);
  m_stepAxis->setTickAnchor(0);
  m_stepAxis->setTickInterval(std::max(1.0, interval));
  QVector<double> ys;
  for (const auto& p : j->loss) ys << p.y();
  for (const auto& p : j->validationEma) ys << p.y();
  if (!ys.isEmpty()) {
    std::sort(ys.begin(), ys.end());
    const double lo = ys[static_cast<int>(0.0 * (ys.size() - 1))];
    const double hi = ys[static_cast<int>(std::floor(0.98 * (ys.size() - 1)))];
    const double pad = std::max(1e-6, 0.08 * (hi - lo));
    m_lossAxis->setRange(std::max(0.0, lo - pad), hi + pad);
  } else {
    m_lossAxis->setRange(0, 1);
  }
  double lrMax = 0;
  for (const auto& p : j->learningRate) lrMax = std::max(lrMax, p.y());
  m_lrAxis->setRange(0, lrMax > 0 ? lrMax * 1.1 : 1e-3);

  const QString state = j->state();
  QStringList parts;
  parts << QStringLiteral("<b>%1</b>").arg(qs(j->record.name).toHtmlEscaped()) << stateLabel(state);
  parts << tr("step %1 / %2").arg(j->record.step).arg(j->record.steps);
  if (state == QLatin1String("running") && j->imagesPerSecond > 0) {
    parts << tr("%1 images/s").arg(j->imagesPerSecond, 0, 'f', 0);
    parts << tr("ETA %1").arg(duration(j->etaSeconds));
  }
  if (!j->loss.isEmpty()) parts << tr("loss %1").arg(j->loss.back().y(), 0, 'g', 4);
  if (!j->validationEma.isEmpty()) parts << tr("validation %1").arg(j->validationEma.back().y(), 0, 'g', 4);
  if (j->parameters > 0) parts << tr("%1 M parameters").arg(static_cast<double>(j->parameters) / 1e6, 0, 'f', 2);
  m_stats->setText(parts.join(QStringLiteral(" · ")));
  m_progress->setRange(0, static_cast<int>(std::max<qint64>(1, j->record.steps)));
  m_progress->setValue(static_cast<int>(j->record.step));

  const bool atEnd = m_previewSlider->value() >= m_previewSlider->maximum();
  {
    QSignalBlocker block(m_previewSlider);
    m_previewSlider->setRange(0, std::max(0, static_cast<int>(j->previews.size()) - 1));
    if (atEnd) m_previewSlider->setValue(m_previewSlider->maximum());  // follow the newest
  }
  showPreview(m_previewSlider->value());
  QString eval = evaluationLine(j->record.evaluation);
  if (j->evaluating) eval = tr("Evaluating the finished model…");
  if (!j->record.modelPath.empty())
    eval = (eval.isEmpty() ? QString() : eval + QLatin1Char('\n')) + tr("Model: %1").arg(QFileInfo(qs(j->record.modelPath)).fileName());
  m_evaluation->setText(eval);
  const QString out = qs(j->record.lastOutput);
  if (m_output->toPlainText() != out) m_output->setPlainText(out);
  m_output->setVisible(!out.isEmpty());  // room for the preview unless there is something to read
}

void TrainingPanel::showPreview(int index) {
  const TrainingJobView* j = m_jobs->job(m_current);
  if (!j || index < 0 || index >= j->previews.size()) {
    m_preview->setPixmap({});
    m_preview->setText(tr("No preview yet"));
    m_previewLabel->clear();
    return;
  }
  const auto& p = j->previews[index];
  QPixmap pix(p.path);
  if (pix.isNull()) {
    m_preview->setText(tr("Cannot read %1").arg(p.path));
    return;
  }
  // Whole multiples of the grid's pixels keep 28×28 samples sharp.
  const QSize room = m_preview->size();
  const int scale = std::max(1, std::min(room.width() / std::max(1, pix.width()), room.height() / std::max(1, pix.height())));
  m_preview->setPixmap(scale > 1 ? pix.scaled(pix.size() * scale, Qt::KeepAspectRatio, Qt::FastTransformation)
                                 : pix.scaled(room, Qt::KeepAspectRatio, Qt::SmoothTransformation));
  m_previewLabel->setText(tr("step %1 (%2/%3)").arg(p.step).arg(index + 1).arg(j->previews.size()));
}

PanelDescriptor describePanel_training() {
  PanelDescriptor d;
  d.title = TrainingPanel::tr("Training jobs");
  d.area = Qt::BottomDockWidgetArea;
  d.tabbedWith = QStringLiteral("timeline");
  d.create = [](const PanelContext& c) { return new TrainingPanel(c.trainingJobs, c.parent); };
  return d;
}

}  // namespace tessera
