// SPDX-License-Identifier: Apache-2.0
#include "widgets/generate/generate_panel.h"

#include "widgets/generate/aspect_histogram.h"
#include "widgets/panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QJsonArray>
#include <QLabel>
#include <QLineEdit>
#include <QRegularExpression>
#include <QListWidget>
#include <QProgressBar>
#include <QPushButton>
#include <QRandomGenerator>
#include <QScrollArea>
#include <QSettings>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QToolButton>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include <cmath>

namespace tessera {
namespace {

struct Ratio {
  const char* label;
  int w, h;
};
const Ratio kRatios[] = {{"1:1", 1, 1}, {"4:3", 4, 3}, {"3:4", 3, 4}, {"16:9", 16, 9},
                         {"9:16", 9, 16}, {"2:1", 2, 1}, {"1:2", 1, 2}};

int snap(double v, int m) { return std::max(m, static_cast<int>(std::lround(v / m)) * m); }

QString humanCount(qint64 n) {
  if (n >= 1000000) return QStringLiteral("%1 M").arg(n / 1e6, 0, 'f', 2);
  if (n >= 1000) return QStringLiteral("%1 k").arg(n / 1e3, 0, 'f', 1);
  return QString::number(n);
}

}  // namespace

GeneratePanel::GeneratePanel(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("generatePanel"));
  buildUi();
  m_openedFiles = QSettings().value(QStringLiteral("models/opened")).toStringList();
  connect(&m_scan, &QFutureWatcher<QVector<ModelInfo>>::finished, this, [this] {
    const QString keep = m_pendingModel.isEmpty() ? (currentModel() ? currentModel()->path : QString()) : m_pendingModel;
    m_models = m_scan.result();
    {
      const QSignalBlocker block(m_model);
      m_model->clear();
      for (const auto& m : m_models)
        m_model->addItem(
            m.error.isEmpty() ? QStringLiteral("%1  (%2)").arg(m.name, m.backbone) : tr("%1  (unreadable)").arg(m.name),
            m.path);
      m_pendingModel.clear();
      int index = -1;
      for (int i = 0; i < m_models.size() && !keep.isEmpty(); ++i)
        if (m_models[i].path == keep || QFileInfo(m_models[i].path).canonicalFilePath() == keep) index = i;
      // Else (first start, or the model is gone): the first readable model.
      for (int i = 0; i < m_models.size() && index < 0; ++i)
        if (m_models[i].error.isEmpty()) index = i;
      m_model->setCurrentIndex(index);
    }
    // Once, with the signals back: the info, sizes and sampling defaults of the model now
    // selected (a model selected while they were blocked once kept the previous one's).
    onModelChanged();
    Q_EMIT modelsLoaded();
  });
  connect(&m_examples, &QFutureWatcher<QVector<QImage>>::finished, this, [this] {
    const auto images = m_examples.result();
    for (int i = 0; i < images.size() && i < m_classes->count(); ++i)
      if (!images[i].isNull())
        m_classes->item(i)->setIcon(QIcon(QPixmap::fromImage(images[i].scaled(56, 56, Qt::KeepAspectRatio, Qt::FastTransformation))));
  });
  refreshModels();
}

