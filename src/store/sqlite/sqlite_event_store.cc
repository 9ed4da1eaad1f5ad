// The embedded backend, wired together: SQLite in WAL mode is the system of
// record; the parts beside this file do the work (see sqlite_event_store.h and
// docs/architecture.md).
//
// Threads:
//   - the writer (group committer): AppendDeferred, Maintain (the rollup
//     checkpoint), DeleteUser; the only user of the writer connection;
//   - the publisher: runs `publish` (adds committed events to the rollups)
//     with a connection of its own to load buckets;
//   - at start-up, a recovery thread replays the events after the rollup
//     checkpoint mark, then marks the read side ready;
//   - readers: any thread, a pooled read-only connection each, every query
//     inside one read transaction.
// A user delete changes the file and the in-memory rollups together; readers
// see either all of it or none: a reader that overlapped one (a sequence
// number changes) runs again, the third time under the delete's lock.
//
// Durability: the connection runs with synchronous=NORMAL, so a COMMIT writes
// the log without waiting for the disk, and with the full fsync policy Sync()
// fdatasyncs the write-ahead log afterwards, on the caller's thread. A commit
// is therefore as durable as with synchronous=FULL once Sync() returns (SQLite
// itself syncs the log before and the database after every checkpoint), and
// the writer can fill the next commit while the disk flushes the last one.
#include "store/sqlite/sqlite_event_store.h"

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include "core/log.h"
#include "core/time_util.h"
#include "store/sqlite/analytics_reader.h"
#include "store/sqlite/event_writer.h"
#include "store/sqlite/events_schema.h"
#include "store/sqlite/legacy_import.h"
#include "store/sqlite/migration_runner.h"
#include "store/sqlite/retention_sweeper.h"
#include "store/sqlite/rollup_events.h"
#include "store/sqlite/rollups.h"
#include "store/sqlite/sqlite_db.h"
#include "store/sqlite/string_dictionary.h"
#include "store/sqlite/user_deleter.h"
#include "store/sqlite/user_reader.h"

namespace nucleon {

namespace {

using Clock = std::chrono::steady_clock;

// A checkpoint once this many events were added to the rollups since the last
// one, or this long after the first of them: the tail a restart replays stays
// small whatever the history. (Also once the hot buckets outgrow their budget:
// see Rollups::hot_over_budget.)
constexpr size_t kCheckpointEvents = 200000;

// Retention removes its events in steps (whole buckets, at least one) between
// two commits; a step holds tracking up while it runs. Each takes about this
// long: as many events as the steps so far removed in that time, within
// these bounds.
constexpr double kRetentionStepMs = 10;
constexpr int64_t kRetentionStepMinEvents = 100, kRetentionStepMaxEvents = 2000;
// ... and looks at most at this many buckets at once.
constexpr size_t kRetentionStepBuckets = 256;

// How --cache-mb is shared.
struct Budget {
  size_t writer_page_cache, reader_page_cache, publisher_page_cache;
  RollupOptions rollups;
  WriterCacheOptions writer;
};

Budget BudgetFor(size_t cache_mb) {
  const size_t total = std::max<size_t>(cache_mb, 16) << 20;
  Budget b;
  // The write side (filled by any steady ingest, whatever is queried): 1/4.
  b.writer_page_cache = total / 16;
  b.rollups.hot_bytes = total / 16;
  const size_t entities = total / 16 / 200;  // about 200 bytes per cached entity
  b.writer.sessions = entities / 2;
  b.writer.devices = entities / 4;
  b.writer.users = entities / 4;
  b.reader_page_cache = total / 128;
  b.publisher_page_cache = total / 128;
  // The read side (filled only as far as the queries reach): the rest. Day
  // aggregates serve daily analytics, decoded buckets everything else.
  b.rollups.core_cache_bytes = total * 3 / 8;
  b.rollups.day_cache_bytes = total / 4;
  b.rollups.props_cache_bytes = total / 16;
  return b;
}

class SqliteEventStore final : public EventStore {
 public:
  ~SqliteEventStore() override {
    stop_recovery_.store(true);
    if (recovery_.joinable()) recovery_.join();
    {
      std::lock_guard<std::mutex> lock(wal_mu_);
      wal_stop_ = true;
    }
    wal_cv_.notify_all();
    if (wal_thread_.joinable()) wal_thread_.join();
    if (wal_fd_ >= 0) ::close(wal_fd_);
  }

  Status Open(const std::string& data_dir, const SqliteStoreOptions& options) {
    options_ = options;
    budget_ = BudgetFor(options.cache_mb);
    path_ = data_dir + "/events.db";
    if (!options.read_only) {
      std::error_code ec;
      std::filesystem::create_directories(data_dir, ec);
    } else if (!std::filesystem::exists(path_)) {
      return Status::NotFound("no event store in " + data_dir);
    }
    NUCLEON_RETURN_IF_ERROR(db_.Open(path_, !options.read_only, options.read_only));
    users_ = std::make_unique<UserReader>(&dict_);
    if (options.read_only) {
      auto version = db_.UserVersion();
      if (!version.ok()) return version.status();
      const auto current = static_cast<int64_t>(EventsMigrations().size());
      if (*version != current) {
        return Status::Unavailable("events.db is at schema version " + std::to_string(*version) +
                                   ", this build reads " + std::to_string(current) +
                                   ": start `nucleon serve` on the folder once to upgrade it");
      }
      NUCLEON_RETURN_IF_ERROR(dict_.Load(db_));
      ready_.store(true);
      return Status::Ok();
    }
    // See "Durability" above: with fsync full, Sync() flushes the log.
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA synchronous=NORMAL"));
    NUCLEON_RETURN_IF_ERROR(
        db_.Exec("PRAGMA cache_size=-" + std::to_string(budget_.writer_page_cache >> 10)));
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA temp_store=MEMORY"));
    // Deleted rows are overwritten with zeros, not just unlinked: a deleted
    // user's data must not linger in free space (DeleteUser also empties the WAL).
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA secure_delete=ON"));
    // A thread of its own copies the log into the database as it grows
    // (CopyLog below), so the commit that finds the log long (and restarts it
    // from the beginning) has little left to copy.
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA wal_autocheckpoint=4000"));
    NUCLEON_RETURN_IF_ERROR(RunMigrations(db_, "events.db", EventsMigrations()));
    NUCLEON_RETURN_IF_ERROR(dict_.Load(db_));
    rollups_ = std::make_unique<Rollups>(&dict_, budget_.rollups);
    NUCLEON_RETURN_IF_ERROR(rollups_->Open(db_));
    writer_ = std::make_unique<EventWriter>(&db_, &dict_, budget_.writer);
    NUCLEON_RETURN_IF_ERROR(writer_->Open());
    analytics_ = std::make_unique<AnalyticsReader>(rollups_.get(), &dict_);
    deleter_ = std::make_unique<UserDeleter>(&db_, &dict_, rollups_.get());
    sweeper_ = std::make_unique<RetentionSweeper>(&db_, &dict_, rollups_.get(),
                                                  options.retention_scan_buckets);
    NUCLEON_RETURN_IF_ERROR(OpenReader(&publish_db_, budget_.publisher_page_cache));
    publish_builder_ = std::make_unique<RollupEventBuilder>(&dict_);

    auto pending = LegacyImportPending(db_);
    if (!pending.ok()) return pending.status();
    if (*pending) NUCLEON_RETURN_IF_ERROR(Import());

    // The read side: replay the events after the checkpoint mark (usually a
    // few seconds' worth) in the background; appends go on meanwhile.
    const int64_t mark = rollups_->mark();
    const int64_t last = writer_->last_event_id();
    last_id_at_open_ = last;
    if (last <= mark) {
      ready_.store(true);
    } else {
      recovery_ = std::thread([this, mark, last] { Recover(mark, last); });
    }
    last_checkpoint_ = Clock::now();
    NUCLEON_RETURN_IF_ERROR(wal_db_.Open(path_, false));
    NUCLEON_RETURN_IF_ERROR(wal_db_.Exec("PRAGMA synchronous=NORMAL"));
    wal_thread_ = std::thread([this] { CopyLog(); });
    return Status::Ok();
  }

