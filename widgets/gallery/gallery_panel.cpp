// SPDX-License-Identifier: Apache-2.0
#include "widgets/gallery/gallery_panel.h"

#include "widgets/studio/text.h"
#include "core/gallery/gallery_store.h"
#include "widgets/panel.h"

#include <QComboBox>
#include <QCoreApplication>
#include <QFutureWatcher>
#include <QDate>
#include <QDir>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QInputDialog>
#include <QLabel>
#include <QLineEdit>
#include <QListView>
#include <QMenu>
#include <QMessageBox>
#include <QPainter>
#include <QSaveFile>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include <cmath>

namespace tessera {
namespace {
QString stars(int n) { return n > 0 ? QString(n, QChar(0x2605)) : QString(); }
}  // namespace

// ---- model -------------------------------------------------------------------------------

GalleryModel::GalleryModel(QObject* parent) : QAbstractListModel(parent), m_filter(std::make_unique<GalleryFilter>()) {}
GalleryModel::~GalleryModel() = default;

QString GalleryModel::open(const QString& path) {
  auto store = GalleryStore::open(path.toStdString());
  if (!store) return qs(store.error().message());
  m_store = std::make_unique<GalleryStore>(std::move(*store));
  m_path = path;
  return reload();
}

QString GalleryModel::setFilter(const GalleryFilter& filter) {
  *m_filter = filter;
  return reload();
}

QString GalleryModel::reload() {
  if (!m_store) return tr("no gallery open");
  auto ids = m_store->query(*m_filter);
  beginResetModel();
  m_ids.clear();
  m_rows.clear();  // ratings and tags may have changed; thumbnails never do
  if (ids) m_ids = QVector<qint64>(ids->begin(), ids->end());
  endResetModel();
  return ids ? QString() : qs(ids.error().message());
}

int GalleryModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : static_cast<int>(m_ids.size()); }

const GalleryModel::Row* GalleryModel::row(qint64 id) const {
  if (auto* r = m_rows.object(id)) return r;
  auto rec = m_store->record(id);
  if (!rec) return nullptr;
  auto* r = new Row;
  r->rating = rec->rating;
  r->text = QStringLiteral("%1 %2").arg(qs(rec->className), stars(rec->rating));
  QString tags;
  for (const auto& t : rec->tags) tags += (tags.isEmpty() ? QString() : QStringLiteral(", ")) + qs(t);
  r->tooltip = tr("<b>%1</b> · %2<br>%3 · %4 × %5<br>%6, %7 steps, guidance %8 (%9 … %10)<br>seed %11 · %12<br>%13%14")
                   .arg(qs(rec->className).toHtmlEscaped(), qs(rec->modelName).toHtmlEscaped(), qs(rec->backbone))
                   .arg(rec->width)
                   .arg(rec->height)
                   .arg(qs(rec->sampler))
                   .arg(rec->steps)
                   .arg(rec->cfg)
                   .arg(rec->cfgLow)
                   .arg(rec->cfgHigh)
                   .arg(rec->seed)
                   .arg(qs(rec->createdAt))
                   .arg(tags.isEmpty() ? QString() : tr("tags: %1<br>").arg(tags.toHtmlEscaped()))
                   .arg(rec->note.empty() ? QString() : qs(rec->note).toHtmlEscaped());
  m_rows.insert(id, r);
  return r;
}

