// SPDX-License-Identifier: Apache-2.0
#include "core/eval/evaluator.h"

#include "core/data/fashion_mnist.h"
#include "core/formats/safetensors.h"
#include "core/system/resources.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional.h>
#include <torch/optim/adam.h>
#include <torch/utils.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

namespace tessera {
namespace fs = std::filesystem;
namespace F = torch::nn::functional;

EvaluatorNetImpl::EvaluatorNetImpl(std::int64_t classes_, std::int64_t width_, std::int64_t features_)
    : classes(classes_), width(width_), featureDim(features_) {
  using namespace torch::nn;
  const auto conv = [](std::int64_t in, std::int64_t out) { return Conv2d(Conv2dOptions(in, out, 3).padding(1).bias(false)); };
  conv1 = register_module("conv1", conv(1, width));
  bn1 = register_module("bn1", BatchNorm2d(width));
  conv2 = register_module("conv2", conv(width, width));
  bn2 = register_module("bn2", BatchNorm2d(width));
  conv3 = register_module("conv3", conv(width, 2 * width));
  bn3 = register_module("bn3", BatchNorm2d(2 * width));
  conv4 = register_module("conv4", conv(2 * width, 2 * width));
  bn4 = register_module("bn4", BatchNorm2d(2 * width));
  fc = register_module("fc", Linear(2 * width * 7 * 7, featureDim));
  head = register_module("head", Linear(featureDim, classes));
}

at::Tensor EvaluatorNetImpl::features(const at::Tensor& x) {
  at::Tensor h = at::relu(bn1(conv1(x)));
  h = at::max_pool2d(at::relu(bn2(conv2(h))), 2);  // 14²
  h = at::relu(bn3(conv3(h)));
  h = at::max_pool2d(at::relu(bn4(conv4(h))), 2);  // 7²
  return at::relu(fc(h.flatten(1)));
}

at::Tensor EvaluatorNetImpl::classify(const at::Tensor& f) {
  return head(F::dropout(f, F::DropoutFuncOptions().p(0.3).training(is_training())));
}

at::Tensor EvaluatorNetImpl::forward(const at::Tensor& x) { return classify(features(x)); }

namespace {

at::Tensor toInput(const at::Tensor& images) {
  at::Tensor x = images.to(at::kFloat);
  if (x.dim() == 3) x = x.unsqueeze(1);
  if (x.size(1) == 3) x = (x.select(1, 0) * 0.299 + x.select(1, 1) * 0.587 + x.select(1, 2) * 0.114).unsqueeze(1);
  if (x.size(2) == 28 && x.size(3) == 28) return x;
  // Letterbox to 28×28 on a black (−1) background.
  const double s = 28.0 / static_cast<double>(std::max(x.size(2), x.size(3)));
  const std::int64_t h = std::max<std::int64_t>(1, std::llround(static_cast<double>(x.size(2)) * s));
  const std::int64_t w = std::max<std::int64_t>(1, std::llround(static_cast<double>(x.size(3)) * s));
  const at::Tensor r = at::upsample_bilinear2d(x, {h, w}, false);
  at::Tensor out = at::full({x.size(0), 1, 28, 28}, -1.0, x.options());
  out.slice(2, (28 - h) / 2, (28 - h) / 2 + h).slice(3, (28 - w) / 2, (28 - w) / 2 + w).copy_(r);
  return out;
}

at::Tensor imagesFromSplit(const FashionMnistSplit& split) {
  return split.images.unsqueeze(1).to(at::kFloat).div(127.5).sub(1.0);
}

}  // namespace

Evaluator::Output Evaluator::run(const at::Tensor& images, std::int64_t batch) {
  torch::NoGradGuard noGrad;
  net->eval();
  const at::Tensor x = toInput(images);
  std::vector<at::Tensor> feats, preds;
  for (std::int64_t i = 0; i < x.size(0); i += batch) {
    const at::Tensor f = net->features(x.slice(0, i, std::min(x.size(0), i + batch)));
    feats.push_back(f.to(at::kDouble));
    preds.push_back(net->classify(f).argmax(1));
  }
  return {at::cat(feats), at::cat(preds)};
}

Result<Evaluator> trainEvaluator(const EvaluatorTrainOptions& options) {
  const std::string dir = options.dataDir.empty() ? std::string(kFashionMnistDir) : options.dataDir;
  auto train = loadFashionMnist("train", dir);
  if (!train) return fail(train.error());
  auto test = loadFashionMnist("test", dir);
  if (!test) return fail(test.error());
  at::manual_seed(options.seed);
  Evaluator e;
  e.net = EvaluatorNet(10);
  const auto& names = fashionMnistClassNames();
  e.classNames.assign(names.begin(), names.end());
  const at::Tensor x = imagesFromSplit(*train), y = train->labels;
  const at::Tensor xt = imagesFromSplit(*test), yt = test->labels;
  torch::optim::Adam opt(e.net->parameters(), torch::optim::AdamOptions(options.lr));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  const std::int64_t n = x.size(0);
  const std::int64_t stepsPerEpoch = n / options.batch;
  const std::int64_t totalSteps = stepsPerEpoch * options.epochs;
  std::int64_t step = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double accuracy = 0;
  for (std::int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    e.net->train();
    const at::Tensor perm = at::randperm(n, gen, at::kLong);
    double lossSum = 0;
    for (std::int64_t b = 0; b < stepsPerEpoch; ++b, ++step) {
      // Cosine learning rate to zero.
      const double lr = options.lr * 0.5 * (1 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(totalSteps)));
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
      const at::Tensor idx = perm.slice(0, b * options.batch, (b + 1) * options.batch);
      at::Tensor xb = x.index_select(0, idx);
      // Augmentation: horizontal flips and shifts of up to 2 pixels.
      const at::Tensor flip = at::rand({xb.size(0)}, gen) < 0.5;
      xb = at::where(flip.view({-1, 1, 1, 1}), xb.flip({3}), xb);
      const std::int64_t dy = at::randint(-2, 3, {1}, gen, at::kLong).item<std::int64_t>();
      const std::int64_t dx = at::randint(-2, 3, {1}, gen, at::kLong).item<std::int64_t>();
      xb = at::constant_pad_nd(xb, {2, 2, 2, 2}, -1.0).slice(2, 2 + dy, 30 + dy).slice(3, 2 + dx, 30 + dx);
      opt.zero_grad();
      const at::Tensor loss = at::cross_entropy_loss(e.net->forward(xb), y.index_select(0, idx));
      loss.backward();
      opt.step();
      lossSum += loss.item<double>();
    }
    Evaluator::Output out = e.run(xt);
    accuracy = out.predicted.eq(yt).to(at::kDouble).mean().item<double>();
    if (options.onEvent)
      options.onEvent({{"event", "evaluator_epoch"},
                       {"epoch", epoch + 1},
                       {"loss", lossSum / static_cast<double>(stepsPerEpoch)},
                       {"test_accuracy", accuracy},
                       {"elapsed_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}});
  }
  e.net->eval();
  e.info = {{"test_accuracy", accuracy},
            {"epochs", options.epochs},
            {"batch", options.batch},
            {"lr", options.lr},
            {"seed", options.seed},
            {"data", "fashion-mnist train (60000), measured on test (10000)"},
            {"features", e.net->featureDim},
            {"train_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}};
  return e;
}

Result<void> saveEvaluator(const Evaluator& evaluator, const std::string& path) {
  NamedTensors tensors;
  for (const auto& p : evaluator.net->named_parameters()) tensors.emplace_back(p.key(), p.value().detach());
  for (const auto& b : evaluator.net->named_buffers()) tensors.emplace_back(b.key(), b.value().detach());
  nlohmann::json meta = evaluator.info;
  meta["classes"] = evaluator.classNames;
  meta["width"] = evaluator.net->width;
  meta["architecture"] = "tessera-fashion-cnn-1";
  return writeSafetensors(path, tensors, {{kEvaluatorMetadataKey, meta.dump()}});
}

Result<Evaluator> loadEvaluator(const std::string& path) {
  auto file = SafetensorsFile::open(path);
  if (!file) return fail(file.error().withContext("evaluator"));
  auto it = file->metadata().find(kEvaluatorMetadataKey);
  if (it == file->metadata().end())
    return fail(path + ": not a Tessera evaluator (no '" + std::string(kEvaluatorMetadataKey) +
                "' metadata); train one with 'tessera-cli eval --train-evaluator PATH'");
  Evaluator e;
  try {
    e.info = nlohmann::json::parse(it->second);
    e.classNames = e.info.at("classes").get<std::vector<std::string>>();
    e.net = EvaluatorNet(static_cast<std::int64_t>(e.classNames.size()), e.info.value("width", std::int64_t{32}));
  } catch (const std::exception& ex) {
    return fail(path + ": malformed evaluator metadata: " + ex.what());
  }
  torch::NoGradGuard noGrad;
  std::vector<std::pair<std::string, at::Tensor>> targets;
  for (const auto& p : e.net->named_parameters()) targets.emplace_back(p.key(), p.value());
  for (const auto& b : e.net->named_buffers()) targets.emplace_back(b.key(), b.value());
  for (auto& [name, t] : targets)
    if (auto ok = file->readInto(name, t); !ok) return fail(ok.error().withContext("evaluator"));
  e.net->eval();
  e.info.erase("classes");
  e.path = path;
  return e;
}

FeatureStats FeatureStats::of(const at::Tensor& features) {
  const at::Tensor f = features.to(at::kDouble);
  FeatureStats s;
  s.mean = f.mean(0);
  const at::Tensor c = f - s.mean;
  s.cov = c.t().mm(c) / static_cast<double>(std::max<std::int64_t>(1, f.size(0) - 1));
  return s;
}

double frechetDistance(const FeatureStats& a, const FeatureStats& b) {
  const double meanTerm = (a.mean - b.mean).pow(2).sum().item<double>();
  // sqrt(Σa) via eigh; then Tr((√Σa Σb √Σa)^½) = Σ √λ of that symmetric PSD matrix.
  auto [ea, va] = at::linalg_eigh(a.cov);
  const at::Tensor sqrtA = va.mm(at::diag(ea.clamp_min(0).sqrt())).mm(va.t());
  at::Tensor m = sqrtA.mm(b.cov).mm(sqrtA);
  m = (m + m.t()) / 2;
  const at::Tensor em = at::linalg_eigvalsh(m);
  const double traceSqrt = em.clamp_min(0).sqrt().sum().item<double>();
  return meanTerm + a.cov.trace().item<double>() + b.cov.trace().item<double>() - 2.0 * traceSqrt;
}

namespace {

/// Distance of every row to its k-th nearest other row.
at::Tensor kthNeighbourRadius(const at::Tensor& x, std::int64_t k) {
  std::vector<at::Tensor> radii;
  for (std::int64_t i = 0; i < x.size(0); i += 1024) {
    const at::Tensor d = at::cdist(x.slice(0, i, std::min(x.size(0), i + 1024)), x);
    // The k+1 smallest include the point itself (distance 0).
    radii.push_back(std::get<0>(d.topk(k + 1, 1, /*largest=*/false)).select(1, k));
  }
  return at::cat(radii);
}

/// Fraction of `queries` inside at least one ball (centre, radius).
double coverage(const at::Tensor& centres, const at::Tensor& radii, const at::Tensor& queries) {
  std::int64_t inside = 0;
  for (std::int64_t i = 0; i < queries.size(0); i += 1024) {
    const at::Tensor d = at::cdist(queries.slice(0, i, std::min(queries.size(0), i + 1024)), centres);
    inside += (d <= radii.unsqueeze(0)).any(1).sum().item<std::int64_t>();
  }
  return static_cast<double>(inside) / static_cast<double>(std::max<std::int64_t>(1, queries.size(0)));
}

}  // namespace

PrecisionRecall precisionRecall(const at::Tensor& real, const at::Tensor& generated, std::int64_t k) {
  const at::Tensor r = real.to(at::kDouble), g = generated.to(at::kDouble);
  PrecisionRecall pr;
  pr.precision = coverage(r, kthNeighbourRadius(r, k), g);
  pr.recall = coverage(g, kthNeighbourRadius(g, k), r);
  return pr;
}

std::string defaultEvaluatorPath() {
  const std::string found = findResource("models/fashion-evaluator.safetensors");
  return found.empty() ? std::string("resources/models/fashion-evaluator.safetensors") : found;
}

}  // namespace tessera
