// SPDX-License-Identifier: Apache-2.0
// The latent pipeline from the command line: importing autoencoders (both layouts, and
// detected), encode and decode (tensors and PNGs, matching the official decoder), a
// backbone imported with its autoencoder sampling PNGs, and the refusals (exit 2,
// nothing written).
#ifndef Q_MOC_RUN
#include "core/formats/png.h"
#include "core/formats/safetensors.h"
#include "tests/app/cli_runner.h"

#include <ATen/ATen.h>
#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QTemporaryDir>
#include <QtTest>
#endif

using tessera::test::cli;
using tessera::test::data;
using tessera::test::json;
using namespace tessera;

namespace {

at::Tensor tensorOf(const QString& path, const std::string& name) {
  auto file = SafetensorsFile::open(path.toStdString());
  if (!file) qFatal("%s", file.error().message().c_str());
  auto t = file->load(name);
  if (!t) qFatal("%s", t.error().message().c_str());
  return *t;
}

double relDiff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

QString ae(const char* name) { return data("autoencoders/") + QString::fromUtf8(name); }

}  // namespace

class TestCliAutoencoders : public QObject {
  Q_OBJECT

  QTemporaryDir m_dir;
  QString path(const char* name) const { return m_dir.filePath(QString::fromUtf8(name)); }

private Q_SLOTS:
  void importsBothLayoutsAndDetectsAutoencoders() {
    tessera::test::Run r = cli({QStringLiteral("--json"), QStringLiteral("import"), QStringLiteral("--from"),
                                QStringLiteral("autoencoder"), QStringLiteral("--in"), ae("kl_diffusers.safetensors"),
                                QStringLiteral("--out"), path("kl.safetensors")});
    QVERIFY2(r.code == 0, r.err.constData());
    QJsonObject s = json(r.out);
    QCOMPARE(s[QStringLiteral("autoencoder")].toString(), QStringLiteral("kl"));
    QCOMPARE(s[QStringLiteral("layout")].toString(), QStringLiteral("diffusers"));
    // --from auto (the default) recognises an autoencoder, here VQ nested nowhere, CompVis layout.
    r = cli({QStringLiteral("--json"), QStringLiteral("import"), QStringLiteral("--in"), ae("vq_compvis.pt"),
             QStringLiteral("--out"), path("vq.safetensors")});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(json(r.out)[QStringLiteral("autoencoder")].toString(), QStringLiteral("vq"));
    // An LDM checkpoint: the autoencoder under first_stage_model., with a scale given.
    r = cli({QStringLiteral("--json"), QStringLiteral("import"), QStringLiteral("--in"), ae("kl_compvis.pt"),
             QStringLiteral("--scale-factor"), QStringLiteral("0.5"), QStringLiteral("--out"),
             path("kl_compvis.safetensors")});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(json(r.out)[QStringLiteral("scale_factor")].toDouble(), 0.5);
  }

  void decodeMatchesTheOfficialDecoder() {
    QVERIFY(QFile::exists(path("kl.safetensors")));
    tessera::test::Run r = cli({QStringLiteral("decode"), QStringLiteral("--model"), path("kl.safetensors"),
                                QStringLiteral("--inputs"), ae("kl_io.safetensors"), QStringLiteral("--out"),
                                path("x.safetensors"), QStringLiteral("--tile"), QStringLiteral("0")});
    QVERIFY2(r.code == 0, r.err.constData());
    QVERIFY(relDiff(tensorOf(path("x.safetensors"), "x"), tensorOf(ae("kl_io.safetensors"), "decoded")) < 1e-5);
    r = cli({QStringLiteral("encode"), QStringLiteral("--model"), path("kl.safetensors"), QStringLiteral("--inputs"),
             ae("kl_io.safetensors"), QStringLiteral("--out"), path("z.safetensors")});
    QVERIFY2(r.code == 0, r.err.constData());
    QVERIFY(relDiff(tensorOf(path("z.safetensors"), "mean"), tensorOf(ae("kl_io.safetensors"), "mean")) < 1e-5);
    QVERIFY(relDiff(tensorOf(path("z.safetensors"), "std"), tensorOf(ae("kl_io.safetensors"), "std")) < 1e-5);
    // VQ, both decode paths.
    for (bool quantize : {true, false}) {
      QStringList args{QStringLiteral("decode"),   QStringLiteral("--model"), path("vq.safetensors"),
                       QStringLiteral("--inputs"), ae("vq_io.safetensors"),   QStringLiteral("--out"),
                       path("vqx.safetensors")};
      if (!quantize) args << QStringLiteral("--no-quantize");
      r = cli(args);
      QVERIFY2(r.code == 0, r.err.constData());
      // vq_io holds no z-named latent for decode but h; the fixtures' z is in "z".
      QVERIFY(relDiff(tensorOf(path("vqx.safetensors"), "x"),
                      tensorOf(ae("vq_io.safetensors"), quantize ? "decoded_quantized" : "decoded_raw")) < 1e-5);
    }
  }