  // ---- Writes (the writer thread).

  Status Append(std::span<const Event> events, std::vector<uint8_t>* inserted) override {
    std::function<void()> publish;
    Status st = AppendDeferred(events, inserted, &publish);
    if (st.ok()) st = Sync();
    if (publish) publish();  // the file holds it either way: the read side must agree
    if (!st.ok()) inserted->assign(events.size(), 0);
    return st;
  }

  Status AppendDeferred(std::span<const Event> events, std::vector<uint8_t>* inserted,
                        std::function<void()>* publish) override {
    *publish = nullptr;
    inserted->assign(events.size(), 0);
    if (options_.read_only) return Status::Internal("the event store was opened read-only");
    if (events.empty()) return Status::Ok();
    RefreshRetention(false);  // a change takes effect before the next commit
    std::vector<PublishedEvent> published;
    NUCLEON_RETURN_IF_ERROR(writer_->Append(events, {}, inserted, &published));
    if (!published.empty()) {
      // What the read side must learn, applied by the publisher (in commit
      // order, while `events` is alive) as this thread goes on.
      *publish = [this, items = std::move(published)] { Publish(items); };
    }
    return Status::Ok();
  }

  Status Sync() override {
    if (options_.read_only || !options_.fsync_full) return Status::Ok();
    std::lock_guard<std::mutex> lock(wal_fd_mu_);
    if (wal_fd_ < 0) {
      // The log exists from the first commit on and stays (same file) while
      // the writer's connection is open.
      wal_fd_ = ::open((path_ + "-wal").c_str(), O_RDONLY | O_CLOEXEC);
      if (wal_fd_ < 0) {
        return Status::Unavailable(std::string("cannot open the write-ahead log: ") +
                                   std::strerror(errno));
      }
    }
    if (::fdatasync(wal_fd_) != 0) {
      return Status::Unavailable(std::string("fsync of the write-ahead log failed: ") +
                                 std::strerror(errno));
    }
    return Status::Ok();
  }

  Status Probe() override {
    if (options_.read_only) return Status::Internal("the event store was opened read-only");
    auto q = db_.Cached("UPDATE meta SET value = ? WHERE key = 'probe'");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, NowMs());
    return (*q)->Run();
  }

  bool Ready() const override { return ready_.load(std::memory_order_acquire); }

  bool MaintenanceDue(bool closing) override {
    if (options_.read_only || failed_.load()) return false;
    if (closing) {
      retention_targets_.clear();  // the last upkeep is the checkpoint
    } else {
      RefreshRetention(false);
    }
    if (!Ready()) return false;
    if (!retention_targets_.empty()) return true;
    const size_t dirty = rollups_->dirty_events();
    if (dirty == 0) return false;
    return closing || dirty >= kCheckpointEvents || rollups_->hot_over_budget() ||
           Clock::now() - last_checkpoint_ >=
               std::chrono::duration<double>(options_.checkpoint_interval_s);
  }

  // The rollup checkpoint: every dirty bucket and the new mark, in one transaction.
  Status Maintain() override {
    if (!Ready() || failed_.load()) return Status::Ok();
    if (!retention_targets_.empty()) return RetentionStep();
    return Checkpoint();
  }

  void SetRetention(const RetentionPolicy& policy) override {
    std::lock_guard<std::mutex> lock(retention_mu_);
    if (policy == retention_policy_) return;
    retention_policy_ = policy;
    retention_changed_.store(true);
  }

  // Writes the changed buckets and the dictionary's new strings, with the mark
  // of the last event they hold. The caller knows every stored event has
  // reached the rollups: a ready store, or the upgrade as it goes.
  Status Checkpoint() {
    last_checkpoint_ = Clock::now();
    Rollups::CheckpointWork work;
    Status st = db_.Exec("BEGIN IMMEDIATE");
    if (st.ok()) st = dict_.FlushPending(db_);
    if (st.ok()) st = rollups_->WriteDirty(db_, writer_->last_event_id(), &work);
    if (st.ok()) st = db_.Exec("COMMIT");
    if (!st.ok()) {
      (void)db_.Exec("ROLLBACK");
      dict_.DropFlushed();
      LogError("rollup checkpoint failed (retried later): " + st.ToString());
      return st;
    }
    dict_.CommitFlushed();
    rollups_->FinishCheckpoint(work, true);
    // Give memory freed since (decoded batches, evicted buckets) back to the
    // system: resident memory follows what is in use, not the last peak.
    malloc_trim(0);
    checkpoints_.fetch_add(1, std::memory_order_relaxed);
    checkpoint_us_.fetch_add(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - last_checkpoint_)
            .count(),
        std::memory_order_relaxed);
    return Status::Ok();
  }

