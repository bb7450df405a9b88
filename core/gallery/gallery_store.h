// SPDX-License-Identifier: Apache-2.0
// The gallery: every generated image with everything needed to reproduce it, in one
// SQLite file (WAL, foreign keys, migrations through PRAGMA user_version, FTS5 search).
// All SQL uses bound parameters. One GalleryStore is one connection: use it from one
// thread at a time; several stores (threads, processes) may share a file.
#pragma once

#include "core/util/error.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace SQLite {
class Database;
}

namespace tessera {

/// One image. `settings` is the JSON the PNG carries (every generation setting).
struct GalleryRecord {
  std::int64_t id = 0;
  std::string createdAt;  ///< ISO 8601 UTC with milliseconds ("2026-11-28T01:02:03.456Z"); set by add() when empty
  std::string modelName, modelPath, modelHash;  ///< file name, path at generation time, SHA-256 of the file
  std::string backbone, process, sampler;
  std::int64_t steps = 0;
  double cfg = 1.0, cfgLow = 0.0, cfgHigh = 1.0;
  std::uint64_t seed = 0;
  std::int64_t classIndex = 0;
  std::string className;
  std::int64_t width = 0, height = 0;
  std::string settings;   ///< JSON
  std::string software;   ///< "tessera 0.x.y"
  double seconds = 0;     ///< generation time of the image's batch
  int rating = 0;         ///< 0 (none) … 5 stars
  std::string note;
  std::vector<std::string> tags;
  std::string trashedAt;  ///< empty unless in the trash
  std::string pngSha256;  ///< of the stored PNG bytes
};

/// One cell of a saved comparison: its place in the grid, its image (none when the
/// cell failed or its image was deleted) and its measurements as JSON.
struct ComparisonCell {
  int row = 0, column = 0;
  std::optional<std::int64_t> imageId;
  std::string metrics;  ///< JSON: seconds, nfe, gflops, error…
};

/// A comparison grid saved as a set: `layout` is JSON (axes, their values, the base
/// settings, matched compute…), one cell per grid position.
struct ComparisonRecord {
  std::int64_t id = 0;
  std::string createdAt;  ///< set by addComparison() when empty
  std::string title;
  std::string layout;
  std::vector<ComparisonCell> cells;
};

/// A training job started from the studio. Its files (config.json, checkpoints, samples,
/// events.jsonl, stderr.log) live in `runDir`; the row keeps what the jobs panel needs to
/// find it again after a restart.
struct TrainingJobRecord {
  std::int64_t id = 0;
  std::string createdAt, updatedAt;  ///< set by addTrainingJob()/updateTrainingJob()
  std::string name;
  std::string kind;        ///< "scratch" or "finetune"
  std::string config;      ///< the training configuration (JSON)
  std::string runDir;
  std::string initModel;   ///< fine-tuning: the model it started from
  std::string state;       ///< queued, starting, running, stopping, stopped, finished, failed
  std::int64_t step = 0, steps = 0;
  std::int64_t pid = 0;    ///< the trainer's process while running
  std::int64_t queueOrder = 0;
  std::string lastOutput;  ///< the last lines of the trainer's output (failed jobs)
  std::string modelPath;   ///< the finished model in the user's model folder
  std::string evaluation;  ///< JSON of its eval, when there is one
};

enum class GallerySort { Newest, Oldest, Rating, Model, Class };

/// What the grid shows. Empty strings and nullopt mean "any".
struct GalleryFilter {
  std::string text;  ///< free text: every word must prefix-match a model, backbone, sampler, class, tag or note word
  std::string modelName, backbone, sampler, tag;
  std::optional<std::int64_t> classIndex;
  std::string from, to;  ///< ISO dates or date-times, inclusive ("2026-11-28" covers the whole day)
  int minRating = 0;
  bool trash = false;    ///< the trash instead of the gallery
  GallerySort sort = GallerySort::Newest;
};

class GalleryStore {
public:
  static constexpr int kSchemaVersion = 3;

  /// Opens (creating and migrating as needed) the gallery at `path`. A file that is not a
  /// SQLite database, or is one without Tessera's tables, or is from a newer schema, is
  /// refused with a message naming it; nothing is written to it.
  static Result<GalleryStore> open(const std::string& path);
  GalleryStore(GalleryStore&&) noexcept;
  GalleryStore& operator=(GalleryStore&&) noexcept;
  ~GalleryStore();

  const std::string& path() const { return m_path; }

  /// Adds one image (PNG bytes and a small thumbnail PNG) in one transaction; returns its id.
  Result<std::int64_t> add(GalleryRecord record, const std::string& png, const std::string& thumbnail);
  /// Adds many in one transaction (imports, benchmarks).
  Result<std::vector<std::int64_t>> addMany(std::vector<GalleryRecord> records, const std::vector<std::string>& pngs,
                                            const std::vector<std::string>& thumbnails);

  /// Ids matching the filter, in its order.
  Result<std::vector<std::int64_t>> query(const GalleryFilter& filter) const;
  Result<GalleryRecord> record(std::int64_t id) const;
  Result<std::string> png(std::int64_t id) const;
  Result<std::string> thumbnail(std::int64_t id) const;
  Result<std::int64_t> count(bool trash = false) const;

  Result<void> setRating(std::int64_t id, int stars);
  Result<void> setTags(std::int64_t id, const std::vector<std::string>& tags);
  Result<void> setNote(std::int64_t id, const std::string& note);
  Result<void> moveToTrash(const std::vector<std::int64_t>& ids);
  Result<void> restore(const std::vector<std::int64_t>& ids);
  /// Deletes everything in the trash for good; returns how many images went.
  Result<std::int64_t> emptyTrash();

  /// Distinct values for the filter menus: "model", "backbone", "sampler", "tag" or
  /// "class" (as "index name").
  Result<std::vector<std::string>> distinct(const std::string& what) const;
  /// Saves a comparison and its cells in one transaction; returns its id.
  Result<std::int64_t> addComparison(ComparisonRecord record);
  /// Saved comparisons, newest first (cells not loaded).
  Result<std::vector<ComparisonRecord>> comparisons() const;
  /// One comparison with its cells.
  Result<ComparisonRecord> comparison(std::int64_t id) const;
  Result<void> deleteComparison(std::int64_t id);

  /// Training jobs (the studio's jobs panel), oldest first.
  Result<std::int64_t> addTrainingJob(TrainingJobRecord job);
  /// Writes every field of the job with this id (and its updatedAt).
  Result<void> updateTrainingJob(const TrainingJobRecord& job);
  Result<std::vector<TrainingJobRecord>> trainingJobs() const;
  Result<TrainingJobRecord> trainingJob(std::int64_t id) const;
  Result<void> deleteTrainingJob(std::int64_t id);

  /// PRAGMA integrity_check: "ok" or SQLite's report.
  Result<std::string> integrityCheck() const;

  /// Current UTC time as stored in createdAt.
  static std::string nowIso();

private:
  GalleryStore() = default;
  /// One try of open(); `busy` says that it failed only because another process held a lock.
  static Result<GalleryStore> openOnce(const std::string& path, bool* busy);
  Result<void> migrate();
  void writeFts(std::int64_t id);
  std::int64_t insertOne(GalleryRecord& record, const std::string& png, const std::string& thumbnail);

  std::string m_path;
  std::unique_ptr<SQLite::Database> m_db;
};

/// SHA-256 of bytes or of a file's contents, as 64 lowercase hex digits (OpenSSL).
std::string sha256Hex(const std::string& bytes);
Result<std::string> sha256File(const std::string& path);

}  // namespace tessera