QVariant GalleryModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || index.row() >= m_ids.size() || !m_store) return {};
  const qint64 id = m_ids[index.row()];
  switch (role) {
    case IdRole: return id;
    case Qt::DecorationRole: {
      if (auto* p = m_thumbnails.object(id)) return *p;
      auto bytes = m_store->thumbnail(id);
      if (!bytes) return {};
      QImage img = QImage::fromData(reinterpret_cast<const uchar*>(bytes->data()), static_cast<int>(bytes->size()), "PNG");
      // Small images are enlarged with nearest neighbour so the grid shows crisp pixels.
      if (!img.isNull() && std::max(img.width(), img.height()) < 96)
        img = img.scaled(96, 96, Qt::KeepAspectRatio, Qt::FastTransformation);
      auto* pix = new QPixmap(QPixmap::fromImage(img));
      m_thumbnails.insert(id, pix);
      return *pix;
    }
    case Qt::DisplayRole:
      if (const Row* r = row(id)) return r->text;
      return {};
    case Qt::ToolTipRole:
      if (const Row* r = row(id)) return r->tooltip;
      return {};
    case RatingRole:
      if (const Row* r = row(id)) return r->rating;
      return {};
    default: return {};
  }
}

// ---- panel -------------------------------------------------------------------------------

GalleryPanel::GalleryPanel(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("galleryPanel"));
  m_writes.setMaxThreadCount(1);
  m_model = new GalleryModel(this);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(8, 6, 8, 6);
  m_search = new QLineEdit(this);
  m_search->setObjectName(QStringLiteral("gallerySearch"));
  m_search->setPlaceholderText(tr("Search models, classes, samplers, tags, notes…"));
  m_search->setClearButtonEnabled(true);
  layout->addWidget(m_search);
  auto combo = [this](const char* name, const QString& tip) {
    auto* c = new QComboBox(this);
    c->setObjectName(QString::fromLatin1(name));
    c->setToolTip(tip);
    c->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    c->setMinimumContentsLength(6);
    return c;
  };
  m_modelFilter = combo("galleryModel", tr("Model"));
  m_backbone = combo("galleryBackbone", tr("Backbone"));
  m_sampler = combo("gallerySampler", tr("Sampler"));
  m_class = combo("galleryClass", tr("Class"));
  m_tag = combo("galleryTag", tr("Tag"));
  m_rating = combo("galleryRating", tr("Minimum rating"));
  m_rating->addItem(tr("Any rating"), 0);
  for (int i = 1; i <= 5; ++i) m_rating->addItem(tr("%1 or more").arg(stars(i)), i);
  m_since = combo("gallerySince", tr("Date"));
  m_since->addItem(tr("Any date"), -1);
  m_since->addItem(tr("Today"), 0);
  m_since->addItem(tr("Last 7 days"), 7);
  m_since->addItem(tr("Last 30 days"), 30);
  m_sort = combo("gallerySort", tr("Order"));
  m_sort->addItems({tr("Newest first"), tr("Oldest first"), tr("Best rated"), tr("By model"), tr("By class")});
  m_trash = new QToolButton(this);
  m_trash->setObjectName(QStringLiteral("galleryTrash"));
  m_trash->setText(tr("Trash"));
  m_trash->setCheckable(true);
  m_trash->setToolTip(tr("Show the trash instead of the gallery"));
  auto* row1 = new QHBoxLayout;
  for (auto* c : {m_modelFilter, m_backbone, m_sampler}) row1->addWidget(c, 1);
  auto* row2 = new QHBoxLayout;
  for (auto* c : {m_class, m_tag, m_rating}) row2->addWidget(c, 1);
  auto* row3 = new QHBoxLayout;
  for (auto* c : {m_since, m_sort}) row3->addWidget(c, 1);
  row3->addWidget(m_trash);
  layout->addLayout(row1);
  layout->addLayout(row2);
  layout->addLayout(row3);

  m_view = new QListView(this);
  m_view->setObjectName(QStringLiteral("galleryView"));
  m_view->setViewMode(QListView::IconMode);
  m_view->setResizeMode(QListView::Adjust);
  m_view->setMovement(QListView::Static);
  m_view->setUniformItemSizes(true);
  m_view->setIconSize(QSize(96, 96));
  m_view->setGridSize(QSize(112, 124));
  m_view->setSpacing(4);
  m_view->setWordWrap(true);
  m_view->setVerticalScrollMode(QAbstractItemView::ScrollPerPixel);
  m_view->setSelectionMode(QAbstractItemView::ExtendedSelection);
  m_view->setContextMenuPolicy(Qt::CustomContextMenu);
  m_view->setToolTip(tr("Double-click: show the image and put its settings back in Generate. Right-click: rate, tag, export, trash."));
  m_view->setModel(m_model);
  layout->addWidget(m_view, 1);
  m_status = new QLabel(this);
  m_status->setObjectName(QStringLiteral("galleryStatus"));
  layout->addWidget(m_status);

  auto* searchDelay = new QTimer(this);
  searchDelay->setSingleShot(true);
  searchDelay->setInterval(150);
  connect(m_search, &QLineEdit::textChanged, searchDelay, qOverload<>(&QTimer::start));
  connect(searchDelay, &QTimer::timeout, this, &GalleryPanel::applyFilter);
  for (auto* c : {m_modelFilter, m_backbone, m_sampler, m_class, m_tag, m_rating, m_since, m_sort})
    connect(c, &QComboBox::currentIndexChanged, this, &GalleryPanel::applyFilter);
  connect(m_trash, &QToolButton::toggled, this, &GalleryPanel::applyFilter);
  connect(m_view, &QListView::customContextMenuRequested, this, &GalleryPanel::contextMenu);
  connect(m_view, &QListView::doubleClicked, this, [this](const QModelIndex& index) {
    const qint64 id = m_model->idAt(index.row());
    if (!m_model->store() || !id) return;
    auto png = m_model->store()->png(id);
    auto rec = m_model->store()->record(id);
    if (!png || !rec) return;
    const QByteArray bytes(png->data(), static_cast<int>(png->size()));
    Q_EMIT showRequested(QImage::fromData(bytes, "PNG"), bytes);
    Q_EMIT reproduceRequested(QByteArray::fromStdString(rec->settings));  // one double-click: see it, and its settings are back
  });
}

