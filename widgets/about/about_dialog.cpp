// SPDX-License-Identifier: Apache-2.0
#include "widgets/about/about_dialog.h"
#include "widgets/icons.h"

#include <QDialogButtonBox>
#include <QHBoxLayout>
#include <QIcon>
#include <QLabel>
#include <QVBoxLayout>

namespace tessera {

AboutDialog::AboutDialog(const SystemInfo& info, QWidget* parent) : QDialog(parent) {
  setObjectName(QStringLiteral("AboutDialog"));
  setWindowTitle(tr("About Tessera"));
  auto* icon = new QLabel(this);
  icon->setPixmap(tesseraIcon().pixmap(72, 72));
  icon->setAlignment(Qt::AlignTop);
  auto* text = new QLabel(this);
  text->setObjectName(QStringLiteral("aboutText"));
  text->setTextFormat(Qt::RichText);
  text->setTextInteractionFlags(Qt::TextBrowserInteraction);
  text->setOpenExternalLinks(false);
  text->setText(tr("<h2>Tessera %1</h2>"
                   "<p>A desktop studio for class-conditional diffusion models:<br>"
                   "generate, watch every denoising step, look inside, compare, fine-tune.</p>"
                   "<p>Built with LibTorch %2 and Qt %3.<br>"
                   "Runs on: %4, %5 thread(s), BLAS kernel %6.</p>"
                   "<p>Licensed under the Apache License 2.0.</p>")
                    .arg(QString::fromStdString(info.tesseraVersion), QString::fromStdString(info.torchVersion),
                         QString::fromLatin1(qVersion()), QString::fromStdString(info.device))
                    .arg(info.intraOpThreads)
                    .arg(info.blasKernel.empty() ? tr("(not OpenBLAS)") : QString::fromStdString(info.blasKernel)));
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  auto* row = new QHBoxLayout();
  row->addWidget(icon);
  row->addSpacing(12);
  row->addWidget(text, 1);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(row);
  layout->addWidget(buttons);
}

}  // namespace tessera
