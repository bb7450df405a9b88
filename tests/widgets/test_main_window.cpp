// SPDX-License-Identifier: Apache-2.0
// The main window, driven offscreen: menus, status bar facts, dialogs, settings.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/system/system_info.h"
#include "widgets/generate/generate_panel.h"
#include "widgets/import/import_dialog.h"
#include "widgets/main_window/main_window.h"
#include "widgets/studio/studio_service.h"
#include "widgets/system/system_page.h"
#include "widgets/preferences/preferences_dialog.h"
#include "widgets/settings.h"
#include "tests/support/test_main.h"

#include <QDockWidget>
#include <QDoubleSpinBox>
#include <QFile>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QMenuBar>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStandardPaths>
#include <QStatusBar>
#include <QTimer>
#include <QtTest>

#include <torch/version.h>
#endif

using namespace tessera;

namespace {

QStringList menuTitles(QMainWindow& w) {
  QStringList titles;
  for (QAction* a : w.menuBar()->actions()) titles << a->text().remove(QLatin1Char('&'));
  return titles;
}

/// Accepts or closes the next modal dialog once it is shown.
void whenDialogOpens(const std::function<void(QWidget*)>& act) {
  QTimer::singleShot(50, [act] {
    QWidget* modal = QApplication::activeModalWidget();
    QVERIFY(modal);
    act(modal);
  });
}

}  // namespace

