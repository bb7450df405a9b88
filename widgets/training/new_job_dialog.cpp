// SPDX-License-Identifier: Apache-2.0
#include "widgets/training/new_job_dialog.h"

#include "widgets/studio/compare_service.h"  // tesseraCliPath()

#include <QButtonGroup>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonArray>
#include <QJsonDocument>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QProcess>
#include <QPushButton>
#include <QRadioButton>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QTemporaryFile>
#include <QThread>
#include <QTreeWidget>
#include <QVBoxLayout>
#include <QtConcurrent>

#include <algorithm>

namespace tessera {
namespace {

}  // namespace

NewJobDialog::NewJobDialog(const QVector<ModelInfo>& models, QWidget* parent) : QDialog(parent), m_models(models) {
  setWindowTitle(tr("New training job"));
  setObjectName(QStringLiteral("newJobDialog"));
  buildUi();
  connect(&m_folderWatcher, &QFutureWatcher<FolderPreview>::finished, this, [this] {
    m_folderInfo = m_folderWatcher.result();
    m_folderPreview->clear();
    if (!m_folderInfo.error.isEmpty()) {
      new QTreeWidgetItem(m_folderPreview, {tr("Error"), m_folderInfo.error});
      setClasses({});
    } else {
      for (int k = 0; k < m_folderInfo.classes.size(); ++k)
        new QTreeWidgetItem(m_folderPreview, {m_folderInfo.classes[k], QString::number(m_folderInfo.counts[k])});
      auto* info = new QTreeWidgetItem(m_folderPreview, {tr("(sizes)"), m_folderInfo.sizes});
      info->setToolTip(1, tr("%1 channel(s)").arg(m_folderInfo.channels));
      if (!m_folderInfo.unreadable.isEmpty()) {
        auto* bad = new QTreeWidgetItem(m_folderPreview, {tr("Unreadable"), QString::number(m_folderInfo.unreadable.size())});
        for (const QString& u : m_folderInfo.unreadable) new QTreeWidgetItem(bad, {QString(), u});
        bad->setExpanded(true);
      }
      setClasses(m_folderInfo.classes);
    }
    updateEnabled();
  });
  onDataChanged();
  updateEnabled();
}

NewJobDialog::~NewJobDialog() {
  if (m_bench) {
    m_bench->disconnect(this);
    m_bench->kill();
    m_bench->waitForFinished(2000);
  }
  m_folderWatcher.waitForFinished();
  if (!m_benchConfig.isEmpty()) QFile::remove(m_benchConfig);
}

void NewJobDialog::buildUi() {
  auto* form = new QFormLayout;
  m_name = new QLineEdit(tr("fashion-job"), this);
  m_name->setObjectName(QStringLiteral("jobName"));
  form->addRow(tr("Name"), m_name);

  m_scratch = new QRadioButton(tr("From scratch"), this);
  m_scratch->setObjectName(QStringLiteral("fromScratch"));
  m_finetune = new QRadioButton(tr("Fine-tune"), this);
  m_finetune->setObjectName(QStringLiteral("fineTune"));
  m_scratch->setChecked(true);
  m_initModel = new QComboBox(this);
  m_initModel->setObjectName(QStringLiteral("initModel"));
  for (const ModelInfo& m : m_models)
    if (m.error.isEmpty()) m_initModel->addItem(m.name, m.path);
  auto* start = new QHBoxLayout;
  start->addWidget(m_scratch);
  start->addWidget(m_finetune);
  start->addWidget(m_initModel, 1);
  form->addRow(tr("Start"), start);

  m_backbone = new QComboBox(this);
  m_backbone->setObjectName(QStringLiteral("backbone"));
  m_backbone->addItems(backboneNames());
  m_backbone->setCurrentText(defaultBackbone());
  m_size = new QComboBox(this);
  m_size->setObjectName(QStringLiteral("networkSize"));
  fillSizes();
  auto* net = new QHBoxLayout;
  net->addWidget(m_backbone);
  net->addWidget(m_size, 1);
  form->addRow(tr("Backbone"), net);

  m_process = new QComboBox(this);
  m_process->setObjectName(QStringLiteral("process"));
  m_process->addItem(tr("DDPM, learned sigma (DiT)"), QStringLiteral("ddpm-learned"));
  m_process->addItem(tr("DDPM, ε prediction"), QStringLiteral("ddpm"));
  m_process->addItem(tr("Linear interpolant, velocity (SiT)"), QStringLiteral("interpolant"));
  form->addRow(tr("Process"), m_process);

  m_data = new QComboBox(this);
  m_data->setObjectName(QStringLiteral("dataSource"));
  m_data->addItem(tr("Fashion-MNIST"), QStringLiteral("fashion-mnist"));
  m_data->addItem(tr("fashion-native (items cropped to their boxes)"), QStringLiteral("fashion-native"));
  m_data->addItem(tr("Image folder"), QStringLiteral("folder"));
  form->addRow(tr("Data"), m_data);
  m_folder = new QLineEdit(this);
  m_folder->setObjectName(QStringLiteral("dataFolder"));
  m_folder->setPlaceholderText(tr("one sub-folder per class"));
  m_browse = new QPushButton(tr("Browse…"), this);
  auto* folderRow = new QHBoxLayout;
  folderRow->addWidget(m_folder, 1);
  folderRow->addWidget(m_browse);
  form->addRow(tr("Folder"), folderRow);
  m_folderPreview = new QTreeWidget(this);
  m_folderPreview->setObjectName(QStringLiteral("folderPreview"));
  m_folderPreview->setHeaderLabels({tr("Class"), tr("Images")});
  m_folderPreview->setMaximumHeight(110);
  m_folderPreview->header()->setSectionResizeMode(0, QHeaderView::ResizeToContents);
  form->addRow(QString(), m_folderPreview);

  m_classes = new QListWidget(this);
  m_classes->setObjectName(QStringLiteral("classSubset"));
  m_classes->setMaximumHeight(110);
  m_classes->setFlow(QListView::LeftToRight);
  m_classes->setWrapping(true);
  m_classes->setToolTip(tr("Train on the checked classes (all by default)"));
  form->addRow(tr("Classes"), m_classes);

  m_resolution = new QComboBox(this);
  m_resolution->setObjectName(QStringLiteral("resolutionMode"));
  m_resolution->addItem(tr("Fixed size (letterboxed)"), QStringLiteral("fixed"));
  m_resolution->addItem(tr("Aspect-ratio buckets"), QStringLiteral("buckets"));
  m_resolution->addItem(tr("Native sizes, packed"), QStringLiteral("packed"));
  m_imageSize = new QSpinBox(this);
  m_imageSize->setObjectName(QStringLiteral("imageSize"));
  m_imageSize->setRange(8, 1024);
  m_imageSize->setValue(28);
  m_imageSize->setSuffix(tr(" px"));
  auto* res = new QHBoxLayout;
  res->addWidget(m_resolution, 1);
  res->addWidget(m_imageSize);
  form->addRow(tr("Resolution"), res);

  auto spin = [this](const char* name, int lo, int hi, int value) {
    auto* s = new QSpinBox(this);
    s->setObjectName(QString::fromLatin1(name));
    s->setRange(lo, hi);
    s->setValue(value);
    return s;
  };
  m_steps = spin("trainSteps", 1, 10000000, 2000);
  m_batch = spin("batchSize", 1, 4096, 128);
  auto* sched = new QHBoxLayout;
  sched->addWidget(new QLabel(tr("Steps"), this));
  sched->addWidget(m_steps);
  sched->addWidget(new QLabel(tr("Batch"), this));
  sched->addWidget(m_batch);
  m_lr = new QDoubleSpinBox(this);
  m_lr->setObjectName(QStringLiteral("learningRate"));
  m_lr->setDecimals(6);
  m_lr->setRange(1e-6, 1.0);
  m_lr->setSingleStep(1e-4);
  m_lr->setValue(1e-3);
  m_ema = new QDoubleSpinBox(this);
  m_ema->setObjectName(QStringLiteral("emaDecay"));
  m_ema->setDecimals(4);
  m_ema->setRange(0.0, 0.9999);
  m_ema->setSingleStep(0.001);
  m_ema->setValue(0.999);
  m_lrSchedule = new QComboBox(this);
  m_lrSchedule->setObjectName(QStringLiteral("lrSchedule"));
  m_lrSchedule->addItem(tr("cool-down"), QStringLiteral("wsd"));
  m_lrSchedule->addItem(tr("cosine"), QStringLiteral("cosine"));
  m_lrSchedule->addItem(tr("constant"), QStringLiteral("constant"));
  m_lrSchedule->setToolTip(tr("cool-down: constant, then linear to zero over the last fifth of the steps "
                              "(warmup-stable-decay); cosine: down to zero over the run; constant: no decay. "
                              "A run that ends at a low rate gives better samples than one stopped at full rate."));
  sched->addWidget(new QLabel(tr("LR"), this));
  sched->addWidget(m_lr);
  sched->addWidget(m_lrSchedule);
  sched->addWidget(new QLabel(tr("EMA"), this));
  sched->addWidget(m_ema);
  form->addRow(tr("Schedule"), sched);

  m_checkpointEvery = spin("checkpointEvery", 1, 1000000, 250);
  m_previewEvery = spin("previewEvery", 0, 1000000, 250);
  m_previewEvery->setSpecialValueText(tr("never"));
  m_validationEvery = spin("validationEvery", 0, 1000000, 250);
  m_validationEvery->setSpecialValueText(tr("never"));
  auto* every = new QHBoxLayout;
  every->addWidget(new QLabel(tr("Checkpoint"), this));
  every->addWidget(m_checkpointEvery);
  every->addWidget(new QLabel(tr("Preview grid"), this));
  every->addWidget(m_previewEvery);
  every->addWidget(new QLabel(tr("Validation"), this));
  every->addWidget(m_validationEvery);
  form->addRow(tr("Every N steps"), every);

  m_measure = new QPushButton(tr("Measure"), this);
  m_measure->setObjectName(QStringLiteral("measureButton"));
  m_measure->setToolTip(tr("Runs a few real training steps of this configuration (tessera-cli bench train)"));
  m_estimate = new QLabel(tr("Time per step: not measured"), this);
  m_estimate->setObjectName(QStringLiteral("stepEstimate"));
  m_estimate->setWordWrap(true);
  auto* est = new QHBoxLayout;
  est->addWidget(m_measure);
  est->addWidget(m_estimate, 1);
  form->addRow(tr("Estimate"), est);

  m_problem = new QLabel(this);
  m_problem->setObjectName(QStringLiteral("jobProblem"));
  m_problem->setWordWrap(true);
  m_problem->setStyleSheet(QStringLiteral("color: #d9534f"));
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Cancel, this);
  m_ok = buttons->addButton(tr("Queue job"), QDialogButtonBox::AcceptRole);
  m_ok->setObjectName(QStringLiteral("queueJobButton"));
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);

  auto* layout = new QVBoxLayout(this);
  layout->addLayout(form);
  layout->addWidget(m_problem);
  layout->addWidget(buttons);

  for (auto* r : {m_scratch, m_finetune}) connect(r, &QRadioButton::toggled, this, &NewJobDialog::updateEnabled);
  for (auto* c : {m_initModel, m_backbone, m_size, m_process, m_resolution})
    connect(c, qOverload<int>(&QComboBox::currentIndexChanged), this, &NewJobDialog::updateEnabled);
  connect(m_data, qOverload<int>(&QComboBox::currentIndexChanged), this, &NewJobDialog::onDataChanged);
  connect(m_browse, &QPushButton::clicked, this, &NewJobDialog::browseFolder);
  connect(m_folder, &QLineEdit::editingFinished, this, &NewJobDialog::onDataChanged);
  connect(m_name, &QLineEdit::textChanged, this, &NewJobDialog::updateEnabled);
  connect(m_classes, &QListWidget::itemChanged, this, &NewJobDialog::updateEnabled);
  connect(m_steps, qOverload<int>(&QSpinBox::valueChanged), this, &NewJobDialog::updateEstimate);
  connect(m_measure, &QPushButton::clicked, this, &NewJobDialog::measure);
}