  Status DeleteUser(std::string_view app_id, std::string_view user_key) override {
    if (options_.read_only) return Status::Internal("the event store was opened read-only");
    if (!Ready()) return NotReady();
    const auto started = Clock::now();
    Status st = Delete(app_id, user_key);
    if (st.ok()) {
      deletes_.fetch_add(1, std::memory_order_relaxed);
      delete_us_.fetch_add(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count(),
          std::memory_order_relaxed);
    }
    return st;
  }

  void PrepareDeleteUser(std::string_view app_id, std::string_view user_key) override {
    if (options_.read_only || !Ready()) return;
    auto r = Read<bool>(app_id, true, [&](int64_t app, const ReadTx& tx) -> Result<bool> {
      if (app == 0) return true;
      NUCLEON_RETURN_IF_ERROR(deleter_->ReadAhead(tx.db, app, user_key));
      return true;
    });
    if (!r.ok()) LogWarn("reading ahead for a user delete: " + r.status().ToString());
  }

  std::vector<StoreMetric> Metrics() const override {
    std::vector<StoreMetric> out;
    out.push_back({"nucleon_store_ready",
                   "1 once the read side is loaded (the API answers), else 0.", false,
                   Ready() ? 1.0 : 0.0});
    if (!rollups_) return out;
    const Rollups::CacheStats c = rollups_->Stats();
    out.push_back({"nucleon_tail_replayed_events",
                   "Events written after the last checkpoint, replayed at start-up.", false,
                   static_cast<double>(replayed_.load())});
    out.push_back({"nucleon_checkpoints_total", "Checkpoints of the per-bucket aggregates.", true,
                   static_cast<double>(checkpoints_.load())});
    out.push_back({"nucleon_checkpoint_seconds_total", "Time spent in checkpoints.", true,
                   static_cast<double>(checkpoint_us_.load()) / 1e6});
    out.push_back({"nucleon_events_not_checkpointed",
                   "Events added to the aggregates since the last checkpoint.", false,
                   static_cast<double>(rollups_->dirty_events())});
    out.push_back({"nucleon_hot_buckets", "15-minute buckets held in memory for writing.", false,
                   static_cast<double>(c.hot_buckets)});
    out.push_back({"nucleon_bucket_cache_bytes", "Decoded bucket aggregates cached.", false,
                   static_cast<double>(c.core_cache_bytes)});
    out.push_back({"nucleon_property_cache_bytes", "Decoded property values cached.", false,
                   static_cast<double>(c.props_cache_bytes)});
    out.push_back({"nucleon_day_cache_bytes", "Per-day aggregates cached.", false,
                   static_cast<double>(c.day_cache_bytes)});
    out.push_back({"nucleon_retention_changes_total", "Changes of the retention in force.", true,
                   static_cast<double>(retention_changes_.load())});
    out.push_back({"nucleon_retention_apps", "Apps with stored events and a retention period.",
                   false, static_cast<double>(retention_apps_.load())});
    out.push_back({"nucleon_retention_pending_apps",
                   "Apps still holding events older than their retention period.", false,
                   static_cast<double>(retention_pending_.load())});
    out.push_back({"nucleon_retention_events_removed_total",
                   "Events removed for being older than their app's retention period.", true,
                   static_cast<double>(retention_events_.load())});
    out.push_back({"nucleon_retention_steps_total", "Steps of retention removal.", true,
                   static_cast<double>(retention_steps_.load())});
    out.push_back({"nucleon_retention_seconds_total", "Time spent removing expired events.", true,
                   static_cast<double>(retention_us_.load()) / 1e6});
    out.push_back({"nucleon_user_deletes_total", "Users deleted.", true,
                   static_cast<double>(deletes_.load())});
    out.push_back({"nucleon_user_delete_seconds_total", "Time spent deleting users.", true,
                   static_cast<double>(delete_us_.load()) / 1e6});
    return out;
  }

 private:
  // Writer thread: the cuts of the retention in force, handed to the writer
  // (new events before them are not stored), and the apps that still hold
  // events before theirs. At most once a second, or at once after a change.
  void RefreshRetention(bool force) {
    const int64_t now = NowMs();
    if (!force && !retention_changed_.load() && now - retention_checked_ms_ < 1000) return;
    const bool changed = retention_changed_.exchange(false);
    retention_checked_ms_ = now;
    RetentionPolicy policy;
    {
      std::lock_guard<std::mutex> lock(retention_mu_);
      policy = retention_policy_;
    }
    std::unordered_map<std::string, int64_t> cuts;
    for (const auto& [app_id, days] : policy.app_days) {
      if (days > 0) cuts[app_id] = RetentionCutMs(now, days);
    }
    writer_->SetCuts(policy.default_days > 0 ? RetentionCutMs(now, policy.default_days) : INT64_MIN,
                     std::move(cuts));
    retention_targets_.clear();
    int64_t apps = 0;
    for (const auto& [app_id, row] : writer_->Apps()) {
      const int days = policy.DaysFor(app_id);
      if (days <= 0) continue;
      ++apps;
      const int64_t cut = RetentionCutMs(now, days);
      int64_t first = 0, last = 0;
      if (rollups_->Span(row, &first, &last) && first < FloorDiv(cut, kBucketMs)) {
        retention_targets_.emplace_back(row, cut);
      }
    }
    retention_apps_.store(apps);
    retention_pending_.store(static_cast<int64_t>(retention_targets_.size()));
    // Counted once the writer refuses by the new cuts and knows what to remove.
    if (changed) retention_changes_.fetch_add(1);
  }