QString GalleryPanel::open(const QString& path) {
  const QString error = m_model->open(path);
  refreshChoices();
  applyFilter();
  return error;
}

void GalleryPanel::refreshChoices() {
  if (!m_model->store()) return;
  auto fill = [this](QComboBox* c, const char* what, const QString& any) {
    const QString keep = c->currentData().toString();
    const QSignalBlocker block(c);
    c->clear();
    c->addItem(any, QString());
    if (auto values = m_model->store()->distinct(what))
      for (const auto& v : *values) {
        const QString value = qs(v);
        if (std::string(what) == "class") c->addItem(value, value.section(QLatin1Char(' '), 0, 0));
        else c->addItem(value, value);
      }
    const int i = c->findData(keep);
    c->setCurrentIndex(i >= 0 ? i : 0);
  };
  fill(m_modelFilter, "model", tr("All models"));
  fill(m_backbone, "backbone", tr("All backbones"));
  fill(m_sampler, "sampler", tr("All samplers"));
  fill(m_class, "class", tr("All classes"));
  fill(m_tag, "tag", tr("All tags"));
}

void GalleryPanel::applyFilter() {
  GalleryFilter f;
  f.text = m_search->text().toStdString();
  f.modelName = m_modelFilter->currentData().toString().toStdString();
  f.backbone = m_backbone->currentData().toString().toStdString();
  f.sampler = m_sampler->currentData().toString().toStdString();
  f.tag = m_tag->currentData().toString().toStdString();
  if (const QString k = m_class->currentData().toString(); !k.isEmpty()) f.classIndex = k.toLongLong();
  f.minRating = m_rating->currentData().toInt();
  if (const int days = m_since->currentData().toInt(); days >= 0)
    f.from = QDate::currentDate().addDays(-days).toString(Qt::ISODate).toStdString();
  f.sort = static_cast<GallerySort>(m_sort->currentIndex());
  f.trash = m_trash->isChecked();
  const QString error = m_model->setFilter(f);
  m_status->setText(error.isEmpty() ? tr("%n image(s)", nullptr, m_model->rowCount()) + (f.trash ? tr(" in the trash") : QString())
                                    : error);
}