void NewJobDialog::setClasses(const QStringList& names) {
  QSignalBlocker block(m_classes);
  m_classes->clear();
  for (const QString& n : names) {
    auto* item = new QListWidgetItem(n, m_classes);
    item->setFlags(item->flags() | Qt::ItemIsUserCheckable);
    item->setCheckState(Qt::Checked);
  }
}

void NewJobDialog::onDataChanged() {
  const QString source = m_data->currentData().toString();
  const bool folder = source == QLatin1String("folder");
  m_folder->setEnabled(folder);
  m_browse->setEnabled(folder);
  m_folderPreview->setVisible(folder);
  if (!folder) {
    setClasses(fashionMnistClasses());
    m_folderInfo = {};
    if (source == QLatin1String("fashion-native") && m_resolution->currentData() == QLatin1String("fixed"))
      m_resolution->setCurrentIndex(m_resolution->findData(QStringLiteral("packed")));
  } else if (!m_folder->text().isEmpty() && !m_folderWatcher.isRunning()) {
    m_folderPreview->clear();
    new QTreeWidgetItem(m_folderPreview, {tr("Reading…"), QString()});
    m_folderWatcher.setFuture(QtConcurrent::run(previewImageFolder, m_folder->text()));
  } else {
    setClasses({});
  }
  updateEnabled();
}