  // One step of retention for the first app that needs it: its oldest
  // buckets before its cut, about kRetentionStepMs worth of events, in one
  // transaction that checkpoints first (as a user delete does). Readers see
  // each step whole.
  Status RetentionStep() {
    const auto [app, cut] = retention_targets_.front();
    std::vector<int64_t> buckets = rollups_->Present(app, INT64_MIN, FloorDiv(cut, kBucketMs) - 1);
    if (buckets.size() > kRetentionStepBuckets) buckets.resize(kRetentionStepBuckets);
    if (buckets.empty()) {
      RefreshRetention(true);
      return Status::Ok();
    }
    const auto started = Clock::now();
    Rollups::CheckpointWork work;
    Rollups::Removal removal;
    RetentionSweeper::Step step;
    Status st = db_.Exec("BEGIN IMMEDIATE");
    if (st.ok()) st = dict_.FlushPending(db_);
    if (st.ok()) st = rollups_->WriteDirty(db_, writer_->last_event_id(), &work);
    const auto budget = static_cast<int64_t>(std::clamp(kRetentionStepMs / retention_event_ms_,
                                                        double(kRetentionStepMinEvents),
                                                        double(kRetentionStepMaxEvents)));
    if (st.ok()) st = sweeper_->Sweep(app, buckets, budget, &removal, &step);
    if (st.ok()) {
      std::unique_lock<std::shared_mutex> gate(gate_);
      delete_seq_.fetch_add(1, std::memory_order_acq_rel);  // odd: a rewrite is landing
      st = db_.Exec("COMMIT");
      if (st.ok()) {
        dict_.CommitFlushed();
        rollups_->FinishCheckpoint(work, true);
        last_checkpoint_ = Clock::now();
        rollups_->CommitRemoval(removal);
        writer_->ForgetEntities();
      }
      delete_seq_.fetch_add(1, std::memory_order_acq_rel);
    }
    if (!st.ok()) {
      (void)db_.Exec("ROLLBACK");
      dict_.DropFlushed();
      writer_->ForgetEntities();
      retention_targets_.clear();  // tried again at the next look
      LogError("retention step failed (retried later): " + st.ToString());
      return st;
    }
    const int64_t us =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count();
    if (step.events > 0) {
      // The time an event takes, smoothed over the last few steps.
      const double per_event = static_cast<double>(us) / 1000 / static_cast<double>(step.events);
      retention_event_ms_ = 0.7 * retention_event_ms_ + 0.3 * per_event;
    }
    retention_steps_.fetch_add(1, std::memory_order_relaxed);
    retention_events_.fetch_add(step.events, std::memory_order_relaxed);
    retention_us_.fetch_add(us, std::memory_order_relaxed);
    RefreshRetention(true);
    return Status::Ok();
  }

