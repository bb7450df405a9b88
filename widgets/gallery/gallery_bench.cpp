// SPDX-License-Identifier: Apache-2.0
#include "widgets/gallery/gallery_bench.h"

#include "core/gallery/gallery_store.h"
#include "widgets/gallery/gallery_panel.h"

#include <QBuffer>
#include <QComboBox>
#include <QCoreApplication>
#include <QDir>
#include <QElapsedTimer>
#include <QImage>
#include <QLineEdit>
#include <QListView>
#include <QScrollBar>
#include <QTemporaryDir>

#include <QDateTime>

#include <algorithm>
#include <numeric>
#include <cstdio>
#include <vector>

namespace tessera {
namespace {

void line(const char* event, const QString& fields) {
  std::printf("{\"event\":\"%s\",%s}\n", event, qPrintable(fields));
  std::fflush(stdout);
}

std::string pngOf(int i) {
  QImage img(28, 28, QImage::Format_Grayscale8);
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x) img.scanLine(y)[x] = static_cast<uchar>((x * 9 + y * 5 + i * 13) % 256);
  QByteArray bytes;
  QBuffer buffer(&bytes);
  buffer.open(QIODevice::WriteOnly);
  img.save(&buffer, "PNG");
  return bytes.toStdString();
}

double timeIt(const std::function<void()>& f) {
  QElapsedTimer t;
  t.start();
  f();
  return t.nsecsElapsed() / 1e6;
}

}  // namespace

int runGalleryBenchmark(int entries, const QString& folder) {
  QTemporaryDir tmp(folder.isEmpty() ? QDir::tempPath() + QStringLiteral("/tessera-bench-XXXXXX") : folder + QStringLiteral("/bench-XXXXXX"));
  const QString path = tmp.filePath(QStringLiteral("gallery.db"));
  const char* classes[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  {
    auto store = GalleryStore::open(path.toStdString());
    if (!store) {
      std::fprintf(stderr, "tessera: %s\n", store.error().message().c_str());
      return 1;
    }
    QElapsedTimer t;
    t.start();
    const int chunk = 1000;
    for (int begin = 0; begin < entries; begin += chunk) {
      std::vector<GalleryRecord> records;
      std::vector<std::string> pngs, thumbs;
      for (int i = begin; i < std::min(entries, begin + chunk); ++i) {
        GalleryRecord r;
        r.modelName = i % 3 ? "sit-fashion.safetensors" : "dit-fashion.safetensors";
        r.modelPath = "/models/" + r.modelName;
        r.modelHash = "0";
        r.backbone = i % 3 ? "sit" : "dit";
        r.process = i % 3 ? "interpolant" : "gaussian_diffusion";
        r.sampler = i % 3 ? "euler" : "ddim";
        r.steps = 50;
        r.cfg = 2.0;
        r.seed = static_cast<std::uint64_t>(i);
        r.classIndex = i % 10;
        r.className = classes[i % 10];
        r.width = r.height = 28;
        r.settings = "{}";
        r.software = "bench";
        r.rating = i % 6;
        if (i % 50 == 0) r.tags = {"keeper"};
        // Spread over 100 days so date filters select something.
        r.createdAt = QDateTime::currentDateTimeUtc().addSecs(-static_cast<qint64>(i) * 345).toString(Qt::ISODateWithMs).toStdString();
        records.push_back(r);
        const std::string png = pngOf(i);
        pngs.push_back(png);
        thumbs.push_back(png);
      }
      if (auto ok = store->addMany(records, pngs, thumbs); !ok) {
        std::fprintf(stderr, "tessera: %s\n", ok.error().message().c_str());
        return 1;
      }
    }
    line("gallery_fill", QStringLiteral("\"entries\":%1,\"seconds\":%2").arg(entries).arg(t.elapsed() / 1000.0, 0, 'f', 2));
  }

  GalleryPanel panel;
  panel.resize(420, 800);
  panel.show();
  const double openMs = timeIt([&] { panel.open(path); });
  QCoreApplication::processEvents();
  line("gallery_open", QStringLiteral("\"entries\":%1,\"ms\":%2").arg(panel.model()->rowCount()).arg(openMs, 0, 'f', 1));

  // Scroll: page by page to the end, every page painted (thumbnails decoded on first sight).
  QListView* view = panel.view();
  QScrollBar* bar = view->verticalScrollBar();
  // Batched layout finishes in slices: let it complete first.
  QElapsedTimer layout;
  layout.start();
  double longestLayoutStall = 0;
  for (int stable = 0, last = -1; stable < 20 && layout.elapsed() < 30000;) {
    longestLayoutStall = std::max(longestLayoutStall, timeIt([] { QCoreApplication::processEvents(); }));
    stable = bar->maximum() == last ? stable + 1 : 0;
    last = bar->maximum();
  }
  std::vector<double> pages;
  for (int v = 0; v <= bar->maximum(); v += std::max(1, bar->pageStep())) {
    pages.push_back(timeIt([&] {
      bar->setValue(v);
      view->viewport()->repaint();
    }));
  }
  std::sort(pages.begin(), pages.end());
  const double total = std::accumulate(pages.begin(), pages.end(), 0.0);
  line("gallery_scroll", QStringLiteral("\"pages\":%1,\"mean_ms\":%2,\"p95_ms\":%3,\"max_ms\":%4,\"layout_ms\":%5")
                             .arg(pages.size())
                             .arg(pages.empty() ? 0 : total / pages.size(), 0, 'f', 2)
                             .arg(pages.empty() ? 0 : pages[pages.size() * 95 / 100], 0, 'f', 2)
                             .arg(pages.empty() ? 0 : pages.back(), 0, 'f', 2)
                             .arg(layout.elapsed()));
  line("gallery_scroll_extent", QStringLiteral("\"scroll_max_px\":%1,\"page_px\":%2,\"rows\":%3,\"longest_layout_stall_ms\":%4").arg(bar->maximum()).arg(bar->pageStep()).arg(panel.model()->rowCount()).arg(longestLayoutStall, 0, 'f', 1));

  auto* cls = panel.findChild<QComboBox*>(QStringLiteral("galleryClass"));
  const double filterMs = timeIt([&] {
    cls->setCurrentIndex(2);
    view->viewport()->repaint();
  });
  line("gallery_filter", QStringLiteral("\"what\":\"class\",\"rows\":%1,\"ms\":%2").arg(panel.model()->rowCount()).arg(filterMs, 0, 'f', 1));
  auto* rating = panel.findChild<QComboBox*>(QStringLiteral("galleryRating"));
  const double ratingMs = timeIt([&] {
    rating->setCurrentIndex(5);
    view->viewport()->repaint();
  });
  line("gallery_filter", QStringLiteral("\"what\":\"class+rating\",\"rows\":%1,\"ms\":%2").arg(panel.model()->rowCount()).arg(ratingMs, 0, 'f', 1));
  cls->setCurrentIndex(0);
  rating->setCurrentIndex(0);
  for (const char* text : {"trous", "sneaker sit", "keeper"}) {
    // The search field debounces typing; time the query it runs.
    panel.searchField()->setText(QString::fromLatin1(text));
    const double ms = timeIt([&] {
      panel.applyFilter();
      view->viewport()->repaint();
    });
    line("gallery_search", QStringLiteral("\"text\":\"%1\",\"rows\":%2,\"ms\":%3").arg(QString::fromLatin1(text)).arg(panel.model()->rowCount()).arg(ms, 0, 'f', 1));
  }
  return 0;
}

}  // namespace tessera