class TestMainWindow : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("TesseraTest"));
    QCoreApplication::setApplicationName(QStringLiteral("test_main_window"));
    QSettings().clear();
  }

  void shellHasMenusAndStatus() {
    MainWindow w;
    w.show();
    QCOMPARE(menuTitles(w), (QStringList{QStringLiteral("File"), QStringLiteral("View"), QStringLiteral("Help")}));
    QVERIFY(w.findChild<QAction*>(QStringLiteral("actionImport")));
    auto* torch = w.findChild<QLabel*>(QStringLiteral("statusTorch"));
    auto* threads = w.findChild<QLabel*>(QStringLiteral("statusThreads"));
    auto* device = w.findChild<QLabel*>(QStringLiteral("statusDevice"));
    auto* blas = w.findChild<QLabel*>(QStringLiteral("statusBlas"));
    QVERIFY(torch && threads && device && blas);
    QCOMPARE(torch->text(), QStringLiteral("LibTorch " TORCH_VERSION));
    QVERIFY(threads->text().contains(QString::number(querySystemInfo(false).intraOpThreads)));
    QVERIFY(device->text() == QStringLiteral("CPU") || device->text().startsWith(QStringLiteral("CUDA")));
    QVERIFY(blas->text().startsWith(QStringLiteral("BLAS")));

    // The measurement runs on a worker; the window says when it is done.
    QSignalSpy ready(&w, &MainWindow::ready);
    if (!w.isReady()) QVERIFY(ready.wait(60000 * tessera::testing::timeScale()));
    QVERIFY(w.systemInfo().gemmGflops > 0);
    QVERIFY2(blas->text().contains(QStringLiteral("GFLOP/s")), qPrintable(blas->text()));
    auto* page = w.findChild<SystemPage*>();
    QVERIFY(page);
    QCOMPARE(page->valueOf(QStringLiteral("LibTorch")), QStringLiteral(TORCH_VERSION));
    QVERIFY(page->valueOf(QStringLiteral("Matrix product")).contains(QStringLiteral("GFLOP/s")));
    QVERIFY(page->valueOf(QStringLiteral("BLAS check")).startsWith(QStringLiteral("correct")));
  }

  void panelsAppearInViewMenu() {
    MainWindow w;
    auto* menu = w.findChild<QMenu*>(QStringLiteral("menuPanels"));
    QVERIFY(menu);
    QVERIFY(menu->isEnabled());  // the studio's own panels
    QStringList names;
    for (auto* a : menu->actions()) names << a->text();
    QCOMPARE(names, (QStringList{QStringLiteral("Generate"), QStringLiteral("Denoising timeline"), QStringLiteral("Live inspector"), QStringLiteral("Training jobs"),
                                 QStringLiteral("Gallery"), QStringLiteral("System"), QStringLiteral("Attention maps"),
                                 QStringLiteral("Compare")}));
    auto* dock = new QDockWidget(QStringLiteral("Probe panel"), &w);
    dock->setObjectName(QStringLiteral("probePanel"));
    w.addPanel(dock, Qt::RightDockWidgetArea);
    QCOMPARE(menu->actions().size(), 9);
    QCOMPARE(menu->actions().back()->text(), QStringLiteral("Probe panel"));
    QCOMPARE(w.dockWidgetArea(dock), Qt::RightDockWidgetArea);
  }

  void aboutDialogShowsVersions() {
    MainWindow w;
    QString text;
    whenDialogOpens([&text](QWidget* dialog) {
      QCOMPARE(dialog->objectName(), QStringLiteral("AboutDialog"));
      text = dialog->findChild<QLabel*>(QStringLiteral("aboutText"))->text();
      static_cast<QDialog*>(dialog)->reject();
    });
    w.findChild<QAction*>(QStringLiteral("actionAbout"))->trigger();
    QVERIFY(text.contains(QStringLiteral(TESSERA_VERSION_STRING)));
    QVERIFY(text.contains(QStringLiteral(TORCH_VERSION)));
    QVERIFY(text.contains(QString::fromLatin1(qVersion())));
  }

  void importDialogMakesAModelThePickerSelects() {
    MainWindow w;
    const QString dit = QStringLiteral(TESSERA_TEST_DATA_DIR "/dit/dit_p2_sigma.pt");
    const QString vae = QStringLiteral(TESSERA_TEST_DATA_DIR "/autoencoders/kl_diffusers.safetensors");
    ImportDialog* dialog = w.showImport(dit);  // as a dropped file
    QSignalSpy previewed(dialog, &ImportDialog::previewed);
    const int wait = 60000 * tessera::testing::timeScale();
    auto summary = [dialog] { return dialog->findChild<QLabel*>(QStringLiteral("importSummary"))->text(); };
    auto button = dialog->findChild<QPushButton*>(QStringLiteral("importButton"));
    QVERIFY(previewed.wait(wait));
    // The heads are what a DiT checkpoint cannot tell: said, and the import held back.
    QVERIFY2(summary().contains(QStringLiteral("attention heads")), qPrintable(summary()));
    QVERIFY(!button->isEnabled());
    dialog->findChild<QSpinBox*>(QStringLiteral("importHeads"))->setValue(4);
    QVERIFY(previewed.wait(wait));
    // A 4-channel backbone: asked for its autoencoder.
    QVERIFY2(summary().contains(QStringLiteral("4-channel latents: choose its autoencoder")), qPrintable(summary()));
    QVERIFY(button->isEnabled());
    dialog->findChild<QLineEdit*>(QStringLiteral("importAutoencoder"))->setText(vae);
    dialog->findChild<QDoubleSpinBox*>(QStringLiteral("importScale"))->setValue(0.5);
    QVERIFY(previewed.wait(wait));
    QVERIFY2(summary().contains(QStringLiteral("with an autoencoder of 0.7 M")), qPrintable(summary()));
    QCOMPARE(dialog->preview().parameters, qint64{51680});
    // TESSERA_SCREENSHOTS=DIR keeps a picture of the dialog (how docs/screenshots/import-dialog.png is made).
    if (const QString shots = qEnvironmentVariable("TESSERA_SCREENSHOTS"); !shots.isEmpty())
      QVERIFY(dialog->grab().save(shots + QStringLiteral("/import-dialog.png")));
    dialog->findChild<QLineEdit*>(QStringLiteral("importName"))->setText(QStringLiteral("imported-dit"));
    const QString out = dialog->outputPath();
    QCOMPARE(out, userModelFolder() + QStringLiteral("/imported-dit.safetensors"));
    QFile::remove(out);
    QSignalSpy imported(dialog, &ImportDialog::imported);
    button->click();
    QVERIFY(imported.wait(wait));
    QVERIFY(QFile::exists(out));
    // The picker rescans and selects it: a latent model, pictures twice its latent's size.
    GeneratePanel* generate = w.generatePanel();
    QTRY_VERIFY_WITH_TIMEOUT(
        generate->currentModel() && generate->currentModel()->path == QFileInfo(out).canonicalFilePath(), wait);
    QCOMPARE(generate->currentModel()->pixelFactor, 2);
    QCOMPARE(generate->currentModel()->autoencoder, QStringLiteral("kl"));
    QFile::remove(out);

    // An autoencoder alone is recognised as one and saved as an autoencoder file.
    ImportDialog* second = w.showImport(QStringLiteral(TESSERA_TEST_DATA_DIR "/autoencoders/vq_compvis.pt"));
    QSignalSpy secondPreview(second, &ImportDialog::previewed);
    QVERIFY(secondPreview.wait(wait));
    QVERIFY(second->preview().autoencoderOnly);
    QCOMPARE(second->preview().kind, QStringLiteral("vq"));
    QVERIFY(second->findChild<QLabel*>(QStringLiteral("importSummary"))
                ->text()
                .startsWith(QStringLiteral("An autoencoder (vq)")));
    second->close();
  }

  void preferencesPersistThreads() {
    const int hardware = hardwareThreadCount();
    {
      MainWindow w;
      whenDialogOpens([](QWidget* dialog) {
        auto* box = dialog->findChild<QSpinBox*>(QStringLiteral("threads"));
        QVERIFY(box);
        QCOMPARE(box->maximum(), hardwareThreadCount());
        box->setValue(1);
        static_cast<QDialog*>(dialog)->accept();
      });
      w.findChild<QAction*>(QStringLiteral("actionPreferences"))->trigger();
      QCOMPARE(querySystemInfo(false).intraOpThreads, 1);  // applied at once
      QVERIFY(w.findChild<QLabel*>(QStringLiteral("statusThreads"))->text().startsWith(QStringLiteral("1 ")));
    }
    QCOMPARE(QSettings().value(settings::computeThreads()).toInt(), 1);
    QCOMPARE(settings::threadCount(), 1);
    // Out-of-range stored values are clamped, not trusted.
    QSettings().setValue(settings::computeThreads(), 10000);
    QCOMPARE(settings::threadCount(), hardware);
    QSettings().setValue(settings::computeThreads(), -3);
    QCOMPARE(settings::threadCount(), 1);
    settings::setThreadCount(hardware);
  }

  void geometryIsRestored() {
    {
      MainWindow w;
      w.show();
      w.resize(1300, 820);  // above the panels' minimum
      QVERIFY(QTest::qWaitForWindowExposed(&w));
      w.close();
    }
    MainWindow again;
    QCOMPARE(again.size(), QSize(1300, 820));
  }
};

TESSERA_TEST_MAIN(TestMainWindow, Gui)
#include "test_main_window.moc"
