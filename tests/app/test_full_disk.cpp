// SPDX-License-Identifier: Apache-2.0
// Full disks (issue 22): every kind of file tessera-cli writes, written onto a small tmpfs
// that a test mounts in a private mount namespace of its own (`unshare --user --map-root-user
// --mount`, no privileges needed where user namespaces are allowed; skipped, saying why,
// where they are not) and fills to the last few kilobytes. Each write must fail with an
// error that names the file and the cause, leave the previous file byte for byte, leave no
// partial or temporary file behind, and work again once there is room.
#include "tests/app/cli_runner.h"
#include "tests/support/test_main.h"

#include "core/gallery/gallery_store.h"

#include <QDir>
#include <QFile>
#include <QProcess>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

using namespace tessera;

namespace {

/// What one script left in its output folder.
struct Outcome {
  QString error;  ///< why the script itself could not run; empty when it ran
  QMap<QString, QByteArray> files;
  QByteArray file(const char* name) const { return files.value(QString::fromLatin1(name)).trimmed(); }
};

QString shellQuote(const QString& s) {
  QString q = s;
  q.replace(QLatin1Char('\''), QStringLiteral("'\\''"));
  return QLatin1Char('\'') + q + QLatin1Char('\'');
}

}  // namespace

class TestFullDisk : public QObject {
  Q_OBJECT

  QTemporaryDir m_dir;
  QString m_unshare;
  QString m_skipReason;

  /// Runs `script` with bash inside a private mount namespace, where $T is an empty tmpfs of
  /// `sizeKb`; the shell function `fill` fills it but for `leftKb` (the filler is
  /// $T/.filler, removed by `unfill`); $CLI, $SRC and $OUT (a folder on the real disk, whose
  /// files come back) are set.
  Outcome inTmpfs(const QString& name, int sizeKb, const QString& script) {
    Outcome o;
    const QString out = m_dir.filePath(name + QStringLiteral("-out"));
    const QString mountPoint = m_dir.filePath(name + QStringLiteral("-disk"));
    QDir().mkpath(out);
    QDir().mkpath(mountPoint);
    const QString prelude =
        QStringLiteral(
            "set -u\n"
            "export T=%1 OUT=%2 CLI=%3 SRC=%4 OMP_WAIT_POLICY=PASSIVE\n"
            "mount -t tmpfs -o size=%5k tessera-test \"$T\" || { echo 'mount failed' >&2; exit 97; }\n"
            "fill() { dd if=/dev/zero of=\"$T/.filler\" bs=4096 2>/dev/null; truncate -s -\"$1\"K \"$T/.filler\"; }\n"
            "unfill() { rm -f \"$T/.filler\"; }\n"
            "run() { local tag=$1; shift; \"$@\" >\"$OUT/$tag.out\" 2>\"$OUT/$tag.err\"; echo $? >\"$OUT/$tag.code\"; "
            "}\n"
            "listing() { (cd \"$T\" && find . -path ./.filler -prune -o -type f -print | sort) >\"$OUT/$1\"; }\n"
            "sums() { (cd \"$T\" && find . -path ./.filler -prune -o -type f -print | sort | xargs -r sha256sum) "
            ">\"$OUT/$1\"; }\n")
            .arg(shellQuote(mountPoint), shellQuote(out), shellQuote(QStringLiteral(TESSERA_CLI)),
                 shellQuote(QStringLiteral(TESSERA_SOURCE_DIR)))
            .arg(sizeKb);
    QProcess p;
    p.start(m_unshare, {QStringLiteral("--user"), QStringLiteral("--map-root-user"), QStringLiteral("--mount"),
                        QStringLiteral("bash"), QStringLiteral("-c"), prelude + script});
    if (!p.waitForFinished(300000 * tessera::testing::timeScale())) {
      o.error = QStringLiteral("the script did not finish");
      return o;
    }
    if (p.exitCode() != 0)
      o.error = QStringLiteral("the script exited with %1: %2")
                    .arg(p.exitCode())
                    .arg(QString::fromUtf8(p.readAllStandardError()));
    for (const QString& f : QDir(out).entryList(QDir::Files)) {
      QFile file(out + QLatin1Char('/') + f);
      if (file.open(QIODevice::ReadOnly)) o.files.insert(f, file.readAll());
    }
    return o;
  }

