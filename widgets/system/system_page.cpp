// SPDX-License-Identifier: Apache-2.0
#include "widgets/system/system_page.h"

#include "engine/plugin_loader.h"
#include "widgets/panel.h"

#include <QFormLayout>
#include <QLabel>
#include <QScrollArea>
#include <QVBoxLayout>

namespace tessera {

SystemPage::SystemPage(QWidget* parent) : QWidget(parent) {
  auto* outer = new QVBoxLayout(this);
  outer->setContentsMargins(32, 28, 32, 28);
  auto* title = new QLabel(tr("Tessera"), this);
  QFont f = title->font();
  f.setPointSizeF(f.pointSizeF() * 2.0);
  f.setBold(true);
  title->setFont(f);
  auto* subtitle = new QLabel(tr("Class-conditional diffusion studio — generate, inspect, compare, fine-tune."), this);
  subtitle->setWordWrap(true);
  outer->addWidget(title);
  outer->addWidget(subtitle);
  outer->addSpacing(18);
  auto* heading = new QLabel(tr("<b>This machine</b>"), this);
  outer->addWidget(heading);
  m_form = new QFormLayout();
  m_form->setLabelAlignment(Qt::AlignRight);
  m_form->setHorizontalSpacing(16);
  m_form->setVerticalSpacing(6);
  outer->addLayout(m_form);
  outer->addStretch(1);
  for (const QString& row : {tr("Tessera"), tr("LibTorch"), tr("Device"), tr("Threads"), tr("CPU"),
                             tr("BLAS kernel"), tr("BLAS check"), tr("Matrix product")})
    addRow(row)->setText(tr("…"));
  QLabel* plugins = addRow(tr("Plugins"));
  plugins->setWordWrap(true);
  plugins->setText(pluginSummary());
}

QString SystemPage::pluginSummary() {
  // Plugins load before the window (app/gui/main.cpp); the report keeps refusals too.
  QStringList lines;
  for (const auto& r : pluginLoadReport()) {
    if (r.plugin) {
      QStringList added;
      for (const auto& n : r.plugin->samplers) added << tr("sampler %1").arg(QString::fromStdString(n));
      for (const auto& n : r.plugin->backbones) added << tr("backbone %1").arg(QString::fromStdString(n));
      lines << tr("%1 %2: %3").arg(QString::fromStdString(r.plugin->name), QString::fromStdString(r.plugin->version),
                                   added.join(QStringLiteral(", ")));
    } else {
      lines << tr("<span style='color:#c0392b'>refused: %1</span>")
                   .arg(QString::fromStdString(r.plugin.error().message()).toHtmlEscaped());
    }
  }
  if (lines.isEmpty()) {
    QStringList dirs;
    for (const auto& d : pluginSearchPath()) dirs << QString::fromStdString(d);
    return tr("none (looked in %1)").arg(dirs.join(QStringLiteral(", ")));
  }
  return lines.join(QStringLiteral("<br>"));
}

QLabel* SystemPage::addRow(const QString& name) {
  auto* value = new QLabel(this);
  value->setTextInteractionFlags(Qt::TextSelectableByMouse);
  m_form->addRow(name + QLatin1Char(':'), value);
  m_rows.append({name, value});
  return value;
}

QString SystemPage::valueOf(const QString& row) const {
  for (const auto& [name, label] : m_rows)
    if (name == row) return label->text();
  return {};
}

void SystemPage::setInfo(const SystemInfo& s) {
  auto set = [&](const QString& row, const QString& text) {
    for (auto& [name, label] : m_rows)
      if (name == row) label->setText(text);
  };
  set(tr("Tessera"), QString::fromStdString(s.tesseraVersion));
  set(tr("LibTorch"), QString::fromStdString(s.torchVersion));
  set(tr("Device"), QString::fromStdString(s.device));
  set(tr("Threads"), tr("%1 of %2 hardware threads (OpenBLAS: %3)").arg(s.intraOpThreads).arg(s.hardwareThreads).arg(s.blasThreads));
  QStringList features;
  for (const auto& f : s.cpuFeatures) features << QString::fromStdString(f);
  set(tr("CPU"), QString::fromStdString(s.cpuVendor) + QStringLiteral(" — ") + features.join(QLatin1Char(' ')));
  QString source;
  if (s.blasKernelSource == "tessera") source = tr("selected by Tessera from the CPU's features; OpenBLAS detected %1").arg(QString::fromStdString(s.blasDetected));
  else if (s.blasKernelSource == "openblas") source = tr("detected by OpenBLAS");
  else if (s.blasKernelSource == "user") source = tr("set by OPENBLAS_CORETYPE");
  else if (s.blasKernelSource == "fallback") source = tr("fallback after a failed check");
  set(tr("BLAS kernel"), s.blasKernel.empty() ? tr("not OpenBLAS") : tr("%1 (%2)").arg(QString::fromStdString(s.blasKernel), source));
  set(tr("BLAS check"), s.blasVerified ? tr("correct (relative error %1)").arg(s.blasMaxRelError, 0, 'g', 2)
                                       : tr("<span style='color:#c0392b'>%1</span>").arg(QString::fromStdString(s.blasWarning)));
  set(tr("Matrix product"), s.gemmGflops >= 0 ? tr("%1 GFLOP/s (fp32, 1024³)").arg(s.gemmGflops, 0, 'f', 1) : tr("measuring…"));
}

PanelDescriptor describePanel_system() {
  PanelDescriptor d;
  d.title = SystemPage::tr("System");
  d.area = Qt::RightDockWidgetArea;
  d.tabbedWith = QStringLiteral("gallery");
  d.create = [](const PanelContext& c) {
    auto* scroll = new QScrollArea(c.parent);  // long facts scroll instead of widening the column
    scroll->setWidget(new SystemPage);
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    scroll->setMinimumWidth(280);
    return scroll;
  };
  return d;
}

}  // namespace tessera