void GeneratePanel::buildUi() {
  // The settings scroll on short screens; Generate, Cancel and the progress stay in view.
  auto* outer = new QVBoxLayout(this);
  outer->setContentsMargins(0, 0, 0, 8);
  auto* scroll = new QScrollArea(this);
  scroll->setWidgetResizable(true);
  scroll->setFrameShape(QFrame::NoFrame);
  scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  auto* settings = new QWidget(scroll);
  scroll->setWidget(settings);
  outer->addWidget(scroll, 1);
  auto* layout = new QVBoxLayout(settings);
  layout->setContentsMargins(8, 8, 8, 8);
  layout->setSpacing(8);

  // Model
  auto* modelBox = new QGroupBox(tr("Model"), settings);
  auto* modelLayout = new QVBoxLayout(modelBox);
  auto* modelRow = new QHBoxLayout;
  m_model = new QComboBox(modelBox);
  m_model->setObjectName(QStringLiteral("modelCombo"));
  m_model->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  m_model->setMinimumContentsLength(16);
  auto* open = new QToolButton(modelBox);
  open->setText(tr("Open…"));
  open->setToolTip(tr("Add a Tessera model file (.safetensors) to the list"));
  modelRow->addWidget(m_model, 1);
  modelRow->addWidget(open);
  modelLayout->addLayout(modelRow);
  m_modelInfo = new QLabel(modelBox);
  m_modelInfo->setObjectName(QStringLiteral("modelInfo"));
  m_modelInfo->setWordWrap(true);
  m_modelInfo->setTextInteractionFlags(Qt::TextSelectableByMouse);
  modelLayout->addWidget(m_modelInfo);
  layout->addWidget(modelBox);
  connect(m_model, &QComboBox::currentIndexChanged, this, &GeneratePanel::onModelChanged);
  connect(open, &QToolButton::clicked, this, [this] {
    const QString file = QFileDialog::getOpenFileName(this, tr("Open a model"), QString(), tr("Tessera models (*.safetensors)"));
    if (file.isEmpty()) return;
    if (!m_openedFiles.contains(file)) m_openedFiles << file;
    QSettings().setValue(QStringLiteral("models/opened"), m_openedFiles);
    m_pendingModel = QFileInfo(file).canonicalFilePath();
    refreshModels();
  });

  // Classes
  auto* classBox = new QGroupBox(tr("Classes"), settings);
  auto* classLayout = new QVBoxLayout(classBox);
  m_classes = new QListWidget(classBox);
  m_classes->setObjectName(QStringLiteral("classList"));
  m_classes->setSelectionMode(QAbstractItemView::ExtendedSelection);
  m_classes->setIconSize(QSize(28, 28));
  m_classes->setMinimumHeight(120);
  m_classes->setToolTip(tr("Select one or several classes: the images cycle through them. None selected: every class in turn."));
  classLayout->addWidget(m_classes);
  auto* countRow = new QHBoxLayout;
  m_randomClass = new QCheckBox(tr("Random class"), classBox);
  m_randomClass->setObjectName(QStringLiteral("randomClass"));
  m_randomClass->setToolTip(tr("Each image gets a class drawn from the seed (recorded with the image)"));
  m_count = new QSpinBox(classBox);
  m_count->setObjectName(QStringLiteral("imageCount"));
  m_count->setRange(1, 1024);
  m_count->setValue(4);
  countRow->addWidget(m_randomClass);
  countRow->addStretch();
  countRow->addWidget(new QLabel(tr("Images"), classBox));
  countRow->addWidget(m_count);
  classLayout->addLayout(countRow);
  layout->addWidget(classBox);
  connect(m_randomClass, &QCheckBox::toggled, m_classes, &QWidget::setDisabled);

  // Size
  auto* sizeBox = new QGroupBox(tr("Resolution"), settings);
  auto* sizeForm = new QFormLayout(sizeBox);
  m_preset = new QComboBox(sizeBox);
  m_preset->setObjectName(QStringLiteral("sizePreset"));
  m_preset->addItem(tr("Trained size"));
  for (const auto& r : kRatios) m_preset->addItem(QString::fromLatin1(r.label));
  m_preset->addItem(tr("Custom"));
  sizeForm->addRow(tr("Preset"), m_preset);
  auto* whRow = new QHBoxLayout;
  m_width = new QSpinBox(sizeBox);
  m_width->setObjectName(QStringLiteral("sizeWidth"));
  m_height = new QSpinBox(sizeBox);
  m_height->setObjectName(QStringLiteral("sizeHeight"));
  for (auto* s : {m_width, m_height}) {
    s->setRange(1, 16384);
    s->setValue(28);
    s->setKeyboardTracking(true);
  }
  whRow->addWidget(m_width, 1);
  whRow->addWidget(new QLabel(QStringLiteral("×"), sizeBox));
  whRow->addWidget(m_height, 1);
  sizeForm->addRow(tr("W × H"), whRow);
  m_sizeStatus = new QLabel(sizeBox);
  m_sizeStatus->setObjectName(QStringLiteral("sizeStatus"));
  m_sizeStatus->setWordWrap(true);
  sizeForm->addRow(m_sizeStatus);
  m_histogram = new AspectHistogram(sizeBox);
  m_histogram->setToolTip(tr("The shapes of the model's training images (H/W); click a bar to use its most common size"));
  sizeForm->addRow(tr("Trained"), m_histogram);
  auto* mixedRow = new QHBoxLayout;
  m_mixed = new QCheckBox(tr("Mixed"), sizeBox);
  m_mixed->setObjectName(QStringLiteral("mixedSizes"));
  m_mixed->setToolTip(tr("Images of several sizes in one job, one packed forward per step (NiT, FiT)"));
  m_sizeList = new QLineEdit(sizeBox);
  m_sizeList->setObjectName(QStringLiteral("sizeList"));
  m_sizeList->setPlaceholderText(tr("12x28, 28x20, 28x28"));
  m_sizeList->setEnabled(false);
  m_commonSizes = new QToolButton(sizeBox);
  m_commonSizes->setText(tr("Common"));
  m_commonSizes->setToolTip(tr("The four most common training sizes"));
  m_commonSizes->setEnabled(false);
  mixedRow->addWidget(m_mixed);
  mixedRow->addWidget(m_sizeList, 1);
  mixedRow->addWidget(m_commonSizes);
  sizeForm->addRow(mixedRow);
  layout->addWidget(sizeBox);
  connect(m_histogram, &AspectHistogram::sizePicked, this, [this](const QSize& size) {
    if (m_mixed->isChecked()) {
      const QString entry = QStringLiteral("%1x%2").arg(size.width()).arg(size.height());
      m_sizeList->setText(m_sizeList->text().trimmed().isEmpty() ? entry : m_sizeList->text() + QStringLiteral(", ") + entry);
      return;
    }
    {
      const QSignalBlocker block(m_preset);
      m_preset->setCurrentIndex(m_preset->count() - 1);
    }
    const QSignalBlocker bw(m_width), bh(m_height);
    m_width->setValue(size.width());
    m_height->setValue(size.height());
    validateSize();
  });
  connect(m_mixed, &QCheckBox::toggled, this, [this](bool on) {
    m_sizeList->setEnabled(on);
    m_commonSizes->setEnabled(on);
    m_width->setEnabled(!on);
    m_height->setEnabled(!on);
    m_preset->setEnabled(!on);
    validateSize();
  });
  connect(m_sizeList, &QLineEdit::textChanged, this, [this] { validateSize(); });
  connect(m_commonSizes, &QToolButton::clicked, this, [this] {
    const ModelInfo* m = currentModel();
    if (!m) return;
    auto sizes = m->trainedSizes;
    std::stable_sort(sizes.begin(), sizes.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    QStringList entries;
    for (int i = 0; i < std::min<int>(4, static_cast<int>(sizes.size())); ++i)
      entries << QStringLiteral("%1x%2").arg(sizes[i].first.width()).arg(sizes[i].first.height());
    m_sizeList->setText(entries.join(QStringLiteral(", ")));
  });
  connect(m_preset, &QComboBox::currentIndexChanged, this, &GeneratePanel::onPresetChanged);
  auto custom = [this] {
    if (m_preset->currentIndex() != m_preset->count() - 1 && !m_preset->signalsBlocked()) {
      const QSignalBlocker block(m_preset);
      m_preset->setCurrentIndex(m_preset->count() - 1);
    }
    validateSize();
  };
  connect(m_width, &QSpinBox::valueChanged, this, custom);
  connect(m_height, &QSpinBox::valueChanged, this, custom);

  // Sampling
  auto* sampleBox = new QGroupBox(tr("Sampling"), settings);
  auto* form = new QFormLayout(sampleBox);
  m_sampler = new QComboBox(sampleBox);
  m_sampler->setObjectName(QStringLiteral("samplerCombo"));
  m_sampler->addItems(samplerNames());
  form->addRow(tr("Sampler"), m_sampler);
  m_steps = new QSpinBox(sampleBox);
  m_steps->setObjectName(QStringLiteral("steps"));
  m_steps->setRange(1, 1000);
  m_steps->setValue(50);
  form->addRow(tr("Steps"), m_steps);
  m_cfg = new QDoubleSpinBox(sampleBox);
  m_cfg->setObjectName(QStringLiteral("cfgScale"));
  m_cfg->setRange(0.0, 30.0);
  m_cfg->setSingleStep(0.25);
  m_cfg->setValue(1.0);
  m_cfg->setToolTip(tr("Classifier-free guidance scale (1 = none)"));
  form->addRow(tr("Guidance"), m_cfg);
  auto* intervalRow = new QHBoxLayout;
  m_cfgLow = new QDoubleSpinBox(sampleBox);
  m_cfgLow->setObjectName(QStringLiteral("cfgLow"));
  m_cfgHigh = new QDoubleSpinBox(sampleBox);
  m_cfgHigh->setObjectName(QStringLiteral("cfgHigh"));
  for (auto* s : {m_cfgLow, m_cfgHigh}) {
    s->setRange(0.0, 1.0);
    s->setSingleStep(0.05);
    s->setDecimals(2);
  }
  m_cfgHigh->setValue(1.0);
  intervalRow->addWidget(m_cfgLow, 1);
  intervalRow->addWidget(new QLabel(QStringLiteral("…"), sampleBox));
  intervalRow->addWidget(m_cfgHigh, 1);
  auto* intervalLabel = new QLabel(tr("Interval"), sampleBox);
  intervalLabel->setToolTip(tr("Guide only while the progress (0 = noise, 1 = data) lies in this interval"));
  form->addRow(intervalLabel, intervalRow);
  auto emitInterval = [this] { Q_EMIT guidanceIntervalChanged(m_cfgLow->value(), m_cfgHigh->value()); };
  connect(m_cfgLow, &QDoubleSpinBox::valueChanged, this, emitInterval);
  connect(m_cfgHigh, &QDoubleSpinBox::valueChanged, this, emitInterval);
  m_clip = new QCheckBox(tr("Clip x₀ to [−1, 1]"), sampleBox);
  m_clip->setObjectName(QStringLiteral("clipX0"));
  form->addRow(QString(), m_clip);
  auto* seedRow = new QHBoxLayout;
  m_seed = new QSpinBox(sampleBox);
  m_seed->setObjectName(QStringLiteral("seed"));
  m_seed->setRange(0, 2147483647);
  m_seedLock = new QToolButton(sampleBox);
  m_seedLock->setObjectName(QStringLiteral("seedLock"));
  m_seedLock->setCheckable(true);
  m_seedLock->setChecked(true);
  m_seedLock->setText(tr("Lock"));
  m_seedLock->setToolTip(tr("Locked: Generate uses this seed. Unlocked: a new random seed for every Generate."));
  auto* dice = new QToolButton(sampleBox);
  dice->setText(tr("New"));
  dice->setToolTip(tr("Draw a random seed now"));
  connect(dice, &QToolButton::clicked, this, [this] { m_seed->setValue(static_cast<int>(QRandomGenerator::global()->bounded(2147483647u))); });
  seedRow->addWidget(m_seed, 1);
  seedRow->addWidget(m_seedLock);
  seedRow->addWidget(dice);
  form->addRow(tr("Seed"), seedRow);
  m_batch = new QSpinBox(sampleBox);
  m_batch->setObjectName(QStringLiteral("batch"));
  m_batch->setRange(1, 256);
  m_batch->setValue(16);
  m_batch->setToolTip(tr("Images per forward pass (memory versus speed; the images do not depend on it)"));
  form->addRow(tr("Batch"), m_batch);
  layout->addWidget(sampleBox);
  layout->addStretch(1);

  // Run
  auto* runRow = new QHBoxLayout;
  runRow->setContentsMargins(8, 0, 8, 0);
  m_generate = new QPushButton(tr("Generate"), this);
  m_generate->setObjectName(QStringLiteral("generateButton"));
  m_generate->setDefault(true);
  m_generate->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Return));
  m_cancel = new QPushButton(tr("Cancel"), this);
  m_cancel->setObjectName(QStringLiteral("cancelButton"));
  m_cancel->setEnabled(false);
  m_cancel->setShortcut(QKeySequence(Qt::Key_Escape));
  runRow->addWidget(m_generate, 2);
  runRow->addWidget(m_cancel, 1);
  outer->addLayout(runRow);
  m_progress = new QProgressBar(this);
  m_progress->setObjectName(QStringLiteral("generateProgress"));
  m_progress->setRange(0, 1);
  m_progress->setValue(0);
  m_progress->setFormat(tr("Ready"));
  auto* progressRow = new QHBoxLayout;
  progressRow->setContentsMargins(8, 0, 8, 0);
  progressRow->addWidget(m_progress);
  outer->addLayout(progressRow);
  connect(m_generate, &QPushButton::clicked, this, &GeneratePanel::onGenerate);
  connect(m_cancel, &QPushButton::clicked, this, &GeneratePanel::cancelRequested);
}