  Status Delete(std::string_view app_id, std::string_view user_key) {
    const int64_t app = writer_->AppRow(app_id);
    if (app == 0) return Status::NotFound("unknown user " + std::string(user_key));
    // Checkpoint first (in the same transaction), so the rollups on disk are
    // complete when the delete rewrites them.
    Rollups::CheckpointWork work;
    Rollups::Removal removal;
    bool tombstones = false;
    Status st = db_.Exec("BEGIN IMMEDIATE");
    if (st.ok()) st = dict_.FlushPending(db_);
    if (st.ok()) st = rollups_->WriteDirty(db_, writer_->last_event_id(), &work);
    if (st.ok()) st = deleter_->Delete(app, user_key, &removal, &tombstones);
    if (st.ok()) {
      std::unique_lock<std::shared_mutex> gate(gate_);
      delete_seq_.fetch_add(1, std::memory_order_acq_rel);  // odd: a delete is landing
      st = db_.Exec("COMMIT");
      if (st.ok()) {
        dict_.CommitFlushed();
        rollups_->FinishCheckpoint(work, true);
        last_checkpoint_ = Clock::now();
        rollups_->CommitRemoval(removal);
        writer_->ForgetEntities();
        if (tombstones) writer_->NoteTombstones();
      }
      delete_seq_.fetch_add(1, std::memory_order_acq_rel);
    }
    if (!st.ok()) {
      (void)db_.Exec("ROLLBACK");
      dict_.DropFlushed();
      writer_->ForgetEntities();
      return st;
    }
    // The write-ahead log still holds the deleted rows' old pages: copy the
    // zeroed pages into the database and empty the log. Readers are waited for
    // (busy timeout); if one holds on, the log is emptied at a later checkpoint.
    // The log copier is held off meanwhile: two checkpoints cannot run at once.
    int rc = SQLITE_BUSY;
    {
      std::lock_guard<std::mutex> copying(log_copy_mu_);
      for (int attempt = 0; attempt < 20 && rc == SQLITE_BUSY; ++attempt) {
        if (attempt) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        rc = sqlite3_wal_checkpoint_v2(db_.raw(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr,
                                       nullptr);
      }
    }
    if (rc != SQLITE_OK) {
      LogWarn("after a user delete the write-ahead log could not be emptied yet (busy readers)");
      NUCLEON_RETURN_IF_ERROR(Sync());  // the delete must be durable before it is answered
    }
    return Status::Ok();
  }

  // ---- Reads (any thread).

 public:
  Status Export(std::string_view app_id, const std::function<void(const Event&)>& sink) override {
    return ExportRange(app_id, INT64_MIN, INT64_MAX, [&sink](const Event& e) {
      sink(e);
      return true;
    });
  }

  Status ExportRange(std::string_view app_id, int64_t from_ms, int64_t to_ms,
                     const std::function<bool(const Event&)>& sink) override {
    // The buckets as the file has them (the rollups up to the checkpoint and
    // the rows written after it), so that the whole export is one snapshot
    // of the file, read once: a user delete meanwhile is in it or not at all,
    // and nothing streamed is sent twice.
    return Read<bool>(
               app_id, /*needs_ready=*/false,
               [&](int64_t app, const ReadTx& tx) -> Result<bool> {
                 if (app == 0) return true;
                 UserReader::BucketRuns buckets;
                 NUCLEON_RETURN_IF_ERROR(StoredBuckets(app, tx.db, &buckets));
                 NUCLEON_RETURN_IF_ERROR(
                     users_->Export(app, app_id, buckets, from_ms, to_ms, INT64_MAX, sink, tx.db));
                 return true;
               },
               /*one_snapshot=*/true)
        .status();
  }

  Status SessionEnds(
      std::string_view app_id,
      const std::function<Status(const std::string&, const std::string&, int64_t)>& sink) override {
    return Read<bool>(
               app_id, /*needs_ready=*/false,
               [&](int64_t app, const ReadTx& tx) -> Result<bool> {
                 if (app == 0) return true;
                 auto q = tx.db.Prepare(
                     "SELECT d.device_key, s.session_key, s.end_ms FROM sessions s"
                     " JOIN devices d ON d.id = s.device WHERE s.app = ?"
                     " ORDER BY s.start_ms, d.device_key, s.session_key");
                 if (!q.ok()) return q.status();
                 q->Bind(1, app);
                 Status st;
                 while (q->Step(&st)) {
                   NUCLEON_RETURN_IF_ERROR(
                       sink(std::string(q->Text(0)), std::string(q->Text(1)), q->Int(2)));
                 }
                 NUCLEON_RETURN_IF_ERROR(st);
                 return true;
               },
               /*one_snapshot=*/true)
        .status();
  }

  Status Tombstones(std::string_view app_id, const std::function<void(int64_t)>& sink) override {
    auto all = ReadSqliteTombstones(std::filesystem::path(path_).parent_path().string());
    if (!all.ok()) return all.status();
    for (const auto& [app, hash] : *all) {
      if (app == app_id) sink(hash);
    }
    return Status::Ok();
  }

  Status StoredBeforeOpen(int64_t from_ms, int64_t to_ms, size_t per_app,
                          const std::function<void(const Event&)>& sink) override {
    if (!rollups_) return Status::Ok();
    return Read<bool>("", true,
                      [&](int64_t, const ReadTx& tx) -> Result<bool> {
                        std::vector<std::pair<int64_t, std::string>> apps;
                        {
                          auto q = tx.db.Prepare("SELECT id, app_id FROM apps ORDER BY id");
                          if (!q.ok()) return q.status();
                          Status st;
                          while (q->Step(&st))
                            apps.emplace_back(q->Int(0), std::string(q->Text(1)));
                          NUCLEON_RETURN_IF_ERROR(st);
                        }
                        for (const auto& [app, app_id] : apps) {
                          const std::vector<int64_t> present = rollups_->Present(
                              app, FloorDiv(from_ms, kBucketMs), FloorDiv(to_ms, kBucketMs));
                          std::vector<CoreRef> cores;
                          NUCLEON_RETURN_IF_ERROR(rollups_->Cores(app, present, tx, &cores));
                          UserReader::BucketRuns buckets;
                          for (const CoreRef& c : cores)
                            buckets.emplace_back(c.bucket, c.core->runs);
                          NUCLEON_RETURN_IF_ERROR(users_->LastStored(app, app_id, buckets, from_ms,
                                                                     to_ms, last_id_at_open_,
                                                                     per_app, sink, tx.db));
                        }
                        return true;
                      })
        .status();
  }

  Result<StoreStats> Stats(std::string_view app_id) override {
    if (app_id.empty()) {
      return Read<StoreStats>(
          "", false, [&](int64_t, const ReadTx& tx) { return users_->Stats(0, true, tx.db); });
    }
    return Read<StoreStats>(app_id, false, [&](int64_t app, const ReadTx& tx) {
      return users_->Stats(app, false, tx.db);
    });
  }

  Result<std::vector<QuickGlanceCounts>> QuickGlances(std::string_view app_id,
                                                      std::span<const TimeSpan> periods) override {
    using Counts = std::vector<QuickGlanceCounts>;
    return Read<Counts>(app_id, true, [&](int64_t app, const ReadTx& tx) -> Result<Counts> {
      Counts out;
      for (const TimeSpan& p : periods) {
        auto counts = analytics_->QuickGlance(app, p.from_ms, p.to_ms, tx);
        if (!counts.ok()) return counts.status();
        out.push_back(*counts);
      }
      return out;
    });
  }

  Result<DailyAnalytics> Daily(std::string_view app_id, const QueryRange& range) override {
    return Read<DailyAnalytics>(app_id, true, [&](int64_t app, const ReadTx& tx) {
      return analytics_->Daily(app, range, tx);
    });
  }

  Result<DailyCounts> EventCounts(std::string_view app_id, const QueryRange& range,
                                  bool errors) override {
    return Read<DailyCounts>(app_id, true, [&](int64_t app, const ReadTx& tx) {
      return analytics_->EventCounts(app, range, errors, tx);
    });
  }

  Result<std::vector<ErrorGroup>> ErrorGroups(std::string_view app_id,
                                              const QueryRange& range) override {
    return Read<std::vector<ErrorGroup>>(app_id, true, [&](int64_t app, const ReadTx& tx) {
      return analytics_->ErrorGroups(app, app_id, range, tx);
    });
  }

  Result<SessionDays> Sessions(std::string_view app_id, const QueryRange& range) override {
    return Read<SessionDays>(app_id, true, [&](int64_t app, const ReadTx& tx) {
      return analytics_->Sessions(app, range, tx);
    });
  }

  Result<std::vector<EventPropKeys>> EventProps(std::string_view app_id,
                                                const QueryRange& range) override {
    return Read<std::vector<EventPropKeys>>(app_id, true, [&](int64_t app, const ReadTx& tx) {
      return analytics_->EventProps(app, range, tx);
    });
  }

  Result<std::vector<ValueCount>> EventAttribute(std::string_view app_id, const QueryRange& range,
                                                 std::string_view event,
                                                 std::string_view attr) override {
    return Read<std::vector<ValueCount>>(app_id, true, [&](int64_t app, const ReadTx& tx) {
      return analytics_->EventAttribute(app, range, event, attr, tx);
    });
  }

  Result<UserList> Users(std::string_view app_id, int64_t page, int64_t limit,
                         std::string_view search) override {
    return Read<UserList>(app_id, true, [&](int64_t app, const ReadTx& tx) {
      return users_->Users(app, app_id, page, limit, search, tx.db);
    });
  }

  Result<UserDetails> User(std::string_view app_id, std::string_view user_key) override {
    auto r =
        Read<UserDetails>(app_id, true, [&](int64_t app, const ReadTx& tx) -> Result<UserDetails> {
          if (app == 0) return Status::NotFound("unknown user " + std::string(user_key));
          return users_->User(app, app_id, user_key, tx.db);
        });
    return r;
  }

  Result<std::vector<EventView>> SessionEvents(std::string_view app_id, std::string_view user_key,
                                               std::string_view session_id,
                                               std::string_view device_id) override {
    return Read<std::vector<EventView>>(
        app_id, true, [&](int64_t app, const ReadTx& tx) -> Result<std::vector<EventView>> {
          if (app == 0) return Status::NotFound("unknown user " + std::string(user_key));
          return users_->SessionEvents(app, app_id, user_key, session_id, device_id, tx.db);
        });
  }

  Result<std::vector<EventView>> DeviceContexts(std::string_view app_id,
                                                std::span<const std::string> device_ids) override {
    return Read<std::vector<EventView>>(
        app_id, true, [&](int64_t app, const ReadTx& tx) -> Result<std::vector<EventView>> {
          std::vector<EventView> out(device_ids.size());
          if (app == 0) return out;
          for (size_t i = 0; i < device_ids.size(); ++i) {
            auto v = users_->DeviceContext(app, device_ids[i], tx.db);
            if (v.ok()) {
              out[i] = std::move(*v);
            } else if (v.status().code() != StatusCode::kNotFound) {
              return v.status();
            }
          }
          return out;
        });
  }

  Result<std::vector<EventView>> WithSessionContexts(std::span<const Event> events) override {
    std::vector<EventView> out;
    out.reserve(events.size());
    // One read per run of events of the same app (an answer holds one app's).
    for (size_t i = 0; i < events.size();) {
      size_t end = i + 1;
      while (end < events.size() && events[end].app_id == events[i].app_id) ++end;
      const auto run = events.subspan(i, end - i);
      auto views = Read<std::vector<EventView>>(
          run.front().app_id, true,
          [&](int64_t app, const ReadTx& tx) -> Result<std::vector<EventView>> {
            std::vector<EventView> part;
            part.reserve(run.size());
            for (const Event& e : run) {
              if (app == 0) {
                part.push_back(EventView{e});
              } else {
                part.push_back(users_->WithSessionContext(app, e, tx.db));
              }
            }
            return part;
          });
      if (!views.ok()) return views.status();
      for (EventView& v : *views) out.push_back(std::move(v));
      i = end;
    }
    return out;
  }

 private:
  static Status NotReady() {
    return Status::Unavailable("the server is starting and loading its read side; retry shortly");
  }

  Status OpenReader(SqliteDb* db, size_t page_cache_bytes) {
    NUCLEON_RETURN_IF_ERROR(db->Open(path_, false, true));
    return db->Exec("PRAGMA cache_size=-" +
                    std::to_string(std::max<size_t>(page_cache_bytes >> 10, 256)));
  }

  // Runs `fn` with a pooled read connection inside one read transaction (one
  // snapshot of the file), with the app's row (0 for an unknown app). Retried
  // when a user delete landed meanwhile (see the top of this file).
  // `one_snapshot`: `fn` reads the file alone (not the in-memory rollups),
  // so one snapshot is consistent whatever a delete does meanwhile: it runs
  // once.
  template <typename T>
  Result<T> Read(std::string_view app_id, bool needs_ready,
                 const std::function<Result<T>(int64_t, const ReadTx&)>& fn,
                 bool one_snapshot = false) {
    if (needs_ready && !analytics_) {
      return Status::Internal("a read-only store answers the export and the counts only");
    }
    if (needs_ready && !Ready()) return NotReady();
    if (needs_ready && failed_.load()) {
      return Status::Unavailable("the read side failed to load part of its data; see the log");
    }
    auto handle = Reader();
    if (!handle.ok()) return handle.status();
    SqliteDb& db = *(*handle)->db;
    for (int attempt = 0;; ++attempt) {
      std::shared_lock<std::shared_mutex> gate(gate_, std::defer_lock);
      uint64_t seq = delete_seq_.load(std::memory_order_acquire);
      const bool locked = attempt >= 2 || (seq & 1);
      if (locked) {
        gate.lock();
        seq = delete_seq_.load(std::memory_order_acquire);
      }
      // Read before the snapshot begins (see ReadTx).
      const ReadTx tx{db, rollups_ ? rollups_->cache_epoch() : 0};
      NUCLEON_RETURN_IF_ERROR(db.Exec("BEGIN"));
      Result<T> result = [&]() -> Result<T> {
        int64_t app = 0;
        if (!app_id.empty()) {
          auto q = db.Cached("SELECT id FROM apps WHERE app_id = ?");
          if (!q.ok()) return q.status();
          (*q)->Bind(1, app_id);
          Status st;
          if ((*q)->Step(&st)) app = (*q)->Int(0);
          NUCLEON_RETURN_IF_ERROR(st);
        }
        return fn(app, tx);
      }();
      (void)db.Exec("COMMIT");
      if (one_snapshot || locked || delete_seq_.load(std::memory_order_acquire) == seq) {
        return result;
      }
    }
  }

  // Every bucket of the app with the row runs of its events, from the rollups.
  Status ServedBuckets(int64_t app, const ReadTx& tx, UserReader::BucketRuns* out) {
    const std::vector<int64_t> present = rollups_->Present(app, INT64_MIN, INT64_MAX);
    std::vector<CoreRef> cores;
    for (size_t i = 0; i < present.size(); i += 1024) {
      const size_t n = std::min<size_t>(1024, present.size() - i);
      NUCLEON_RETURN_IF_ERROR(
          rollups_->Cores(app, std::span<const int64_t>(present.data() + i, n), tx, &cores));
      for (const CoreRef& c : cores) out->emplace_back(c.bucket, c.core->runs);
    }
    return Status::Ok();
  }

  // The same from the file alone: the rollups up to the checkpoint mark, and
  // the rows written after it.
  Status StoredBuckets(int64_t app, SqliteDb& db, UserReader::BucketRuns* out) {
    int64_t mark = 0;
    {
      auto q = db.Prepare("SELECT value FROM meta WHERE key = 'rollup_mark'");
      if (!q.ok()) return q.status();
      Status st;
      if (q->Step(&st)) mark = std::stoll(std::string(q->Text(0)));
      NUCLEON_RETURN_IF_ERROR(st);
    }
    std::map<int64_t, BucketCore> buckets;
    {
      auto q = db.Prepare("SELECT key, core FROM rollups WHERE key BETWEEN ? AND ?");
      if (!q.ok()) return q.status();
      q->Bind(1, RollupKey(app, -(int64_t{1} << 39)));
      q->Bind(2, RollupKey(app, (int64_t{1} << 39) - 1));
      Status st;
      while (q->Step(&st)) {
        BucketCore core;
        if (!BucketCore::Decode(q->Blob(1), &core)) return Status::Internal("corrupt rollup");
        buckets[RollupBucket(q->Int(0))].runs = std::move(core.runs);
      }
      NUCLEON_RETURN_IF_ERROR(st);
    }
    auto q = db.Prepare("SELECT id, time_ms FROM events WHERE id > ? AND app = ?");
    if (!q.ok()) return q.status();
    q->Bind(1, mark);
    q->Bind(2, app);
    Status st;
    while (q->Step(&st)) buckets[FloorDiv(q->Int(1), kBucketMs)].NoteRow(q->Int(0));
    NUCLEON_RETURN_IF_ERROR(st);
    for (auto& [bucket, core] : buckets) out->emplace_back(bucket, std::move(core.runs));
    return Status::Ok();
  }

  // A read-only connection from the pool, returned to it when the handle dies.
  struct PooledDb {
    SqliteEventStore* owner;
    std::unique_ptr<SqliteDb> db;
    ~PooledDb() {
      if (db) {
        std::lock_guard<std::mutex> lock(owner->pool_mu_);
        owner->pool_.push_back(std::move(db));
      }
    }
  };

  Result<std::unique_ptr<PooledDb>> Reader() {
    auto handle = std::make_unique<PooledDb>();
    handle->owner = this;
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      if (!pool_.empty()) {
        handle->db = std::move(pool_.back());
        pool_.pop_back();
      }
    }
    if (!handle->db) {
      handle->db = std::make_unique<SqliteDb>();
      NUCLEON_RETURN_IF_ERROR(OpenReader(handle->db.get(), budget_.reader_page_cache));
    }
    return handle;
  }

