// SPDX-License-Identifier: Apache-2.0
#include "widgets/theme.h"

#include <QApplication>
#include <QPalette>
#include <QSettings>
#include <QStyle>
#include <QStyleFactory>

namespace tessera {
namespace {

QPalette darkPalette() {
  QPalette p;
  const QColor window(0x2b, 0x2d, 0x31), base(0x1e, 0x1f, 0x22), text(0xdf, 0xe1, 0xe5), mid(0x46, 0x49, 0x4f);
  p.setColor(QPalette::Window, window);
  p.setColor(QPalette::WindowText, text);
  p.setColor(QPalette::Base, base);
  p.setColor(QPalette::AlternateBase, window);
  p.setColor(QPalette::ToolTipBase, base);
  p.setColor(QPalette::ToolTipText, text);
  p.setColor(QPalette::PlaceholderText, QColor(0x8a, 0x8d, 0x93));
  p.setColor(QPalette::Text, text);
  p.setColor(QPalette::Button, QColor(0x35, 0x37, 0x3c));
  p.setColor(QPalette::ButtonText, text);
  p.setColor(QPalette::BrightText, Qt::white);
  p.setColor(QPalette::Mid, mid);
  p.setColor(QPalette::Dark, QColor(0x18, 0x19, 0x1c));
  p.setColor(QPalette::Light, QColor(0x50, 0x53, 0x59));
  p.setColor(QPalette::Highlight, QColor(0x3d, 0x8e, 0xd8));
  p.setColor(QPalette::HighlightedText, Qt::white);
  p.setColor(QPalette::Link, QColor(0x6c, 0xb4, 0xf0));
  for (auto role : {QPalette::WindowText, QPalette::Text, QPalette::ButtonText})
    p.setColor(QPalette::Disabled, role, QColor(0x7a, 0x7d, 0x83));
  return p;
}

bool s_dark = false;

}  // namespace

QString themeSetting() { return QSettings().value(QStringLiteral("appearance/theme"), QStringLiteral("system")).toString(); }
void setThemeSetting(const QString& mode) { QSettings().setValue(QStringLiteral("appearance/theme"), mode); }
bool isDarkTheme() { return s_dark; }

void applyTheme(const QString& mode) {
  static const QPalette systemPalette = QApplication::palette();  // before any change of ours
  QApplication::setStyle(QStyleFactory::create(QStringLiteral("Fusion")));
  const bool systemDark = systemPalette.color(QPalette::Window).lightness() < 128;
  s_dark = mode == QStringLiteral("dark") || (mode != QStringLiteral("light") && systemDark);
  QApplication::setPalette(s_dark ? darkPalette() : QApplication::style()->standardPalette());
}

}  // namespace tessera