void GeneratePanel::refreshModels(const QString& select) {
  if (!select.isEmpty()) m_pendingModel = QFileInfo(select).canonicalFilePath();
  if (m_scan.isRunning()) return;
  m_modelInfo->setText(tr("Reading models…"));
  const QStringList files = m_openedFiles;
  m_scan.setFuture(QtConcurrent::run([files] { return scanModels(files); }));
}

const ModelInfo* GeneratePanel::currentModel() const {
  const int i = m_model->currentIndex();
  return i >= 0 && i < m_models.size() ? &m_models[i] : nullptr;
}

bool GeneratePanel::selectModel(const QString& pathOrName) {
  for (int i = 0; i < m_models.size(); ++i) {
    const auto& m = m_models[i];
    if (m.path == pathOrName || m.name == pathOrName || QFileInfo(m.path).fileName() == pathOrName) {
      if (m_model->currentIndex() == i) onModelChanged();
      else m_model->setCurrentIndex(i);
      return true;
    }
  }
  return false;
}

void GeneratePanel::onModelChanged() {
  const ModelInfo* m = currentModel();
  m_generate->setEnabled(m && m->error.isEmpty());
  if (!m) {
    m_modelInfo->setText(tr("No model found. Shipped models live in %1; put your own in %2.")
                             .arg(modelFolders().join(QStringLiteral(", ")), userModelFolder()));
    return;
  }
  if (!m->error.isEmpty()) {
    m_modelInfo->setText(tr("<b>Cannot use this file:</b> %1").arg(m->error.toHtmlEscaped()));
    return;
  }
  QString info = tr("<b>%1</b> · %2 · %3 parameters<br>trained at %4×%5 · %6 classes · %7")
                     .arg(m->backbone.toUpper(), m->process, humanCount(m->parameters))
                     .arg(m->trainedWidth)
                     .arg(m->trainedHeight)
                     .arg(m->classNames.size())
                     .arg(m->origin);
  if (m->trainedSizes.size() > 1)
    info.replace(QStringLiteral("trained at %1×%2").arg(m->trainedWidth).arg(m->trainedHeight),
                 tr("trained at native sizes (%1 shapes, up to %2×%3)").arg(m->trainedSizes.size()).arg(m->trainedWidth).arg(m->trainedHeight));
  if (m->pixelFactor > 1)
    info += QStringLiteral("<br>") + tr("latent model: a %1×%2 latent is a %3×%4 picture (%5 autoencoder, f%6)")
                                         .arg(m->trainedWidth)
                                         .arg(m->trainedHeight)
                                         .arg(m->trainedWidth * m->pixelFactor)
                                         .arg(m->trainedHeight * m->pixelFactor)
                                         .arg(m->autoencoder.toUpper())
                                         .arg(m->pixelFactor);
  if (!m->evaluation.isEmpty()) info += QStringLiteral("<br><small>%1</small>").arg(m->evaluation.toHtmlEscaped());
  m_modelInfo->setText(info);
  m_modelInfo->setToolTip(m->path);
  m_grid = QStringLiteral("default");
  m_eta = 0.0;
  populateClasses(*m);
  {
    const QSignalBlocker b(m_preset);
    m_preset->setCurrentIndex(0);
    // Ratio presets only for backbones that take other grids.
    auto* model = qobject_cast<QStandardItemModel*>(m_preset->model());
    for (int i = 1; model && i < m_preset->count() - 1; ++i) model->item(i)->setEnabled(m->anySize);
  }
  m_histogram->setSizes(m->trainedSizes);
  if (!m->packed) m_mixed->setChecked(false);
  m_mixed->setEnabled(m->packed);
  m_mixed->setToolTip(m->packed ? tr("Images of several sizes in one job, one packed forward per step")
                                : tr("This %1 model generates one size per job (mixed sizes need NiT or FiT)").arg(m->backbone));
  onPresetChanged();
  m_sampler->setCurrentText(m->defaultSampler);
  m_steps->setValue(m->defaultSteps);
  m_cfg->setValue(m->defaultCfg);
  m_cfgLow->setValue(m->defaultCfgLow);  // emits guidanceIntervalChanged, so the timeline follows
  m_cfgHigh->setValue(m->defaultCfgHigh);
  m_clip->setChecked(m->defaultClip);
}

