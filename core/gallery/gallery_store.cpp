// SPDX-License-Identifier: Apache-2.0
#include "core/gallery/gallery_store.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>
#include <openssl/evp.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>
#include <variant>

#include <sys/statvfs.h>
#include <unistd.h>

namespace tessera {
namespace {

// Migration i takes the schema from version i to i + 1; each runs in one transaction.
// Never edit a released step: add a new one.
const char* const kMigrations[] = {
    // 0 → 1
    R"sql(
CREATE TABLE images(
  id INTEGER PRIMARY KEY,
  created_at TEXT NOT NULL,
  model_name TEXT NOT NULL,
  model_path TEXT NOT NULL,
  model_hash TEXT NOT NULL,
  backbone TEXT NOT NULL,
  process TEXT NOT NULL,
  sampler TEXT NOT NULL,
  steps INTEGER NOT NULL,
  cfg REAL NOT NULL,
  cfg_low REAL NOT NULL,
  cfg_high REAL NOT NULL,
  seed INTEGER NOT NULL,
  class_index INTEGER NOT NULL,
  class_name TEXT NOT NULL,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL,
  settings TEXT NOT NULL,
  software TEXT NOT NULL,
  seconds REAL NOT NULL,
  rating INTEGER NOT NULL DEFAULT 0 CHECK (rating BETWEEN 0 AND 5),
  note TEXT NOT NULL DEFAULT '',
  trashed_at TEXT,
  png_sha256 TEXT NOT NULL
);
CREATE TABLE image_data(
  image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
  png BLOB NOT NULL,
  thumbnail BLOB NOT NULL
);
CREATE TABLE tags(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE COLLATE NOCASE
);
CREATE TABLE image_tags(
  image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  tag_id INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
  PRIMARY KEY (image_id, tag_id)
) WITHOUT ROWID;
CREATE INDEX image_tags_tag ON image_tags(tag_id);
CREATE INDEX images_created ON images(trashed_at, created_at);
CREATE INDEX images_model ON images(model_name);
CREATE INDEX images_class ON images(class_index);
CREATE INDEX images_rating ON images(rating);
CREATE VIRTUAL TABLE gallery_fts USING fts5(model_name, backbone, sampler, class_name, tags, note);
)sql",
    // 1 → 2: comparison sets (the studio's Compare grid), cells pointing at images.
    R"sql(
CREATE TABLE comparisons(
  id INTEGER PRIMARY KEY,
  created_at TEXT NOT NULL,
  title TEXT NOT NULL,
  layout TEXT NOT NULL
);
CREATE TABLE comparison_cells(
  comparison_id INTEGER NOT NULL REFERENCES comparisons(id) ON DELETE CASCADE,
  row_index INTEGER NOT NULL,
  column_index INTEGER NOT NULL,
  image_id INTEGER REFERENCES images(id) ON DELETE SET NULL,
  metrics TEXT NOT NULL,
  PRIMARY KEY (comparison_id, row_index, column_index)
) WITHOUT ROWID;
CREATE INDEX comparison_cells_image ON comparison_cells(image_id);
)sql",
    // 2 → 3: training jobs started from the studio (their files live in run_dir).
    R"sql(
CREATE TABLE training_jobs(
  id INTEGER PRIMARY KEY,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  config TEXT NOT NULL,
  run_dir TEXT NOT NULL,
  init_model TEXT NOT NULL,
  state TEXT NOT NULL,
  step INTEGER NOT NULL,
  steps INTEGER NOT NULL,
  pid INTEGER NOT NULL,
  queue_order INTEGER NOT NULL,
  last_output TEXT NOT NULL,
  model_path TEXT NOT NULL,
  evaluation TEXT NOT NULL
);
)sql",
};
constexpr int kMigrationCount = static_cast<int>(sizeof kMigrations / sizeof kMigrations[0]);
static_assert(kMigrationCount == GalleryStore::kSchemaVersion, "one migration per schema version");

/// "; No space left on device: FOLDER has N KB free" when the disk holding the gallery is
/// (nearly) full, else empty. SQLite reports a full disk as "database or disk is full" at
/// best and as "disk I/O error" where it could not even create its shared-memory file.
std::string fullDiskNote(const std::string& path) {
  std::filesystem::path folder = std::filesystem::path(path).parent_path();
  if (folder.empty()) folder = ".";
  struct statvfs fs {};
  if (::statvfs(folder.c_str(), &fs) != 0) return {};
  const unsigned long long room = static_cast<unsigned long long>(fs.f_bavail) * fs.f_frsize;
  if (room >= (1ull << 20)) return {};
  return "; No space left on device: " + folder.string() + " has " + std::to_string(room / 1024) +
         " KB free (free some space, or choose a gallery on another disk)";
}

