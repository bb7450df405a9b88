// SPDX-License-Identifier: Apache-2.0
// What the New job dialog needs from the core, in Qt types (the dialog includes no
// LibTorch): backbone names and what they accept, Fashion-MNIST's classes, an image
// folder's preview.
#pragma once

#include <QJsonObject>
#include <QJsonValue>
#include <QPair>
#include <QString>
#include <QStringList>
#include <QVector>

namespace tessera {

/// What an image folder holds, read the way the trainer reads it.
struct FolderPreview {
  QString error;
  QStringList classes;
  QVector<int> counts;
  QStringList unreadable;  ///< "file: reason"
  int channels = 0;
  QString sizes;           ///< "28–640 × 28–480 px"
};

/// Reads an image folder with the trainer's loader. Off the GUI thread.
FolderPreview previewImageFolder(const QString& dir);

/// What a backbone takes, from its registry entry (KindCapabilities).
struct BackboneTraits {
  bool known = false;
  bool anyGrid = false;  ///< aspect-ratio buckets are possible
  bool packed = false;   ///< native-size packing is possible
};
BackboneTraits backboneTraits(const QString& backbone);

/// Registry names, plugins' backbones included.
QStringList backboneNames();

/// The backbone a new job starts with: the first models/backbones.def lists.
QString defaultBackbone();

/// Whether the backbone's configuration table has every one of `keys`.
bool backboneHasFields(const QString& backbone, const QStringList& keys);

/// What a new model of the backbone sets beyond its table's defaults (the registry
/// entry's scratch settings; empty for most).
QJsonObject backboneScratchConfig(const QString& backbone);

/// The network sizes a new model of the backbone is offered in (label, configuration keys):
/// the registry entry's own, else a transformer's patch/width/depth/heads choices where its
/// table has those keys, else none.
QVector<QPair<QString, QJsonObject>> backboneSizes(const QString& backbone);

/// A backbone's tiny configuration less the keys the trainer fills from the data (the
/// starting point for backbones the dialog has no sizes for, such as a plugin's).
QJsonObject backboneBaseConfig(const QString& backbone);

/// Whether the backbone's configuration takes `key` with `value` (its tiny configuration
/// with that key builds): a plugin's backbone says what it accepts by building or not.
bool backboneAcceptsKey(const QString& backbone, const QString& key, const QJsonValue& value);

/// Fashion-MNIST's ten class names.
QStringList fashionMnistClasses();

}  // namespace tessera