void GalleryPanel::refresh() {
  refreshChoices();
  applyFilter();
}

QVector<qint64> GalleryPanel::selectedIds() const {
  QVector<qint64> ids;
  for (const auto& index : m_view->selectionModel()->selectedIndexes()) ids << m_model->idAt(index.row());
  return ids;
}

void GalleryPanel::write(std::function<QString(GalleryStore&)> change) {
  const QString path = m_model->path();
  auto future = QtConcurrent::run(&m_writes, [path, change] {
    auto store = GalleryStore::open(path.toStdString());
    if (!store) return qs(store.error().message());
    return change(*store);
  });
  auto* watcher = new QFutureWatcher<QString>(this);
  connect(watcher, &QFutureWatcher<QString>::finished, this, [this, watcher] {
    const QString error = watcher->result();
    watcher->deleteLater();
    if (!error.isEmpty()) QMessageBox::warning(this, tr("Gallery"), error);
    refresh();
  });
  watcher->setFuture(future);
}

void GalleryPanel::waitForWrites() {
  m_writes.waitForDone();
  QCoreApplication::processEvents();
}

void GalleryPanel::setRating(const QVector<qint64>& ids, int stars) {
  write([ids, stars](GalleryStore& s) {
    for (auto id : ids)
      if (auto ok = s.setRating(id, stars); !ok) return qs(ok.error().message());
    return QString();
  });
}

void GalleryPanel::moveToTrash(const QVector<qint64>& ids, bool trash) {
  const std::vector<std::int64_t> list(ids.begin(), ids.end());
  write([list, trash](GalleryStore& s) {
    auto ok = trash ? s.moveToTrash(list) : s.restore(list);
    return ok ? QString() : qs(ok.error().message());
  });
}

void GalleryPanel::emptyTrash() {
  write([](GalleryStore& s) {
    auto n = s.emptyTrash();
    return n ? QString() : qs(n.error().message());
  });
}

void GalleryPanel::setTags(qint64 id, const QStringList& tags) {
  std::vector<std::string> list;
  for (const auto& t : tags)
    if (!t.trimmed().isEmpty()) list.push_back(t.trimmed().toStdString());
  write([id, list](GalleryStore& s) {
    auto ok = s.setTags(id, list);
    return ok ? QString() : qs(ok.error().message());
  });
}

QString GalleryPanel::exportImages(const QVector<qint64>& ids, const QString& folder) const {
  for (auto id : ids) {
    auto png = m_model->store()->png(id);
    auto rec = m_model->store()->record(id);
    if (!png || !rec) return png ? qs(rec.error().message()) : qs(png.error().message());
    const QString name = QStringLiteral("tessera_%1_seed%2_class%3.png").arg(id).arg(rec->seed).arg(rec->classIndex);
    QSaveFile file(QDir(folder).filePath(name));
    if (!file.open(QIODevice::WriteOnly)) return file.errorString();
    file.write(png->data(), static_cast<qint64>(png->size()));
    if (!file.commit()) return file.errorString();
  }
  return {};
}

QString GalleryPanel::exportContactSheet(const QVector<qint64>& ids, const QString& path) const {
  if (ids.isEmpty()) return tr("no images selected");
  const int cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(ids.size()))));
  const int rows = (static_cast<int>(ids.size()) + cols - 1) / cols;
  const int cell = 128, label = 18;
  QImage sheet(cols * cell, rows * (cell + label), QImage::Format_RGB888);
  sheet.fill(Qt::white);
  QPainter p(&sheet);
  for (int i = 0; i < ids.size(); ++i) {
    auto png = m_model->store()->png(ids[i]);
    auto rec = m_model->store()->record(ids[i]);
    if (!png || !rec) continue;
    QImage img = QImage::fromData(reinterpret_cast<const uchar*>(png->data()), static_cast<int>(png->size()), "PNG");
    img = img.scaled(cell - 8, cell - 8, Qt::KeepAspectRatio, img.width() < cell ? Qt::FastTransformation : Qt::SmoothTransformation);
    const int x = (i % cols) * cell, y = (i / cols) * (cell + label);
    p.drawImage(x + (cell - img.width()) / 2, y + (cell - img.height()) / 2, img);
    p.setPen(Qt::black);
    p.drawText(QRect(x, y + cell, cell, label), Qt::AlignCenter, QStringLiteral("%1 · seed %2").arg(qs(rec->className)).arg(rec->seed));
  }
  p.end();
  return sheet.save(path, "PNG") ? QString() : tr("%1: cannot write the PNG").arg(path);
}

