// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <QAbstractListModel>
#include <QCache>
#include <QPixmap>
#include <QThreadPool>
#include <QWidget>

#include <memory>

class QComboBox;
class QLabel;
class QLineEdit;
class QListView;
class QToolButton;

namespace tessera {

class GalleryStore;
struct GalleryFilter;

/// The gallery as a list model: ids from one query, rows read on demand, thumbnails
/// decoded lazily into a bounded cache, so 25,000 images scroll like 25.
class GalleryModel final : public QAbstractListModel {
  Q_OBJECT
public:
  enum Roles { IdRole = Qt::UserRole + 1, RatingRole };
  explicit GalleryModel(QObject* parent = nullptr);
  ~GalleryModel() override;
  /// Opens (creating) the gallery file; returns the error or empty.
  QString open(const QString& path);
  QString path() const { return m_path; }
  GalleryStore* store() const { return m_store.get(); }
  /// Runs the query; returns the error or empty.
  QString setFilter(const GalleryFilter& filter);
  QString reload();
  qint64 idAt(int row) const { return row >= 0 && row < m_ids.size() ? m_ids[row] : 0; }
  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;

private:
  struct Row {
    QString text, tooltip;
    int rating = 0;
  };
  const Row* row(qint64 id) const;

  QString m_path;
  std::unique_ptr<GalleryStore> m_store;
  std::unique_ptr<GalleryFilter> m_filter;
  QVector<qint64> m_ids;
  mutable QCache<qint64, QPixmap> m_thumbnails{4000};
  mutable QCache<qint64, Row> m_rows{4000};
};

/// Grid, filters, free-text search, sort, stars, tags, trash, reproduce and export.
class GalleryPanel final : public QWidget {
  Q_OBJECT
public:
  explicit GalleryPanel(QWidget* parent = nullptr);
  QString open(const QString& path);
  GalleryModel* model() const { return m_model; }
  QListView* view() const { return m_view; }
  QLineEdit* searchField() const { return m_search; }
  /// Re-runs the query (after new images or edits), the filter menus too.
  void refresh();
  /// Runs the query the filter widgets describe (typing in the search field does, debounced).
  void applyFilter();
  QVector<qint64> selectedIds() const;
  /// Writes run on a one-thread pool with their own connection; the grid refreshes after.
  void setRating(const QVector<qint64>& ids, int stars);
  void moveToTrash(const QVector<qint64>& ids, bool trash);
  void emptyTrash();
  void setTags(qint64 id, const QStringList& tags);
  QString exportImages(const QVector<qint64>& ids, const QString& folder) const;
  QString exportContactSheet(const QVector<qint64>& ids, const QString& path) const;
  /// Waits for queued writes (tests, closing).
  void waitForWrites();

Q_SIGNALS:
  /// The PNG metadata (JSON) of an image to put back into the Generate panel.
  void reproduceRequested(const QByteArray& settings);
  /// An image to show on the canvas.
  void showRequested(const QImage& image, const QByteArray& png);

private:
  void refreshChoices();
  void contextMenu(const QPoint& pos);
  void write(std::function<QString(GalleryStore&)> change);

  GalleryModel* m_model = nullptr;
  QListView* m_view = nullptr;
  QLineEdit* m_search = nullptr;
  QComboBox* m_modelFilter = nullptr;
  QComboBox* m_backbone = nullptr;
  QComboBox* m_sampler = nullptr;
  QComboBox* m_class = nullptr;
  QComboBox* m_rating = nullptr;
  QComboBox* m_tag = nullptr;
  QComboBox* m_since = nullptr;
  QComboBox* m_sort = nullptr;
  QToolButton* m_trash = nullptr;
  QLabel* m_status = nullptr;
  QThreadPool m_writes;
};

}  // namespace tessera
