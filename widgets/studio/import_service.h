// SPDX-License-Identifier: Apache-2.0
// The import dialog's service: official checkpoints (backbones and autoencoders) read,
// converted and checked by the engine (engine/checkpoint_import.h), the same code as
// `tessera-cli import`. Both calls load whole checkpoints: run them off the GUI thread.
#pragma once

#include <QString>
#include <QStringList>

namespace tessera {

struct ImportSettings {
  QString in;  ///< the official checkpoint
  QString from = QStringLiteral("auto");
  QString preset;          ///< for what the shapes cannot tell
  int heads = 0;           ///< 0: from the preset
  QString autoencoder;     ///< a latent backbone's autoencoder (empty: none)
  double scaleFactor = 0;  ///< 0: found or defaulted
};

/// What an import with these settings would make, or why it cannot.
struct ImportPreview {
  QString error;  ///< non-empty: what is wrong or missing (the import's own message)
  QString kind;   ///< the backbone kind, or the autoencoder kind
  bool autoencoderOnly = false;
  QString recognisedAs;  ///< what "auto" recognised
  bool latent = false;   ///< a backbone sampling latents, and no autoencoder given: no pictures
  int channels = 0;      ///< the backbone's input channels
  qint64 parameters = 0, autoencoderParameters = 0;
  QStringList notes;    ///< what was inferred
  QStringList presets;  ///< the kind's presets, for the preset box
  QString config;       ///< the configuration, as indented JSON
};

/// The families the dialog offers: auto, each backbone that imports, autoencoder.
QStringList importSourceNames();
/// Converts in memory and reports; writes nothing.
ImportPreview previewImport(const ImportSettings& settings);
/// Converts and writes `out` atomically. Empty on success, else the reason.
QString importTo(const ImportSettings& settings, const QString& out);

}  // namespace tessera