  // The publisher: committed events reach the rollups.
  void Publish(const std::vector<PublishedEvent>& items) {
    size_t i = 0;
    while (i < items.size()) {
      const int64_t app = items[i].app;
      publish_builder_->Clear();
      for (; i < items.size() && items[i].app == app; ++i) {
        publish_builder_->Add(*items[i].event, items[i].id, items[i].user);
      }
      Status st = rollups_->Apply(app, publish_builder_->events(), publish_db_);
      if (!st.ok()) Fail("adding committed events to the rollups failed: " + st.ToString());
    }
    publish_builder_->Clear();
  }

  // The rollups no longer match the file: answers would be wrong. The file is
  // intact (a restart replays from the last checkpoint), so reads answer 503
  // and checkpoints stop until then.
  void Fail(const std::string& why) {
    if (!failed_.exchange(true)) LogError(why + "; analytics answer 503 until the server restarts");
  }

  // Start-up: the events after the checkpoint mark enter the rollups.
  void Recover(int64_t mark, int64_t last) {
    const auto started = Clock::now();
    SqliteDb db;
    Status st = OpenReader(&db, budget_.reader_page_cache);
    RollupEventBuilder builder(&dict_);
    int64_t replayed = 0;
    int64_t from = mark;
    while (st.ok() && from < last && !stop_recovery_.load()) {
      auto q = db.Prepare(
          "SELECT id, app, type, user, name, time_ms, body FROM events WHERE id > ? AND id <= ?"
          " ORDER BY id LIMIT 50000");
      if (!q.ok()) {
        st = q.status();
        break;
      }
      q->Bind(1, from);
      q->Bind(2, last);
      int64_t app = -1;
      int64_t rows = 0;
      auto flush = [&]() -> Status {
        if (builder.size() == 0) return Status::Ok();
        Status s = rollups_->Apply(app, builder.events(), db);
        builder.Clear();
        return s;
      };
      while (q->Step(&st)) {
        ++rows;
        from = q->Int(0);
        if (q->Int(1) != app) {
          st = flush();
          if (!st.ok()) break;
          app = q->Int(1);
        }
        const auto type = static_cast<EventType>(q->Int(2));
        const BodyParts body = ParseBody(q->Blob(6));
        builder.AddStored(q->Int(0), q->Int(5), type, static_cast<uint32_t>(q->Int(3)),
                          static_cast<uint32_t>(q->Int(4)), body);
      }
      if (st.ok()) st = flush();
      replayed += rows;
      if (rows == 0) break;
    }
    if (!st.ok()) {
      Fail("replaying the events after the last rollup checkpoint failed: " + st.ToString());
    } else if (!stop_recovery_.load()) {
      const auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
      replayed_.store(replayed);
      LogInfo("read side ready: replayed " + std::to_string(replayed) +
              " events written after the last checkpoint in " + std::to_string(ms) + " ms");
    }
    ready_.store(true, std::memory_order_release);
  }