  void picturesInAndOut() {
    tessera::test::Run r =
        cli({QStringLiteral("decode"), QStringLiteral("--model"), path("kl.safetensors"), QStringLiteral("--inputs"),
             ae("kl_io.safetensors"), QStringLiteral("--out"), path("pic.png")});
    QVERIFY2(r.code == 0, r.err.constData());
    QVERIFY(QFile::exists(path("pic_0.png")) && QFile::exists(path("pic_1.png")));
    r = cli({QStringLiteral("--json"), QStringLiteral("encode"), QStringLiteral("--model"), path("kl.safetensors"),
             QStringLiteral("--inputs"), path("pic_0.png"), path("pic_1.png"), QStringLiteral("--out"),
             path("zp.safetensors")});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(tensorOf(path("zp.safetensors"), "mean").sizes().vec(), (std::vector<std::int64_t>{2, 4, 8, 8}));
    // A picture whose size the autoencoder cannot take: exit 2, the nearest sizes named.
    Image8 odd;
    odd.width = 15, odd.height = 16, odd.channels = 3;
    odd.pixels.assign(15 * 16 * 3, 100);
    QVERIFY(writePng(path("odd.png").toStdString(), odd));
    r = cli({QStringLiteral("encode"), QStringLiteral("--model"), path("kl.safetensors"), QStringLiteral("--inputs"),
             path("odd.png"), QStringLiteral("--out"), path("zo.safetensors")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("not a multiple of the autoencoder's downsampling 2 (nearest: 14x16 or 16x16)"),
             r.err.constData());
    QVERIFY(!QFile::exists(path("zo.safetensors")));
  }

  void aBackboneWithItsAutoencoderSamplesPictures() {
    tessera::test::Run r =
        cli({QStringLiteral("--json"), QStringLiteral("import"), QStringLiteral("--from"), QStringLiteral("dit"),
             QStringLiteral("--in"), data("dit/dit_p2_sigma.pt"), QStringLiteral("--heads"), QStringLiteral("4"),
             QStringLiteral("--autoencoder"), ae("kl_diffusers.safetensors"), QStringLiteral("--scale-factor"),
             QStringLiteral("0.5"), QStringLiteral("--out"), path("dit_kl.safetensors")});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(json(r.out)[QStringLiteral("autoencoder")].toObject()[QStringLiteral("scale_factor")].toDouble(), 0.5);
    r = cli({QStringLiteral("--json"), QStringLiteral("sample"), QStringLiteral("--model"), path("dit_kl.safetensors"),
             QStringLiteral("-n"), QStringLiteral("2"), QStringLiteral("--steps"), QStringLiteral("4"),
             QStringLiteral("--keep-latents"), QStringLiteral("--out"), path("samples")});
    QVERIFY2(r.code == 0, r.err.constData());
    QJsonObject done;
    for (const QByteArray& line : r.out.split('\n'))
      if (json(line)[QStringLiteral("event")].toString() == QStringLiteral("done")) done = json(line);
    const QJsonArray files = done[QStringLiteral("files")].toArray();
    QCOMPARE(files.size(), 2);
    auto png = readPng(files[0].toString().toStdString());
    QVERIFY(png);
    QCOMPARE(png->image.width, std::int64_t{16});  // an 8×8 latent, f2
    QCOMPARE(png->image.channels, std::int64_t{3});
    // The kept latents decode to the same picture.
    r = cli({QStringLiteral("decode"), QStringLiteral("--model"), path("dit_kl.safetensors"),
             QStringLiteral("--inputs"), path("samples/latents.safetensors"), QStringLiteral("--out"),
             path("again.png")});
    QVERIFY2(r.code == 0, r.err.constData());
    auto again = readPng(path("again_0.png").toStdString());
    QVERIFY(again);
    QVERIFY(again->image.pixels == png->image.pixels);
    // The gallery takes them too.
    r = cli({QStringLiteral("sample"), QStringLiteral("--model"), path("dit_kl.safetensors"), QStringLiteral("--steps"),
             QStringLiteral("2"), QStringLiteral("--gallery"), path("gallery.db"), QStringLiteral("--out"), path("g")});
    QVERIFY2(r.code == 0, r.err.constData());
  }

  void dcAeThroughTheCommandLine() {
    // diffusers' AutoencoderDC layout, detected; decode equals the official decoder.
    tessera::test::Run r =
        cli({QStringLiteral("--json"), QStringLiteral("import"), QStringLiteral("--in"),
             data("dcae/in_diffusers.safetensors"), QStringLiteral("--out"), path("dc.safetensors")});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(json(r.out)[QStringLiteral("autoencoder")].toString(), QStringLiteral("dc"));
    QCOMPARE(json(r.out)[QStringLiteral("layout")].toString(), QStringLiteral("diffusers"));
    const QString io = data("dcae/in_io.safetensors");
    QVERIFY(writeSafetensors(path("dcz.safetensors").toStdString(), {{"z", tensorOf(io, "z_128x128")}}));
    r = cli({QStringLiteral("decode"), QStringLiteral("--model"), path("dc.safetensors"), QStringLiteral("--inputs"),
             path("dcz.safetensors"), QStringLiteral("--out"), path("dcx.safetensors"), QStringLiteral("--tile"),
             QStringLiteral("0")});
    QVERIFY2(r.code == 0, r.err.constData());
    QVERIFY(relDiff(tensorOf(path("dcx.safetensors"), "x"), tensorOf(io, "y_128x128")) < 1e-5);
    // Pictures in (one picture: the name as given): the deterministic latent comes out as z.
    r = cli({QStringLiteral("decode"), QStringLiteral("--model"), path("dc.safetensors"), QStringLiteral("--inputs"),
             path("dcz.safetensors"), QStringLiteral("--out"), path("dc.png")});
    QVERIFY2(r.code == 0, r.err.constData());
    r = cli({QStringLiteral("encode"), QStringLiteral("--model"), path("dc.safetensors"), QStringLiteral("--inputs"),
             path("dc.png"), QStringLiteral("--out"), path("dcz2.safetensors")});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(tensorOf(path("dcz2.safetensors"), "z").sizes().vec(), (std::vector<std::int64_t>{1, 4, 4, 4}));
    // f32: a 64×48 picture is refused with the sizes it could have been.
    Image8 odd;
    odd.width = 64, odd.height = 48, odd.channels = 3;
    odd.pixels.assign(64 * 48 * 3, 100);
    QVERIFY(writePng(path("odd48.png").toStdString(), odd));
    r = cli({QStringLiteral("encode"), QStringLiteral("--model"), path("dc.safetensors"), QStringLiteral("--inputs"),
             path("odd48.png"), QStringLiteral("--out"), path("dcbad.safetensors")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("not a multiple of the autoencoder's downsampling 32 (nearest: 64x32 or 64x64)"),
             r.err.constData());
    QVERIFY(!QFile::exists(path("dcbad.safetensors")));
    // NiT, as the official code pairs it: a NiT checkpoint with its DC-AE samples pictures.
    r = cli({QStringLiteral("--json"), QStringLiteral("import"), QStringLiteral("--from"), QStringLiteral("nit"),
             QStringLiteral("--in"), data("nit/nit_p1.pt"), QStringLiteral("--heads"), QStringLiteral("2"),
             QStringLiteral("--autoencoder"), data("dcae/sana_original.safetensors"), QStringLiteral("--out"),
             path("nit_dc.safetensors")});
    QVERIFY2(r.code == 0, r.err.constData());
    const QJsonObject imported = json(r.out)[QStringLiteral("autoencoder")].toObject();
    QCOMPARE(imported[QStringLiteral("kind")].toString(), QStringLiteral("dc"));
    QCOMPARE(imported[QStringLiteral("downsampling")].toInt(), 32);
    r = cli({QStringLiteral("--json"), QStringLiteral("sample"), QStringLiteral("--model"), path("nit_dc.safetensors"),
             QStringLiteral("-n"), QStringLiteral("1"), QStringLiteral("--steps"), QStringLiteral("3"),
             QStringLiteral("--size"), QStringLiteral("3x2"), QStringLiteral("--out"), path("nitdc")});
    QVERIFY2(r.code == 0, r.err.constData());
    QJsonObject done;
    for (const QByteArray& line : r.out.split('\n'))
      if (json(line)[QStringLiteral("event")].toString() == QStringLiteral("done")) done = json(line);
    const QJsonArray files = done[QStringLiteral("files")].toArray();
    QCOMPARE(files.size(), 1);
    auto png = readPng(files[0].toString().toStdString());
    QVERIFY(png);
    QCOMPARE(png->image.width, std::int64_t{96});  // a 3×2 latent, f32
    QCOMPARE(png->image.height, std::int64_t{64});
  }

  void benchDecodeTimesThePresets() {
    for (const char* preset : {"sd-kl-f8", "dc-f32c32"}) {
      tessera::test::Run r = cli({QStringLiteral("bench"), QStringLiteral("decode"), QStringLiteral("--model"),
                                  QString::fromLatin1(preset), QStringLiteral("--size"), QStringLiteral("64x32"),
                                  QStringLiteral("--repeats"), QStringLiteral("1")});
      QVERIFY2(r.code == 0, r.err.constData());
      const QJsonObject j = json(r.out);
      QCOMPARE(j[QStringLiteral("kind")].toString(), QString::fromLatin1(preset[0] == 's' ? "kl" : "dc"));
      QCOMPARE(j[QStringLiteral("width")].toInt(), 64);
      QCOMPARE(j[QStringLiteral("height")].toInt(), 32);
      QVERIFY(j[QStringLiteral("seconds_min")].toDouble() > 0);
    }
    tessera::test::Run r = cli({QStringLiteral("bench"), QStringLiteral("decode"), QStringLiteral("--model"),
                                QStringLiteral("dc-f32c32"), QStringLiteral("--size"), QStringLiteral("48x48")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("not a multiple of the autoencoder's downsampling 32"), r.err.constData());
  }

  void refusalsWriteNothing() {
    // An autoencoder whose latent does not fit the backbone: VQ makes 3 channels, the DiT takes 4.
    tessera::test::Run r = cli({QStringLiteral("import"), QStringLiteral("--from"), QStringLiteral("dit"),
                                QStringLiteral("--in"), data("dit/dit_p2_sigma.pt"), QStringLiteral("--heads"),
                                QStringLiteral("4"), QStringLiteral("--autoencoder"), path("vq.safetensors"),
                                QStringLiteral("--out"), path("bad.safetensors")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("makes 3-channel latents, but the dit backbone"), r.err.constData());
    QVERIFY(!QFile::exists(path("bad.safetensors")));
    // A latent of the wrong channel count.
    r = cli({QStringLiteral("decode"), QStringLiteral("--model"), path("vq.safetensors"), QStringLiteral("--inputs"),
             ae("kl_io.safetensors"), QStringLiteral("--out"), path("bad.safetensors")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("expected N x 3 x H x W"), r.err.constData());
    QVERIFY(!QFile::exists(path("bad.safetensors")));
    // A VQ file without its codebook.
    auto vq = SafetensorsFile::open(path("vq.safetensors").toStdString());
    auto all = vq->loadAll();
    NamedTensors noCodebook;
    for (const auto& [n, t] : *all)
      if (n != "quantize.embedding.weight") noCodebook.emplace_back(n, t);
    QVERIFY(writeSafetensors(path("nocodebook.safetensors").toStdString(), noCodebook));
    r = cli({QStringLiteral("import"), QStringLiteral("--from"), QStringLiteral("autoencoder"), QStringLiteral("--in"),
             path("nocodebook.safetensors"), QStringLiteral("--out"), path("bad.safetensors")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("quantize.embedding.weight"), r.err.constData());
    QVERIFY(!QFile::exists(path("bad.safetensors")));
    // A corrupt file.
    QFile corrupt(path("corrupt.safetensors"));
    QVERIFY(corrupt.open(QIODevice::WriteOnly));
    corrupt.write("\x40\x00\x00\x00\x00\x00\x00\x00{\"a\": nonsense", 23);
    corrupt.close();
    r = cli({QStringLiteral("decode"), QStringLiteral("--model"), path("corrupt.safetensors"),
             QStringLiteral("--inputs"), ae("kl_io.safetensors"), QStringLiteral("--out"), path("bad.safetensors")});
    QCOMPARE(r.code, 2);
    QVERIFY(!QFile::exists(path("bad.safetensors")));
    // A scale factor without an autoencoder to scale.
    r = cli({QStringLiteral("import"), QStringLiteral("--from"), QStringLiteral("dit"), QStringLiteral("--in"),
             data("dit/dit_p2_sigma.pt"), QStringLiteral("--heads"), QStringLiteral("4"),
             QStringLiteral("--scale-factor"), QStringLiteral("0.3"), QStringLiteral("--out"),
             path("bad.safetensors")});
    QCOMPARE(r.code, 2);
    QVERIFY(!QFile::exists(path("bad.safetensors")));
  }
};

TESSERA_TEST_MAIN(TestCliAutoencoders, Appless)
#include "test_cli_autoencoders.moc"