std::string describe(const std::exception& e, const std::string& path) { return e.what() + fullDiskNote(path); }

/// Runs `body`, turning SQLite's exceptions into an Error that names the gallery file.
template <class F>
auto guarded(const std::string& path, const char* what, F&& body) -> Result<decltype(body())> {
  try {
    if constexpr (std::is_void_v<decltype(body())>) {
      body();
      return {};
    } else {
      return body();
    }
  } catch (const std::exception& e) {
    return fail(path + ": gallery " + what + " failed: " + describe(e, path));
  }
}

/// Free text → an FTS5 query: each whitespace-separated word quoted (so no user text
/// is FTS syntax) and prefix-matched; words are ANDed.
std::string ftsQuery(const std::string& text) {
  std::istringstream in(text);
  std::string out;
  for (std::string word; in >> word;) {
    std::string quoted = "\"";
    for (char c : word) {
      if (c == '"') quoted += "\"\"";
      else quoted += c;
    }
    quoted += "\"*";
    out += (out.empty() ? "" : " ") + quoted;
  }
  return out;
}

using Param = std::variant<std::int64_t, double, std::string>;

void bindAll(SQLite::Statement& s, const std::vector<Param>& params) {
  int i = 1;
  for (const auto& p : params) {
    if (const auto* v = std::get_if<std::int64_t>(&p)) s.bind(i, static_cast<std::int64_t>(*v));
    else if (const auto* d = std::get_if<double>(&p)) s.bind(i, *d);
    else s.bind(i, std::get<std::string>(p));
    ++i;
  }
}

std::string blobOf(SQLite::Column c) {
  if (c.isNull()) return {};
  const auto* data = static_cast<const char*>(c.getBlob());
  return std::string(data, data + c.getBytes());
}

}  // namespace

GalleryStore::GalleryStore(GalleryStore&&) noexcept = default;
GalleryStore& GalleryStore::operator=(GalleryStore&&) noexcept = default;
GalleryStore::~GalleryStore() = default;

std::string GalleryStore::nowIso() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

Result<GalleryStore> GalleryStore::openOnce(const std::string& path, bool* busy) {
  GalleryStore store;
  store.m_path = path;
  if (const auto parent = std::filesystem::path(path).parent_path(); !parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) return fail(path + ": cannot create the gallery's folder: " + ec.message());
  }
  // A gallery is written after every generation: find out now, not after the work, when it
  // cannot be (a read-only file opens read-only without a word; a read-only folder fails at
  // the first write, when SQLite creates its journal beside the file).
  if (std::filesystem::exists(path)) {
    const auto folder = std::filesystem::absolute(path).parent_path();
    if (::access(folder.c_str(), W_OK) != 0)
      return fail(path + ": the gallery's folder " + folder.string() +
                  " is not writable (SQLite keeps its journal beside the file): make it writable or choose "
                  "another gallery");
  }
  try {
    store.m_db = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, 5000);
    if (sqlite3_db_readonly(store.m_db->getHandle(), "main") == 1)
      return fail(path +
                  ": the gallery file is read-only: every generated image is added to it; make it writable "
                  "(chmod u+w) or choose another gallery");
    // The first statement reads the header: a file that is not a database fails here.
    int version = 0;
    // The checks below read the version and the tables in one snapshot: another process
    // may be creating this gallery, and between two snapshots it would look half made.
    struct ReadSnapshot {
      SQLite::Database& db;
      bool open = false;
      void end() {
        open = false;
        db.exec("COMMIT");
      }
      ~ReadSnapshot() {
        if (!open) return;
        try {
          db.exec("ROLLBACK");
        } catch (const std::exception&) {  // nothing was written: nothing to undo
        }
      }
    } snapshot{*store.m_db};
    store.m_db->exec("BEGIN");
    snapshot.open = true;
    try {
      version = store.m_db->execAndGet("PRAGMA user_version").getInt();
    } catch (const SQLite::Exception& e) {
      if (e.getErrorCode() == SQLITE_NOTADB)
        return fail(path + ": not a Tessera gallery (SQLite says: " + e.what() +
                    "); expected a gallery database, or a new file name to create one");
      // A read-only folder, a full disk, a lock held too long: the file may be a good gallery.
      const std::string full = fullDiskNote(path);
      if (!full.empty()) return fail(path + ": cannot open the gallery (SQLite says: " + e.what() + ")" + full);
      return fail(path + ": cannot read the gallery (SQLite says: " + e.what() +
                  "); check that its folder is writable and the disk has room");
    }
    if (version < 0)
      return fail(path + ": damaged gallery: schema version " + std::to_string(version) +
                  " is not one Tessera writes (expected 0 to " + std::to_string(kSchemaVersion) +
                  "); the file was left as it is");
    if (version > kSchemaVersion)
      return fail(path + ": gallery schema version " + std::to_string(version) + " is newer than this Tessera understands (" +
                  std::to_string(kSchemaVersion) + "); open it with a newer Tessera");
    if (version == 0) {
      const int tables = store.m_db->execAndGet("SELECT count(*) FROM sqlite_master WHERE type = 'table'").getInt();
      if (tables > 0)
        return fail(path + ": a SQLite database of another kind (" + std::to_string(tables) +
                    " tables, no Tessera schema version); expected a Tessera gallery");
    } else {
      std::vector<const char*> tables = {"images", "image_data", "tags", "image_tags", "gallery_fts"};
      if (version >= 2) tables.insert(tables.end(), {"comparisons", "comparison_cells"});
      for (const char* table : tables)
        if (!store.m_db->tableExists(table))
          return fail(path + ": damaged gallery: table '" + std::string(table) + "' is missing (schema version " +
                      std::to_string(version) + ")");
    }
    snapshot.end();
    store.m_db->exec("PRAGMA journal_mode = WAL");
    store.m_db->exec("PRAGMA foreign_keys = ON");
    store.m_db->exec("PRAGMA synchronous = NORMAL");  // WAL + NORMAL: a killed process loses nothing committed
  } catch (const SQLite::Exception& e) {
    if (e.getErrorCode() == SQLITE_BUSY) {
      if (busy) *busy = true;
      return fail(path + ": cannot open the gallery: another process holds it (" + std::string(e.what()) + ")");
    }
    return fail(path + ": cannot open the gallery: " + describe(e, path));
  } catch (const std::exception& e) {
    return fail(path + ": cannot open the gallery: " + describe(e, path));
  }
  if (auto ok = store.migrate(); !ok) return fail(ok.error());
  return store;
}