void GeneratePanel::populateClasses(const ModelInfo& model) {
  m_classes->clear();
  for (int k = 0; k < model.classNames.size(); ++k) {
    auto* item = new QListWidgetItem(QStringLiteral("%1  %2").arg(k).arg(model.classNames[k]), m_classes);
    item->setData(Qt::UserRole, k);
  }
  // A previous model's examples may still be loading: the watcher now follows the new
  // future only, and the old result is dropped (the GUI never waits for it).
  m_examples.setFuture(QtConcurrent::run([model] { return classExamples(model); }));
}

void GeneratePanel::onPresetChanged() {
  const ModelInfo* m = currentModel();
  if (!m) return;
  const int i = m_preset->currentIndex();
  int w = m->trainedWidth, h = m->trainedHeight;
  if (i >= 1 && i <= static_cast<int>(std::size(kRatios))) {
    const auto& r = kRatios[i - 1];
    const double area = static_cast<double>(m->trainedWidth) * m->trainedHeight;
    const double ratio = static_cast<double>(r.w) / r.h;
    w = snap(std::sqrt(area * ratio), m->sizeMultiple);
    h = snap(std::sqrt(area / ratio), m->sizeMultiple);
  } else if (i == m_preset->count() - 1) {
    validateSize();
    return;
  }
  {
    const QSignalBlocker bw(m_width), bh(m_height);
    m_width->setValue(w);
    m_height->setValue(h);
  }
  m_width->setSingleStep(m->sizeMultiple);
  m_height->setSingleStep(m->sizeMultiple);
  validateSize();
}

