// SPDX-License-Identifier: Apache-2.0
// The U-Net (LDM's and ADM's UNetModel) against the official code: forward passes of three
// tiny random-weight networks, an LDM checkpoint imported whole (U-Net, class embedder,
// VQ first stage, schedule) and the official DDIMSampler's trajectory, quirk included.
// Fixtures: tests/data/make_unet_fixtures.py.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/formats/safetensors.h"
#include "core/samplers/sampler.h"
#include "core/samplers/sampling_space.h"
#include "core/samplers/time_grid.h"
#include "engine/checkpoint_import.h"
#include "engine/generation.h"
#include "engine/model_file.h"
#include "models/probe.h"
#include "models/registry.h"
#include "models/state_dict.h"
#include "models/unet/unet.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QTemporaryDir>
#include <QtTest>
#include <torch/csrc/autograd/grad_mode.h>

#include <map>
#endif

using namespace tessera;

namespace {

std::string unetData(const std::string& name) { return std::string(TESSERA_TEST_DATA_DIR) + "/unet/" + name; }

std::map<std::string, at::Tensor> unetTensors(const std::string& name) {
  auto file = SafetensorsFile::open(unetData(name));
  if (!file) qFatal("%s", file.error().message().c_str());
  auto all = file->loadAll();
  if (!all) qFatal("%s", all.error().message().c_str());
  return {all->begin(), all->end()};
}

/// max |got − expected| / max |expected|, printed (the README quotes these per BLAS kernel).
double unetRelError(const at::Tensor& got, const at::Tensor& expected) {
  const double e = (got.to(at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>() /
                   expected.to(at::kDouble).abs().max().item<double>();
  qInfo("relative error %.3g", e);
  return e;
}

/// Imports a fixture as `tessera-cli import` does, writes the model file and loads it.
LoadedModel importUNetFixture(const ModelImportRequest& request, const QTemporaryDir& dir,
                              ModelImport* seen = nullptr) {
  auto imported = importModel(request);
  if (!imported) qFatal("%s", imported.error().message().c_str());
  const std::string path = dir.filePath(QStringLiteral("imported.safetensors")).toStdString();
  if (auto ok = writeImport(path, *imported); !ok) qFatal("%s", ok.error().message().c_str());
  if (seen) *seen = *imported;
  auto loaded = loadModelFile(path);
  if (!loaded) qFatal("%s", loaded.error().message().c_str());
  return std::move(*loaded);
}

UNetImpl& unetOf(const LoadedModel& model) {
  auto* unet = dynamic_cast<UNetImpl*>(model.backbone.get());
  if (!unet) qFatal("not a U-Net");
  return *unet;
}

ModelImportRequest ldmCinRequest() {
  ModelImportRequest r;
  r.in = unetData("ldm_cin.ckpt");
  r.from = "ldm";
  r.heads = 1;
  r.imageSize = 8;
  return r;
}

}  // namespace

class TestUNet : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void initTestCase() { at::manual_seed(0); }

  // LDM's cin256-v2 in miniature: SpatialTransformers with the class embedder's context,
  // imported from a LatentDiffusion checkpoint with its VQ first stage and schedule.
  void ldmCheckpointMatchesOfficial() {
    QTemporaryDir dir;
    ModelImport seen;
    LoadedModel model = importUNetFixture(ldmCinRequest(), dir, &seen);
    torch::NoGradGuard noGrad;
    auto io = unetTensors("ldm_cin_io.safetensors");
    UNetImpl& unet = unetOf(model);
    const at::Tensor out = unet.forwardTensors(io["x"], io["t"], io["y"]);
    QVERIFY2(unetRelError(out, io["out"]) < 1e-5, qPrintable(QString::number(unetRelError(out, io["out"]))));
    // The class embedder's output is the official context.
    QVERIFY(unetRelError(unet.classContext(io["y"]), io["context"]) < 1e-6);
    // A non-square grid.
    const at::Tensor wide = unet.forwardTensors(io["x_wide"], io["t_wide"], io["y_wide"]);
    QVERIFY2(unetRelError(wide, io["out_wide"]) < 1e-5,
             qPrintable(QString::number(unetRelError(wide, io["out_wide"]))));
    // A four-token context, so that the cross-attention's q and k matter.
    const at::Tensor four = unet.forwardWithContext(io["x"], io["t"], io["context4"], io["y"]);
    QVERIFY2(unetRelError(four, io["out_context4"]) < 1e-5,
             qPrintable(QString::number(unetRelError(four, io["out_context4"]))));

    // Everything else the checkpoint holds: the first stage, the schedule, the classes.
    QVERIFY(model.autoencoder);
    QCOMPARE(QString::fromStdString(model.description["autoencoder"].value("kind", "")), QStringLiteral("vq"));
    QCOMPARE(model.description["data"].value("channels", 0), 3);
    const nlohmann::json& process = model.description["process"];
    QCOMPARE(QString::fromStdString(process.value("schedule", "")), QStringLiteral("scaled_linear"));
    QCOMPARE(process.value("beta_start", 0.0), 0.0015);
    QCOMPARE(process.value("beta_end", 0.0), 0.0195);
    QCOMPARE(process.value("learn_sigma", true), false);
    QCOMPARE(model.description["classes"].value("count", 0), 10);
    QCOMPARE(model.description["classes"].value("null_class", false), true);
    const SamplingDefaults defaults = SamplingDefaults::of(model);
    QCOMPARE(QString::fromStdString(defaults.sampler), QStringLiteral("ddim"));
    QCOMPARE(QString::fromStdString(defaults.gridFor("ddim", "default")), QStringLiteral("ldm"));
    QCOMPARE(QString::fromStdString(defaults.gridFor("euler", "default")), QStringLiteral("default"));
    QCOMPARE(QString::fromStdString(defaults.gridFor("ddim", "uniform")), QStringLiteral("uniform"));
    // The schedule the process builds is the checkpoint's alphas_cumprod.
    auto ckpt = readCheckpointStateDict(unetData("ldm_cin.ckpt"));
    QVERIFY(ckpt);
    at::Tensor official;
    for (const auto& [name, t] : ckpt->tensors)
      if (name == "alphas_cumprod") official = t;
    QVERIFY(official.defined());
    const auto& diffusion = *model.process->diffusion;
    QVERIFY(unetRelError(diffusion.alphasCumprod(), official) < 1e-6);
  }

  // The official DDIMSampler (S = 10, η = 0, guidance 3 with the null class through the
  // class embedder): its timesteps are the uniform grid plus one and its last step ends
  // at ᾱ₀, not at the data. `sample --sampler ddim` takes that grid from the model file.
  void ldmDdimTrajectory() {
    QTemporaryDir dir;
    LoadedModel model = importUNetFixture(ldmCinRequest(), dir);
    auto fx = unetTensors("ldm_cin_ddim.safetensors");
    const SamplingDefaults defaults = SamplingDefaults::of(model);
    for (double scale : {3.0, 1.0}) {
      GenerationRequest r;
      r.classes = {4, 9};
      r.sampler = defaults.sampler;
      r.options.steps = 10;
      r.options.grid = defaults.gridFor(r.sampler, "default");
      r.guidance.scale = scale;
      r.noise = fx["x_T"];
      r.recordTrajectory = true;
      auto result = generate(model, r);
      QVERIFY2(result, result ? "" : result.error().message().c_str());
      // The network saw the official timesteps, from 901 down to 1.
      const at::Tensor ts = fx["timesteps"];
      QCOMPARE(static_cast<std::int64_t>(result->times.size()), ts.numel() + 1);
      for (std::int64_t i = 0; i < ts.numel(); ++i)
        QVERIFY2(std::abs(result->times[static_cast<std::size_t>(i)] - ts[ts.numel() - 1 - i].item<double>()) < 1e-6,
                 qPrintable(QString::number(result->times[static_cast<std::size_t>(i)])));
      QVERIFY(std::abs(result->times.back()) < 1e-6);  // ends at step 0
      const at::Tensor expected = scale == 3.0 ? fx["samples"] : fx["samples_noguide"];
      const double err = unetRelError(result->latentSamples, expected);
      QVERIFY2(err < 1e-4, qPrintable(QStringLiteral("scale %1: %2").arg(scale).arg(err)));
      if (scale == 3.0) {
        // Every intermediate state and data estimate of the official sampler.
        QCOMPARE(result->trajectoryX.size(0), fx["x_inter"].size(0));
        QVERIFY(unetRelError(result->trajectoryX, fx["x_inter"]) < 1e-4);
        QVERIFY(unetRelError(result->trajectoryX0, fx["pred_x0"].narrow(0, 1, 10)) < 1e-4);
        // The samples were decoded by the checkpoint's own first stage.
        QCOMPARE(result->samples.size(1), 3);
      }
    }
    // Without the LDM grid the trajectory is another one (the quirk matters).
    GenerationRequest plain;
    plain.classes = {4, 9};
    plain.options.steps = 10;
    plain.options.grid = "default";
    plain.guidance.scale = 3.0;
    plain.noise = fx["x_T"];
    auto other = generate(model, plain);
    QVERIFY(other);
    QVERIFY(unetRelError(other->latentSamples, fx["samples"]) > 1e-2);
  }

  // LDM's UNetModel with AttentionBlocks: label_emb, two heads down and one up (legacy),
  // the new attention order, average-pool down- and conv-free up-sampling.
  void ldmAttentionBlocksMatchOfficial() {
    QTemporaryDir dir;
    ModelImportRequest r;
    r.in = unetData("ldm_attn.pt");
    r.from = "unet";
    r.heads = 2;
    r.headsUpsample = 1;
    r.newAttentionOrder = true;
    r.imageSize = 8;
    LoadedModel model = importUNetFixture(r, dir);
    const UNetConfig& c = unetOf(model).config();
    QVERIFY(!c.convResample);
    QVERIFY(!c.resblockUpdown);
    QVERIFY(!c.useScaleShiftNorm);
    QCOMPARE(c.classConditioning, std::string("label_emb"));
    std::vector<std::int64_t> heads;
    for (const auto& site : unetOf(model).attentionSites()) heads.push_back(site.heads);
    QCOMPARE(heads, (std::vector<std::int64_t>{2, 2, 2, 1, 1, 1, 1}));
    torch::NoGradGuard noGrad;
    auto io = unetTensors("ldm_attn_io.safetensors");
    const at::Tensor out = unetOf(model).forwardTensors(io["x"], io["t"], io["y"]);
    QVERIFY2(unetRelError(out, io["out"]) < 1e-5, qPrintable(QString::number(unetRelError(out, io["out"]))));
    const at::Tensor wide = unetOf(model).forwardTensors(io["x_wide"], io["t_wide"], io["y_wide"]);
    QVERIFY2(unetRelError(wide, io["out_wide"]) < 1e-5,
             qPrintable(QString::number(unetRelError(wide, io["out_wide"]))));
  }

  // guided-diffusion's create_model flags: heads of 16 channels, residual resampling,
  // scale-shift norm, learned sigma, 1000 classes without a null class.
  void admMatchesOfficial() {
    QTemporaryDir dir;
    ModelImportRequest r;
    r.in = unetData("adm_cond.pt");
    r.from = "adm";
    r.headChannels = 16;
    r.imageSize = 16;
    r.attentionResolutions = "8,4";
    LoadedModel model = importUNetFixture(r, dir);
    const UNetConfig& c = unetOf(model).config();
    QVERIFY(c.learnSigma && c.resblockUpdown && c.useScaleShiftNorm);
    QCOMPARE(c.numClasses, std::int64_t{1000});
    QVERIFY(!c.hasNullClass());
    QCOMPARE(c.channelMult, (std::vector<double>{1, 1, 2}));
    QVERIFY(model.process->diffusion && model.process->diffusion->config().learnSigma);
    QCOMPARE(QString::fromStdString(model.process->diffusion->config().schedule), QStringLiteral("linear"));
    torch::NoGradGuard noGrad;
    auto io = unetTensors("adm_cond_io.safetensors");
    const at::Tensor out = unetOf(model).forwardTensors(io["x"], io["t"], io["y"]);
    QVERIFY2(unetRelError(out, io["out"]) < 1e-5, qPrintable(QString::number(unetRelError(out, io["out"]))));
    const at::Tensor wide = unetOf(model).forwardTensors(io["x_wide"], io["t_wide"], io["y_wide"]);
    QVERIFY2(unetRelError(wide, io["out_wide"]) < 1e-5,
             qPrintable(QString::number(unetRelError(wide, io["out_wide"]))));
  }

  // What the shapes cannot tell is asked for; what does not fit is refused, named.
  void importRefusals() {
    ModelImportRequest r;
    r.in = unetData("adm_cond.pt");
    r.from = "adm";
    auto noHeads = importModel(r);
    QVERIFY(!noHeads);
    QVERIFY2(noHeads.error().message().find("--num-head-channels") != std::string::npos,
             noHeads.error().message().c_str());
    r.headChannels = 16;
    r.imageSize = 16;
    r.attentionResolutions = "16,8";
    auto wrongAttention = importModel(r);
    QVERIFY(!wrongAttention);
    QVERIFY2(wrongAttention.error().message().find("have attention at 8,4") != std::string::npos,
             wrongAttention.error().message().c_str());
    r.attentionResolutions.reset();
    r.headChannels = 24;
    auto badHeads = importModel(r);
    QVERIFY(!badHeads);
    QVERIFY2(badHeads.error().message().find("do not divide") != std::string::npos, badHeads.error().message().c_str());
    ModelImportRequest ldm;
    ldm.in = unetData("adm_cond.pt");
    ldm.from = "ldm";
    ldm.headChannels = 16;
    auto notLdm = importModel(ldm);
    QVERIFY(!notLdm);
    QVERIFY2(notLdm.error().message().find("model.diffusion_model") != std::string::npos,
             notLdm.error().message().c_str());
    // A tensor missing from a state dict is named.
    auto sd = readCheckpointStateDict(unetData("adm_cond.pt"));
    QVERIFY(sd);
    NamedTensors cut;
    for (const auto& e : sd->tensors)
      if (e.first != "output_blocks.2.1.qkv.weight") cut.push_back(e);
    ImportRequest request;
    request.headChannels = 16;
    request.imageSize = 16;
    auto missing = backboneRegistry().find("unet")->importer.convert(cut, request);
    QVERIFY(!missing);
    QVERIFY2(missing.error().message().find("output_blocks.2.1.qkv.weight") != std::string::npos,
             missing.error().message().c_str());
    // Recognised without --from.
    QCOMPARE(backboneRegistry().recognise(shapesOf(sd->tensors)), std::vector<std::string>{"unet"});
  }

  // unetStateShapes (used to check checkpoints before building) equals the module's.
  void stateShapesMatchTheModule_data() {
    QTest::addColumn<QString>("config");
    QTest::newRow("LDM transformer, depth 2") << QStringLiteral(
        R"({"image_size":8,"in_channels":4,"out_channels":4,"model_channels":32,"num_res_blocks":2,"channel_mult":[1,2],"attention_resolutions":[1,2],"num_classes":5,"context_dim":8,"transformer_depth":2,"num_head_channels":16})");
    QTest::newRow("ADM-512-like, half-width first level") << QStringLiteral(
        R"({"image_size":16,"in_channels":3,"out_channels":6,"learn_sigma":true,"model_channels":64,"num_res_blocks":1,"channel_mult":[0.5,1,2],"attention_resolutions":[2,4],"num_classes":7,"class_conditioning":"label_emb","class_dropout_prob":0,"use_spatial_transformer":false,"context_dim":0,"num_head_channels":16,"use_scale_shift_norm":true,"resblock_updown":true})");
    QTest::newRow("unconditional, pooled") << QStringLiteral(
        R"({"image_size":8,"in_channels":1,"out_channels":1,"model_channels":32,"num_res_blocks":1,"channel_mult":[1,1,2],"attention_resolutions":[],"class_conditioning":"none","use_spatial_transformer":false,"context_dim":0,"conv_resample":false})");
  }
  void stateShapesMatchTheModule() {
    QFETCH(QString, config);
    const Config cfg = Config::fromJson(nlohmann::json::parse(config.toStdString()), "test");
    auto c = UNetConfig::fromConfig(cfg, "", UNetConfig());
    QVERIFY2(c, c ? "" : c.error().message().c_str());
    UNetImpl net(*c);
    auto expected = unetStateShapes(*c), actual = shapesOf(stateDict(net));
    std::sort(expected.begin(), expected.end());
    std::sort(actual.begin(), actual.end());
    QCOMPARE(actual, expected);
    // It runs, on a grid of another size too, and a new network outputs zero (zeroed out conv).
    torch::NoGradGuard noGrad;
    net.eval();
    const std::int64_t m = c->sizeMultiple();
    const at::Tensor x = at::randn({2, c->inChannels, 2 * m, 3 * m});
    const at::Tensor out = net.forwardTensors(x, at::tensor({3, 700}), at::tensor({0, 0}));
    QCOMPARE(out.sizes().vec(), (std::vector<std::int64_t>{2, c->outputChannels(), 2 * m, 3 * m}));
    QCOMPARE(out.abs().max().item<double>(), 0.0);
  }

  // The memory estimate counts what ADM's forward keeps: every input block's output for
  // the skips, plus the widest layer's working tensors (six of its size). Here, at 8×8:
  // skips conv_in 32·64, res 32·64, down 32·16, res 64·16 = 5632 values; the widest layer
  // is the first full-size output ResBlock, 64 + 32 channels in: 6·96·64 = 36864.
  void activationEstimateCountsTheSkips() {
    const Config cfg = Config::fromJson(
        nlohmann::json::parse(
            R"({"image_size":8,"in_channels":1,"out_channels":1,"model_channels":32,"num_res_blocks":1,"channel_mult":[1,2],"attention_resolutions":[],"class_conditioning":"none","use_spatial_transformer":false,"context_dim":0})"),
        "test");
    auto c = UNetConfig::fromConfig(cfg, "", UNetConfig());
    QVERIFY2(c, c ? "" : c.error().message().c_str());
    UNetImpl net(*c);
    QCOMPARE(net.activationValues(8, 8).value_or(0), 5632.0 + 36864.0);
    QCOMPARE(net.activationValues(16, 32).value_or(0), 8.0 * (5632.0 + 36864.0));  // the cells, 8× as many
  }

  // norm_groups: 32 as every official model has; a small U-Net takes fewer (one channel per
  // group hides each image's mean brightness from the output). Every GroupNorm gets it.
  void normGroupsReachEveryNorm() {
    auto make = [](std::int64_t groups, std::int64_t channels) {
      nlohmann::json j = nlohmann::json::parse(
          R"({"image_size":8,"in_channels":1,"out_channels":1,"num_res_blocks":1,"channel_mult":[1,2],"attention_resolutions":[2],"class_conditioning":"none","use_spatial_transformer":false,"context_dim":0,"num_head_channels":16})");
      j["model_channels"] = channels;
      j["norm_groups"] = groups;
      return UNetConfig::fromConfig(Config::fromJson(j, "test"), "", UNetConfig());
    };
    auto c = make(8, 16);
    QVERIFY2(c, c ? "" : c.error().message().c_str());
    UNetImpl net(*c);
    int norms = 0;
    for (const auto& m : net.modules(false))
      if (auto* g = m->as<torch::nn::GroupNormImpl>()) {
        QCOMPARE(g->options.num_groups(), std::int64_t{8});
        ++norms;
      }
    QVERIFY(norms >= 8);  // the blocks' in/out norms, the attention's, the output's
    auto bad = make(32, 16);
    QVERIFY(!bad);
    QVERIFY2(bad.error().message().find("norm_groups") != std::string::npos, bad.error().message().c_str());
  }

  // A grid the down-sampling cannot halve is refused with the nearest valid sizes.
  void refusesSizesItCannotHalve() {
    const auto* entry = backboneRegistry().find("unet");
    auto made = backboneRegistry().create("unet", Config::fromJson(entry->tiny.at("config"), "tiny"));
    QVERIFY(made);
    torch::NoGradGuard noGrad;
    try {
      (*made)->forward({at::randn({1, 4, 7, 12}), at::tensor({5}), at::tensor({1}), {}, {}, {}, nullptr});
      QFAIL("a 7x12 grid was accepted by a network that halves it once");
    } catch (const c10::Error& e) {
      const std::string m = e.what_without_backtrace();
      QVERIFY2(m.find("multiples of 2") != std::string::npos && m.find("6 or 8") != std::string::npos, m.c_str());
    }
  }

  // Inspection: attention maps of every layer at its own grid, per-stage timings and
  // statistics named by resolution.
  void probeSeesEveryLayerByResolution() {
    QTemporaryDir dir;
    LoadedModel model = importUNetFixture(ldmCinRequest(), dir);
    UNetImpl& unet = unetOf(model);
    const auto& sites = unet.attentionSites();
    QCOMPARE(static_cast<int>(sites.size()), 7);
    QCOMPARE(QString::fromStdString(sites.front().block), QStringLiteral("input_blocks.1"));
    QCOMPARE(QString::fromStdString(sites[2].block), QStringLiteral("middle_block"));
    Probe probe;
    std::set<int> all;
    for (int i = 0; i < static_cast<int>(sites.size()); ++i) all.insert(i);
    probe.requestAttention(all);
    probe.requestTimings(true);
    probe.requestActivationStats(true);
    torch::NoGradGuard noGrad;
    auto io = unetTensors("ldm_cin_io.safetensors");
    unet.forwardTensors(io["x_wide"], io["t_wide"], io["y_wide"], &probe);  // 8x12
    for (int i = 0; i < static_cast<int>(sites.size()); ++i) {
      const auto& maps = probe.attention().at(i);
      const std::int64_t cells =
          (8 / sites[static_cast<std::size_t>(i)].factor) * (12 / sites[static_cast<std::size_t>(i)].factor);
      QCOMPARE(maps.front().size(1), cells);
      QCOMPARE(maps.front().size(2), cells);
      QVERIFY(std::abs(maps.front().sum(-1).mean().item<double>() - 1.0) < 1e-5);
    }
    std::vector<std::string> names;
    for (const auto& [name, ms] : probe.timings()) names.push_back(name);
    QCOMPARE(names,
             (std::vector<std::string>{"input 8×12", "input 4×6", "middle 4×6", "output 4×6", "output 8×12", "out"}));
    QCOMPARE(probe.stats().size(), names.size());
  }

  // The presets are the official networks, tensor for tensor: the parameter counts of
  // guided-diffusion's create_model with each README's model flags and of LDM's
  // UNetModel with cin256-v2.yaml's unet_config plus its ClassEmbedder (1001 × 512),
  // counted with Debian's torch (LDM's paper rounds its cin model to 400M, ADM's to 554M).
  void presetsAreTheOfficialNetworks_data() {
    QTest::addColumn<QString>("preset");
    QTest::addColumn<qint64>("parameters");
    QTest::newRow("LDM-cin256-v2") << QStringLiteral("LDM-cin256-v2") << qint64{401433091};
    QTest::newRow("ADM-64") << QStringLiteral("ADM-64") << qint64{295904454};
    QTest::newRow("ADM-128") << QStringLiteral("ADM-128") << qint64{421529606};
    QTest::newRow("ADM-256") << QStringLiteral("ADM-256") << qint64{553838086};
    QTest::newRow("ADM-512") << QStringLiteral("ADM-512") << qint64{558997638};
  }
  void presetsAreTheOfficialNetworks() {
    QFETCH(QString, preset);
    QFETCH(qint64, parameters);
    auto c = unetPreset(preset.toStdString());
    QVERIFY2(c, c ? "" : c.error().message().c_str());
    QVERIFY2(c->validate(), preset.toUtf8().constData());
    std::int64_t n = 0;
    for (const auto& [key, shape] : unetStateShapes(*c)) {
      std::int64_t k = 1;
      for (auto d : shape) k *= d;
      n += k;
    }
    QCOMPARE(static_cast<qint64>(n), parameters);
  }
};

TESSERA_TEST_MAIN(TestUNet, Appless)
#include "test_unet.moc"