  /// The checks every full-disk write shares: it failed, naming the file and the cause, and
  /// left the disk as it found it (the same files, with the same bytes).
  /// `code`: 1 for a write that failed, 2 for a gallery refused before any work (as any
  /// gallery that cannot be opened is).
  static void failedCleanly(const Outcome& o, const char* tag, const QString& target, const char* code) {
    const QByteArray err = o.file((QByteArray(tag) + ".err").constData());
    qInfo("%s: %s", tag, err.constData());  // the message a user sees, in the test's log
    QVERIFY2(o.file((QByteArray(tag) + ".code").constData()) == code, err.constData());
    QVERIFY2(err.contains("No space left on device"), err.constData());
    QVERIFY2(err.contains(target.toUtf8()), err.constData());
    // Nothing new, nothing changed; SQLite's own working files beside a gallery (-wal, -shm)
    // are SQLite's to make and remove.
    const auto ours = [](const QByteArray& sums) {
      QList<QByteArray> lines;
      for (const QByteArray& l : sums.split('\n'))
        if (!l.endsWith("-wal") && !l.endsWith("-shm")) lines << l;
      return lines;
    };
    QCOMPARE(ours(o.file("after.sums")), ours(o.file("before.sums")));
  }

private Q_SLOTS:
  void initTestCase() {
    QVERIFY(m_dir.isValid());
    m_unshare = QStandardPaths::findExecutable(QStringLiteral("unshare"));
    if (m_unshare.isEmpty()) QSKIP("unshare (util-linux) is not installed: no private tmpfs can be mounted");
    QProcess probe;
    probe.start(m_unshare, {QStringLiteral("--user"), QStringLiteral("--map-root-user"), QStringLiteral("--mount"),
                            QStringLiteral("sh"), QStringLiteral("-c"),
                            QStringLiteral("mount -t tmpfs -o size=64k probe %1").arg(shellQuote(m_dir.path()))});
    if (!probe.waitForFinished(30000) || probe.exitCode() != 0)
      QSKIP(qPrintable(QStringLiteral("this machine lets no test mount a tmpfs in a user namespace (%1): "
                                      "the full-disk tests cannot run here")
                           .arg(QString::fromUtf8(probe.readAllStandardError()).trimmed())));
  }