  // Copies the write-ahead log into the database ten times a second (SQLite's
  // passive checkpoint: it never blocks the writer and does not wait for
  // readers). Only the writer's own checkpoint, when the log is long, lets the
  // log start over; by then nearly everything is copied.
  void CopyLog() {
    std::unique_lock<std::mutex> lock(wal_mu_);
    while (!wal_stop_) {
      wal_cv_.wait_for(lock, std::chrono::milliseconds(100));
      if (wal_stop_) break;
      lock.unlock();
      int frames = 0, copied = 0;
      int rc;
      {
        std::lock_guard<std::mutex> copying(log_copy_mu_);
        rc = sqlite3_wal_checkpoint_v2(wal_db_.raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &frames,
                                       &copied);
      }
      if (rc != SQLITE_OK && rc != SQLITE_BUSY && !wal_warned_) {
        wal_warned_ = true;
        LogWarn(std::string("copying the write-ahead log into the database failed: ") +
                sqlite3_errstr(rc) + " (retried)");
      } else if (rc == SQLITE_OK) {
        wal_warned_ = false;
      }
      lock.lock();
    }
  }

  // The upgrade from the first release's layout, before serving.
  Status Import() {
    LogInfo("upgrading events.db from the first release's layout (one time; events are re-stored)");
    const auto started = Clock::now();
    auto last_log = started;
    RollupEventBuilder builder(&dict_);
    Status st = ImportLegacy(
        db_, *writer_,
        [&](std::vector<PublishedEvent>& published) -> Status {
          size_t i = 0;
          while (i < published.size()) {
            const int64_t app = published[i].app;
            builder.Clear();
            for (; i < published.size() && published[i].app == app; ++i) {
              builder.Add(*published[i].event, published[i].id, published[i].user);
            }
            NUCLEON_RETURN_IF_ERROR(rollups_->Apply(app, builder.events(), publish_db_));
          }
          builder.Clear();
          if (rollups_->dirty_events() >= kCheckpointEvents || rollups_->hot_over_budget()) {
            return Checkpoint();
          }
          return Status::Ok();
        },
        [&](int64_t done, int64_t total) {
          if (Clock::now() - last_log < std::chrono::seconds(5)) return;
          last_log = Clock::now();
          LogInfo("upgrade: " + std::to_string(done) + " of " + std::to_string(total) + " events");
        });
    if (st.ok()) st = Checkpoint();
    if (!st.ok()) return st;
    // The old tables' pages are free now: give the space back (the compaction
    // builds its copy in a temporary file, not in memory), then the log it
    // wrote through.
    LogInfo("upgrade: compacting the file");
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA temp_store=FILE"));
    NUCLEON_RETURN_IF_ERROR(db_.Exec("VACUUM"));
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA temp_store=MEMORY"));
    malloc_trim(0);
    if (sqlite3_wal_checkpoint_v2(db_.raw(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr,
                                  nullptr) != SQLITE_OK) {
      return Status::Internal(std::string("upgrade: emptying the log: ") +
                              sqlite3_errmsg(db_.raw()));
    }
    NUCLEON_RETURN_IF_ERROR(FinishLegacyImport(db_));
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    LogInfo("upgrade done in " + std::to_string(ms) + " ms");
    return Status::Ok();
  }

  SqliteStoreOptions options_;
  Budget budget_;
  std::string path_;
  SqliteDb db_;  // the writer's connection
  StringDictionary dict_;
  std::unique_ptr<Rollups> rollups_;
  std::unique_ptr<EventWriter> writer_;
  std::unique_ptr<AnalyticsReader> analytics_;
  std::unique_ptr<UserReader> users_;
  std::unique_ptr<UserDeleter> deleter_;
  std::unique_ptr<RetentionSweeper> sweeper_;
  // Retention: the policy (set from any thread), and what the writer thread
  // made of it: (app row, cut) of the apps with events before their cut.
  std::mutex retention_mu_;
  RetentionPolicy retention_policy_;
  std::atomic<bool> retention_changed_{false};
  int64_t retention_checked_ms_ = 0;
  std::vector<std::pair<int64_t, int64_t>> retention_targets_;
  double retention_event_ms_ = 0.04;  // a step's time per event removed, smoothed
  std::atomic<int64_t> retention_apps_{0}, retention_pending_{0}, retention_events_{0},
      retention_steps_{0}, retention_us_{0}, retention_changes_{0};
  SqliteDb publish_db_;  // the publisher's connection (loads buckets)
  std::unique_ptr<RollupEventBuilder> publish_builder_;
  int64_t last_id_at_open_ = 0;  // the largest event row id when the store opened
  std::atomic<int64_t> replayed_{0};
  std::atomic<uint64_t> checkpoints_{0}, checkpoint_us_{0}, deletes_{0}, delete_us_{0};
  std::atomic<bool> ready_{false};
  std::atomic<bool> failed_{false};
  std::atomic<bool> stop_recovery_{false};
  std::thread recovery_;
  Clock::time_point last_checkpoint_;
  std::shared_mutex gate_;               // held by a delete while it lands
  std::atomic<uint64_t> delete_seq_{0};  // odd while a delete lands
  std::mutex wal_fd_mu_;
  int wal_fd_ = -1;  // the write-ahead log, for Sync()
  SqliteDb wal_db_;  // the log copier's connection
  std::thread wal_thread_;
  std::mutex log_copy_mu_;  // one checkpoint of the log at a time (copier or delete)
  std::mutex wal_mu_;
  std::condition_variable wal_cv_;
  bool wal_stop_ = false;
  bool wal_warned_ = false;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<SqliteDb>> pool_;
};

}  // namespace

