// SPDX-License-Identifier: Apache-2.0
// Internal to the studio's service layer (.cpp files only: it includes LibTorch through
// models/): a GenerationJob as the core's GenerationRequest, and the model cache the
// workers share in shape.
#pragma once

#include "core/util/error.h"
#include "engine/generation.h"
#include "engine/model_file.h"
#include "models/common/packing.h"
#include "widgets/studio/studio_service.h"

#include <QDateTime>
#include <QString>

#include <optional>
#include <string>

namespace tessera {

/// The request a job makes (without observer, cancel token or probe). `packGrids`, when
/// given, receives each image's token grid for a job of mixed sizes on a packed backbone.
Result<GenerationRequest> requestFromJob(const GenerationJob& job, const LoadedModel& model, const ModelTraits& traits,
                                         GridSizes* packGrids = nullptr);

/// One loaded model, reloaded when the file changes.
struct ModelSlot {
  QString path;
  QDateTime modified;
  std::optional<LoadedModel> model;
  std::optional<ModelTraits> traits;
  std::string hash;
  /// Loads `path` unless it is the one held (and unchanged); empty string or the error.
  QString load(const QString& path, bool withHash = false);
};

}  // namespace tessera
