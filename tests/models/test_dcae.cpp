// SPDX-License-Identifier: Apache-2.0
// DC-AE against the official efficientvit code (tests/data/make_dcae_fixtures.py): the
// shortcuts, the norm and the two attention routes by hand; encode and decode of a
// sana-like and an in-like tiny model in both key layouts, at sizes that take LiteMLA's
// quadratic and linear routes; the configuration read from the shapes; refusals; the
// scale factor; the full f32c32 networks' sizes.
#ifndef Q_MOC_RUN
#include "core/formats/safetensors.h"
#include "engine/checkpoint_import.h"
#include "models/autoencoders/autoencoder.h"
#include "models/autoencoders/dcae/dcae.h"
#include "models/autoencoders/ldm/ldm_autoencoder.h"
#include "models/registry.h"
#include "models/state_dict.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QTemporaryDir>
#include <QtTest>
#include <torch/csrc/autograd/grad_mode.h>

#include <fstream>
#endif

using namespace tessera;

namespace {

std::string dcData(const std::string& name) { return std::string(TESSERA_TEST_DATA_DIR) + "/dcae/" + name; }

std::map<std::string, at::Tensor> dcTensors(const std::string& name) {
  auto file = SafetensorsFile::open(dcData(name));
  if (!file) qFatal("%s", file.error().message().c_str());
  auto all = file->loadAll();
  if (!all) qFatal("%s", all.error().message().c_str());
  return *all;
}

nlohmann::json dcJson(const std::string& name) {
  std::ifstream in(dcData(name));
  return nlohmann::json::parse(in);
}

AutoencoderContents dcImported(const std::string& name, AutoencoderImportOptions options = {}) {
  auto contents = readAutoencoder(dcData(name), options);
  if (!contents) qFatal("%s", contents.error().message().c_str());
  return *contents;
}

double dcRelError(const at::Tensor& got, const at::Tensor& expected) {
  if (got.sizes() != expected.sizes()) return 1e9;
  return (got - expected).abs().max().item<double>() / expected.abs().max().item<double>();
}

NamedTensors dcNamed(const std::map<std::string, at::Tensor>& m) { return NamedTensors(m.begin(), m.end()); }

std::string dcImportError(const NamedTensors& tensors) {
  auto r = importAutoencoder("test.safetensors", tensors, {});
  return r ? std::string("(imported)") : r.error().message();
}

}  // namespace