Result<std::unique_ptr<EventStore>> OpenSqliteEventStore(const std::string& data_dir,
                                                         const SqliteStoreOptions& options) {
  auto store = std::make_unique<SqliteEventStore>();
  NUCLEON_RETURN_IF_ERROR(store->Open(data_dir, options));
  return std::unique_ptr<EventStore>(std::move(store));
}

Result<std::vector<std::pair<std::string, int64_t>>> ReadSqliteTombstones(
    const std::string& data_dir) {
  SqliteDb db;
  NUCLEON_RETURN_IF_ERROR(db.Open(data_dir + "/events.db", /*create=*/false, /*read_only=*/true));
  auto q = db.Prepare(
      "SELECT a.app_id, t.hash FROM tombstones t JOIN apps a ON a.id = t.app ORDER BY t.app");
  if (!q.ok()) return q.status();
  std::vector<std::pair<std::string, int64_t>> out;
  Status st;
  while (q->Step(&st)) out.emplace_back(std::string(q->Text(0)), q->Int(1));
  NUCLEON_RETURN_IF_ERROR(st);
  return out;
}

Result<std::vector<int64_t>> ReadSqliteStorageOrder(const std::string& data_dir,
                                                    const std::string& app_id) {
  SqliteDb db;
  NUCLEON_RETURN_IF_ERROR(db.Open(data_dir + "/events.db", /*create=*/false, /*read_only=*/true));
  auto q = db.Prepare(
      "SELECT e.id FROM events e WHERE e.app = (SELECT id FROM apps WHERE app_id = ?)"
      " ORDER BY e.time_ms, e.id");
  if (!q.ok()) return q.status();
  q->Bind(1, app_id);
  std::vector<int64_t> out;
  Status st;
  while (q->Step(&st)) out.push_back(q->Int(0));
  NUCLEON_RETURN_IF_ERROR(st);
  return out;
}

Status AddSqliteTombstones(const std::string& data_dir, const std::string& app_id,
                           const std::vector<int64_t>& hashes) {
  if (hashes.empty()) return Status::Ok();
  SqliteDb db;
  NUCLEON_RETURN_IF_ERROR(db.Open(data_dir + "/events.db", /*create=*/false));
  NUCLEON_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  Status st = [&]() -> Status {
    auto app = db.Prepare("INSERT OR IGNORE INTO apps(app_id) VALUES(?)");
    if (!app.ok()) return app.status();
    app->Bind(1, app_id);
    NUCLEON_RETURN_IF_ERROR(app->Run());
    auto ins = db.Prepare(
        "INSERT OR IGNORE INTO tombstones(app, hash)"
        " SELECT id, ? FROM apps WHERE app_id = ?");
    if (!ins.ok()) return ins.status();
    for (int64_t hash : hashes) {
      ins->Bind(1, hash);
      ins->Bind(2, app_id);
      NUCLEON_RETURN_IF_ERROR(ins->Run());
      ins->Reset();
    }
    return Status::Ok();
  }();
  if (!st.ok()) {
    (void)db.Exec("ROLLBACK");
    return st;
  }
  return db.Exec("COMMIT");
}

Status BackupSqliteFolder(const std::string& data_dir, const std::string& dest) {
  if (!std::filesystem::exists(data_dir + "/catalog.db")) {
    return Status::NotFound("no data folder at " + data_dir);
  }
  std::error_code ec;
  std::filesystem::create_directories(dest, ec);
  if (ec) return Status::Internal("cannot create " + dest + ": " + ec.message());
  for (const char* file : {"events.db", "catalog.db"}) {
    const std::string to = dest + "/" + file;
    if (std::filesystem::exists(to)) {
      return Status::InvalidArgument(to + " exists: a backup goes into a new folder");
    }
  }
  for (const char* file : {"events.db", "catalog.db"}) {
    const std::string from = data_dir + "/" + file;
    if (!std::filesystem::exists(from)) continue;  // a folder without events yet
    SqliteDb db;
    NUCLEON_RETURN_IF_ERROR(db.Open(from, /*create=*/false, /*read_only=*/true));
    auto q = db.Prepare("VACUUM INTO ?");
    if (!q.ok()) return q.status();
    q->Bind(1, dest + "/" + file);
    NUCLEON_RETURN_IF_ERROR(q->Run());
  }
  return Status::Ok();
}

}  // namespace nucleon
