// SPDX-License-Identifier: Apache-2.0
// What a network's output means: one vocabulary for the backbones (their configurations
// and capabilities), the processes and the sampling spaces.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {

/// What a network predicts. Files spell each value one way (predictionName), except the
/// noise, which interpolant processes write "noise" and everything else "eps":
/// parsePrediction reads both.
enum class Prediction {
  Epsilon,   ///< the noise ε: "eps" (also read: "noise")
  Sample,    ///< the clean data x0: "x0"
  Velocity,  ///< the velocity of an interpolant's path: "velocity"
  Score,     ///< the score ∇ log p_t: "score"
  V,         ///< DDPM's v = α ε − σ x0 (Salimans & Ho, 2022): "v"
};

/// The spelling written to files: "eps", "x0", "velocity", "score" or "v".
inline const char* predictionName(Prediction p) {
  switch (p) {
    case Prediction::Epsilon:
      return "eps";
    case Prediction::Sample:
      return "x0";
    case Prediction::Velocity:
      return "velocity";
    case Prediction::Score:
      return "score";
    case Prediction::V:
      return "v";
  }
  return "eps";
}

/// The prediction a file's spelling names ("noise" is "eps"); nullopt for any other word.
inline std::optional<Prediction> parsePrediction(std::string_view name) {
  for (Prediction p : {Prediction::Epsilon, Prediction::Sample, Prediction::Velocity, Prediction::Score, Prediction::V})
    if (name == predictionName(p)) return p;
  if (name == "noise") return Prediction::Epsilon;
  return std::nullopt;
}

/// Every spelling parsePrediction reads as one of `allowed`, in that order (the choices
/// a configuration field offers and its error message lists).
inline std::vector<std::string> predictionSpellings(const std::vector<Prediction>& allowed) {
  std::vector<std::string> out;
  for (Prediction p : allowed) {
    out.emplace_back(predictionName(p));
    if (p == Prediction::Epsilon) out.emplace_back("noise");
  }
  return out;
}

}  // namespace tessera