QVector<QSize> GeneratePanel::mixedSizes(QString* error) const {
  QVector<QSize> out;
  const ModelInfo* m = currentModel();
  static const QRegularExpression entry(QStringLiteral("^\\s*(\\d{1,5})\\s*[xX×]\\s*(\\d{1,5})\\s*$"));
  for (const QString& part : m_sizeList->text().split(QLatin1Char(','), Qt::SkipEmptyParts)) {
    const auto match = entry.match(part);
    if (!match.hasMatch()) {
      *error = tr("'%1' is not W×H (e.g. 12x28)").arg(part.trimmed());
      return {};
    }
    const QSize s(match.captured(1).toInt(), match.captured(2).toInt());
    if (m) {
      const QString problem = sizeProblem(*m, s.width(), s.height());
      if (!problem.isEmpty()) {
        *error = QStringLiteral("%1×%2: %3").arg(s.width()).arg(s.height()).arg(problem);
        return {};
      }
    }
    out << s;
  }
  if (out.isEmpty()) *error = tr("List the sizes, e.g. 12x28, 28x20, 28x28");
  return out;
}

void GeneratePanel::setMixedSizes(bool on, const QString& list) {
  m_mixed->setChecked(on);
  if (!list.isEmpty()) m_sizeList->setText(list);
  validateSize();
}

