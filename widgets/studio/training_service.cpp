// SPDX-License-Identifier: Apache-2.0
#include "widgets/studio/training_service.h"

#include "widgets/studio/text.h"
#include "core/data/fashion_mnist.h"
#include "core/data/image_folder.h"
#include "models/registry.h"

#include <QJsonDocument>

#include <algorithm>

namespace tessera {
namespace {

QJsonObject qjson(const nlohmann::json& j) {
  return QJsonDocument::fromJson(QByteArray::fromStdString(j.dump())).object();
}

/// Builds `backbone` from its tiny configuration with `extra` merged in.
Result<std::shared_ptr<BackboneImpl>> buildTiny(const QString& backbone, const nlohmann::json& extra) {
  const BackboneEntry* e = backboneRegistry().find(backbone.toStdString());
  if (!e || !e->tiny.contains("config")) return fail("no tiny configuration for '" + backbone.toStdString() + "'");
  nlohmann::json c = e->tiny["config"];
  for (const auto& [k, v] : extra.items()) c[k] = v;
  auto config = Config::fromString(c.dump(), "tiny");
  if (!config) return fail(config.error());
  return e->factory(*config, BuildOptions{});
}

}  // namespace

FolderPreview previewImageFolder(const QString& dir) {
  FolderPreview p;
  auto folder = loadImageFolder(dir.toStdString());
  if (!folder) {
    p.error = qs(folder.error().message());
    return p;
  }
  for (const auto& n : folder->classNames) p.classes << qs(n);
  p.counts.fill(0, p.classes.size());
  int minH = 1 << 30, maxH = 0, minW = 1 << 30, maxW = 0;
  for (std::size_t i = 0; i < folder->images.size(); ++i) {
    ++p.counts[static_cast<int>(folder->labels[i])];
    const int h = static_cast<int>(folder->images[i].size(1)), w = static_cast<int>(folder->images[i].size(2));
    minH = std::min(minH, h), maxH = std::max(maxH, h), minW = std::min(minW, w), maxW = std::max(maxW, w);
  }
  for (const auto& s : folder->skipped) p.unreadable << qs(s.path) + QStringLiteral(": ") + qs(s.reason);
  p.channels = folder->channels;
  if (!folder->images.empty())
    p.sizes = QStringLiteral("%1–%2 × %3–%4 px").arg(minW).arg(maxW).arg(minH).arg(maxH);
  return p;
}

BackboneTraits backboneTraits(const QString& backbone) {
  const BackboneEntry* e = backboneRegistry().find(backbone.toStdString());
  if (!e) return {};
  return {true, e->capabilities.anyGrid, e->capabilities.packed};
}

QStringList backboneNames() {
  QStringList out;
  for (const auto& n : backboneRegistry().names()) out << qs(n);
  return out;
}

QString defaultBackbone() {
  const auto& order = backboneRegistry().registrationOrder();
  return order.empty() ? QString() : qs(order.front());
}

bool backboneHasFields(const QString& backbone, const QStringList& keys) {
  const BackboneEntry* e = backboneRegistry().find(backbone.toStdString());
  if (!e) return false;
  return std::all_of(keys.begin(), keys.end(),
                     [&](const QString& k) { return e->config.find(k.toStdString()) != nullptr; });
}

QJsonObject backboneScratchConfig(const QString& backbone) {
  const BackboneEntry* e = backboneRegistry().find(backbone.toStdString());
  return e && e->scratch.is_object() ? qjson(e->scratch) : QJsonObject();
}

QVector<QPair<QString, QJsonObject>> backboneSizes(const QString& backbone) {
  QVector<QPair<QString, QJsonObject>> out;
  const BackboneEntry* e = backboneRegistry().find(backbone.toStdString());
  if (!e) return out;
  for (const auto& [label, keys] : e->sizes) out.append({qs(label), qjson(keys)});
  if (!out.isEmpty() || !backboneHasFields(backbone, {QStringLiteral("patch_size"), QStringLiteral("hidden_size"),
                                                      QStringLiteral("depth"), QStringLiteral("num_heads")}))
    return out;
  struct Transformer {
    const char* label;
    int patch, width, depth, heads;
  };
  static const Transformer sizes[] = {
      {"Tiny: width 64, depth 2 (≈0.15 M; minutes)", 4, 64, 2, 2},
      {"Small: width 128, depth 6 (1.87 M; the shipped models)", 4, 128, 6, 4},
      {"Medium: width 256, depth 8 (≈6.5 M)", 4, 256, 8, 4},
  };
  for (const auto& s : sizes)
    out.append({QString::fromUtf8(s.label), QJsonObject{{QStringLiteral("patch_size"), s.patch},
                                                        {QStringLiteral("hidden_size"), s.width},
                                                        {QStringLiteral("depth"), s.depth},
                                                        {QStringLiteral("num_heads"), s.heads}}});
  return out;
}

QJsonObject backboneBaseConfig(const QString& backbone) {
  const BackboneEntry* e = backboneRegistry().find(backbone.toStdString());
  if (!e || !e->tiny.contains("config")) return {};
  QJsonObject config = qjson(e->tiny["config"]);
  for (const char* k : {"input_size", "in_channels", "num_classes", "class_dropout_prob", "cfg_channels"})
    config.remove(QString::fromLatin1(k));
  return config;
}

bool backboneAcceptsKey(const QString& backbone, const QString& key, const QJsonValue& value) {
  const QByteArray v = QJsonDocument(QJsonObject{{key, value}}).toJson(QJsonDocument::Compact);
  return buildTiny(backbone, nlohmann::json::parse(v.toStdString())).has_value();
}

QStringList fashionMnistClasses() {
  QStringList out;
  for (const auto& n : fashionMnistClassNames()) out << qs(n);
  return out;
}

}  // namespace tessera
