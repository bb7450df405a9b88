// SPDX-License-Identifier: Apache-2.0
// The trainer's data: the training and validation images, their batchers, the prefetch
// of the next step's batch, and each batch's random draws (see engine/training.h on
// randomness: one generator per step, drawn for the global batch, sliced per rank).
#include "engine/trainer.h"

#include "engine/checkpoint_import.h"
#include "models/common/packing.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

namespace tessera {

Result<void> Trainer::loadData() {
  const TrainDataSettings& s = m_s.data;
  auto data = loadLabelledImages(s.spec);
  if (!data) return fail(data.error());
  m_data = std::move(*data);
  if (s.limit > 0 && m_data.size() > s.limit) {
    m_data.images.resize(static_cast<std::size_t>(s.limit));
    m_data.labels.resize(static_cast<std::size_t>(s.limit));
    m_data.summary["images"] = s.limit;
  }
  if (s.validationImages <= 0) return {};
  // Fashion-MNIST has a test split to validate on; other data gives up a fifth at most.
  if ((s.spec.source == "fashion-mnist" || s.spec.source == "fashion-native") && s.spec.split == "train") {
    DataSpec v = s.spec;
    v.split = "test";
    auto test = loadLabelledImages(v);
    if (!test) return fail(test.error());
    m_validation = std::move(*test);
    m_validation.images.resize(
        std::min<std::size_t>(m_validation.images.size(), static_cast<std::size_t>(s.validationImages)));
    m_validation.labels.resize(m_validation.images.size());
  } else {
    auto [kept, held] = holdOut(m_data, std::min<std::int64_t>(s.validationImages, m_data.size() / 5), m_s.seed);
    m_data = std::move(kept);
    m_validation = std::move(held);
  }
  return {};
}

/// After buildModels(), which sets the size multiple the backbone needs.
Result<void> Trainer::makeBatchers() {
  auto batcher = Batcher::create(m_data, m_s.data.batching);
  if (!batcher) return fail(batcher.error());
  m_batcher.emplace(std::move(*batcher));
  if (m_validation.size() > 0) {
    BatchingOptions vo = m_s.data.batching;
    vo.flip = false;
    vo.seed = mixSeed(m_s.seed, 0x7A1);
    auto vb = Batcher::create(m_validation, vo);
    if (!vb) return fail(vb.error());
    m_valBatcher.emplace(std::move(*vb));
  }
  return encodeLatents();
}

/// model.autoencoder: the autoencoder a latent backbone learns the latents of.
Result<void> Trainer::loadFirstStage() {
  if (m_s.firstStage.empty()) return {};
  auto ae = loadAnyAutoencoder(m_s.firstStage);
  if (!ae) return fail(ae.error().withContext("model.autoencoder"));
  m_firstStage = std::move(*ae);
  m_firstStageSha = autoencoderSha256(*m_firstStage);
  AutoencoderImpl& net = *m_firstStage->network;
  m_pixelFactor = net.downsampling();
  const BatchingOptions& b = m_s.data.batching;
  if (b.height % m_pixelFactor != 0 || b.width % m_pixelFactor != 0)
    return fail("data.size " + std::to_string(b.height) + "x" + std::to_string(b.width) +
                " is not a multiple of the autoencoder's downsampling factor " + std::to_string(m_pixelFactor) +
                " (model.autoencoder " + m_s.firstStage + ")");
  if (net.imageChannels() != m_data.channels)
    return fail("model.autoencoder " + m_s.firstStage + " encodes " + std::to_string(net.imageChannels()) +
                "-channel images but the data has " + std::to_string(m_data.channels) + " channels");
  return {};
}

/// The posteriors of the training items (and of their mirror images when the data is
/// flipped) and of the validation items, from the cache or encoded into it.
Result<void> Trainer::encodeLatents() {
  if (!m_firstStage) return {};
  nlohmann::json data = m_s.resolved["data"];
  for (const char* key : {"batch", "validation", "latents", "flip", "drop_last"}) data.erase(key);
  data["limit"] = m_s.data.limit;
  m_latentReport = {{"cache", m_s.latentCache}, {"autoencoder_sha256", m_firstStageSha}};
  const auto encode = [&](const Batcher& batcher, bool flips, const std::string& part) -> Result<LatentSet> {
    nlohmann::json key = data;
    key["part"] = part;
    if (part == "validation") key["validation"] = m_s.data.validationImages, key["seed"] = m_s.seed;
    auto bar = std::make_unique<Progress>(
        "latents (" + part + ")", batcher.itemCount(),
        m_request.progressBar && m_leader ? Progress::Mode::Bar : Progress::Mode::Silent, std::cerr);
    auto set = cachedLatents(
        *m_firstStage, m_firstStageSha, [&](std::int64_t i) { return batcher.item(i); }, batcher.itemCount(), flips,
        m_s.latentCache, key, [&](std::int64_t done, std::int64_t) { bar->update(done); });
    bar->finish();
    if (!set) return fail(set.error());
    if (!set->note.empty()) emit({{"event", "warning"}, {"message", set->note}});
    m_latentReport[part] = {
        {"path", set->path}, {"reused", set->reused}, {"items", batcher.itemCount()}, {"seconds", set->seconds}};
    return set;
  };
  auto train = encode(*m_batcher, m_s.data.batching.flip, "train");
  if (!train) return fail(train.error());
  m_latents = std::move(*train);
  if (m_valBatcher) {
    auto val = encode(*m_valBatcher, false, "validation");
    if (!val) return fail(val.error());
    m_valLatents = std::move(*val);
  }
  return {};
}

/// A latent batch: each item's posterior (its mirror image's when the batcher flipped it).
/// Training draws a sample of it (after the process's draws); validation takes the mean.
void Trainer::latentDraws(const Batch& b, bool training, Draws& d, at::Generator& gen) const {
  const LatentSet& set = training ? m_latents : m_valLatents;
  const at::Tensor idx = at::tensor(b.indices, at::kLong);
  at::Tensor mean = set.mean.index_select(0, idx), std = set.std.index_select(0, idx);
  if (set.meanFlipped.defined()) {
    std::vector<std::int64_t> rows;
    for (std::size_t i = 0; i < b.flipped.size(); ++i)
      if (b.flipped[i]) rows.push_back(static_cast<std::int64_t>(i));
    if (!rows.empty()) {
      const at::Tensor r = at::tensor(rows, at::kLong), items = idx.index_select(0, r);
      mean.index_copy_(0, r, set.meanFlipped.index_select(0, items));
      std.index_copy_(0, r, set.stdFlipped.index_select(0, items));
    }
  }
  at::Tensor z = mean;
  if (training) z = mean + std * at::randn(mean.sizes(), gen, at::kFloat);
  d.x0 = m_firstStage->scaling.toBackbone(z);
}

/// This step's batch (prefetched while the last step trained); starts the next one's.
Batch Trainer::nextBatch() {
  const double waitStart = nowSeconds();
  Batch batch = m_next.get();
  m_window.wait += nowSeconds() - waitStart;
  if (m_step + 1 < m_s.schedule.steps)
    m_next = std::async(std::launch::async, [this, st = m_step + 1] { return m_batcher->batch(st); });
  return batch;
}

std::int64_t Trainer::patch() const { return std::max<std::int64_t>(1, m_caps.sizeMultiple); }

/// Tokens the network computes against the tokens the images' own pixels need (at the
/// scale they are shown): the padding and resizing waste of the batching mode.
void Trainer::countTokens(const Batch& batch) {
  const std::int64_t p = patch() * m_pixelFactor;
  const BatchingOptions& batching = m_s.data.batching;
  std::int64_t computed = 0, real = 0, longest = 0;
  for (std::size_t i = 0; i < batch.indices.size(); ++i) {
    const at::Tensor& src = m_data.images[static_cast<std::size_t>(batch.indices[i])];
    double H = static_cast<double>(src.size(1)), W = static_cast<double>(src.size(2));
    std::int64_t shown = 0;
    if (batch.x.defined()) {
      shown = (batch.x.size(2) / p) * (batch.x.size(3) / p);
      if (batching.mode == BatchMode::Fixed && batching.fit == "pad") {
        const double sc = std::min(static_cast<double>(batch.x.size(2)) / H, static_cast<double>(batch.x.size(3)) / W);
        H *= sc, W *= sc;
      }
    } else {
      const at::Tensor& img = batch.images[i];
      shown = (img.size(1) / p) * (img.size(2) / p);
      H = static_cast<double>(img.size(1)), W = static_cast<double>(img.size(2));
    }
    const auto need = static_cast<std::int64_t>(std::ceil(H / static_cast<double>(p) - 1e-9) *
                                                std::ceil(W / static_cast<double>(p) - 1e-9));
    real += std::min(need, shown);
    computed += shown;
    longest = std::max(longest, shown);
  }
  if (!batch.x.defined() && m_caps.padsPacks) computed = longest * static_cast<std::int64_t>(batch.indices.size());
  m_window.images += batch.size();
  m_window.tokens += computed;
  m_window.realTokens += real;
}

// The draw order (timesteps, noise, then label dropout) is what makes runs reproducible
// across versions: changing it changes every trained model.
Trainer::Draws Trainer::drawsFor(const Batch& b, std::uint64_t seed, bool training) const {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const std::int64_t n = b.size(), p = patch();
  Draws d;
  if (!b.images.empty()) {
    GridSizes grids;
    std::vector<std::int64_t> sizes, counts;
    for (const auto& img : b.images) {
      grids.emplace_back(img.size(1) / p, img.size(2) / p);
      sizes.push_back(img.size(1));
      sizes.push_back(img.size(2));
      counts.push_back(grids.back().first * grids.back().second);
    }
    d.x0 = packImages(b.images, p);
    d.sizes = at::tensor(sizes, at::kLong).reshape({n, 2});
    d.tokenImage = tokenImageIndex(grids);
    d.tokenCounts = at::tensor(counts, at::kFloat);
  } else if (m_firstStage) {
    // The latent's shape for the noise; its values are drawn below, after the process's draws.
    const at::Tensor& mean = m_latents.mean;
    d.x0 = at::empty({n, mean.size(1), mean.size(2), mean.size(3)}, at::kFloat);
  } else {
    d.x0 = b.x;
  }
  d.labels = b.labels.clone();
  if (m_ae) {
    // An autoencoder's step draws only the posterior sample's noise, one per latent cell.
    const std::int64_t f = m_ae->downsampling();
    d.t = at::zeros({n}, at::kLong);
    d.noise = at::randn({n, m_ae->latentChannels(), b.x.size(2) / f, b.x.size(3) / f}, gen, at::kFloat);
    return d;
  }
  if (m_process.diffusion) {
    d.t = at::randint(0, m_process.diffusion->numSteps(), {n}, gen, at::kLong);
  } else {
    d.t = m_process.interpolant->drawTrainingTimes(n, gen);
  }
  d.noise = at::randn(d.x0.sizes(), gen, at::kFloat);
  if (training && m_s.labelDropout > 0 && m_caps.nullClass) {
    const at::Tensor drop = at::rand({n}, gen, at::kFloat) < m_s.labelDropout;
    d.labels.masked_fill_(drop, m_caps.numClasses);
  }
  if (m_firstStage) latentDraws(b, training, d, gen);
  return d;
}

/// This rank's rows of a global batch's draws.
Trainer::Draws Trainer::sliceFor(Draws d, std::int64_t n) const {
  if (d.sizes.defined()) return d;  // packed: one process (joinRanks checks)
  const std::int64_t begin = n * m_rank / m_world, end = n * (m_rank + 1) / m_world;
  d.x0 = d.x0.slice(0, begin, end);
  d.labels = d.labels.slice(0, begin, end);
  d.t = d.t.slice(0, begin, end);
  d.noise = d.noise.slice(0, begin, end);
  return d;
}

}  // namespace tessera
