// SPDX-License-Identifier: Apache-2.0
// tessera: the studio. Wiring only; the window and panels live in widgets/.
#include "core/system/allocator.h"
#include "core/system/blas.h"
#include "core/system/system_info.h"
#include "engine/plugin_loader.h"
#include "widgets/gallery/gallery_bench.h"
#include "widgets/icons.h"
#include "widgets/main_window/main_window.h"
#include "widgets/settings.h"
#include "widgets/theme.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QImage>
#include <QTimer>

#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  // A plugin is tried in a child process of this program before it is loaded here
  // (engine/plugin_loader.h): this is the child.
  if (argc == 3 && std::strcmp(argv[1], "--vet-plugin") == 0) return tessera::vetPluginMain(argv[2]);
  {
    const char* seconds = std::getenv("TESSERA_PLUGIN_VET_SECONDS");  // how long a plugin may take to load
    tessera::setPluginVetter({"/proc/self/exe", "--vet-plugin"}, seconds ? std::atoi(seconds) : 30);
  }
  tessera::blas::selectKernelOrReexec(argv);
  tessera::system::tuneAllocator();

  QApplication app(argc, argv);
  QApplication::setApplicationName(QStringLiteral("Tessera"));
  QApplication::setOrganizationName(QStringLiteral("Tessera"));
  QApplication::setApplicationVersion(QStringLiteral(TESSERA_VERSION_STRING));
  QApplication::setWindowIcon(tessera::tesseraIcon());

  QCommandLineParser parser;
  parser.setApplicationDescription(QStringLiteral("Tessera: a studio for class-conditional diffusion models."));
  parser.addHelpOption();
  parser.addVersionOption();
  const QCommandLineOption screenshot(QStringLiteral("screenshot"),
                                      QStringLiteral("Render the main window once everything is loaded, write it "
                                                     "as a PNG to <file> and exit."),
                                      QStringLiteral("file"));
  parser.addOption(screenshot);
  const QCommandLineOption theme(QStringLiteral("theme"), QStringLiteral("system, light or dark (default: the Preferences choice)"),
                                 QStringLiteral("mode"));
  parser.addOption(theme);
  const QCommandLineOption benchGallery(QStringLiteral("bench-gallery"),
                                        QStringLiteral("Fill a temporary gallery with <n> images, scroll, filter and search it in "
                                                       "the real gallery panel, print JSON lines and exit."),
                                        QStringLiteral("n"));
  parser.addOption(benchGallery);
  parser.process(app);
  if (parser.isSet(benchGallery)) {
    bool ok = false;
    const int n = parser.value(benchGallery).toInt(&ok);
    if (!ok || n < 1) {
      std::fprintf(stderr, "tessera: --bench-gallery: expected a positive count, got '%s'\n", qPrintable(parser.value(benchGallery)));
      return 2;
    }
    return tessera::runGalleryBenchmark(n, QString());
  }
  tessera::applyTheme(parser.isSet(theme) ? parser.value(theme) : tessera::themeSetting());

  const auto kernel = tessera::blas::verifyOrFallback(argv);
  if (!kernel.warning.empty()) spdlog::warn("{}", kernel.warning);
  tessera::setThreadCount(tessera::settings::threadCount());

  // Before the window, whose workers read the registries without locks. A plugin that
  // cannot load is skipped with a warning (tessera::pluginLoadReport() keeps why).
  for (const auto& r : tessera::loadPluginsFrom(tessera::pluginSearchPath())) {
    if (!r.plugin) spdlog::warn("{} (skipped)", r.plugin.error().message());
    else spdlog::info("plugin {} {} from {}", r.plugin->name, r.plugin->version, r.plugin->path);
  }

  tessera::MainWindow window;
  window.show();

  if (parser.isSet(screenshot)) {
    const QString path = parser.value(screenshot);
    auto shoot = [&window, path] {
      // Let layouts and the last paint settle before grabbing.
      QTimer::singleShot(100, &window, [&window, path] {
        const QImage image = window.grab().toImage();
        if (image.isNull() || !image.save(path, "PNG")) {
          std::fprintf(stderr, "tessera: cannot write the screenshot to %s\n", qPrintable(path));
          QApplication::exit(1);
          return;
        }
        std::printf("%s\n", qPrintable(path));
        QApplication::exit(0);
      });
    };
    if (window.isReady()) shoot();
    else QObject::connect(&window, &tessera::MainWindow::ready, &window, shoot);
    QTimer::singleShot(120000, &app, [] {
      std::fprintf(stderr, "tessera: the window did not finish loading within 120 s\n");
      QApplication::exit(1);
    });
  }
  return QApplication::exec();
}
