// SPDX-License-Identifier: Apache-2.0
// The two stages of a latent model trained here: an autoencoder run (model.kind
// "autoencoder": the loss falls, validation reports reconstruction error, the run resumes
// exactly, the file it writes decodes and carries a measured scale factor and preview
// map, reconstruction grids), then a backbone trained on its latents (data.latents: the
// data set is encoded once into a cache reused by the next run, a cache of another
// autoencoder or a damaged one is encoded again, the model file carries the autoencoder
// and samples pictures, --init keeps it), and the configurations refused naming the field.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/config/config.h"
#include "core/data/batching.h"
#include "core/formats/safetensors.h"
#include "engine/generation.h"
#include "engine/latent_cache.h"
#include "engine/model_file.h"
#include "engine/training.h"
#include "tests/support/test_main.h"
#include "tests/support/training_run.h"

#include <ATen/ATen.h>
#include <torch/utils.h>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>
#endif

using namespace tessera;

namespace {

nlohmann::json tinyAutoencoderRun(std::int64_t steps, std::int64_t seed = 1) {
  return {
      {"model",
       {{"kind", "autoencoder"},
        {"autoencoder", "kl"},
        {"config",
         {{"ch", 8},
          {"ch_mult", {1, 2}},
          {"num_res_blocks", 1},
          {"z_channels", 2},
          {"embed_dim", 2},
          {"norm_groups", 4}}}}},
      {"data", {{"source", "fashion-mnist"}, {"batch", 16}, {"size", {28, 28}}, {"validation", 32}, {"flip", true}}},
      {"train", {{"steps", steps}, {"lr", 2e-3}, {"warmup", 2}, {"ema", 0.9}, {"limit", 256}, {"seed", seed}}},
      {"log", {{"every", 1}}},
      {"checkpoint", {{"every", 3}}},
      {"validation", {{"every", 3}}},
      {"samples", {{"every", 3}}}};
}

nlohmann::json tinyLatentRun(const std::string& autoencoder, const std::string& cache, std::int64_t steps) {
  return {
      {"model",
       {{"backbone", "sit"},
        {"config", {{"patch_size", 1}, {"hidden_size", 32}, {"depth", 1}, {"num_heads", 2}, {"learn_sigma", false}}},
        {"process", {{"kind", "interpolant"}, {"path", "linear"}, {"prediction", "velocity"}}},
        {"autoencoder", autoencoder}}},
      {"data",
       {{"source", "fashion-mnist"},
        {"batch", 16},
        {"size", {28, 28}},
        {"validation", 16},
        {"flip", true},
        {"latents", cache}}},
      {"train", {{"steps", steps}, {"lr", 1e-3}, {"warmup", 1}, {"ema", 0.9}, {"limit", 64}}},
      {"log", {{"every", 1}}},
      {"checkpoint", {{"every", 2}}},
      {"validation", {{"every", 2}, {"timesteps", 2}}},
      {"samples", {{"every", 0}}}};
}

using tessera::test::trainRun;
using tessera::test::writeJsonFile;

// The shipped kl-fashion's reconstruction error on the first 512 test images (README, "Shipped models").
constexpr double kKlFashionPsnr = 25.66, kKlFashionL1 = 0.0486;

#define REQUIRE_RUN(run) QVERIFY2((run).summary, (run).summary ? "" : (run).summary.error().message().c_str())

}  // namespace

