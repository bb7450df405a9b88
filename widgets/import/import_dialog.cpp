// SPDX-License-Identifier: Apache-2.0
#include "widgets/import/import_dialog.h"

#include "widgets/studio/studio_service.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QTimer>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

namespace tessera {

namespace {

QString millions(qint64 n) { return QLocale().toString(static_cast<double>(n) / 1e6, 'f', 1) + QStringLiteral(" M"); }

}  // namespace

ImportDialog::ImportDialog(const QString& file, QWidget* parent) : QDialog(parent) {
  setObjectName(QStringLiteral("importDialog"));
  setWindowTitle(tr("Import a checkpoint"));
  buildUi();
  connect(&m_previewWatcher, &QFutureWatcher<ImportPreview>::finished, this, [this] {
    showPreview(m_previewWatcher.result());
    if (m_previewStale) {
      m_previewStale = false;
      startPreview();
    }
  });
  connect(&m_importWatcher, &QFutureWatcher<QString>::finished, this, [this] {
    const QString problem = m_importWatcher.result();
    setBusy(false, QString());
    if (!problem.isEmpty()) {
      m_summary->setText(tr("Import failed: %1").arg(problem));
      m_import->setEnabled(true);
      return;
    }
    Q_EMIT imported(outputPath());
    QDialog::accept();
  });
  if (!file.isEmpty()) {
    m_file->setText(file);
    m_name->setText(QFileInfo(file).completeBaseName());
    startPreview();
  }
}

ImportDialog::~ImportDialog() {
  // A worker still reading a checkpoint holds no pointer into the dialog; wait so that
  // nothing finishes into a destroyed watcher.
  m_previewWatcher.waitForFinished();
  m_importWatcher.waitForFinished();
}

void ImportDialog::buildUi() {
  auto* layout = new QVBoxLayout(this);
  auto* form = new QFormLayout;
  layout->addLayout(form);

  auto fileRow = [this](QLineEdit*& edit, QPushButton*& button, const QString& name, const QString& title) {
    auto* row = new QHBoxLayout;
    edit = new QLineEdit(this);
    edit->setObjectName(name);
    button = new QPushButton(tr("Browse…"), this);
    row->addWidget(edit, 1);
    row->addWidget(button);
    connect(button, &QPushButton::clicked, this, [this, edit, title] { browse(edit, title); });
    connect(edit, &QLineEdit::textChanged, this, &ImportDialog::schedulePreview);
    return row;
  };
  QPushButton* fileBrowse = nullptr;
  form->addRow(tr("Checkpoint"), fileRow(m_file, fileBrowse, QStringLiteral("importFile"), tr("Official checkpoint")));
  m_file->setPlaceholderText(tr(".pt, .pth, .ckpt or .safetensors"));
  connect(m_file, &QLineEdit::textChanged, this, [this](const QString& text) {
    if (m_name->isModified()) return;  // the user's own name stays
    m_name->setText(QFileInfo(text).completeBaseName());
  });

  m_from = new QComboBox(this);
  m_from->setObjectName(QStringLiteral("importFrom"));
  m_from->addItems(importSourceNames());
  m_from->setToolTip(tr("auto: recognised by the checkpoint's tensors"));
  connect(m_from, &QComboBox::currentTextChanged, this, &ImportDialog::schedulePreview);
  form->addRow(tr("Family"), m_from);

  auto* headsRow = new QHBoxLayout;
  m_preset = new QComboBox(this);
  m_preset->setObjectName(QStringLiteral("importPreset"));
  m_preset->addItem(QString());
  m_preset->setToolTip(tr("A named configuration, for what the weights cannot tell (the attention heads)"));
  connect(m_preset, &QComboBox::currentTextChanged, this, &ImportDialog::schedulePreview);
  m_heads = new QSpinBox(this);
  m_heads->setObjectName(QStringLiteral("importHeads"));
  m_heads->setRange(0, 1024);
  m_heads->setSpecialValueText(tr("from preset"));
  connect(m_heads, qOverload<int>(&QSpinBox::valueChanged), this, &ImportDialog::schedulePreview);
  headsRow->addWidget(m_preset, 1);
  headsRow->addWidget(new QLabel(tr("Heads"), this));
  headsRow->addWidget(m_heads);
  form->addRow(tr("Preset"), headsRow);

  form->addRow(tr("Autoencoder"), fileRow(m_autoencoder, m_autoencoderBrowse, QStringLiteral("importAutoencoder"),
                                          tr("Autoencoder (Tessera file or official checkpoint)")));
  m_autoencoder->setPlaceholderText(tr("for a backbone that samples latents (e.g. Stable Diffusion's VAE)"));
  m_scale = new QDoubleSpinBox(this);
  m_scale->setObjectName(QStringLiteral("importScale"));
  m_scale->setDecimals(5);
  m_scale->setRange(0, 100);
  m_scale->setSingleStep(0.01);
  m_scale->setSpecialValueText(tr("from the file"));
  connect(m_scale, qOverload<double>(&QDoubleSpinBox::valueChanged), this, &ImportDialog::schedulePreview);
  form->addRow(tr("Latent scale"), m_scale);

  m_name = new QLineEdit(this);
  m_name->setObjectName(QStringLiteral("importName"));
  m_name->setToolTip(
      tr("Saved as NAME.safetensors in your model folder, %1, where the model picker finds it").arg(userModelFolder()));
  form->addRow(tr("Save as"), m_name);

  m_summary = new QLabel(tr("Choose a checkpoint."), this);
  m_summary->setObjectName(QStringLiteral("importSummary"));
  m_summary->setWordWrap(true);
  m_summary->setTextInteractionFlags(Qt::TextSelectableByMouse);
  layout->addWidget(m_summary);
  m_details = new QPlainTextEdit(this);
  m_details->setObjectName(QStringLiteral("importDetails"));
  m_details->setReadOnly(true);
  m_details->setMinimumHeight(160);
  layout->addWidget(m_details, 1);
  m_progress = new QProgressBar(this);
  m_progress->setRange(0, 0);
  m_progress->setTextVisible(true);
  m_progress->hide();
  layout->addWidget(m_progress);

  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Cancel, this);
  m_import = buttons->addButton(tr("Import"), QDialogButtonBox::AcceptRole);
  m_import->setObjectName(QStringLiteral("importButton"));
  m_import->setEnabled(false);
  connect(buttons, &QDialogButtonBox::accepted, this, &ImportDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  layout->addWidget(buttons);

  m_debounce = new QTimer(this);
  m_debounce->setSingleShot(true);
  m_debounce->setInterval(400);
  connect(m_debounce, &QTimer::timeout, this, &ImportDialog::startPreview);
  resize(620, 520);
}

void ImportDialog::browse(QLineEdit* target, const QString& title) {
  const QString path =
      QFileDialog::getOpenFileName(this, title, QFileInfo(target->text()).absolutePath(),
                                   tr("Checkpoints (*.pt *.pth *.ckpt *.safetensors *.bin);;All files (*)"));
  if (!path.isEmpty()) target->setText(path);
}

ImportSettings ImportDialog::settings() const {
  ImportSettings s;
  s.in = m_file->text().trimmed();
  s.from = m_from->currentText();
  s.preset = m_preset->currentText();
  s.heads = m_heads->value();
  s.autoencoder = m_autoencoder->text().trimmed();
  s.scaleFactor = m_scale->value();
  return s;
}

QString ImportDialog::outputPath() const {
  QString name = m_name->text().trimmed();
  if (name.isEmpty()) name = QFileInfo(m_file->text()).completeBaseName();
  name.replace(QLatin1Char('/'), QLatin1Char('_'));
  return QDir(userModelFolder()).filePath(name + QStringLiteral(".safetensors"));
}

bool ImportDialog::busy() const { return m_previewWatcher.isRunning() || m_importWatcher.isRunning(); }

void ImportDialog::schedulePreview() {
  m_import->setEnabled(false);
  m_debounce->start();
}

void ImportDialog::startPreview() {
  if (m_file->text().trimmed().isEmpty()) return;
  if (m_previewWatcher.isRunning()) {
    m_previewStale = true;
    return;
  }
  setBusy(true, tr("Reading %1…").arg(QFileInfo(m_file->text()).fileName()));
  m_previewWatcher.setFuture(QtConcurrent::run(previewImport, settings()));
}

void ImportDialog::showPreview(const ImportPreview& p) {
  setBusy(false, QString());
  m_preview = p;
  // Offer the kind's presets, keeping the choice.
  const QString chosen = m_preset->currentText();
  if (!p.presets.isEmpty()) {
    const QSignalBlocker block(m_preset);
    m_preset->clear();
    m_preset->addItem(QString());
    m_preset->addItems(p.presets);
    m_preset->setCurrentText(chosen);
  }
  m_autoencoderBrowse->setEnabled(!p.autoencoderOnly);
  m_autoencoder->setEnabled(!p.autoencoderOnly);
  QStringList lines;
  if (!p.error.isEmpty()) {
    m_summary->setText(tr("Cannot import yet: %1").arg(p.error));
    m_import->setEnabled(false);
  } else if (p.autoencoderOnly) {
    m_summary->setText(tr("An autoencoder (%1), %2 parameters. It is saved as an autoencoder file, for importing "
                          "backbones with it.")
                           .arg(p.kind, millions(p.parameters)));
    m_import->setEnabled(true);
  } else {
    QString text = tr("A %1 backbone, %2 parameters").arg(p.kind, millions(p.parameters));
    if (p.autoencoderParameters > 0) text += tr(", with an autoencoder of %1").arg(millions(p.autoencoderParameters));
    text += QStringLiteral(".");
    if (p.latent)
      text += QStringLiteral(" ") + tr("It samples %1-channel latents: choose its autoencoder (for DiT, SiT and FiT, "
                                       "Stable Diffusion's VAE) to get pictures.")
                                        .arg(p.channels);
    m_summary->setText(text);
    m_import->setEnabled(true);
  }
  if (!p.recognisedAs.isEmpty()) lines << tr("Recognised as: %1").arg(p.recognisedAs);
  lines << p.notes;
  if (!p.config.isEmpty()) lines << tr("Configuration:") << p.config;
  m_details->setPlainText(lines.join(QLatin1Char('\n')));
  Q_EMIT previewed();
}

void ImportDialog::setBusy(bool busy, const QString& what) {
  m_progress->setVisible(busy);
  m_progress->setFormat(what);
  if (busy) m_summary->setText(what);
}

void ImportDialog::accept() {
  if (busy() || !m_preview.error.isEmpty()) return;
  QDir().mkpath(userModelFolder());
  m_import->setEnabled(false);
  setBusy(true, tr("Converting and writing %1…").arg(QFileInfo(outputPath()).fileName()));
  m_importWatcher.setFuture(QtConcurrent::run(importTo, settings(), outputPath()));
}

}  // namespace tessera