void GalleryPanel::contextMenu(const QPoint& pos) {
  const QVector<qint64> ids = selectedIds();
  if (ids.isEmpty()) return;
  QMenu menu(this);
  QAction* reproduce = menu.addAction(tr("Reproduce (settings to Generate)"));
  reproduce->setEnabled(ids.size() == 1);
  QMenu* rate = menu.addMenu(tr("Rating"));
  for (int i = 0; i <= 5; ++i) {
    QAction* a = rate->addAction(i ? stars(i) : tr("No rating"));
    connect(a, &QAction::triggered, this, [this, ids, i] { setRating(ids, i); });
  }
  QAction* tags = menu.addAction(tr("Tags…"));
  tags->setEnabled(ids.size() == 1);
  menu.addSeparator();
  QAction* exportPng = menu.addAction(tr("Export PNGs (with settings)…"));
  QAction* sheet = menu.addAction(tr("Export contact sheet…"));
  menu.addSeparator();
  const bool inTrash = m_trash->isChecked();
  QAction* trash = menu.addAction(inTrash ? tr("Restore") : tr("Move to trash"));
  QAction* empty = inTrash ? menu.addAction(tr("Empty trash…")) : nullptr;
  QAction* chosen = menu.exec(m_view->viewport()->mapToGlobal(pos));
  if (!chosen) return;
  if (chosen == reproduce) {
    auto rec = m_model->store()->record(ids.front());
    if (rec) Q_EMIT reproduceRequested(QByteArray::fromStdString(rec->settings));
  } else if (chosen == tags) {
    auto rec = m_model->store()->record(ids.front());
    QStringList current;
    if (rec)
      for (const auto& t : rec->tags) current << qs(t);
    bool ok = false;
    const QString text = QInputDialog::getText(this, tr("Tags"), tr("Tags, separated by spaces:"), QLineEdit::Normal,
                                               current.join(QLatin1Char(' ')), &ok);
    if (ok) setTags(ids.front(), text.split(QLatin1Char(' '), Qt::SkipEmptyParts));
  } else if (chosen == exportPng) {
    const QString folder = QFileDialog::getExistingDirectory(this, tr("Export to folder"));
    if (!folder.isEmpty())
      if (const QString e = exportImages(ids, folder); !e.isEmpty()) QMessageBox::warning(this, tr("Export"), e);
  } else if (chosen == sheet) {
    const QString path = QFileDialog::getSaveFileName(this, tr("Contact sheet"), QStringLiteral("contact-sheet.png"), tr("PNG (*.png)"));
    if (!path.isEmpty())
      if (const QString e = exportContactSheet(ids, path); !e.isEmpty()) QMessageBox::warning(this, tr("Export"), e);
  } else if (chosen == trash) {
    moveToTrash(ids, !inTrash);
  } else if (empty && chosen == empty) {
    if (QMessageBox::question(this, tr("Empty trash"), tr("Delete every image in the trash for good?")) == QMessageBox::Yes) emptyTrash();
  }
}

PanelDescriptor describePanel_gallery() {
  PanelDescriptor d;
  d.title = GalleryPanel::tr("Gallery");
  d.area = Qt::RightDockWidgetArea;
  d.defaultExtent = 400;
  d.create = [](const PanelContext& c) { return new GalleryPanel(c.parent); };
  return d;
}

}  // namespace tessera