void GeneratePanel::validateSize() {
  const ModelInfo* m = currentModel();
  if (!m || !m->error.isEmpty()) return;
  m_histogram->setCurrent(QSize(m_width->value(), m_height->value()));
  if (m_mixed->isChecked()) {
    QString error;
    const QVector<QSize> sizes = mixedSizes(&error);
    m_sizeOk = error.isEmpty();
    m_sizeStatus->setText(m_sizeOk ? tr("%n size(s); image i gets size i mod %n, shown at its own size.", nullptr, static_cast<int>(sizes.size()))
                                   : error);
    m_sizeStatus->setStyleSheet(m_sizeOk ? QString() : QStringLiteral("color: #d9534f;"));
    m_generate->setEnabled(m_sizeOk && m_cancel && !m_cancel->isEnabled());
    return;
  }
  const QString problem = sizeProblem(*m, m_width->value(), m_height->value());
  m_sizeOk = problem.isEmpty();
  int seen = 0;
  for (const auto& [s, n] : m->trainedSizes)
    if (s == QSize(m_width->value(), m_height->value())) seen = n;
  QString text;
  QString color;
  if (m_sizeOk && seen > 0 && m->trainedSizes.size() > 1) {
    text = tr("Seen in training: %1 images at this size.").arg(seen);
  } else if (!m_sizeOk) {
    text = problem;
    color = QStringLiteral("#d9534f");
  } else if (m_width->value() > m->trainedWidth || m_height->value() > m->trainedHeight ||
             m_width->value() * m_height->value() != m->trainedWidth * m->trainedHeight) {
    text = tr("Beyond the trained size (%1×%2): expect weaker images.").arg(m->trainedWidth).arg(m->trainedHeight);
    color = QStringLiteral("#e0a030");
  } else if (m_width->value() != m->trainedWidth) {
    text = tr("Trained area, other aspect ratio.");
  }
  m_sizeStatus->setText(text);
  m_sizeStatus->setStyleSheet(color.isEmpty() ? QString() : QStringLiteral("color: %1;").arg(color));
  m_generate->setEnabled(m_sizeOk && m_cancel && !m_cancel->isEnabled());
}

