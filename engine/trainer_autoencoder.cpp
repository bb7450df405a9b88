// SPDX-License-Identifier: Apache-2.0
// The autoencoder objective (model.kind "autoencoder"): a KL autoencoder from the registry
// and its EMA twin, the loss, the validation scores, and the autoencoder file written with
// every checkpoint (its scale factor measured on the data as LDM's scale_by_std does, and
// its preview map fitted on the data).
//
// The loss is LDM's LPIPSWithDiscriminator with the perceptual and adversarial terms left
// out (they need downloaded networks) and the learned log-variance at its initial 0, so
// that it reduces to Σ|x − x̂| + kl_weight · KL(q(z|x) ‖ N(0, I)) per image; we divide it by
// the image's pixel count, which leaves the balance of the two terms as LDM has it.
#include "engine/trainer.h"

#include "models/autoencoders/autoencoder.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <cmath>

namespace tessera {
namespace {

/// Per image: the reconstruction error (mean over pixels) and the KL term per pixel.
std::pair<at::Tensor, at::Tensor> objectiveTerms(const at::Tensor& x, const at::Tensor& xr, const Encoded& e,
                                                 const std::string& reconstruction) {
  const at::Tensor diff = xr.to(at::kFloat) - x;
  const at::Tensor rec = (reconstruction == "l2" ? diff.pow(2) : diff.abs()).mean({1, 2, 3});
  const at::Tensor mean = e.mean.to(at::kFloat), std = e.std.to(at::kFloat);
  const at::Tensor kl = 0.5 * (mean.pow(2) + std.pow(2) - 1.0 - 2.0 * at::log(std)).sum({1, 2, 3});
  const double pixels = static_cast<double>(x.size(1) * x.size(2) * x.size(3));
  return {rec, kl / pixels};
}

}  // namespace

at::Tensor Trainer::frontItems(const Batcher& batcher, std::int64_t count) {
  std::vector<at::Tensor> items;
  for (std::int64_t i = 0; i < batcher.itemCount() && static_cast<std::int64_t>(items.size()) < count; ++i) {
    at::Tensor t = batcher.item(i);
    if (!items.empty() && t.sizes() != items.front().sizes()) continue;
    items.push_back(t);
  }
  return at::stack(items);
}

Result<void> Trainer::buildAutoencoders() {
  nlohmann::json config = m_s.autoencoder.config;
  for (const char* key : {"in_channels", "out_channels"}) {
    if (config.contains(key) && config[key] != m_data.channels)
      return fail(std::string("model.config.") + key + " is " + config[key].dump() + " but the data has " +
                  std::to_string(m_data.channels) + " channels (leave it out and the trainer sets it)");
    config[key] = m_data.channels;
  }
  at::manual_seed(m_s.seed);  // the initial weights come from the global generator, as for backbones
  auto net = autoencoderRegistry().create(m_s.autoencoder.kind, config);
  if (!net) return fail(net.error().withContext("model.config"));
  auto ema = autoencoderRegistry().create(m_s.autoencoder.kind, config);
  if (!ema) return fail(ema.error().withContext("model.config"));
  m_ae = *net;
  m_aeEma = *ema;
  m_s.autoencoder.config = config;
  m_s.resolved["model"]["config"] = config;
  BatchingOptions& batching = m_s.data.batching;
  const std::int64_t f = m_ae->downsampling();
  if (batching.height % f != 0 || batching.width % f != 0)
    return fail("data.size " + std::to_string(batching.height) + "x" + std::to_string(batching.width) +
                " is not a multiple of the autoencoder's downsampling factor " + std::to_string(f) +
                " (model.config.ch_mult)");
  batching.multiple = f;
  return {};
}

at::Tensor Trainer::autoencoderLossOf(AutoencoderImpl& model, const Draws& d) const {
  const at::Tensor x = d.x0.to(m_device), eps = d.noise.to(m_device);
  const Encoded e = model.encode(x);
  const at::Tensor xr = model.decode(e.mean + e.std * eps);
  auto [rec, kl] = objectiveTerms(x, xr, e, m_s.autoencoder.reconstruction);
  return rec + m_s.autoencoder.klWeight * kl;
}

ReconstructionScores Trainer::reconstructionScores(AutoencoderImpl& model) {
  ReconstructionScores out;
  if (!m_valBatcher) return out;
  torch::NoGradGuard g;
  double loss = 0, l1 = 0, mse = 0, count = 0;
  const std::int64_t total = m_valBatcher->itemCount();
  std::int64_t seen = 0;
  for (std::int64_t b = 0; seen < total; ++b) {
    Batch batch = m_valBatcher->batch(b);
    const std::int64_t take = std::min<std::int64_t>(batch.size(), total - seen);
    seen += take;
    // Each rank scores its share of the batch; the sums are combined below.
    const std::int64_t begin = take * m_rank / m_world, end = take * (m_rank + 1) / m_world;
    if (end <= begin) continue;
    const at::Tensor x = batch.x.slice(0, begin, end).to(m_device);
    const Encoded e = model.encode(x);
    const at::Tensor xr = model.decode(e.mean).to(at::kFloat);
    auto [rec, kl] = objectiveTerms(x, xr, e, m_s.autoencoder.reconstruction);
    loss += (rec + m_s.autoencoder.klWeight * kl).sum().item<double>();
    l1 += (xr - x).abs().mean({1, 2, 3}).sum().item<double>();
    mse += (xr - x).pow(2).mean({1, 2, 3}).sum().item<double>();
    count += static_cast<double>(end - begin);
  }
  at::Tensor agg = at::tensor({loss, l1, mse, count}, at::kDouble);
  m_dp->allReduceSum({agg});
  const double n = std::max(1.0, agg[3].item<double>());
  out.loss = agg[0].item<double>() / n;
  out.l1 = agg[1].item<double>() / n;
  out.mse = agg[2].item<double>() / n;
  out.psnr = 10.0 * std::log10(4.0 / std::max(out.mse, 1e-12));
  out.images = static_cast<std::int64_t>(agg[3].item<double>());
  return out;
}

/// The autoencoder file's description ({"kind", "config", ...}); the scale factor and the
/// preview map are measured at each checkpoint.
void Trainer::describeAutoencoder() {
  const BatchingOptions& batching = m_s.data.batching;
  m_description = {
      {"kind", m_s.autoencoder.kind},
      {"config", m_s.autoencoder.config},
      {"scale_factor", 1.0},
      {"shift_factor", 0.0},
      {"data", {{"channels", m_data.channels}, {"size", {batching.height, batching.width}}}},
      {"source", {{"trained_by", "tessera-cli train"}, {"data", m_data.summary}}},
  };
}

Result<void> Trainer::writeAutoencoderModel(const std::string& path, std::int64_t step, double elapsed) {
  nlohmann::json d = m_description;
  d["source"]["training"] = {{"step", step}, {"elapsed_s", elapsed}, {"config", m_s.resolved}};
  {
    torch::NoGradGuard g;
    // LDM's scale_by_std: the backbone's latents should have unit variance, so the scale is
    // 1 / the standard deviation of the latents of real images (up to 512 validation images).
    const Batcher& source = m_valBatcher ? *m_valBatcher : *m_batcher;
    const at::Tensor x = frontItems(source, 512).to(m_device);
    const at::Tensor z = m_aeEma->encode(x).mean;
    const double sd = z.to(at::kDouble).std().item<double>();
    d["scale_factor"] = sd > 1e-6 ? 1.0 / sd : 1.0;
    d["preview"] = previewMapJson(fitPreviewMapOn(*m_aeEma, x));
  }
  NamedTensors weights;
  const at::ScalarType dtype = dtypeNamed(m_s.checkpoint.modelDtype);
  for (auto& [n, t] : stateDict(*m_aeEma)) weights.emplace_back(n, t.detach().to(at::kCPU).to(dtype));
  return writeAutoencoderFile(path, d, weights);
}

}  // namespace tessera