void NewJobDialog::browseFolder() {
  const QString dir = QFileDialog::getExistingDirectory(this, tr("Image folder (one sub-folder per class)"), m_folder->text());
  if (dir.isEmpty()) return;
  m_folder->setText(dir);
  onDataChanged();
}

void NewJobDialog::fillSizes() {
  // The sizes belong to the backbone (a U-Net's are channels and levels, a DiT's width and
  // depth): refilled when it changes, keeping the position (Tiny, Small, ...) where it can.
  const auto sizes = backboneSizes(m_backbone->currentText());
  const int keep = m_size->currentIndex() >= 0 ? m_size->currentIndex() : 1;
  const QSignalBlocker block(m_size);
  m_size->clear();
  for (const auto& [label, keys] : sizes) m_size->addItem(label, keys);
  if (!sizes.isEmpty()) m_size->setCurrentIndex(std::min(keep, static_cast<int>(sizes.size()) - 1));
}

void NewJobDialog::updateEnabled() {
  const bool scratch = m_scratch->isChecked();
  m_initModel->setEnabled(!scratch);
  m_backbone->setEnabled(scratch);
  if (sender() == m_backbone) fillSizes();
  m_size->setEnabled(scratch && m_size->count() > 0);
  m_process->setEnabled(scratch);
  // Resolution modes the backbone can take (for fine-tuning: the model's backbone).
  QString backbone = m_backbone->currentText();
  if (!scratch && m_initModel->currentIndex() >= 0) {
    for (const ModelInfo& m : m_models)
      if (m.path == m_initModel->currentData().toString()) backbone = m.backbone;
  }
  const BackboneTraits caps = backboneTraits(backbone);
  auto* model = qobject_cast<QStandardItemModel*>(m_resolution->model());
  auto allow = [&](const char* mode, bool ok, const QString& why) {
    const int row = m_resolution->findData(QString::fromLatin1(mode));
    if (auto* item = model ? model->item(row) : nullptr) {
      item->setEnabled(ok);
      item->setToolTip(ok ? QString() : why);
    }
  };
  allow("buckets", caps.anyGrid, tr("%1 takes only its fixed grid").arg(backbone));
  allow("packed", caps.packed, tr("%1 does not take packed sequences").arg(backbone));
  const QString problem = specProblem();
  m_problem->setText(problem);
  m_ok->setEnabled(problem.isEmpty());
  m_measure->setEnabled(problem.isEmpty() && !m_bench);
}

