// SPDX-License-Identifier: Apache-2.0
// Files the project ships (resources/): the evaluator and the default models. Found in
// $TESSERA_RESOURCES, the installed share folder (<prefix>/share/tessera), or the source
// tree's resources/ folder (a build that was not installed).
#pragma once

#include <string>
#include <vector>

namespace tessera {

/// The folders searched, in order.
std::vector<std::string> resourceDirs();
/// The first existing `dir/relative`, or "" when none exists.
std::string findResource(const std::string& relative);
/// A model argument as given on the command line: an existing path, or the name of a
/// shipped model ("dit-fashion" → …/models/dit-fashion.safetensors). Unknown names are
/// returned unchanged, so that the error names what the user typed.
std::string resolveModelArgument(const std::string& argument);
/// The error for a model argument that names no file and no shipped model.
std::string missingModelMessage(const std::string& argument);
/// Names of the shipped models (files in models/ with a Tessera model description).
std::vector<std::string> shippedModelNames();

}  // namespace tessera