class TestLatentTraining : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void autoencoderRunLearnsReportsAndWritesAnAutoencoder() {
    QTemporaryDir dir;
    nlohmann::json c = tinyAutoencoderRun(40);
    c["train"]["limit"] = 16;  // one batch, again and again
    c["checkpoint"]["every"] = 20;
    c["validation"]["every"] = 20;
    c["samples"]["every"] = 40;
    const std::string out = dir.path().toStdString() + "/ae";
    const tessera::test::TrainingRun run = trainRun(writeJsonFile(dir, "ae.json", c), out);
    REQUIRE_RUN(run);
    const auto l = run.losses();
    QCOMPARE(l.size(), std::size_t(40));
    const double first = (l[0] + l[1] + l[2]) / 3, last = (l[37] + l[38] + l[39]) / 3;
    QVERIFY2(last < 0.6 * first, qPrintable(QStringLiteral("loss %1 -> %2").arg(first).arg(last)));
    // Validation reports the reconstruction error of the network and of its EMA.
    const nlohmann::json v = run.last("validation");
    QVERIFY2(v.contains("l1_ema") && v.contains("psnr_ema") && v.contains("mse"), v.dump().c_str());
    QCOMPARE(v["images"].get<std::int64_t>(), std::int64_t{32});
    const double mse = v["mse_ema"].get<double>();
    QVERIFY(mse > 0 && std::abs(v["psnr_ema"].get<double>() - 10 * std::log10(4 / mse)) < 1e-9);
    // A reconstruction grid: two rows of eight validation images, each over its reconstruction.
    const nlohmann::json grid = run.last("samples");
    QCOMPARE(grid["kind"].get<std::string>(), std::string("reconstructions"));
    QVERIFY(std::filesystem::exists(grid["path"].get<std::string>()));
    // The model file is an autoencoder file: it loads, decodes, and carries the scale factor
    // measured on the data (1 / the latents' standard deviation) and a fitted preview map.
    auto ae = loadAutoencoderFile(out + "/model.safetensors");
    QVERIFY2(ae, ae ? "" : ae.error().message().c_str());
    QCOMPARE(ae->network->downsampling(), std::int64_t{2});
    QCOMPARE(ae->network->imageChannels(), std::int64_t{1});
    QVERIFY(ae->preview.defined());
    QCOMPARE(ae->preview.sizes().vec(), (std::vector<std::int64_t>{1, 3}));
    QVERIFY(ae->scaling.scale != 1.0 && ae->scaling.scale > 0);
    QCOMPARE(ae->description["source"]["training"]["step"].get<std::int64_t>(), std::int64_t{40});
    const at::Tensor z = at::zeros({2, 2, 14, 14});
    QCOMPARE(ae->network->decode(z).sizes().vec(), (std::vector<std::int64_t>{2, 1, 28, 28}));
  }

  void autoencoderRunResumesExactly() {
    QTemporaryDir dir;
    const std::string full = writeJsonFile(dir, "full.json", tinyAutoencoderRun(6));
    const std::string half = writeJsonFile(dir, "half.json", tinyAutoencoderRun(3));
    const std::string a = dir.path().toStdString() + "/a", b = dir.path().toStdString() + "/b";
    const tessera::test::TrainingRun straight = trainRun(full, a);
    REQUIRE_RUN(straight);
    const tessera::test::TrainingRun firstHalf = trainRun(half, b);
    REQUIRE_RUN(firstHalf);
    const tessera::test::TrainingRun resumed = trainRun(full, b, /*resume=*/true);
    REQUIRE_RUN(resumed);
    const auto whole = straight.losses(), tail = resumed.losses();
    QCOMPARE(tail.size(), std::size_t(3));
    for (std::size_t i = 0; i < 3; ++i) QCOMPARE(tail[i], whole[i + 3]);
    QCOMPARE(resumed.last("validation")["l1_ema"].get<double>(), straight.last("validation")["l1_ema"].get<double>());
  }

  void latentRunCachesItsLatentsAndMakesPictures() {
    QTemporaryDir dir;
    const std::string root = dir.path().toStdString(), cache = root + "/cache";
    QVERIFY(trainRun(writeJsonFile(dir, "ae.json", tinyAutoencoderRun(3)), root + "/ae").summary);
    const std::string ae = root + "/ae/model.safetensors";
    const std::string config = writeJsonFile(dir, "latent.json", tinyLatentRun(ae, cache, 4));

    const tessera::test::TrainingRun first = trainRun(config, root + "/one");
    REQUIRE_RUN(first);
    const nlohmann::json latents = first.first("start")["latents"];
    QCOMPARE(latents["train"]["reused"].get<bool>(), false);
    QCOMPARE(latents["train"]["items"].get<std::int64_t>(), std::int64_t{64});
    QCOMPARE(latents["validation"]["items"].get<std::int64_t>(), std::int64_t{16});
    // The cache keeps the posterior of every item and of its mirror image.
    auto file = SafetensorsFile::open(latents["train"]["path"].get<std::string>());
    QVERIFY2(file, file ? "" : file.error().message().c_str());
    for (const char* name : {"mean", "std", "mean_flipped", "std_flipped"}) {
      QVERIFY2(file->contains(name), name);
      QCOMPARE(file->find(name)->shape, (std::vector<std::int64_t>{64, 2, 14, 14}));
    }
    QVERIFY(!at::equal(*file->load("mean"), *file->load("mean_flipped")));

    // The next run reuses it and trains the same steps (the cache holds what encoding gives).
    const tessera::test::TrainingRun second = trainRun(config, root + "/two");
    REQUIRE_RUN(second);
    QCOMPARE(second.first("start")["latents"]["train"]["reused"].get<bool>(), true);
    QCOMPARE(second.first("start")["latents"]["validation"]["reused"].get<bool>(), true);
    QCOMPARE(second.losses(), first.losses());

    // The model file carries the autoencoder: it samples 28×28 one-channel pictures.
    auto model = loadModelFile(root + "/two/model.safetensors");
    QVERIFY2(model, model ? "" : model.error().message().c_str());
    QVERIFY(model->autoencoder.has_value());
    QCOMPARE(model->description["data"]["kind"].get<std::string>(), std::string("latent"));
    QCOMPARE(model->description["autoencoder"]["sha256"].get<std::string>(),
             latents["autoencoder_sha256"].get<std::string>());
    GenerationRequest g;
    g.classes = {0, 3};
    g.sampler = "euler";
    g.options.steps = 2;
    auto out = generate(*model, g);
    QVERIFY2(out, out ? "" : out.error().message().c_str());
    QCOMPARE(out->samples.sizes().vec(), (std::vector<std::int64_t>{2, 1, 28, 28}));
    QCOMPARE(out->latentSamples.sizes().vec(), (std::vector<std::int64_t>{2, 2, 14, 14}));

    // A damaged cache file is encoded again, with a warning, and gives the same run.
    std::ofstream(latents["train"]["path"].get<std::string>(), std::ios::trunc) << "not a safetensors file";
    const tessera::test::TrainingRun third = trainRun(config, root + "/three");
    REQUIRE_RUN(third);
    QCOMPARE(third.first("start")["latents"]["train"]["reused"].get<bool>(), false);
    QVERIFY2(third.first("warning")["message"].get<std::string>().find("not reused") != std::string::npos,
             third.first("warning").dump().c_str());
    QCOMPARE(third.losses(), first.losses());

    // Another autoencoder (another seed) has other latents: a cache of its own.
    QVERIFY(trainRun(writeJsonFile(dir, "ae2.json", tinyAutoencoderRun(3, 2)), root + "/ae2").summary);
    const tessera::test::TrainingRun fourth = trainRun(
        writeJsonFile(dir, "latent2.json", tinyLatentRun(root + "/ae2/model.safetensors", cache, 2)), root + "/four");
    REQUIRE_RUN(fourth);
    const nlohmann::json other = fourth.first("start")["latents"];
    QCOMPARE(other["train"]["reused"].get<bool>(), false);
    QVERIFY(other["train"]["path"] != latents["train"]["path"]);
    QVERIFY(other["autoencoder_sha256"] != latents["autoencoder_sha256"]);

    // A fine-tune of the latent model keeps its autoencoder without being told.
    nlohmann::json tune = tinyLatentRun(ae, cache, 2);
    tune["model"] = {{"backbone", "sit"}};
    tune["data"].erase("latents");
    tune["data"]["latents"] = cache;
    const tessera::test::TrainingRun tuned =
        trainRun(writeJsonFile(dir, "tune.json", tune), root + "/tuned", false, root + "/two/model.safetensors");
    REQUIRE_RUN(tuned);
    QCOMPARE(tuned.first("start")["latents"]["train"]["reused"].get<bool>(), true);
    auto tunedModel = loadModelFile(root + "/tuned/model.safetensors");
    QVERIFY2(tunedModel, tunedModel ? "" : tunedModel.error().message().c_str());
    QVERIFY(tunedModel->autoencoder.has_value());
  }

  void latentRunResumesExactly() {
    QTemporaryDir dir;
    const std::string root = dir.path().toStdString(), cache = root + "/cache";
    QVERIFY(trainRun(writeJsonFile(dir, "ae.json", tinyAutoencoderRun(3)), root + "/ae").summary);
    const std::string ae = root + "/ae/model.safetensors";
    const std::string full = writeJsonFile(dir, "full.json", tinyLatentRun(ae, cache, 4));
    const std::string half = writeJsonFile(dir, "half.json", tinyLatentRun(ae, cache, 2));
    const tessera::test::TrainingRun straight = trainRun(full, root + "/a");
    REQUIRE_RUN(straight);
    QVERIFY(trainRun(half, root + "/b").summary);
    const tessera::test::TrainingRun resumed = trainRun(full, root + "/b", /*resume=*/true);
    REQUIRE_RUN(resumed);
    const auto whole = straight.losses(), tail = resumed.losses();
    QCOMPARE(tail.size(), std::size_t(2));
    QCOMPARE(tail[0], whole[2]);
    QCOMPARE(tail[1], whole[3]);
  }

  // The shipped autoencoder carries the configuration beside it (resources/models/kl-fashion.json),
  // with the channels the data decided; its recorded validation error is the README's.
  void shippedAutoencoderIsItsConfigurations() {
    const std::string dir = TESSERA_SOURCE_DIR "/resources/models/";
    auto ae = loadAutoencoderFile(dir + "kl-fashion.safetensors");
    QVERIFY2(ae, ae ? "" : ae.error().message().c_str());
    auto c = Config::fromFile(dir + "kl-fashion.json");
    QVERIFY2(c, c ? "" : c.error().message().c_str());
    auto resolved = checkTrainingConfig(*c);
    QVERIFY2(resolved, resolved ? "" : resolved.error().message().c_str());
    nlohmann::json recorded = ae->description["source"]["training"]["config"];
    for (const char* key : {"in_channels", "out_channels"}) recorded["model"]["config"].erase(key);
    QVERIFY2(*resolved == recorded, (resolved->dump() + " vs " + recorded.dump()).c_str());
    QCOMPARE(ae->network->downsampling(), std::int64_t{2});
    QCOMPARE(ae->network->latentChannels(), std::int64_t{1});
    // Its reconstruction error on the first 512 test images, from the posterior means: the
    // README's figures.
    DataSpec spec;
    spec.split = "test";
    auto test = loadLabelledImages(spec);
    QVERIFY2(test, test ? "" : test.error().message().c_str());
    std::vector<at::Tensor> items(test->images.begin(), test->images.begin() + 512);
    const at::Tensor x = at::stack(items).to(at::kFloat).div(127.5).sub(1.0);
    torch::NoGradGuard noGrad;
    const at::Tensor xr = ae->network->decode(ae->network->encode(x).mean);
    const double l1 = (xr - x).abs().mean().item<double>(), mse = (xr - x).pow(2).mean().item<double>();
    const double psnr = 10 * std::log10(4 / mse);
    std::printf("{\"event\":\"kl_fashion_reconstruction\",\"images\":512,\"l1\":%.4f,\"mse\":%.5f,\"psnr\":%.2f}\n", l1,
                mse, psnr);
    QVERIFY2(std::abs(psnr - kKlFashionPsnr) < 0.01, qPrintable(QString::number(psnr)));
    QVERIFY2(std::abs(l1 - kKlFashionL1) < 0.0001, qPrintable(QString::number(l1)));
  }

  void badLatentConfigurationsAreRefusedNamingTheField_data() {
    QTest::addColumn<QString>("changeName");
    QTest::addColumn<QString>("expected");
    QTest::newRow("no such autoencoder") << "missing-file"
                                         << "model.autoencoder";
    QTest::newRow("latents without an autoencoder") << "latents-alone"
                                                    << "data.latents";
    QTest::newRow("latents false") << "latents-false"
                                   << "data.latents";
    QTest::newRow("packed latents") << "packed"
                                    << "data.batching";
    QTest::newRow("a VQ autoencoder run") << "vq-run"
                                          << "model.autoencoder";
    QTest::newRow("a three-channel autoencoder on grey data") << "rgb"
                                                              << "channels";
    QTest::newRow("odd size for f2") << "odd-size"
                                     << "data.size";
    QTest::newRow("unknown loss field") << "loss-field"
                                        << "model.loss";
  }
  void badLatentConfigurationsAreRefusedNamingTheField() {
    QFETCH(QString, changeName);
    QFETCH(QString, expected);
    const std::string change = changeName.toStdString();
    QTemporaryDir dir;
    const std::string root = dir.path().toStdString();
    QVERIFY(trainRun(writeJsonFile(dir, "ae.json", tinyAutoencoderRun(1)), root + "/ae").summary);
    nlohmann::json c = tinyLatentRun(root + "/ae/model.safetensors", root + "/cache", 2);
    if (change == "missing-file") c["model"]["autoencoder"] = root + "/nothing.safetensors";
    if (change == "latents-alone") c["model"].erase("autoencoder");
    if (change == "latents-false") c["data"]["latents"] = false;
    if (change == "packed") c["data"]["batching"] = "packed";
    if (change == "vq-run") c = tinyAutoencoderRun(2), c["model"]["autoencoder"] = "vq";
    if (change == "rgb") {
      nlohmann::json rgb = tinyAutoencoderRun(1);
      rgb["model"]["config"]["in_channels"] = 3;
      c = rgb;
    }
    if (change == "odd-size") c["data"]["size"] = {27, 27};
    if (change == "loss-field") c = tinyAutoencoderRun(2), c["model"]["loss"] = {{"perceptual", 1.0}};
    const tessera::test::TrainingRun run = trainRun(writeJsonFile(dir, "bad.json", c), root + "/run");
    QVERIFY(!run.summary);
    QVERIFY2(run.summary.error().message().find(expected.toStdString()) != std::string::npos,
             run.summary.error().message().c_str());
    QVERIFY(!std::filesystem::exists(root + "/run/model.safetensors"));
  }
};

TESSERA_TEST_MAIN(TestLatentTraining, Guiless)
#include "test_latent_training.moc"