class TestDcAe : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void initTestCase() { torch::autograd::GradMode::set_enabled(false); }

  void shortcutsAreTheOfficialChannelGroups() {
    // averaging: u = unshuffle(x, 2), u[4c + 2i + j, h, w] = x[c, 2h + i, 2w + j]; y[o] = mean of u[o·g … o·g + g).
    const at::Tensor x = at::arange(2 * 4 * 4, at::kFloat).reshape({1, 2, 4, 4});
    const at::Tensor y = dcAverageShortcut(x, 4, 2);  // g = 2·4 / 4 = 2
    QCOMPARE(y.sizes().vec(), (std::vector<std::int64_t>{1, 4, 2, 2}));
    for (std::int64_t o = 0; o < 4; ++o)
      for (std::int64_t h = 0; h < 2; ++h)
        for (std::int64_t w = 0; w < 2; ++w) {
          double sum = 0;
          for (std::int64_t t = 0; t < 2; ++t) {
            const std::int64_t u = 2 * o + t, c = u / 4, i = (u % 4) / 2, j = u % 2;
            sum += x[0][c][2 * h + i][2 * w + j].item<double>();
          }
          QCOMPARE(y[0][o][h][w].item<double>(), sum / 2);
        }
    // duplicating: y[o, 2h + i, 2w + j] = x[(4o + 2i + j) div r, h, w] with r = 4·out / in.
    const at::Tensor z = at::randn({1, 8, 3, 2});
    const at::Tensor d = dcDuplicateShortcut(z, 4, 2);  // r = 2
    QCOMPARE(d.sizes().vec(), (std::vector<std::int64_t>{1, 4, 6, 4}));
    for (std::int64_t o = 0; o < 4; ++o)
      for (std::int64_t i = 0; i < 2; ++i)
        for (std::int64_t j = 0; j < 2; ++j)
          QVERIFY(at::equal(d[0][o].slice(0, i, 6, 2).slice(1, j, 4, 2), z[0][(4 * o + 2 * i + j) / 2]));
    // factor 1 (the projections): means of channel groups, and repeats.
    QVERIFY(at::allclose(dcAverageShortcut(z, 2, 1)[0][1], z[0].slice(0, 4, 8).mean(0)));
    QVERIFY(at::equal(dcDuplicateShortcut(z, 16, 1)[0][5], z[0][2]));
  }

  void rmsNormIsPerPixelOverChannels() {
    const at::Tensor x = at::randn({2, 5, 3, 4}), w = at::randn({5}), b = at::randn({5});
    const at::Tensor y = dcRmsNorm2d(x, w, b);
    const at::Tensor p = x.index({1, at::indexing::Slice(), 2, 3});
    const at::Tensor expected = p / at::sqrt(p.pow(2).mean() + 1e-5) * w + b;
    QVERIFY(at::allclose(y.index({1, at::indexing::Slice(), 2, 3}), expected, 1e-6, 1e-6));
  }

  void linearAttentionEqualsQuadratic() {
    const at::Tensor qkv = at::randn({2, 2 * 3 * 8, 5, 7});
    const at::Tensor a = dcReluLinearAttention(qkv, 8, false), b = dcReluLinearAttention(qkv, 8, true);
    QVERIFY(dcRelError(a, b) < 1e-5);
    // By hand for one group and position: Σ_m v_m (k_m·q_n) / Σ_m k_m·q_n.
    const at::Tensor t = qkv[1].reshape({2, 24, 35})[1];
    const at::Tensor q = at::relu(t.slice(0, 0, 8)), k = at::relu(t.slice(0, 8, 16)), v = t.slice(0, 16, 24);
    const at::Tensor s = at::matmul(k.t(), q.select(1, 17));  // (35)
    const at::Tensor expected = at::matmul(v, s) / s.sum();
    QVERIFY(dcRelError(a[1].reshape({16, 35}).slice(0, 8, 16).select(1, 17), expected) < 1e-5);
    // ReLU-zeroed queries and keys give 0, not NaN.
    const at::Tensor negative = -at::rand({1, 24, 2, 2}) - 0.1;
    QVERIFY(at::equal(dcReluLinearAttention(negative, 8, false), at::zeros({1, 8, 2, 2})));
    QVERIFY(at::equal(dcReluLinearAttention(negative, 8, true), at::zeros({1, 8, 2, 2})));
  }

  void matchesOfficial_data() {
    QTest::addColumn<QString>("variant");
    QTest::addColumn<QString>("file");
    for (const char* v : {"sana", "in"})
      for (const char* layout : {"original", "diffusers"})
        QTest::newRow((std::string(v) + ", " + layout + " layout").c_str())
            << QString::fromLatin1(v) << QString::fromStdString(std::string(v) + "_" + layout + ".safetensors");
  }
  void matchesOfficial() {
    QFETCH(QString, variant);
    QFETCH(QString, file);
    const AutoencoderContents contents = dcImported(file.toStdString());
    QCOMPARE(contents.description["kind"].get<std::string>(), std::string("dc"));
    auto ae = buildAutoencoder(contents);
    QVERIFY2(ae, ae ? "" : ae.error().message().c_str());
    QCOMPARE(ae->network->downsampling(), std::int64_t{32});
    auto t = dcTensors(variant.toStdString() + "_io.safetensors");
    int sizes = 0;
    double worst = 0;
    for (const char* size : {"64x96", "128x128", "256x192"}) {
      const std::string s = size;
      if (!t.count("x_" + s)) continue;
      ++sizes;
      const Encoded e = ae->network->encode(t.at("x_" + s));
      QVERIFY(at::equal(e.std, at::zeros_like(e.mean)));
      std::vector<double> errors{dcRelError(e.mean, t.at("z_" + s)),
                                 dcRelError(ae->network->decode(t.at("z_" + s)), t.at("y_" + s))};
      if (t.count("zr_" + s)) errors.push_back(dcRelError(ae->network->decode(t.at("zr_" + s)), t.at("yr_" + s)));
      for (double err : errors) {
        QVERIFY2(err < 1e-5, (s + ": " + std::to_string(err)).c_str());
        worst = std::max(worst, err);
      }
    }
    QCOMPARE(sizes, 3);
    qInfo("%s: largest relative error %.2e", qPrintable(file), worst);
  }

  void shapesGiveTheOfficialConfiguration_data() {
    QTest::addColumn<QString>("variant");
    QTest::newRow("sana") << QStringLiteral("sana");
    QTest::newRow("in") << QStringLiteral("in");
  }
  void shapesGiveTheOfficialConfiguration() {
    QFETCH(QString, variant);
    const std::string v = variant.toStdString();
    const nlohmann::json file = dcJson(v + ".json");
    const nlohmann::json& official = file["config"];
    const AutoencoderContents a = dcImported(v + "_original.safetensors");
    const AutoencoderContents b = dcImported(v + "_diffusers.safetensors");
    const nlohmann::json& c = a.description["config"];
    QCOMPARE(c, b.description["config"]);
    QCOMPARE(a.description["source"]["layout"].get<std::string>(), std::string("original"));
    QCOMPARE(b.description["source"]["layout"].get<std::string>(), std::string("diffusers"));
    QCOMPARE(c["latent_channels"], official["latent_channels"]);
    for (const char* side : {"encoder", "decoder"}) {
      const nlohmann::json& o = official[side];
      QCOMPARE(c[side]["depth_list"], o["depth_list"]);
      for (std::size_t i = 0; i < o["depth_list"].size(); ++i) {
        if (o["depth_list"][i].get<int>() == 0) continue;  // an empty stage's width is not stored
        QCOMPARE(c[side]["width_list"][i], o["width_list"][i]);
        auto perStage = [&](const char* key) { return o[key].is_array() ? o[key][i] : o[key]; };
        QCOMPARE(c[side]["block_type"][i], perStage("block_type"));
        QCOMPARE(c[side]["norm"][i], perStage("norm"));
        QCOMPARE(c[side]["act"][i], perStage("act"));
      }
    }
    QCOMPARE(c["encoder"]["downsample_block_type"], official["encoder"]["downsample_block_type"]);
    QCOMPARE(c["decoder"]["upsample_block_type"], official["decoder"]["upsample_block_type"]);
    QCOMPARE(c["decoder"]["out_norm"], official["decoder"]["out_norm"]);
    QCOMPARE(c["decoder"]["out_act"], official["decoder"]["out_act"]);
    // Both layouts give the same weights, bit for bit, and as many as the official module has.
    QCOMPARE(a.weights.size(), b.weights.size());
    QCOMPARE(static_cast<std::int64_t>(a.weights.size()), file["tensors"].get<std::int64_t>());
    std::int64_t parameters = 0;
    for (std::size_t i = 0; i < a.weights.size(); ++i) {
      QCOMPARE(a.weights[i].first, b.weights[i].first);
      QVERIFY2(at::equal(a.weights[i].second, b.weights[i].second), a.weights[i].first.c_str());
      if (a.weights[i].first.find("running_") == std::string::npos &&
          a.weights[i].first.find("num_batches_tracked") == std::string::npos)
        parameters += a.weights[i].second.numel();
    }
    QCOMPARE(parameters, file["parameters"].get<std::int64_t>());
  }

  void recognisersKeepTheFamiliesApart() {
    const TensorShapes dc = shapesOf(dcNamed(dcTensors("sana_original.safetensors")));
    const TensorShapes dcd = shapesOf(dcNamed(dcTensors("in_diffusers.safetensors")));
    QVERIFY(looksLikeDcAe(dc));
    QVERIFY(looksLikeDcAe(dcd));
    QVERIFY(!looksLikeLdmAutoencoder(dc));
    QVERIFY(!looksLikeLdmAutoencoder(dcd));
    auto ldm = SafetensorsFile::open(std::string(TESSERA_TEST_DATA_DIR) + "/autoencoders/kl_diffusers.safetensors");
    QVERIFY(ldm);
    auto all = ldm->loadAll();
    QVERIFY(all);
    QVERIFY(!looksLikeDcAe(shapesOf(dcNamed(*all))));
    QCOMPARE(autoencoderRegistry().recognise(dc).size(), std::size_t{1});
    QCOMPARE(autoencoderRegistry().recognise(dc).front()->name, std::string("dc"));
  }

  void damagedFilesAreRefusedByName() {
    for (const char* file : {"sana_original.safetensors", "in_diffusers.safetensors"}) {
      NamedTensors t = dcNamed(dcTensors(file));
      // A missing block tensor is named.
      NamedTensors missing;
      std::string dropped;
      for (const auto& [name, tensor] : t) {
        if (dropped.empty() && (name.find("point_conv.conv.weight") != std::string::npos ||
                                name.find("conv_out.conv_point.weight") != std::string::npos)) {
          dropped = name;
          continue;
        }
        missing.emplace_back(name, tensor);
      }
      QVERIFY(!dropped.empty());
      const std::string e1 = dcImportError(missing);
      QVERIFY2(e1.find("point_conv.conv.weight") != std::string::npos, e1.c_str());
      // A mis-shaped tensor is named with both shapes.
      NamedTensors misshaped = t;
      for (auto& [name, tensor] : misshaped)
        if (name.find("project_in") != std::string::npos || name.find("decoder.conv_in") != std::string::npos) {
          if (tensor.dim() == 4) tensor = at::zeros({tensor.size(0), tensor.size(1), 5, 5});
        }
      const std::string e2 = dcImportError(misshaped);
      QVERIFY2(e2 != "(imported)", file);
      // An extra tensor is named.
      NamedTensors extra = t;
      extra.emplace_back("decoder.stages.0.op_list.0.surprise", at::zeros({3}));
      const std::string e3 = dcImportError(extra);
      QVERIFY2(e3.find("surprise") != std::string::npos, e3.c_str());
    }
  }

  void scaleFactorOfTheSanaDesign() {
    // The tiny models are not f32c32: 1 unless told.
    QCOMPARE(dcImported("sana_original.safetensors").description["scale_factor"].get<double>(), 1.0);
    AutoencoderImportOptions o;
    o.scaleFactor = 0.3189;
    QCOMPARE(dcImported("in_original.safetensors", o).description["scale_factor"].get<double>(), 0.3189);
    // An f32c32 of the sana design (six stages, stride-2 down-sampling, 32 latent channels;
    // narrow here) gets sana's 0.41407, which NiT samples with.
    nlohmann::json c = dcJson("sana.json")["config"];
    nlohmann::json ours = dcImported("sana_original.safetensors").description["config"];
    ours["latent_channels"] = 32;
    auto config = DcAeConfig::fromJson(ours, "config");
    QVERIFY2(config, config ? "" : config.error().message().c_str());
    DcAutoencoderImpl sanaLike(*config);
    auto r = importAutoencoder("model.safetensors", stateDict(sanaLike), {});
    QVERIFY2(r, r ? "" : r.error().message().c_str());
    QCOMPARE(r->description["scale_factor"].get<double>(), 0.41407);
    QCOMPARE(c["encoder"]["downsample_block_type"].get<std::string>(), std::string("Conv"));
  }

  void officialF32c32Sizes() {
    // The full networks as the official dc_ae_f32c32 builds them: parameter and tensor
    // counts from the official module (tests/data/dcae/f32c32.json).
    const nlohmann::json counts = dcJson("f32c32.json");
    for (const char* variant : {"sana", "in"}) {
      const DcAeConfig c = DcAeConfig::f32c32(variant);
      QVERIFY(c.validate());
      auto again = DcAeConfig::fromJson(c.toJson(), "config");
      QVERIFY(again);
      QCOMPARE(again->toJson(), c.toJson());
      DcAutoencoderImpl network(c);
      std::int64_t parameters = 0;
      for (const auto& p : network.parameters()) parameters += p.numel();
      QCOMPARE(parameters, counts[variant]["parameters"].get<std::int64_t>());
      QCOMPARE(static_cast<std::int64_t>(stateDict(network).size()), counts[variant]["tensors"].get<std::int64_t>());
    }
  }

  void configurationErrorsNameTheField() {
    nlohmann::json c = DcAeConfig::f32c32("sana").toJson();
    c["decoder"]["width_list"] = {128, 256};
    auto r = DcAeConfig::fromJson(c, "autoencoder.config");
    QVERIFY(!r);
    QVERIFY2(r.error().message().find("width_list") != std::string::npos, r.error().message().c_str());
    c = DcAeConfig::f32c32("sana").toJson();
    c["encoder"]["block_type"] = "Transformer";
    r = DcAeConfig::fromJson(c, "autoencoder.config");
    QVERIFY(!r);
    QVERIFY2(r.error().message().find("Transformer") != std::string::npos, r.error().message().c_str());
    c = DcAeConfig::f32c32("in").toJson();
    c["latent_channels"] = 48;  // 1024 is not a multiple of 48
    r = DcAeConfig::fromJson(c, "autoencoder.config");
    QVERIFY(!r);
    QVERIFY2(r.error().message().find("latent_channels") != std::string::npos, r.error().message().c_str());
    // A file whose description claims the full f32c32 over a tiny model's weights is refused
    // before the 312 M-weight network is built.
    QTemporaryDir dir;
    const std::string path = dir.filePath(QStringLiteral("claims.safetensors")).toStdString();
    const AutoencoderContents tiny = dcImported("sana_original.safetensors");
    nlohmann::json description = tiny.description;
    description["config"] = DcAeConfig::f32c32("sana").toJson();
    QVERIFY(writeAutoencoderFile(path, description, tiny.weights));
    auto loaded = loadAutoencoderFile(path);
    QVERIFY(!loaded);
    QVERIFY2(loaded.error().message().find("far larger") != std::string::npos, loaded.error().message().c_str());
  }
};

TESSERA_TEST_MAIN(TestDcAe, Appless)
#include "test_dcae.moc"