QString NewJobDialog::specProblem() const {
  if (m_name->text().trimmed().isEmpty()) return tr("Give the job a name.");
  if (m_finetune->isChecked() && m_initModel->currentIndex() < 0) return tr("Choose the model to fine-tune.");
  if (m_data->currentData() == QLatin1String("folder")) {
    if (m_folder->text().isEmpty()) return tr("Choose an image folder.");
    if (m_folderWatcher.isRunning()) return tr("Reading the folder…");
    if (!m_folderInfo.error.isEmpty()) return m_folderInfo.error;
  }
  int checked = 0;
  for (int i = 0; i < m_classes->count(); ++i) checked += m_classes->item(i)->checkState() == Qt::Checked;
  if (m_classes->count() > 0 && checked == 0) return tr("Check at least one class.");
  auto* model = qobject_cast<QStandardItemModel*>(m_resolution->model());
  if (model && !model->item(m_resolution->currentIndex())->isEnabled())
    return tr("This backbone cannot train in mode '%1': %2")
        .arg(m_resolution->currentText(), model->item(m_resolution->currentIndex())->toolTip());
  return {};
}

QJsonObject NewJobDialog::modelSection() const {
  const QString backbone = m_backbone->currentText();
  const QString process = m_process->currentData().toString();
  // A backbone without sizes (a plugin's): its tiny configuration, less what the data decides.
  QJsonObject config = m_size->count() > 0 ? QJsonObject() : backboneBaseConfig(backbone);
  const QJsonObject scratch = backboneScratchConfig(backbone);
  for (auto it = scratch.begin(); it != scratch.end(); ++it) config[it.key()] = it.value();
  const QJsonObject size = m_size->currentData().toJsonObject();  // the chosen size over the scratch settings
  for (auto it = size.begin(); it != size.end(); ++it) config[it.key()] = it.value();
  // What the process needs, where the backbone's configuration takes it.
  const bool learnSigma = process == QLatin1String("ddpm-learned");
  const QString prediction =
      process == QLatin1String("interpolant") ? QStringLiteral("velocity") : QStringLiteral("eps");
  if (backboneAcceptsKey(backbone, QStringLiteral("learn_sigma"), learnSigma))
    config[QStringLiteral("learn_sigma")] = learnSigma;
  if (backboneAcceptsKey(backbone, QStringLiteral("prediction"), prediction))
    config[QStringLiteral("prediction")] = prediction;
  QJsonObject proc;
  if (process == QLatin1String("interpolant")) {
    proc = {{QStringLiteral("kind"), QStringLiteral("interpolant")}, {QStringLiteral("path"), QStringLiteral("linear")},
            {QStringLiteral("prediction"), QStringLiteral("velocity")}};
  } else {
    proc = {{QStringLiteral("kind"), QStringLiteral("gaussian_diffusion")}, {QStringLiteral("steps"), 1000},
            {QStringLiteral("schedule"), QStringLiteral("linear")},
            {QStringLiteral("learn_sigma"), process == QLatin1String("ddpm-learned")}};
  }
  return {{QStringLiteral("backbone"), backbone}, {QStringLiteral("config"), config}, {QStringLiteral("process"), proc}};
}