QString GeneratePanel::sizeStatus() const { return m_sizeStatus->text(); }

GenerationJob GeneratePanel::captureJob() const {
  GenerationJob job;
  const ModelInfo* m = currentModel();
  if (!m) return job;
  job.modelPath = m->path;
  job.width = m_width->value();
  job.height = m_height->value();
  if (m_mixed->isChecked()) {
    QString error;
    job.sizes = mixedSizes(&error);
  }
  job.sampler = m_sampler->currentText();
  job.steps = m_steps->value();
  job.grid = m_grid;
  job.eta = m_eta;
  job.cfg = m_cfg->value();
  job.cfgLow = m_cfgLow->value();
  job.cfgHigh = m_cfgHigh->value();
  job.clip = m_clip->isChecked();
  job.seed = static_cast<quint64>(m_seed->value());
  job.batch = m_batch->value();
  const int n = m_count->value();
  const int classes = static_cast<int>(m->classNames.size());
  if (m_randomClass->isChecked()) {
    QRandomGenerator rng(static_cast<quint32>(job.seed));
    for (int i = 0; i < n; ++i) job.classes << rng.bounded(classes);
  } else {
    QVector<int> chosen;
    for (auto* item : m_classes->selectedItems()) chosen << item->data(Qt::UserRole).toInt();
    std::sort(chosen.begin(), chosen.end());
    if (chosen.isEmpty())
      for (int k = 0; k < classes; ++k) chosen << k;
    for (int i = 0; i < n; ++i) job.classes << chosen[i % chosen.size()];
  }
  return job;
}

void GeneratePanel::onGenerate() {
  if (!currentModel() || !m_sizeOk) return;
  if (!m_seedLock->isChecked()) m_seed->setValue(static_cast<int>(QRandomGenerator::global()->bounded(2147483647u)));
  Q_EMIT generateRequested(captureJob());
}