Result<GalleryStore> GalleryStore::open(const std::string& path) {
  // Another process creating or switching the same gallery to WAL can answer "database is
  // locked" without SQLite's busy wait (a lock upgrade that would deadlock): wait and try
  // again, for up to about ten seconds, before saying so.
  for (int attempt = 0;; ++attempt) {
    bool busy = false;
    auto store = openOnce(path, &busy);
    if (store || !busy || attempt == 200) return store;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<void> GalleryStore::migrate() {
  static_assert(sizeof kMigrations / sizeof kMigrations[0] == kSchemaVersion, "one migration per schema version");
  return guarded(m_path, "migration", [&] {
    // BEGIN IMMEDIATE takes the write lock before the version is read, so that two processes
    // creating one new gallery at once migrate it once (the other waits, then sees it done).
    for (;;) {
      m_db->exec("BEGIN IMMEDIATE");
      try {
        const int version = m_db->execAndGet("PRAGMA user_version").getInt();
        if (version < 0 || version >= kSchemaVersion) {
          m_db->exec("COMMIT");
          return;
        }
        m_db->exec(kMigrations[version]);
        m_db->exec("PRAGMA user_version = " + std::to_string(version + 1));
        m_db->exec("COMMIT");
      } catch (...) {
        m_db->exec("ROLLBACK");
        throw;
      }
    }
  });
}

void GalleryStore::writeFts(std::int64_t id) {
  SQLite::Statement del(*m_db, "DELETE FROM gallery_fts WHERE rowid = ?");
  del.bind(1, static_cast<std::int64_t>(id));
  del.exec();
  SQLite::Statement ins(*m_db, R"sql(
INSERT INTO gallery_fts(rowid, model_name, backbone, sampler, class_name, tags, note)
SELECT id, model_name, backbone, sampler, class_name,
       coalesce((SELECT group_concat(t.name, ' ') FROM image_tags it JOIN tags t ON t.id = it.tag_id
                 WHERE it.image_id = images.id), ''),
       note
FROM images WHERE id = ?)sql");
  ins.bind(1, static_cast<std::int64_t>(id));
  ins.exec();
}

std::int64_t GalleryStore::insertOne(GalleryRecord& r, const std::string& png, const std::string& thumbnail) {
  if (r.createdAt.empty()) r.createdAt = nowIso();
  if (r.pngSha256.empty()) r.pngSha256 = sha256Hex(png);
  if (r.rating < 0 || r.rating > 5) throw std::invalid_argument("rating " + std::to_string(r.rating) + " is outside 0…5");
  SQLite::Statement s(*m_db, R"sql(
INSERT INTO images(created_at, model_name, model_path, model_hash, backbone, process, sampler, steps, cfg, cfg_low,
                   cfg_high, seed, class_index, class_name, width, height, settings, software, seconds, rating, note,
                   trashed_at, png_sha256)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?))sql");
  bindAll(s, {r.createdAt, r.modelName, r.modelPath, r.modelHash, r.backbone, r.process, r.sampler, r.steps, r.cfg,
              r.cfgLow, r.cfgHigh, static_cast<std::int64_t>(r.seed), r.classIndex, r.className, r.width, r.height,
              r.settings, r.software, r.seconds, static_cast<std::int64_t>(r.rating), r.note});
  if (r.trashedAt.empty()) s.bind(22);
  else s.bind(22, r.trashedAt);
  s.bind(23, r.pngSha256);
  s.exec();
  r.id = m_db->getLastInsertRowid();
  SQLite::Statement d(*m_db, "INSERT INTO image_data(image_id, png, thumbnail) VALUES (?, ?, ?)");
  d.bind(1, static_cast<std::int64_t>(r.id));
  d.bind(2, png.data(), static_cast<int>(png.size()));
  d.bind(3, thumbnail.data(), static_cast<int>(thumbnail.size()));
  d.exec();
  for (const auto& tag : r.tags) {
    SQLite::Statement t(*m_db, "INSERT INTO tags(name) VALUES (?) ON CONFLICT(name) DO NOTHING");
    t.bind(1, tag);
    t.exec();
    SQLite::Statement link(*m_db, "INSERT OR IGNORE INTO image_tags(image_id, tag_id) SELECT ?, id FROM tags WHERE name = ?");
    link.bind(1, static_cast<std::int64_t>(r.id));
    link.bind(2, tag);
    link.exec();
  }
  writeFts(r.id);
  return r.id;
}

Result<std::int64_t> GalleryStore::add(GalleryRecord record, const std::string& png, const std::string& thumbnail) {
  return guarded(m_path, "insert", [&] {
    SQLite::Transaction t(*m_db);
    const std::int64_t id = insertOne(record, png, thumbnail);
    t.commit();
    return id;
  });
}

Result<std::vector<std::int64_t>> GalleryStore::addMany(std::vector<GalleryRecord> records, const std::vector<std::string>& pngs,
                                                        const std::vector<std::string>& thumbnails) {
  if (pngs.size() != records.size() || thumbnails.size() != records.size())
    return fail("gallery addMany: " + std::to_string(records.size()) + " records but " + std::to_string(pngs.size()) +
                " PNGs and " + std::to_string(thumbnails.size()) + " thumbnails");
  return guarded(m_path, "insert", [&] {
    SQLite::Transaction t(*m_db);
    std::vector<std::int64_t> ids;
    ids.reserve(records.size());
    for (std::size_t i = 0; i < records.size(); ++i) ids.push_back(insertOne(records[i], pngs[i], thumbnails[i]));
    t.commit();
    return ids;
  });
}

Result<std::vector<std::int64_t>> GalleryStore::query(const GalleryFilter& f) const {
  std::string sql = "SELECT id FROM images WHERE ";
  std::vector<Param> params;
  sql += f.trash ? "trashed_at IS NOT NULL" : "trashed_at IS NULL";
  auto eq = [&](const char* column, const std::string& value) {
    if (value.empty()) return;
    sql += std::string(" AND ") + column + " = ?";
    params.emplace_back(value);
  };
  eq("model_name", f.modelName);
  eq("backbone", f.backbone);
  eq("sampler", f.sampler);
  if (f.classIndex) {
    sql += " AND class_index = ?";
    params.emplace_back(*f.classIndex);
  }
  if (f.minRating > 0) {
    sql += " AND rating >= ?";
    params.emplace_back(static_cast<std::int64_t>(f.minRating));
  }
  if (!f.from.empty()) {
    sql += " AND created_at >= ?";
    params.emplace_back(f.from);
  }
  if (!f.to.empty()) {
    sql += " AND created_at <= ?";  // '~' sorts after every character of an ISO time: the bound is inclusive
    params.emplace_back(f.to + "~");
  }
  if (!f.tag.empty()) {
    sql += " AND id IN (SELECT it.image_id FROM image_tags it JOIN tags t ON t.id = it.tag_id WHERE t.name = ?)";
    params.emplace_back(f.tag);
  }
  const std::string match = ftsQuery(f.text);
  if (!match.empty()) {
    sql += " AND id IN (SELECT rowid FROM gallery_fts WHERE gallery_fts MATCH ?)";
    params.emplace_back(match);
  }
  switch (f.sort) {
    case GallerySort::Newest: sql += " ORDER BY created_at DESC, id DESC"; break;
    case GallerySort::Oldest: sql += " ORDER BY created_at ASC, id ASC"; break;
    case GallerySort::Rating: sql += " ORDER BY rating DESC, created_at DESC, id DESC"; break;
    case GallerySort::Model: sql += " ORDER BY model_name, created_at DESC, id DESC"; break;
    case GallerySort::Class: sql += " ORDER BY class_index, created_at DESC, id DESC"; break;
  }
  return guarded(m_path, "query", [&] {
    SQLite::Statement s(*m_db, sql);
    bindAll(s, params);
    std::vector<std::int64_t> ids;
    while (s.executeStep()) ids.push_back(s.getColumn(0).getInt64());
    return ids;
  });
}

Result<GalleryRecord> GalleryStore::record(std::int64_t id) const {
  auto r = guarded(m_path, "read", [&]() -> std::optional<GalleryRecord> {
    SQLite::Statement s(*m_db, R"sql(
SELECT id, created_at, model_name, model_path, model_hash, backbone, process, sampler, steps, cfg, cfg_low, cfg_high,
       seed, class_index, class_name, width, height, settings, software, seconds, rating, note, trashed_at, png_sha256
FROM images WHERE id = ?)sql");
    s.bind(1, static_cast<std::int64_t>(id));
    if (!s.executeStep()) return std::nullopt;
    GalleryRecord r;
    int c = 0;
    r.id = s.getColumn(c++).getInt64();
    r.createdAt = s.getColumn(c++).getString();
    r.modelName = s.getColumn(c++).getString();
    r.modelPath = s.getColumn(c++).getString();
    r.modelHash = s.getColumn(c++).getString();
    r.backbone = s.getColumn(c++).getString();
    r.process = s.getColumn(c++).getString();
    r.sampler = s.getColumn(c++).getString();
    r.steps = s.getColumn(c++).getInt64();
    r.cfg = s.getColumn(c++).getDouble();
    r.cfgLow = s.getColumn(c++).getDouble();
    r.cfgHigh = s.getColumn(c++).getDouble();
    r.seed = static_cast<std::uint64_t>(s.getColumn(c++).getInt64());
    r.classIndex = s.getColumn(c++).getInt64();
    r.className = s.getColumn(c++).getString();
    r.width = s.getColumn(c++).getInt64();
    r.height = s.getColumn(c++).getInt64();
    r.settings = s.getColumn(c++).getString();
    r.software = s.getColumn(c++).getString();
    r.seconds = s.getColumn(c++).getDouble();
    r.rating = s.getColumn(c++).getInt();
    r.note = s.getColumn(c++).getString();
    r.trashedAt = s.getColumn(c++).getString();  // NULL reads as ""
    r.pngSha256 = s.getColumn(c++).getString();
    SQLite::Statement t(*m_db, "SELECT t.name FROM image_tags it JOIN tags t ON t.id = it.tag_id WHERE it.image_id = ? ORDER BY t.name");
    t.bind(1, static_cast<std::int64_t>(id));
    while (t.executeStep()) r.tags.push_back(t.getColumn(0).getString());
    return r;
  });
  if (!r) return fail(r.error());
  if (!*r) return fail(m_path + ": no gallery image with id " + std::to_string(id));
  return std::move(**r);
}

namespace {
Result<std::string> readBlob(SQLite::Database& db, const std::string& path, const char* column, std::int64_t id) {
  auto r = guarded(path, "read", [&]() -> std::optional<std::string> {
    SQLite::Statement s(db, std::string("SELECT ") + column + " FROM image_data WHERE image_id = ?");
    s.bind(1, static_cast<std::int64_t>(id));
    if (!s.executeStep()) return std::nullopt;
    return blobOf(s.getColumn(0));
  });
  if (!r) return fail(r.error());
  if (!*r) return fail(path + ": no image data for gallery id " + std::to_string(id));
  return std::move(**r);
}
}  // namespace

Result<std::int64_t> GalleryStore::addComparison(ComparisonRecord record) {
  if (record.createdAt.empty()) record.createdAt = nowIso();
  return guarded(m_path, "saving a comparison", [&] {
    SQLite::Transaction t(*m_db);
    SQLite::Statement ins(*m_db, "INSERT INTO comparisons(created_at, title, layout) VALUES (?, ?, ?)");
    ins.bind(1, record.createdAt);
    ins.bind(2, record.title);
    ins.bind(3, record.layout);
    ins.exec();
    const std::int64_t id = m_db->getLastInsertRowid();
    SQLite::Statement cell(*m_db, "INSERT INTO comparison_cells(comparison_id, row_index, column_index, image_id, metrics) VALUES (?, ?, ?, ?, ?)");
    for (const ComparisonCell& c : record.cells) {
      cell.bind(1, id);
      cell.bind(2, c.row);
      cell.bind(3, c.column);
      if (c.imageId) cell.bind(4, *c.imageId);
      else cell.bind(4);
      cell.bind(5, c.metrics);
      cell.exec();
      cell.reset();
      cell.clearBindings();
    }
    t.commit();
    return id;
  });
}

Result<std::vector<ComparisonRecord>> GalleryStore::comparisons() const {
  return guarded(m_path, "listing comparisons", [&] {
    std::vector<ComparisonRecord> out;
    SQLite::Statement q(*m_db, "SELECT id, created_at, title, layout FROM comparisons ORDER BY created_at DESC, id DESC");
    while (q.executeStep()) {
      ComparisonRecord r;
      r.id = q.getColumn(0).getInt64();
      r.createdAt = q.getColumn(1).getString();
      r.title = q.getColumn(2).getString();
      r.layout = q.getColumn(3).getString();
      out.push_back(std::move(r));
    }
    return out;
  });
}

Result<ComparisonRecord> GalleryStore::comparison(std::int64_t id) const {
  auto r = guarded(m_path, "reading a comparison", [&]() -> std::optional<ComparisonRecord> {
    SQLite::Statement q(*m_db, "SELECT created_at, title, layout FROM comparisons WHERE id = ?");
    q.bind(1, id);
    if (!q.executeStep()) return std::nullopt;
    ComparisonRecord rec;
    rec.id = id;
    rec.createdAt = q.getColumn(0).getString();
    rec.title = q.getColumn(1).getString();
    rec.layout = q.getColumn(2).getString();
    SQLite::Statement cells(*m_db, "SELECT row_index, column_index, image_id, metrics FROM comparison_cells WHERE comparison_id = ? ORDER BY row_index, column_index");
    cells.bind(1, id);
    while (cells.executeStep()) {
      ComparisonCell c;
      c.row = cells.getColumn(0).getInt();
      c.column = cells.getColumn(1).getInt();
      if (!cells.getColumn(2).isNull()) c.imageId = cells.getColumn(2).getInt64();
      c.metrics = cells.getColumn(3).getString();
      rec.cells.push_back(std::move(c));
    }
    return rec;
  });
  if (!r) return fail(r.error());
  if (!*r) return fail(m_path + ": no comparison with id " + std::to_string(id));
  return std::move(**r);
}

Result<void> GalleryStore::deleteComparison(std::int64_t id) {
  return guarded(m_path, "deleting a comparison", [&] {
    SQLite::Statement d(*m_db, "DELETE FROM comparisons WHERE id = ?");
    d.bind(1, id);
    d.exec();
  });
}

namespace {

void bindJob(SQLite::Statement& s, const TrainingJobRecord& j) {
  s.bind(1, j.updatedAt);
  s.bind(2, j.name);
  s.bind(3, j.kind);
  s.bind(4, j.config);
  s.bind(5, j.runDir);
  s.bind(6, j.initModel);
  s.bind(7, j.state);
  s.bind(8, j.step);
  s.bind(9, j.steps);
  s.bind(10, j.pid);
  s.bind(11, j.queueOrder);
  s.bind(12, j.lastOutput);
  s.bind(13, j.modelPath);
  s.bind(14, j.evaluation);
}

constexpr const char* kJobColumns =
    "id, created_at, updated_at, name, kind, config, run_dir, init_model, state, step, steps, pid, queue_order, "
    "last_output, model_path, evaluation";

TrainingJobRecord readJob(SQLite::Statement& q) {
  TrainingJobRecord j;
  j.id = q.getColumn(0).getInt64();
  j.createdAt = q.getColumn(1).getString();
  j.updatedAt = q.getColumn(2).getString();
  j.name = q.getColumn(3).getString();
  j.kind = q.getColumn(4).getString();
  j.config = q.getColumn(5).getString();
  j.runDir = q.getColumn(6).getString();
  j.initModel = q.getColumn(7).getString();
  j.state = q.getColumn(8).getString();
  j.step = q.getColumn(9).getInt64();
  j.steps = q.getColumn(10).getInt64();
  j.pid = q.getColumn(11).getInt64();
  j.queueOrder = q.getColumn(12).getInt64();
  j.lastOutput = q.getColumn(13).getString();
  j.modelPath = q.getColumn(14).getString();
  j.evaluation = q.getColumn(15).getString();
  return j;
}

}  // namespace

Result<std::int64_t> GalleryStore::addTrainingJob(TrainingJobRecord job) {
  if (job.createdAt.empty()) job.createdAt = nowIso();
  if (job.updatedAt.empty()) job.updatedAt = job.createdAt;
  return guarded(m_path, "saving a training job", [&] {
    SQLite::Statement ins(*m_db,
                          "INSERT INTO training_jobs(updated_at, name, kind, config, run_dir, init_model, state, step, "
                          "steps, pid, queue_order, last_output, model_path, evaluation, created_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    bindJob(ins, job);
    ins.bind(15, job.createdAt);
    ins.exec();
    return static_cast<std::int64_t>(m_db->getLastInsertRowid());
  });
}

Result<void> GalleryStore::updateTrainingJob(const TrainingJobRecord& job) {
  TrainingJobRecord j = job;
  j.updatedAt = nowIso();
  return guarded(m_path, "updating a training job", [&] {
    SQLite::Statement up(*m_db,
                         "UPDATE training_jobs SET updated_at = ?, name = ?, kind = ?, config = ?, run_dir = ?, "
                         "init_model = ?, state = ?, step = ?, steps = ?, pid = ?, queue_order = ?, last_output = ?, "
                         "model_path = ?, evaluation = ? WHERE id = ?");
    bindJob(up, j);
    up.bind(15, j.id);
    if (up.exec() != 1) throw std::runtime_error("no training job " + std::to_string(j.id));
  });
}

Result<std::vector<TrainingJobRecord>> GalleryStore::trainingJobs() const {
  return guarded(m_path, "listing training jobs", [&] {
    std::vector<TrainingJobRecord> out;
    SQLite::Statement q(*m_db, std::string("SELECT ") + kJobColumns + " FROM training_jobs ORDER BY id");
    while (q.executeStep()) out.push_back(readJob(q));
    return out;
  });
}

Result<TrainingJobRecord> GalleryStore::trainingJob(std::int64_t id) const {
  return guarded(m_path, "reading a training job", [&] {
    SQLite::Statement q(*m_db, std::string("SELECT ") + kJobColumns + " FROM training_jobs WHERE id = ?");
    q.bind(1, id);
    if (!q.executeStep()) throw std::runtime_error("no training job " + std::to_string(id));
    return readJob(q);
  });
}

Result<void> GalleryStore::deleteTrainingJob(std::int64_t id) {
  return guarded(m_path, "deleting a training job", [&] {
    SQLite::Statement d(*m_db, "DELETE FROM training_jobs WHERE id = ?");
    d.bind(1, id);
    d.exec();
  });
}

Result<std::string> GalleryStore::png(std::int64_t id) const { return readBlob(*m_db, m_path, "png", id); }
Result<std::string> GalleryStore::thumbnail(std::int64_t id) const { return readBlob(*m_db, m_path, "thumbnail", id); }

Result<std::int64_t> GalleryStore::count(bool trash) const {
  return guarded(m_path, "count", [&] {
    return m_db->execAndGet(trash ? "SELECT count(*) FROM images WHERE trashed_at IS NOT NULL"
                                  : "SELECT count(*) FROM images WHERE trashed_at IS NULL")
        .getInt64();
  });
}

Result<void> GalleryStore::setRating(std::int64_t id, int stars) {
  if (stars < 0 || stars > 5) return fail("rating: expected 0 to 5 stars, got " + std::to_string(stars));
  return guarded(m_path, "rating", [&] {
    SQLite::Statement s(*m_db, "UPDATE images SET rating = ? WHERE id = ?");
    s.bind(1, stars);
    s.bind(2, static_cast<std::int64_t>(id));
    if (s.exec() != 1) throw std::runtime_error("no image with id " + std::to_string(id));
  });
}

Result<void> GalleryStore::setTags(std::int64_t id, const std::vector<std::string>& tags) {
  for (const auto& tag : tags)
    if (tag.empty() || tag.find_first_of(" \t\n,") != std::string::npos)
      return fail("tag '" + tag + "': expected a non-empty word without spaces or commas");
  return guarded(m_path, "tagging", [&] {
    SQLite::Transaction t(*m_db);
    SQLite::Statement exists(*m_db, "SELECT 1 FROM images WHERE id = ?");
    exists.bind(1, static_cast<std::int64_t>(id));
    if (!exists.executeStep()) throw std::runtime_error("no image with id " + std::to_string(id));
    SQLite::Statement clear(*m_db, "DELETE FROM image_tags WHERE image_id = ?");
    clear.bind(1, static_cast<std::int64_t>(id));
    clear.exec();
    for (const auto& tag : tags) {
      SQLite::Statement ins(*m_db, "INSERT INTO tags(name) VALUES (?) ON CONFLICT(name) DO NOTHING");
      ins.bind(1, tag);
      ins.exec();
      SQLite::Statement link(*m_db, "INSERT OR IGNORE INTO image_tags(image_id, tag_id) SELECT ?, id FROM tags WHERE name = ?");
      link.bind(1, static_cast<std::int64_t>(id));
      link.bind(2, tag);
      link.exec();
    }
    m_db->exec("DELETE FROM tags WHERE id NOT IN (SELECT tag_id FROM image_tags)");
    writeFts(id);
    t.commit();
  });
}

Result<void> GalleryStore::setNote(std::int64_t id, const std::string& note) {
  return guarded(m_path, "note", [&] {
    SQLite::Transaction t(*m_db);
    SQLite::Statement s(*m_db, "UPDATE images SET note = ? WHERE id = ?");
    s.bind(1, note);
    s.bind(2, static_cast<std::int64_t>(id));
    if (s.exec() != 1) throw std::runtime_error("no image with id " + std::to_string(id));
    writeFts(id);
    t.commit();
  });
}

Result<void> GalleryStore::moveToTrash(const std::vector<std::int64_t>& ids) {
  return guarded(m_path, "trash", [&] {
    SQLite::Transaction t(*m_db);
    const std::string now = nowIso();
    for (auto id : ids) {
      SQLite::Statement s(*m_db, "UPDATE images SET trashed_at = ? WHERE id = ? AND trashed_at IS NULL");
      s.bind(1, now);
      s.bind(2, static_cast<std::int64_t>(id));
      s.exec();
    }
    t.commit();
  });
}

Result<void> GalleryStore::restore(const std::vector<std::int64_t>& ids) {
  return guarded(m_path, "restore", [&] {
    SQLite::Transaction t(*m_db);
    for (auto id : ids) {
      SQLite::Statement s(*m_db, "UPDATE images SET trashed_at = NULL WHERE id = ?");
      s.bind(1, static_cast<std::int64_t>(id));
      s.exec();
    }
    t.commit();
  });
}

Result<std::int64_t> GalleryStore::emptyTrash() {
  return guarded(m_path, "emptying the trash", [&] {
    SQLite::Transaction t(*m_db);
    m_db->exec("DELETE FROM gallery_fts WHERE rowid IN (SELECT id FROM images WHERE trashed_at IS NOT NULL)");
    const std::int64_t n = m_db->exec("DELETE FROM images WHERE trashed_at IS NOT NULL");
    m_db->exec("DELETE FROM tags WHERE id NOT IN (SELECT tag_id FROM image_tags)");
    t.commit();
    return n;
  });
}

Result<std::vector<std::string>> GalleryStore::distinct(const std::string& what) const {
  std::string sql;
  if (what == "model") sql = "SELECT DISTINCT model_name FROM images WHERE trashed_at IS NULL ORDER BY 1";
  else if (what == "backbone") sql = "SELECT DISTINCT backbone FROM images WHERE trashed_at IS NULL ORDER BY 1";
  else if (what == "sampler") sql = "SELECT DISTINCT sampler FROM images WHERE trashed_at IS NULL ORDER BY 1";
  else if (what == "tag") sql = "SELECT name FROM tags ORDER BY name";
  else if (what == "class")
    sql = "SELECT DISTINCT class_index || ' ' || class_name FROM images WHERE trashed_at IS NULL ORDER BY class_index";
  else return fail("gallery: cannot list distinct '" + what + "' (expected model, backbone, sampler, class or tag)");
  return guarded(m_path, "listing", [&] {
    SQLite::Statement s(*m_db, sql);
    std::vector<std::string> out;
    while (s.executeStep()) out.push_back(s.getColumn(0).getString());
    return out;
  });
}

Result<std::string> GalleryStore::integrityCheck() const {
  return guarded(m_path, "integrity check", [&] {
    SQLite::Statement s(*m_db, "PRAGMA integrity_check");
    std::string report;
    while (s.executeStep()) report += (report.empty() ? "" : "\n") + s.getColumn(0).getString();
    return report;
  });
}

namespace {
std::string hexDigest(const unsigned char* md, unsigned int len) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}
}  // namespace

std::string sha256Hex(const std::string& bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  return hexDigest(md, len);
}

Result<std::string> sha256File(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(path + ": cannot open for hashing");
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) return fail(path + ": read error while hashing");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return hexDigest(md, len);
}

}  // namespace tessera
