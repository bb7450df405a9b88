// SPDX-License-Identifier: Apache-2.0
#include "widgets/studio/import_service.h"

#include "engine/checkpoint_import.h"
#include "models/registry.h"
#include "widgets/studio/text.h"

namespace tessera {

namespace {

ModelImportRequest requestOf(const ImportSettings& s) {
  ModelImportRequest r;
  r.in = s.in.toStdString();
  r.from = s.from.toStdString();
  r.preset = s.preset.toStdString();
  r.heads = s.heads;
  r.autoencoder = s.autoencoder.toStdString();
  if (s.scaleFactor > 0) r.scaleFactor = s.scaleFactor;
  return r;
}

}  // namespace

QStringList importSourceNames() {
  QStringList out;
  for (const auto& n : importSources()) out << qs(n);
  return out;
}

ImportPreview previewImport(const ImportSettings& settings) {
  ImportPreview p;
  auto imported = importModel(requestOf(settings));
  // The presets of the kind named or recognised, so that a missing head count can be picked.
  const std::string kindName = imported ? imported->kind : settings.from.toStdString();
  if (const BackboneEntry* entry = backboneRegistry().find(kindName))
    for (const auto& preset : entry->presets) p.presets << qs(preset);
  if (!imported) {
    p.error = qs(imported.error().message());
    if (p.presets.isEmpty() && settings.from == QStringLiteral("auto")) {
      // The heads are what DiT and SiT checkpoints cannot tell: offer every preset.
      for (const auto& preset : backboneRegistry().presetNames()) p.presets << qs(preset);
    }
    return p;
  }
  p.kind = qs(imported->kind);
  p.autoencoderOnly = imported->autoencoderOnly;
  p.recognisedAs = qs(imported->recognisedAs);
  p.parameters = imported->parameters;
  p.autoencoderParameters = imported->autoencoderParameters;
  for (const auto& note : imported->notes) p.notes << qs(note);
  if (imported->autoencoderOnly) {
    p.config = qs(imported->description.value("config", nlohmann::json::object()).dump(2));
  } else {
    const nlohmann::json& config = imported->description["backbone"]["config"];
    p.config = qs(config.dump(2));
    p.channels = static_cast<int>(config.value("in_channels", std::int64_t{0}));
    p.latent = !imported->description.contains("autoencoder") && p.channels != 1 && p.channels != 3;
  }
  return p;
}

QString importTo(const ImportSettings& settings, const QString& out) {
  auto imported = importModel(requestOf(settings));
  if (!imported) return qs(imported.error().message());
  if (auto ok = writeImport(out.toStdString(), *imported); !ok) return qs(ok.error().message());
  return {};
}

}  // namespace tessera
