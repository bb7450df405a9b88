// SPDX-License-Identifier: Apache-2.0
// Quality evaluation without Inception: a small CNN classifier we train on
// Fashion-MNIST ourselves, whose penultimate activations are the feature space for the
// Fréchet distance and the k-NN precision/recall estimates (Kynkäänniemi et al., 2019),
// and whose predictions give the class accuracy of generated samples.
#pragma once

#include "core/util/error.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tessera {

/// Metadata key of an evaluator file.
inline constexpr const char* kEvaluatorMetadataKey = "tessera.evaluator";

/// Four 3×3 convolutions with batch norm (two at 28², two at 14²), a 128-unit feature
/// layer and a linear classifier. Input (N, 1, 28, 28) in [-1, 1].
class EvaluatorNetImpl : public torch::nn::Module {
public:
  explicit EvaluatorNetImpl(std::int64_t classes = 10, std::int64_t width = 32, std::int64_t features = 128);
  /// Features (N, features): the penultimate activations.
  at::Tensor features(const at::Tensor& x);
  /// Logits (N, classes).
  at::Tensor forward(const at::Tensor& x);
  at::Tensor classify(const at::Tensor& features);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr}, conv4{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr}, bn4{nullptr};
  torch::nn::Linear fc{nullptr}, head{nullptr};
  std::int64_t classes, width, featureDim;
};
TORCH_MODULE(EvaluatorNet);

struct EvaluatorTrainOptions {
  std::int64_t epochs = 6;
  std::int64_t batch = 128;
  double lr = 2e-3;
  std::uint64_t seed = 0;
  std::string dataDir;  ///< Fashion-MNIST ("" = the Debian package's)
  std::function<void(const nlohmann::json&)> onEvent;  ///< per epoch
};

struct Evaluator {
  EvaluatorNet net{nullptr};
  std::vector<std::string> classNames;
  nlohmann::json info;  ///< test accuracy, training settings
  std::string path;

  /// Features and predicted classes of images (N, 1, H, W) in [-1, 1]; images of other
  /// sizes are letterboxed to 28×28 first.
  struct Output {
    at::Tensor features;  ///< (N, D) float64
    at::Tensor predicted; ///< (N,) int64
  };
  Output run(const at::Tensor& images, std::int64_t batch = 500);
};

/// Trains the evaluator on the Fashion-MNIST train split and measures it on the test split.
Result<Evaluator> trainEvaluator(const EvaluatorTrainOptions& options);
Result<void> saveEvaluator(const Evaluator& evaluator, const std::string& path);
Result<Evaluator> loadEvaluator(const std::string& path);

/// Mean and covariance of features (N, D).
struct FeatureStats {
  at::Tensor mean, cov;  ///< float64
  static FeatureStats of(const at::Tensor& features);
};

/// ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½), through symmetric eigendecompositions.
double frechetDistance(const FeatureStats& a, const FeatureStats& b);

/// k-NN manifold precision (the fraction of generated features inside some real
/// feature's k-NN ball) and recall (real inside generated), k = 3 as in the paper.
struct PrecisionRecall {
  double precision = 0, recall = 0;
};
PrecisionRecall precisionRecall(const at::Tensor& real, const at::Tensor& generated, std::int64_t k = 3);

/// Where the shipped evaluator is: $TESSERA_RESOURCES/models, the installed share
/// folder, or the source tree's resources/models.
std::string defaultEvaluatorPath();

}  // namespace tessera