  // A model file (import, the largest file most users write) over an earlier one.
  void importOntoAFullDisk() {
    const Outcome o = inTmpfs(QStringLiteral("import"), 1024, QStringLiteral(R"(
      imp() { run "$1" "$CLI" -q import --from dit --in "$SRC/tests/data/dit/$2.pt" --out "$T/model.safetensors" --heads 4; }
      imp first dit_p4_nosigma
      fill 64
      sums before.sums
      imp full dit_p2_sigma
      sums after.sums
      unfill
      imp again dit_p2_sigma
      listing final.list
    )"));
    QVERIFY2(o.error.isEmpty(), qPrintable(o.error));
    QCOMPARE(o.file("first.code"), QByteArray("0"));
    failedCleanly(o, "full", QStringLiteral("model.safetensors"), "1");
    QVERIFY2(o.file("again.code") == "0", o.file("again.err").constData());
    QCOMPARE(o.file("final.list"), QByteArray("./model.safetensors"));
  }

  // Pictures and the gallery they go into. A disk too full for SQLite to open the gallery
  // stops the run before it samples; one that fills while images are added stops it at the
  // image that does not fit. Every image added before stays; the gallery opens, passes its
  // integrity check and takes more once there is room.
  void sampleAndGalleryOntoAFullDisk() {
    const Outcome o = inTmpfs(QStringLiteral("gallery"), 2048, QStringLiteral(R"(
      smp() { run "$1" "$CLI" --json sample --model "$SRC/resources/models/sit-fashion.safetensors" -n "$3" --steps 2 --seed "$2" --out "$4" --gallery "$T/gallery.db"; }
      smp first 1 2 "$T/images"
      fill 8
      sums before.sums
      smp full 2 2 "$T/images"
      sums after.sums
      unfill
      fill 96
      smp filling 3 24 "$OUT/images"
      unfill
      smp again 4 2 "$T/images"
      cp "$T/gallery.db" "$OUT/gallery.db"
      listing final.list
    )"));
    QVERIFY2(o.error.isEmpty(), qPrintable(o.error));
    QVERIFY2(o.file("first.code") == "0", o.file("first.err").constData());
    failedCleanly(o, "full", QStringLiteral("gallery.db"), "2");
    // Filling while it adds: some images went in, then one did not, and the run says why.
    const QByteArray err = o.file("filling.err");
    qInfo("filling: %s", err.constData());
    QVERIFY2(o.file("filling.code") == "1", err.constData());
    QVERIFY2(err.contains("No space left on device") && err.contains("gallery.db"), err.constData());
    const int added = static_cast<int>(o.file("filling.out").count("\"gallery_id\""));
    QVERIFY2(added < 24, o.file("filling.out").constData());
    QVERIFY2(o.file("again.code") == "0", o.file("again.err").constData());
    // Four images on the tmpfs (two runs of two), no temporary file among them.
    const QList<QByteArray> files = o.file("final.list").split('\n');
    QCOMPARE(files.count("./gallery.db"), 1);
    QCOMPARE(std::count_if(files.begin(), files.end(), [](const QByteArray& f) { return f.endsWith(".png"); }), 4);
    for (const QByteArray& f : files) QVERIFY2(!f.contains(".tmp-"), f.constData());
    auto gallery = GalleryStore::open(m_dir.filePath(QStringLiteral("gallery-out/gallery.db")).toStdString());
    QVERIFY2(gallery, gallery ? "" : gallery.error().message().c_str());
    auto count = gallery->count();
    QVERIFY2(count, count ? "" : count.error().message().c_str());
    QCOMPARE(*count, 2 + added + 2);  // every image a run reported added is there
    auto integrity = gallery->integrityCheck();
    QVERIFY2(integrity && *integrity == "ok", integrity ? integrity->c_str() : integrity.error().message().c_str());
  }

  // Training: the checkpoint that cannot be written is the only loss; the newest complete
  // one stays, and --resume continues from it once there is room.
  void trainingCheckpointsOntoAFullDisk() {
    const Outcome o = inTmpfs(QStringLiteral("train"), 4096, QStringLiteral(R"(
      cfg() { cat >"$OUT/train-$1.json" <<EOF
{"model": {"backbone": "sit", "config": {"patch_size": 4, "hidden_size": 32, "depth": 1, "num_heads": 2, "learn_sigma": false},
           "process": {"kind": "interpolant", "path": "linear", "prediction": "velocity"}},
 "data": {"source": "fashion-mnist", "batch": 8, "size": [28, 28], "validation": 0},
 "train": {"steps": $1, "lr": 0.001},
 "log": {"every": 1}, "checkpoint": {"every": 2, "keep": 1},
 "validation": {"every": 0}, "samples": {"every": 0}}
EOF
      }
      cfg 4; cfg 8
      run first "$CLI" -q --threads 1 train --config "$OUT/train-4.json" --out "$T/run"
      fill 16
      sums before.sums
      run full "$CLI" -q --threads 1 train --resume --config "$OUT/train-8.json" --out "$T/run"
      sums after.sums
      unfill
      run again "$CLI" -q --json --threads 1 train --resume --config "$OUT/train-8.json" --out "$T/run"
      listing final.list
    )"));
    QVERIFY2(o.error.isEmpty(), qPrintable(o.error));
    QVERIFY2(o.file("first.code") == "0", o.file("first.err").constData());
    const QByteArray err = o.file("full.err");
    qInfo("train: %s", err.constData());
    QVERIFY2(o.file("full.code") == "1", err.constData());
    QVERIFY2(err.contains("No space left on device"), err.constData());
    // What was on the disk before is there unchanged, but for what the trainer appends
    // (its events) or rewrites: the checkpoints are.
    const auto checkpoints = [](const QByteArray& sums) {
      QList<QByteArray> lines;
      for (const QByteArray& l : sums.split('\n'))
        if (l.contains("/checkpoints/")) lines << l;
      return lines;
    };
    QVERIFY(!checkpoints(o.file("before.sums")).isEmpty());
    QCOMPARE(checkpoints(o.file("after.sums")), checkpoints(o.file("before.sums")));
    QVERIFY2(!o.file("after.sums").contains(".tmp-"), o.file("after.sums").constData());
    // With room again it resumes from step 4 and reaches step 8.
    QVERIFY2(o.file("again.code") == "0", o.file("again.err").constData());
    QVERIFY2(o.file("again.out").contains("\"start_step\":4"), o.file("again.out").constData());
    QVERIFY2(o.file("final.list").contains("model.safetensors"), o.file("final.list").constData());
  }
};

TESSERA_TEST_MAIN(TestFullDisk, Guiless)
#include "test_full_disk.moc"
