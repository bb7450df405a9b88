// SPDX-License-Identifier: Apache-2.0
// Batching modes on synthetic data: fixed grids (every item once per epoch, labels
// kept, flips exact), aspect-ratio buckets (one size per batch, multiples of the patch),
// packed sequences (token budget kept), determinism from (seed, step), held-out splits.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/data/batching.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QtTest>

#include <algorithm>
#include <set>
#endif

using namespace tessera;

namespace {

/// Items whose pixels encode their index, of the given (H, W) sizes.
LabelledImages synthetic(const std::vector<std::pair<std::int64_t, std::int64_t>>& sizes, std::int64_t classes = 3) {
  LabelledImages d;
  for (std::int64_t k = 0; k < classes; ++k) d.classNames.push_back("c" + std::to_string(k));
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    at::Tensor img = at::arange(sizes[i].first * sizes[i].second, at::kLong).remainder(200).to(at::kByte)
                         .view({1, sizes[i].first, sizes[i].second});
    img[0][0][0] = static_cast<std::uint8_t>(i % 256);
    d.images.push_back(img);
    d.labels.push_back(static_cast<std::int64_t>(i) % classes);
  }
  return d;
}

}  // namespace

class TestBatching : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void fixedCoversEveryItemOncePerEpoch() {
    LabelledImages d = synthetic(std::vector<std::pair<std::int64_t, std::int64_t>>(50, {8, 8}));
    BatchingOptions o;
    o.batchSize = 10;
    o.height = o.width = 8;
    o.seed = 7;
    auto b = Batcher::create(d, o);
    QVERIFY2(b, b ? "" : b.error().message().c_str());
    QCOMPARE(b->stepsPerEpoch(), std::int64_t(5));
    std::multiset<std::int64_t> seen;
    for (std::int64_t s = 0; s < 5; ++s) {
      Batch batch = b->batch(s);
      QCOMPARE(batch.x.sizes().vec(), (std::vector<std::int64_t>{10, 1, 8, 8}));
      QVERIFY(batch.x.min().item<float>() >= -1.0f && batch.x.max().item<float>() <= 1.0f);
      for (std::int64_t i = 0; i < 10; ++i) {
        const std::int64_t idx = batch.indices[static_cast<std::size_t>(i)];
        seen.insert(idx);
        QCOMPARE(batch.labels[i].item<std::int64_t>(), idx % 3);
        // The pixel that encodes the index survives the conversion to [-1, 1].
        QCOMPARE(std::lround((batch.x[i][0][0][0].item<float>() + 1.0f) * 127.5f), long(idx));
      }
    }
    QCOMPARE(seen.size(), std::size_t(50));
    QCOMPARE(std::set<std::int64_t>(seen.begin(), seen.end()).size(), std::size_t(50));
    // A different epoch has a different order.
    QVERIFY(b->batch(5).indices != b->batch(0).indices);
  }

  void batchesDependOnlyOnSeedAndStep() {
    LabelledImages d = synthetic(std::vector<std::pair<std::int64_t, std::int64_t>>(40, {4, 4}));
    BatchingOptions o;
    o.batchSize = 7;  // batches run across epoch boundaries
    o.height = o.width = 4;
    o.flip = true;
    o.seed = 3;
    auto a = Batcher::create(d, o);
    auto b = Batcher::create(d, o);
    QVERIFY(a && b);
    for (std::int64_t s : {0, 5, 6, 11, 100}) {
      const Batch x = a->batch(s), y = b->batch(s);
      QCOMPARE(x.indices, y.indices);
      QVERIFY(at::equal(x.x, y.x));
    }
    // Reading out of order gives the same batches (nothing depends on iteration state).
    const Batch late = a->batch(11);
    (void)a->batch(2);
    QVERIFY(at::equal(late.x, a->batch(11).x));
    o.seed = 4;
    auto c = Batcher::create(d, o);
    QVERIFY(c->batch(0).indices != a->batch(0).indices);
  }

  void flipsMirrorTheImage() {
    LabelledImages d = synthetic(std::vector<std::pair<std::int64_t, std::int64_t>>(64, {4, 6}));
    BatchingOptions o;
    o.batchSize = 64;
    o.height = 4;
    o.width = 6;
    o.fit = "stretch";
    o.flip = true;
    auto b = Batcher::create(d, o);
    QVERIFY(b);
    const Batch batch = b->batch(0);
    std::int64_t flipped = 0;
    for (std::int64_t i = 0; i < 64; ++i) {
      const at::Tensor original =
          d.images[static_cast<std::size_t>(batch.indices[static_cast<std::size_t>(i)])].to(at::kFloat).div(127.5).sub(1.0);
      const bool f = batch.flipped[static_cast<std::size_t>(i)];
      flipped += f;
      QVERIFY(at::allclose(batch.x[i], f ? original.flip({2}) : original));
    }
    QVERIFY2(flipped > 16 && flipped < 48, "about half the images are flipped");
  }

  void fixedFitsOtherSizesIntoTheGrid() {
    LabelledImages d = synthetic({{20, 10}, {6, 30}, {12, 12}});
    for (const char* fit : {"pad", "stretch", "crop"}) {
      BatchingOptions o;
      o.batchSize = 3;
      o.height = o.width = 12;
      o.fit = fit;
      auto b = Batcher::create(d, o);
      QVERIFY(b);
      QCOMPARE(b->batch(0).x.sizes().vec(), (std::vector<std::int64_t>{3, 1, 12, 12}));
    }
    // Letterboxing keeps the aspect ratio: a 20×10 item becomes 12×6 centred on black.
    BatchingOptions o;
    o.batchSize = 3;
    o.height = o.width = 12;
    auto b = Batcher::create(d, o);
    for (std::int64_t i = 0; i < 3; ++i) {
      if (b->batch(0).indices[static_cast<std::size_t>(i)] != 0) continue;
      const at::Tensor x = b->batch(0).x[i][0];
      QCOMPARE(x.slice(1, 0, 3).max().item<float>(), -1.0f);  // left padding
      QCOMPARE(x.slice(1, 9, 12).max().item<float>(), -1.0f); // right padding
    }
    // A grid that is not a multiple of the patch size is refused with the nearest one.
    o.multiple = 5;
    auto bad = Batcher::create(d, o);
    QVERIFY(!bad);
    QVERIFY2(bad.error().message().find("multiple of the patch size 5") != std::string::npos, bad.error().message().c_str());
  }

  void bucketsKeepOneSizePerBatch() {
    const auto buckets = Batcher::makeBuckets(16, 16, 2, 4.0);
    QVERIFY(buckets.size() >= 5);
    for (const auto& [h, w] : buckets) {
      QCOMPARE(h % 2, std::int64_t(0));
      QCOMPARE(w % 2, std::int64_t(0));
      const double ratio = static_cast<double>(h) / static_cast<double>(w);
      QVERIFY(ratio >= 0.25 - 1e-9 && ratio <= 4.0 + 1e-9);
      QVERIFY(std::abs(static_cast<double>(h * w) - 256.0) / 256.0 < 0.35);
    }
    for (std::size_t i = 1; i < buckets.size(); ++i)
      QVERIFY(buckets[i - 1].first * buckets[i].second < buckets[i].first * buckets[i - 1].second);  // sorted by H/W

    std::vector<std::pair<std::int64_t, std::int64_t>> sizes;
    for (int i = 0; i < 30; ++i) sizes.push_back(i % 3 == 0 ? std::make_pair(28, 9) : i % 3 == 1 ? std::make_pair(10, 27) : std::make_pair(20, 20));
    LabelledImages d = synthetic(sizes);
    BatchingOptions o;
    o.mode = BatchMode::Buckets;
    o.batchSize = 4;
    o.height = o.width = 16;
    o.multiple = 2;
    auto b = Batcher::create(d, o);
    QVERIFY2(b, b ? "" : b.error().message().c_str());
    QCOMPARE(b->describe()["buckets"].size(), std::size_t(3));  // tall, wide, square
    std::set<std::int64_t> seen;
    for (std::int64_t s = 0; s < b->stepsPerEpoch(); ++s) {
      const Batch batch = b->batch(s);
      QVERIFY(batch.size() >= 1 && batch.size() <= 4);
      QCOMPARE(batch.x.size(0), batch.size());
      for (std::int64_t idx : batch.indices) {
        seen.insert(idx);
        const auto [h, w] = b->itemSize(idx);
        QCOMPARE(h, batch.x.size(2));
        QCOMPARE(w, batch.x.size(3));
        // Tall items land in tall buckets, wide in wide.
        if (idx % 3 == 0) QVERIFY(h > w);
        if (idx % 3 == 1) QVERIFY(w > h);
      }
    }
    QCOMPARE(seen.size(), std::size_t(30));  // no item lost (drop_last is off)
  }

  void packedKeepsTheTokenBudget() {
    std::vector<std::pair<std::int64_t, std::int64_t>> sizes;
    for (int i = 0; i < 40; ++i) sizes.push_back({6 + (i * 7) % 23, 5 + (i * 5) % 19});
    LabelledImages d = synthetic(sizes);
    BatchingOptions o;
    o.mode = BatchMode::Packed;
    o.batchSize = 100;
    o.multiple = 2;
    o.tokenBudget = 200;
    auto b = Batcher::create(d, o);
    QVERIFY2(b, b ? "" : b.error().message().c_str());
    std::set<std::int64_t> seen;
    for (std::int64_t s = 0; s < b->stepsPerEpoch(); ++s) {
      const Batch batch = b->batch(s);
      QVERIFY(!batch.x.defined());
      QCOMPARE(static_cast<std::int64_t>(batch.images.size()), batch.size());
      std::int64_t tokens = 0;
      for (const at::Tensor& img : batch.images) {
        QCOMPARE(img.size(1) % 2, std::int64_t(0));
        QCOMPARE(img.size(2) % 2, std::int64_t(0));
        tokens += (img.size(1) / 2) * (img.size(2) / 2);
      }
      QVERIFY(tokens <= 200);
      for (std::int64_t idx : batch.indices) seen.insert(idx);
    }
    QCOMPARE(seen.size(), std::size_t(40));
    // Native sizes are kept up to rounding to the patch size.
    const auto [h, w] = b->itemSize(3);
    QVERIFY(std::abs(h - sizes[3].first) <= 1 && std::abs(w - sizes[3].second) <= 1);
    // An image bigger than the budget is refused, naming what to change.
    o.tokenBudget = 10;
    auto bad = Batcher::create(d, o);
    QVERIFY(!bad);
    QVERIFY(bad.error().message().find("token_budget") != std::string::npos);
  }

  void heldOutSplitIsDisjointAndSeeded() {
    LabelledImages d = synthetic(std::vector<std::pair<std::int64_t, std::int64_t>>(30, {3, 3}));
    auto [kept, held] = holdOut(d, 6, 1);
    QCOMPARE(kept.size(), std::int64_t(24));
    QCOMPARE(held.size(), std::int64_t(6));
    std::set<int> a, b;
    for (const auto& t : kept.images) a.insert(t[0][0][0].item<int>());
    for (const auto& t : held.images) b.insert(t[0][0][0].item<int>());
    for (int v : b) QVERIFY(!a.count(v));
    auto again = holdOut(d, 6, 1);
    QVERIFY(at::equal(again.second.images[0], held.images[0]));
  }

  void batchModeNames() {
    QVERIFY(parseBatchMode("buckets").value() == BatchMode::Buckets);
    QVERIFY(!parseBatchMode("bucket"));
    QCOMPARE(QString::fromStdString(batchModeName(BatchMode::Packed)), QStringLiteral("packed"));
  }
};

TESSERA_TEST_MAIN(TestBatching, Guiless)
#include "test_batching.moc"