void GeneratePanel::setRunning(bool running) {
  m_generate->setEnabled(!running && m_sizeOk && currentModel() && currentModel()->error.isEmpty());
  m_cancel->setEnabled(running);
  if (running) m_progress->setFormat(tr("%v / %m steps"));
}

void GeneratePanel::setProgress(int done, int total) {
  m_progress->setRange(0, std::max(1, total));
  m_progress->setValue(done);
}

void GeneratePanel::setGuidanceInterval(double low, double high) {
  const QSignalBlocker a(m_cfgLow), b(m_cfgHigh);
  m_cfgLow->setValue(low);
  m_cfgHigh->setValue(high);
}

QString GeneratePanel::applySettings(const QJsonObject& meta) {
  QStringList missing;
  const QJsonObject model = meta.value(QStringLiteral("model")).toObject();
  bool found = false;
  // By content first (the file may have moved), then path, then file name.
  const QString hash = model.value(QStringLiteral("sha256")).toString();
  Q_UNUSED(hash);  // the worker hashes on load; the path and name suffice to find it here
  for (const QString& key : {model.value(QStringLiteral("path")).toString(), model.value(QStringLiteral("file")).toString()})
    if (!found && !key.isEmpty()) found = selectModel(key);
  if (!found) missing << tr("model %1 (not in the model list)").arg(model.value(QStringLiteral("file")).toString());
  const QJsonObject image = meta.value(QStringLiteral("image")).toObject();
  const QJsonObject size = meta.value(QStringLiteral("size")).toObject();
  {
    const QSignalBlocker b(m_preset);
    m_preset->setCurrentIndex(m_preset->count() - 1);
  }
  {
    const QSignalBlocker bw(m_width), bh(m_height);
    m_width->setValue(size.value(QStringLiteral("width")).toInt(m_width->value()));
    m_height->setValue(size.value(QStringLiteral("height")).toInt(m_height->value()));
  }
  validateSize();
  m_randomClass->setChecked(false);
  m_classes->clearSelection();
  const int k = image.value(QStringLiteral("class")).toInt(-1);
  if (k >= 0 && k < m_classes->count()) m_classes->item(k)->setSelected(true);
  else missing << tr("class %1").arg(k);
  m_count->setValue(1);
  const QString sampler = meta.value(QStringLiteral("sampler")).toString();
  if (m_sampler->findText(sampler) >= 0) m_sampler->setCurrentText(sampler);
  else missing << tr("sampler %1").arg(sampler);
  m_steps->setValue(meta.value(QStringLiteral("steps")).toInt(m_steps->value()));
  const QJsonObject guidance = meta.value(QStringLiteral("guidance")).toObject();
  m_cfg->setValue(guidance.value(QStringLiteral("scale")).toDouble(1.0));
  const QJsonArray interval = guidance.value(QStringLiteral("interval")).toArray();
  setGuidanceInterval(interval.size() == 2 ? interval[0].toDouble() : 0.0, interval.size() == 2 ? interval[1].toDouble() : 1.0);
  const QJsonObject options = meta.value(QStringLiteral("options")).toObject();
  m_clip->setChecked(options.value(QStringLiteral("clip_denoised")).toBool(false));
  m_grid = options.value(QStringLiteral("grid")).toString(QStringLiteral("default"));
  m_eta = options.value(QStringLiteral("eta")).toDouble(0.0);
  const qint64 seed = image.value(QStringLiteral("seed")).toInteger(0);
  if (seed < 0 || seed > m_seed->maximum()) missing << tr("seed %1 (the panel takes seeds up to %2; use tessera-cli sample --seed)").arg(seed).arg(m_seed->maximum());
  else m_seed->setValue(static_cast<int>(seed));
  m_seedLock->setChecked(true);
  return missing.join(QStringLiteral(", "));
}

PanelDescriptor describePanel_generate() {
  PanelDescriptor d;
  d.title = GeneratePanel::tr("Generate");
  d.area = Qt::LeftDockWidgetArea;
  d.defaultExtent = 300;
  d.create = [](const PanelContext& c) {
    auto* panel = new GeneratePanel(c.parent);
    panel->setMinimumWidth(330);
    return panel;
  };
  return d;
}

}  // namespace tessera