TrainingJobSpec NewJobDialog::spec() const {
  TrainingJobSpec s;
  s.name = m_name->text().trimmed();
  if (m_finetune->isChecked()) s.initModel = m_initModel->currentData().toString();
  const QString source = m_data->currentData().toString();
  const int steps = m_steps->value();
  QJsonObject data{{QStringLiteral("source"), source == QLatin1String("folder") ? m_folder->text() : source},
                   {QStringLiteral("batch"), m_batch->value()},
                   {QStringLiteral("size"), QJsonArray{m_imageSize->value(), m_imageSize->value()}},
                   {QStringLiteral("batching"), m_resolution->currentData().toString()}};
  if (m_resolution->currentData() == QLatin1String("packed"))
    data[QStringLiteral("token_budget")] = m_batch->value() * 16;  // about `batch` images of 4×4 patches
  // Held-out images for the validation loss: Fashion-MNIST's test split, or a share of a folder.
  int validation = 512;
  if (source == QLatin1String("folder")) {
    int total = 0;
    for (int c : m_folderInfo.counts) total += c;
    validation = std::min(256, total / 10);
  }
  data[QStringLiteral("validation")] = m_validationEvery->value() > 0 ? validation : 0;
  QJsonArray classes;
  bool subset = false;
  for (int i = 0; i < m_classes->count(); ++i) {
    if (m_classes->item(i)->checkState() == Qt::Checked) classes.append(m_classes->item(i)->text());
    else subset = true;
  }
  if (subset) data[QStringLiteral("classes")] = classes;
  QJsonObject config{
      {QStringLiteral("data"), data},
      {QStringLiteral("train"),
       QJsonObject{{QStringLiteral("steps"), steps}, {QStringLiteral("lr"), m_lr->value()},
                   {QStringLiteral("warmup"), std::min(500, steps / 10)},
                   {QStringLiteral("schedule"), m_lrSchedule->currentData().toString()}, {QStringLiteral("clip"), 1.0},
                   {QStringLiteral("ema"), m_ema->value()}, {QStringLiteral("label_dropout"), 0.1},
                   {QStringLiteral("seed"), 1}}},
      {QStringLiteral("log"), QJsonObject{{QStringLiteral("every"), std::clamp(steps / 200, 1, 25)}}},
      {QStringLiteral("checkpoint"), QJsonObject{{QStringLiteral("every"), m_checkpointEvery->value()}, {QStringLiteral("keep"), 2}}},
      {QStringLiteral("validation"),
       QJsonObject{{QStringLiteral("every"), m_validationEvery->value()}, {QStringLiteral("timesteps"), 4}}},
      {QStringLiteral("samples"),
       QJsonObject{{QStringLiteral("every"), m_previewEvery->value()}, {QStringLiteral("steps"), 25},
                   {QStringLiteral("cfg"), 2.0}, {QStringLiteral("per_class"), 1}, {QStringLiteral("seed"), 0}}}};
  if (!m_finetune->isChecked()) config[QStringLiteral("model")] = modelSection();
  s.config = config;
  return s;
}

void NewJobDialog::measure() {
  if (m_bench || !specProblem().isEmpty()) return;
  const TrainingJobSpec s = spec();
  QTemporaryFile file(QDir::tempPath() + QStringLiteral("/tessera-measure-XXXXXX.json"));
  file.setAutoRemove(false);
  if (!file.open()) {
    m_estimate->setText(tr("Could not write a temporary configuration"));
    return;
  }
  file.write(QJsonDocument(s.config).toJson());
  file.close();
  if (!m_benchConfig.isEmpty()) QFile::remove(m_benchConfig);
  m_benchConfig = file.fileName();
  QStringList args = {QStringLiteral("--threads"), QString::number(std::max(1, QThread::idealThreadCount())),
                      QStringLiteral("bench"), QStringLiteral("train"), QStringLiteral("--config"), m_benchConfig,
                      QStringLiteral("--steps"), QStringLiteral("3"), QStringLiteral("--warmup"), QStringLiteral("1")};
  if (!s.initModel.isEmpty()) args << QStringLiteral("--init") << s.initModel;
  m_bench = new QProcess(this);
  m_bench->setProgram(tesseraCliPath());
  m_bench->setArguments(args);
  m_estimate->setText(tr("Measuring 3 steps (after 1 warm-up step)…"));
  connect(m_bench, &QProcess::finished, this, [this](int code, QProcess::ExitStatus) {
    const QByteArray out = m_bench->readAllStandardOutput();
    const QString err = QString::fromUtf8(m_bench->readAllStandardError()).trimmed();
    m_bench->deleteLater();
    m_bench = nullptr;
    const QJsonObject j = QJsonDocument::fromJson(out.trimmed().split('\n').constLast()).object();
    const double stepsPerSecond = j.value(QStringLiteral("steps_per_s")).toDouble();
    if (code != 0 || stepsPerSecond <= 0) {
      m_secondsPerStep = 0;
      m_estimate->setText(tr("The measurement failed: %1").arg(err.split(QLatin1Char('\n')).constLast()));
    } else {
      m_secondsPerStep = 1.0 / stepsPerSecond;
      updateEstimate();
      Q_EMIT measured(m_secondsPerStep);
    }
    updateEnabled();
  });
  m_bench->start();
  updateEnabled();
}

void NewJobDialog::updateEstimate() {
  if (m_secondsPerStep <= 0) return;
  const double total = m_secondsPerStep * m_steps->value();
  const QString t = total < 120 ? tr("%1 s").arg(total, 0, 'f', 0)
                    : total < 7200 ? tr("%1 min").arg(total / 60, 0, 'f', 1)
                                   : tr("%1 h").arg(total / 3600, 0, 'f', 1);
  m_estimate->setText(tr("%1 s per step (%2 images/s): about %3 for %4 steps, checkpoints and previews not counted")
                          .arg(m_secondsPerStep, 0, 'f', 3)
                          .arg(m_batch->value() / m_secondsPerStep, 0, 'f', 0)
                          .arg(t)
                          .arg(m_steps->value()));
}

}  // namespace tessera
