// The embedded backend: SQLite in WAL mode, the system of record on one machine.
//
// Schema (version 1):
//   apps, devices, users     dictionaries: text keys -> small integer rows
//   sessions                 one row per (device, sessionId): start, end, user
//   events                   one row per stored event; heartbeats only move a
//                            session's end and are never rows here
//   tombstones               identities of events whose user was deleted, so an
//                            SDK's late resend is not stored again
// The identity of an event is (session row, ident) where ident is a stable hash
// of (client id, type, name, client date); the session row already fixes the
// app and device. A unique index over it makes a resend an ignored insert
// (events without an id have a NULL ident, and NULLs never collide).
//
// The writer keeps the dictionaries and session states in memory (rebuilt at
// open) so that an append costs one indexed insert per event plus one update
// per touched session. In-memory changes made during a batch are undone when
// its transaction fails, so memory never runs ahead of the file.
//
// Durability: the connection runs with synchronous=NORMAL, so a COMMIT writes
// the log without waiting for the disk, and with the full fsync policy Sync()
// fdatasyncs the write-ahead log afterwards, on the caller's thread. A commit
// is therefore as durable as with synchronous=FULL once Sync() returns (SQLite
// itself syncs the log before and the database after every checkpoint), and
// the writer can fill the next commit while the disk flushes the last one.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "core/crypto.h"
#include "core/log.h"
#include "core/time_util.h"
#include "store/analytics_index.h"
#include "store/event_store.h"
#include "store/payload_props.h"
#include "store/sqlite/sqlite_db.h"

namespace nucleon {

namespace {

constexpr const char* kMigrations[] = {
    // v1
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE apps(id INTEGER PRIMARY KEY, app_id TEXT NOT NULL UNIQUE);"
    "CREATE TABLE devices(id INTEGER PRIMARY KEY, app INTEGER NOT NULL, device_key TEXT NOT NULL,"
    " UNIQUE(app, device_key));"
    "CREATE TABLE users(id INTEGER PRIMARY KEY, app INTEGER NOT NULL, user_key TEXT NOT NULL,"
    " UNIQUE(app, user_key));"
    "CREATE TABLE sessions(id INTEGER PRIMARY KEY, app INTEGER NOT NULL, device INTEGER NOT NULL,"
    " session_key TEXT NOT NULL, user INTEGER NOT NULL, start_ms INTEGER NOT NULL,"
    " end_ms INTEGER NOT NULL, has_init INTEGER NOT NULL DEFAULT 0, UNIQUE(device, session_key));"
    "CREATE TABLE events(id INTEGER PRIMARY KEY, app INTEGER NOT NULL, session INTEGER NOT NULL,"
    " device INTEGER NOT NULL, user INTEGER NOT NULL, type INTEGER NOT NULL, name TEXT,"
    " time_ms INTEGER NOT NULL, ident INTEGER, client_id TEXT, user_id TEXT, anon_id TEXT,"
    " platform TEXT, os_version TEXT, locale TEXT, version TEXT, module_version TEXT, arch TEXT,"
    " client TEXT, total_ram REAL, country TEXT, payload TEXT, error_hash TEXT);"
    "CREATE UNIQUE INDEX events_identity ON events(session, ident) WHERE ident IS NOT NULL;"
    "CREATE INDEX events_app_time ON events(app, time_ms);"
    "CREATE INDEX events_user ON events(user);"
    "CREATE TABLE tombstones(app INTEGER NOT NULL, hash INTEGER NOT NULL,"
    " PRIMARY KEY(app, hash)) WITHOUT ROWID;"
    "INSERT INTO meta(key, value) VALUES('probe', '0');",
    // v2: the identity index covers every event (NULL idents never collide in
    // a UNIQUE index), so it also serves "the events of a session".
    "DROP INDEX events_identity;"
    "CREATE UNIQUE INDEX events_identity ON events(session, ident);",
    // v3: a user's events are found through their sessions (events_identity),
    // which saves an index update on every insert.
    "DROP INDEX events_user;",
};

int64_t IdentHash(const Event& e) {
  std::string material;
  material.reserve(e.client_id.size() + e.name.size() + e.client_date.size() + 8);
  material.append(e.client_id).push_back('\0');
  material.append(EventTypeName(e.type)).push_back('\0');
  material.append(e.name).push_back('\0');
  material.append(e.client_date);
  return StableHash64(material);
}

std::string Key(int64_t parent, std::string_view key) {
  std::string k = std::to_string(parent);
  k.push_back('\x1f');
  k.append(key);
  return k;
}

struct DeviceState {
  int64_t row = 0;
  std::string latest_session;  // key of the session with the latest start
  int64_t latest_start = INT64_MIN;
};

struct SessionState {
  int64_t row = 0;
  int64_t app = 0;
  int64_t device = 0;
  int64_t user = 0;
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  bool has_init = false;
  bool dirty = false;
};

class SqliteEventStore final : public EventStore {
 public:
  ~SqliteEventStore() override {
    if (wal_fd_ >= 0) ::close(wal_fd_);
  }

  Status Open(const std::string& data_dir, const SqliteStoreOptions& options) {
    options_ = options;
    path_ = data_dir + "/events.db";
    const std::string& path = path_;
    if (!options.read_only) {
      std::error_code ec;
      std::filesystem::create_directories(data_dir, ec);
    } else if (!std::filesystem::exists(path)) {
      return Status::NotFound("no event store in " + data_dir);
    }
    NUCLEON_RETURN_IF_ERROR(db_.Open(path, !options.read_only, options.read_only));
    if (options.read_only) return Status::Ok();
    // See "Durability" above: with fsync full, Sync() flushes the log.
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA synchronous=NORMAL"));
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA cache_size=-262144"));  // 256 MiB
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA temp_store=MEMORY"));
    // Deleted rows are overwritten with zeros, not just unlinked: a deleted
    // user's data must not linger in free space (DeleteUser also empties the WAL).
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA secure_delete=ON"));
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA wal_autocheckpoint=4000"));
    NUCLEON_RETURN_IF_ERROR(Migrate());
    NUCLEON_RETURN_IF_ERROR(Prepare());
    NUCLEON_RETURN_IF_ERROR(LoadState());
    for (const auto& [app_id, row] : apps_) NUCLEON_RETURN_IF_ERROR(RebuildIndex(row, app_id));
    return Status::Ok();
  }

  Status Append(std::span<const Event> events, std::vector<uint8_t>* inserted) override {
    std::function<void()> publish;
    Status st = AppendDeferred(events, inserted, &publish);
    if (st.ok()) st = Sync();
    if (publish) publish();  // the file holds it either way: the index must agree
    if (!st.ok()) inserted->assign(events.size(), 0);
    return st;
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

  Status AppendDeferred(std::span<const Event> events, std::vector<uint8_t>* inserted,
                        std::function<void()>* publish) override {
    *publish = nullptr;
    inserted->assign(events.size(), 0);
    if (options_.read_only) return Status::Internal("the event store was opened read-only");
    if (events.empty()) return Status::Ok();
    undo_.clear();
    Status st = db_.Exec("BEGIN IMMEDIATE");
    if (st.ok()) st = AppendInTransaction(events, inserted);
    if (st.ok()) st = FlushSessions();
    if (st.ok()) st = db_.Exec("COMMIT");
    if (!st.ok()) {
      (void)db_.Exec("ROLLBACK");
      Undo();
      applied_.clear();
      // The index must not hear of sessions this batch created: Undo erased
      // them, and looking them up at the next commit would re-create them as
      // rows that do not exist in the file.
      session_updates_.clear();
      inserted->assign(events.size(), 0);
      return st;
    }
    // Durable. What the in-memory index must learn is gathered here, from the
    // writer's state; `publish` applies it (one lock per app and batch), on
    // any thread, while this thread goes on with the next commit.
    struct AppWork {
      AnalyticsIndex* index = nullptr;
      std::vector<IndexEvent> events;
      std::vector<AnalyticsIndex::SessionUpdate> sessions;
    };
    std::unordered_map<int64_t, AppWork> per_app;
    for (const Applied& a : applied_) {
      const Event& e = events[a.index];
      IndexEvent ie;
      ie.time_ms = e.time_ms;
      ie.type = e.type;
      ie.user = static_cast<uint32_t>(a.user);
      ie.device = static_cast<uint32_t>(a.device);
      ie.session = static_cast<uint32_t>(a.session);
      ie.user_key = e.user_key;
      ie.device_key = e.device_id;
      ie.session_key = e.session_id;
      ie.name = e.name;
      ie.props = &e.props;
      ie.platform = e.platform;
      ie.os_version = e.os_version;
      ie.locale = e.locale;
      ie.version = e.version;
      ie.module_version = e.module_version;
      ie.arch = e.arch;
      ie.country = e.country;
      ie.total_ram = e.total_ram;
      AppWork& work = per_app[a.app];
      if (!work.index) work.index = IndexFor(a.app, e.app_id);
      work.events.push_back(ie);
    }
    for (const auto& [app, key] : session_updates_) {
      auto it = sessions_.find(key);
      if (it == sessions_.end()) continue;
      const SessionState& ss = it->second;
      AppWork& work = per_app[app];
      if (!work.index) work.index = IndexFor(app, {});
      // The key views the map's own node, which outlives the publish (nodes go
      // only in DeleteUser, which runs after every publish).
      work.sessions.push_back({static_cast<uint32_t>(ss.row), static_cast<uint32_t>(ss.device),
                               SessionKeyOf(it->first), ss.start_ms, ss.end_ms});
    }
    if (!per_app.empty()) {
      *publish = [work = std::move(per_app)] {
        for (const auto& [app, w] : work) w.index->Apply(w.events, w.sessions);
      };
    }
    applied_.clear();
    session_updates_.clear();
    dirty_sessions_.clear();
    return Status::Ok();
  }

  Status Probe() override {
    if (options_.read_only) return Status::Internal("the event store was opened read-only");
    probe_stmt_.Bind(1, NowMs());
    Status st = probe_stmt_.Run();
    probe_stmt_.Reset();
    return st;
  }

  Status Export(std::string_view app_id, const std::function<void(const Event&)>& sink) override {
    auto stmt = db_.Prepare(
        "SELECT e.type, e.name, e.client_id, d.device_key, s.session_key, u.user_key, e.time_ms,"
        " e.user_id, e.anon_id, e.platform, e.os_version, e.locale, e.version, e.module_version,"
        " e.arch, e.client, e.total_ram, e.country, e.payload, e.error_hash"
        " FROM events e JOIN apps a ON a.id = e.app JOIN devices d ON d.id = e.device"
        " JOIN sessions s ON s.id = e.session JOIN users u ON u.id = e.user"
        " WHERE a.app_id = ? ORDER BY e.time_ms, e.id");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, app_id);
    Status st;
    Event e;
    e.app_id = std::string(app_id);
    while (stmt->Step(&st)) {
      e.type = static_cast<EventType>(stmt->Int(0));
      e.name = stmt->Text(1);
      e.client_id = stmt->Text(2);
      e.device_id = stmt->Text(3);
      e.session_id = stmt->Text(4);
      e.user_key = stmt->Text(5);
      e.time_ms = stmt->Int(6);
      e.user_id = stmt->Text(7);
      e.anon_id = stmt->Text(8);
      e.platform = stmt->Text(9);
      e.os_version = stmt->Text(10);
      e.locale = stmt->Text(11);
      e.version = stmt->Text(12);
      e.module_version = stmt->Text(13);
      e.arch = stmt->Text(14);
      e.client = stmt->Text(15);
      e.total_ram = stmt->IsNull(16) ? std::nullopt : std::optional<double>(stmt->Double(16));
      e.country = stmt->Text(17);
      e.payload_json = stmt->IsNull(18) ? "{}" : std::string(stmt->Text(18));
      e.error_hash = stmt->Text(19);
      sink(e);
    }
    return st;
  }

  Result<StoreStats> Stats(std::string_view app_id) override {
    StoreStats stats;
    const char* kTables[] = {"events", "sessions", "devices", "users"};
    int64_t* kOut[] = {&stats.events, &stats.sessions, &stats.devices, &stats.users};
    for (int i = 0; i < 4; ++i) {
      std::string sql = std::string("SELECT count(*) FROM ") + kTables[i];
      if (!app_id.empty()) sql += " WHERE app = (SELECT id FROM apps WHERE app_id = ?)";
      auto stmt = db_.Prepare(sql);
      if (!stmt.ok()) return stmt.status();
      if (!app_id.empty()) stmt->Bind(1, app_id);
      Status st;
      if (stmt->Step(&st)) *kOut[i] = stmt->Int(0);
      if (!st.ok()) return st;
    }
    auto apps = db_.Prepare(app_id.empty() ? "SELECT count(*) FROM apps"
                                           : "SELECT count(*) FROM apps WHERE app_id = ?");
    if (!apps.ok()) return apps.status();
    if (!app_id.empty()) apps->Bind(1, app_id);
    Status st;
    if (apps->Step(&st)) stats.apps = apps->Int(0);
    if (!st.ok()) return st;
    return stats;
  }

 private:
  Status Migrate() {
    auto version = db_.UserVersion();
    if (!version.ok()) return version.status();
    const int64_t target = static_cast<int64_t>(std::size(kMigrations));
    if (*version > target) {
      return Status::Internal("events.db has schema version " + std::to_string(*version) +
                              ", newer than this build knows (" + std::to_string(target) + ")");
    }
    for (int64_t v = *version; v < target; ++v) {
      NUCLEON_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
      Status st = db_.Exec(kMigrations[v]);
      if (st.ok()) st = db_.Exec("PRAGMA user_version=" + std::to_string(v + 1));
      if (!st.ok()) {
        (void)db_.Exec("ROLLBACK");
        return st;
      }
      NUCLEON_RETURN_IF_ERROR(db_.Exec("COMMIT"));
    }
    return Status::Ok();
  }

  Status Prepare() {
    auto prep = [this](SqliteStmt* out, const char* sql) -> Status {
      auto stmt = db_.Prepare(sql);
      if (!stmt.ok()) return stmt.status();
      *out = std::move(*stmt);
      return Status::Ok();
    };
    NUCLEON_RETURN_IF_ERROR(prep(&insert_app_, "INSERT INTO apps(app_id) VALUES(?)"));
    NUCLEON_RETURN_IF_ERROR(
        prep(&insert_device_, "INSERT INTO devices(app, device_key) VALUES(?,?)"));
    NUCLEON_RETURN_IF_ERROR(prep(&insert_user_, "INSERT INTO users(app, user_key) VALUES(?,?)"));
    NUCLEON_RETURN_IF_ERROR(prep(&insert_session_,
                                 "INSERT INTO sessions(app, device, session_key, user, start_ms,"
                                 " end_ms, has_init) VALUES(?,?,?,?,?,?,?)"));
    NUCLEON_RETURN_IF_ERROR(prep(&update_session_,
                                 "UPDATE sessions SET user=?, start_ms=?, end_ms=?, has_init=?"
                                 " WHERE id=?"));
    NUCLEON_RETURN_IF_ERROR(
        prep(&find_event_, "SELECT id FROM events WHERE session = ? AND ident = ?"));
    insert_events_.clear();
    insert_events_.resize(kRowsPerInsert + 1);
    NUCLEON_RETURN_IF_ERROR(
        prep(&tombstone_check_, "SELECT 1 FROM tombstones WHERE app = ? AND hash = ?"));
    NUCLEON_RETURN_IF_ERROR(prep(&probe_stmt_, "UPDATE meta SET value = ? WHERE key = 'probe'"));
    return Status::Ok();
  }

  Status LoadState() {
    Status st;
    std::unordered_map<int64_t, std::string> device_keys_by_row;
    {
      auto s = db_.Prepare("SELECT id, app_id FROM apps");
      if (!s.ok()) return s.status();
      while (s->Step(&st)) apps_.emplace(s->Text(1), s->Int(0));
      if (!st.ok()) return st;
    }
    {
      auto s = db_.Prepare("SELECT id, app, device_key FROM devices");
      if (!s.ok()) return s.status();
      while (s->Step(&st)) {
        devices_.emplace(Key(s->Int(1), s->Text(2)), DeviceState{s->Int(0), {}, INT64_MIN});
        device_keys_by_row.emplace(s->Int(0), Key(s->Int(1), s->Text(2)));
      }
      if (!st.ok()) return st;
    }
    {
      auto s = db_.Prepare("SELECT id, app, user_key FROM users");
      if (!s.ok()) return s.status();
      while (s->Step(&st)) users_.emplace(Key(s->Int(1), s->Text(2)), s->Int(0));
      if (!st.ok()) return st;
    }
    {
      auto s = db_.Prepare(
          "SELECT id, device, session_key, user, start_ms, end_ms, has_init, app FROM sessions");
      if (!s.ok()) return s.status();
      while (s->Step(&st)) {
        SessionState ss{s->Int(0), s->Int(7), s->Int(1), s->Int(3), s->Int(4), s->Int(5),
                        s->Int(6) != 0, false};
        std::string key = Key(ss.device, s->Text(2));
        auto dk = device_keys_by_row.find(ss.device);
        if (dk != device_keys_by_row.end()) {
          DeviceState& d = devices_[dk->second];
          if (ss.start_ms >= d.latest_start) {
            d.latest_start = ss.start_ms;
            d.latest_session = key;
          }
        }
        sessions_.emplace(std::move(key), ss);
      }
      if (!st.ok()) return st;
    }
    {
      auto s = db_.Prepare("SELECT count(*) FROM tombstones");
      if (!s.ok()) return s.status();
      if (s->Step(&st)) has_tombstones_ = s->Int(0) > 0;
      if (!st.ok()) return st;
    }
    return Status::Ok();
  }

  // One undoable change to the in-memory state.
  struct UndoEntry {
    enum class Kind { kApp, kDevice, kDeviceState, kUser, kSession, kSessionState } kind;
    std::string key;
    DeviceState device;
    SessionState session;
  };

  void Undo() {
    for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
      switch (it->kind) {
        case UndoEntry::Kind::kApp: apps_.erase(it->key); break;
        case UndoEntry::Kind::kDevice: devices_.erase(it->key); break;
        case UndoEntry::Kind::kDeviceState: devices_[it->key] = it->device; break;
        case UndoEntry::Kind::kUser: users_.erase(it->key); break;
        case UndoEntry::Kind::kSession: sessions_.erase(it->key); break;
        case UndoEntry::Kind::kSessionState: sessions_[it->key] = it->session; break;
      }
    }
    undo_.clear();
    dirty_sessions_.clear();
  }

  Result<int64_t> AppRow(const std::string& app_id) {
    auto it = apps_.find(app_id);
    if (it != apps_.end()) return it->second;
    insert_app_.Bind(1, app_id);
    Status st = insert_app_.Run();
    insert_app_.Reset();
    if (!st.ok()) return st;
    int64_t row = db_.LastInsertRowid();
    apps_.emplace(app_id, row);
    undo_.push_back({UndoEntry::Kind::kApp, app_id, {}, {}});
    return row;
  }

  Result<DeviceState*> Device(int64_t app, const std::string& device_key) {
    std::string key = Key(app, device_key);
    auto it = devices_.find(key);
    if (it != devices_.end()) return &it->second;
    insert_device_.Bind(1, app);
    insert_device_.Bind(2, device_key);
    Status st = insert_device_.Run();
    insert_device_.Reset();
    if (!st.ok()) return st;
    int64_t row = db_.LastInsertRowid();
    undo_.push_back({UndoEntry::Kind::kDevice, key, {}, {}});
    return &devices_.emplace(std::move(key), DeviceState{row, {}, INT64_MIN}).first->second;
  }

  Result<int64_t> UserRow(int64_t app, const std::string& user_key) {
    std::string key = Key(app, user_key);
    auto it = users_.find(key);
    if (it != users_.end()) return it->second;
    insert_user_.Bind(1, app);
    insert_user_.Bind(2, user_key);
    Status st = insert_user_.Run();
    insert_user_.Reset();
    if (!st.ok()) return st;
    int64_t row = db_.LastInsertRowid();
    undo_.push_back({UndoEntry::Kind::kUser, key, {}, {}});
    users_.emplace(std::move(key), row);
    return row;
  }

  // Remembers the state of a session before its first change in this batch.
  void Touch(const std::string& key, SessionState& s) {
    if (s.dirty) return;
    undo_.push_back({UndoEntry::Kind::kSessionState, key, {}, s});
    s.dirty = true;
    dirty_sessions_.push_back(key);
  }

  // Keeps the device's most recent session (by start) current.
  void MoveLatest(const std::string& device_key, DeviceState* d, const std::string& session_key,
                  const SessionState& s) {
    const bool same = d->latest_session == session_key;
    if (!same && s.start_ms < d->latest_start) return;
    if (same && s.start_ms == d->latest_start) return;
    undo_.push_back({UndoEntry::Kind::kDeviceState, device_key, *d, {}});
    d->latest_start = s.start_ms;
    d->latest_session = session_key;
  }

  // The rows an event belongs to, kept while consecutive events share them.
  // Pointers into the node-based maps stay valid until Undo (which ends the batch).
  struct ResolvedRun {
    bool valid = false;
    std::string_view app_id, device_id, session_id, user_key;
    int64_t app = 0;
    DeviceState* device = nullptr;
    std::string device_key;
    int64_t user = 0;
    std::string session_key;
    SessionState* session = nullptr;
  };

  // Finds or creates the app, device, user and session rows of `e`.
  Status Resolve(const Event& e, ResolvedRun* run) {
    run->valid = false;
    auto app = AppRow(e.app_id);
    if (!app.ok()) return app.status();
    auto device = Device(*app, e.device_id);
    if (!device.ok()) return device.status();
    DeviceState* d = *device;
    auto user = UserRow(*app, e.user_key);
    if (!user.ok()) return user.status();
    std::string device_key = Key(*app, e.device_id);
    std::string skey = Key(d->row, e.session_id);
    auto sit = sessions_.find(skey);
    if (sit == sessions_.end()) {
      const bool init = e.type == EventType::kInit;
      insert_session_.Bind(1, *app);
      insert_session_.Bind(2, d->row);
      insert_session_.Bind(3, e.session_id);
      insert_session_.Bind(4, *user);
      insert_session_.Bind(5, e.time_ms);
      insert_session_.Bind(6, e.time_ms);
      insert_session_.Bind(7, static_cast<int64_t>(init ? 1 : 0));
      Status st = insert_session_.Run();
      insert_session_.Reset();
      if (!st.ok()) return st;
      SessionState ss{db_.LastInsertRowid(), *app, d->row, *user, e.time_ms, e.time_ms, init,
                      false};
      undo_.push_back({UndoEntry::Kind::kSession, skey, {}, {}});
      sit = sessions_.emplace(skey, ss).first;
      session_updates_.emplace_back(*app, skey);
      MoveLatest(device_key, d, skey, ss);
    }
    run->app_id = e.app_id;
    run->device_id = e.device_id;
    run->session_id = e.session_id;
    run->user_key = e.user_key;
    run->app = *app;
    run->device = d;
    run->device_key = std::move(device_key);
    run->user = *user;
    run->session_key = std::move(skey);
    run->session = &sit->second;
    run->valid = true;
    return Status::Ok();
  }

  Status AppendInTransaction(std::span<const Event> events, std::vector<uint8_t>* inserted) {
    ResolvedRun run;
    pending_.clear();
    for (size_t i = 0; i < events.size(); ++i) {
      const Event& e = events[i];
      if (e.type == EventType::kHeartbeat) {
        NUCLEON_RETURN_IF_ERROR(FlushRows(events, run, inserted));
        // A heartbeat only extends a session that exists; it creates nothing.
        auto app_it = apps_.find(e.app_id);
        if (app_it == apps_.end()) continue;
        auto dev_it = devices_.find(Key(app_it->second, e.device_id));
        if (dev_it == devices_.end()) continue;
        DeviceState* d = &dev_it->second;
        const std::string skey =
            e.session_id.empty() ? d->latest_session : Key(d->row, e.session_id);
        auto s = skey.empty() ? sessions_.end() : sessions_.find(skey);
        if (s != sessions_.end() && e.time_ms > s->second.end_ms) {
          Touch(s->first, s->second);
          s->second.end_ms = e.time_ms;
        }
        continue;
      }

      // An SDK message holds one device's events, mostly of one session and
      // user: resolve the rows once per run of such events.
      if (!run.valid || e.app_id != run.app_id || e.device_id != run.device_id ||
          e.session_id != run.session_id || e.user_key != run.user_key) {
        NUCLEON_RETURN_IF_ERROR(FlushRows(events, run, inserted));
        NUCLEON_RETURN_IF_ERROR(Resolve(e, &run));
      }
      const int64_t app = run.app;

      const bool has_identity = e.HasIdentity();
      const int64_t ident = has_identity ? IdentHash(e) : 0;
      if (has_identity && has_tombstones_ &&
          IsTombstoned(app, TombstoneHash(e.device_id, e.session_id, ident))) {
        continue;
      }
      // The same event twice in one run: the later one is a resend.
      if (has_identity && std::any_of(pending_.begin(), pending_.end(), [&](const PendingRow& r) {
            return r.has_identity && r.ident == ident;
          })) {
        continue;
      }
      pending_.push_back({i, ident, has_identity});
      if (pending_.size() == kRowsPerInsert) NUCLEON_RETURN_IF_ERROR(FlushRows(events, run, inserted));
    }
    return FlushRows(events, run, inserted);
  }

  // Inserts the pending rows of `run` with one statement, then applies the
  // session changes of those that were new. A row is ignored when its identity
  // is already stored (a resend). When the statement inserted fewer rows than it
  // had, each identity is looked up: rowids are assigned as max+1, so the rows
  // this statement inserted are exactly the last `changes` rowids.
  Status FlushRows(std::span<const Event> events, const ResolvedRun& run,
                   std::vector<uint8_t>* inserted) {
    if (pending_.empty()) return Status::Ok();
    const size_t n = pending_.size();
    auto stmt = InsertStatement(n);
    if (!stmt.ok()) return stmt.status();
    SqliteStmt& q = **stmt;
    SessionState& s = *run.session;
    DeviceState* d = run.device;
    for (size_t r = 0; r < n; ++r) {
      const Event& e = events[pending_[r].index];
      const int b = static_cast<int>(r * kEventColumns);
      q.Bind(b + 1, run.app);
      q.Bind(b + 2, s.row);
      q.Bind(b + 3, d->row);
      q.Bind(b + 4, run.user);
      q.Bind(b + 5, static_cast<int64_t>(e.type));
      q.BindViewOrNull(b + 6, e.name);
      q.Bind(b + 7, e.time_ms);
      if (pending_[r].has_identity) q.Bind(b + 8, pending_[r].ident); else q.BindNull(b + 8);
      q.BindViewOrNull(b + 9, e.client_id);
      q.BindViewOrNull(b + 10, e.user_id);
      q.BindViewOrNull(b + 11, e.anon_id);
      q.BindViewOrNull(b + 12, e.platform);
      q.BindViewOrNull(b + 13, e.os_version);
      q.BindViewOrNull(b + 14, e.locale);
      q.BindViewOrNull(b + 15, e.version);
      q.BindViewOrNull(b + 16, e.module_version);
      q.BindViewOrNull(b + 17, e.arch);
      q.BindViewOrNull(b + 18, e.client);
      if (e.total_ram) q.Bind(b + 19, *e.total_ram); else q.BindNull(b + 19);
      q.BindViewOrNull(b + 20, e.country);
      q.BindView(b + 21, e.payload_json);
      q.BindViewOrNull(b + 22, e.error_hash);
    }
    Status st = q.Run();
    q.Reset();
    if (!st.ok()) return st;
    const int64_t changes = db_.Changes();
    const int64_t first_new = db_.LastInsertRowid() - changes + 1;  // valid when changes > 0

    for (const PendingRow& row : pending_) {
      if (changes == 0) break;  // every row was a resend
      if (changes < static_cast<int64_t>(n) && row.has_identity) {
        auto id = FindEvent(s.row, row.ident);
        if (!id.ok()) return id.status();
        if (*id < first_new) continue;  // stored before: a resend
      }
      const Event& e = events[row.index];
      (*inserted)[row.index] = 1;
      applied_.push_back({row.index, run.app, d->row, run.user, s.row});

      // The session: starts at its init (else its earliest event), ends at its last event.
      int64_t start = s.start_ms;
      bool has_init = s.has_init;
      if (e.type == EventType::kInit) {
        start = has_init ? std::min(start, e.time_ms) : e.time_ms;
        has_init = true;
      } else if (!has_init) {
        start = std::min(start, e.time_ms);
      }
      const int64_t end = std::max(s.end_ms, e.time_ms);
      if (start != s.start_ms || end != s.end_ms || has_init != s.has_init ||
          run.user != s.user) {
        Touch(run.session_key, s);
        s.start_ms = start;
        s.end_ms = std::max(end, start);
        s.has_init = has_init;
        s.user = run.user;
      }
      MoveLatest(run.device_key, d, run.session_key, s);
    }
    pending_.clear();
    return Status::Ok();
  }

  // The statement that inserts `rows` events (prepared on first use).
  Result<SqliteStmt*> InsertStatement(size_t rows) {
    SqliteStmt& slot = insert_events_[rows];
    if (!slot.valid()) {
      std::string sql =
          "INSERT OR IGNORE INTO events(app, session, device, user, type, name, time_ms, ident,"
          " client_id, user_id, anon_id, platform, os_version, locale, version, module_version,"
          " arch, client, total_ram, country, payload, error_hash) VALUES";
      for (size_t r = 0; r < rows; ++r) {
        sql += r ? ",(" : "(";
        for (size_t c = 0; c < kEventColumns; ++c) sql += c ? ",?" : "?";
        sql += ")";
      }
      auto stmt = db_.Prepare(sql);
      if (!stmt.ok()) return stmt.status();
      slot = std::move(*stmt);
    }
    return &slot;
  }

  // The rowid of the stored event with this identity.
  Result<int64_t> FindEvent(int64_t session_row, int64_t ident) {
    find_event_.Bind(1, session_row);
    find_event_.Bind(2, ident);
    Status st;
    const bool found = find_event_.Step(&st);
    const int64_t id = found ? find_event_.Int(0) : 0;
    find_event_.Reset();
    if (!st.ok()) return st;
    if (!found) return Status::Internal("an ignored event has no stored twin");
    return id;
  }

  bool IsTombstoned(int64_t app, int64_t hash) {
    tombstone_check_.Bind(1, app);
    tombstone_check_.Bind(2, hash);
    Status st;
    bool found = tombstone_check_.Step(&st);
    tombstone_check_.Reset();
    return found;
  }

  // The identity of a deleted user's event, kept without any readable trace.
  static int64_t TombstoneHash(std::string_view device_key, std::string_view session_key,
                               int64_t ident) {
    std::string material(device_key);
    material.push_back('\0');
    material.append(session_key).push_back('\0');
    material.append(std::to_string(ident));
    return StableHash64(material);
  }

  static std::string_view SessionKeyOf(std::string_view key) {
    size_t sep = key.find('\x1f');
    return sep == std::string_view::npos ? key : key.substr(sep + 1);
  }

  Status FlushSessions() {
    for (const std::string& key : dirty_sessions_) {
      SessionState& s = sessions_[key];
      session_updates_.emplace_back(s.app, key);
      s.dirty = false;
      update_session_.Bind(1, s.user);
      update_session_.Bind(2, s.start_ms);
      update_session_.Bind(3, s.end_ms);
      update_session_.Bind(4, static_cast<int64_t>(s.has_init ? 1 : 0));
      update_session_.Bind(5, s.row);
      Status st = update_session_.Run();
      update_session_.Reset();
      if (!st.ok()) return st;
    }
    return Status::Ok();
  }

  // ---- The in-memory index ----

  AnalyticsIndex* IndexFor(int64_t app_row, std::string_view app_id) {
    {
      std::shared_lock<std::shared_mutex> lock(index_mu_);
      auto it = indexes_.find(app_row);
      if (it != indexes_.end()) return it->second.get();
    }
    std::string id(app_id);
    if (id.empty()) {
      for (const auto& [k, v] : apps_) {
        if (v == app_row) id = k;
      }
    }
    std::unique_lock<std::shared_mutex> lock(index_mu_);
    auto& slot = indexes_[app_row];
    if (!slot) {
      slot = std::make_unique<AnalyticsIndex>(id);
      indexes_by_app_[id] = slot.get();
    }
    return slot.get();
  }

  const AnalyticsIndex* FindIndex(std::string_view app_id) const {
    std::shared_lock<std::shared_mutex> lock(index_mu_);
    auto it = indexes_by_app_.find(std::string(app_id));
    return it == indexes_by_app_.end() ? nullptr : it->second;
  }

  // Reads an app's sessions and events back into a fresh index.
  Status RebuildIndex(int64_t app_row, const std::string& app_id) {
    AnalyticsIndex* index = IndexFor(app_row, app_id);
    index->Clear();
    std::unordered_map<int64_t, std::string> user_keys, device_keys, session_keys;
    Status st;
    auto load = [&](const char* sql, std::unordered_map<int64_t, std::string>* out) -> Status {
      auto q = db_.Prepare(sql);
      if (!q.ok()) return q.status();
      q->Bind(1, app_row);
      Status s2;
      while (q->Step(&s2)) out->emplace(q->Int(0), q->Text(1));
      return s2;
    };
    NUCLEON_RETURN_IF_ERROR(load("SELECT id, user_key FROM users WHERE app = ?", &user_keys));
    NUCLEON_RETURN_IF_ERROR(load("SELECT id, device_key FROM devices WHERE app = ?", &device_keys));
    {
      auto q = db_.Prepare(
          "SELECT id, device, session_key, start_ms, end_ms FROM sessions WHERE app = ?");
      if (!q.ok()) return q.status();
      q->Bind(1, app_row);
      while (q->Step(&st)) {
        session_keys.emplace(q->Int(0), q->Text(2));
        index->UpsertSession(static_cast<uint32_t>(q->Int(0)), static_cast<uint32_t>(q->Int(1)),
                             q->Text(2), q->Int(3), q->Int(4));
      }
      if (!st.ok()) return st;
    }
    // Rowid order without the time index: a plain scan, no sort of the whole table.
    auto q = db_.Prepare(std::string(kRawColumns) + " NOT INDEXED WHERE app = ? ORDER BY id");
    if (!q.ok()) return q.status();
    q->Bind(1, app_row);
    RawEventReader reader;
    while (q->Step(&st)) {
      IndexEvent ie = reader.Read(*q, user_keys, device_keys, session_keys);
      index->Add(ie);
    }
    return st;
  }

  // The columns every raw read selects, in the order RawEventReader expects.
  static constexpr const char* kRawColumns =
      "SELECT time_ms, type, user, device, session, name, payload, platform, os_version, locale,"
      " version, module_version, arch, country, total_ram FROM events";

  struct RawEventReader {
    bool with_props = true;
    std::vector<std::pair<std::string, PropValue>> props;
    std::string name, platform, os_version, locale, version, module_version, arch, country;
    IndexEvent Read(const SqliteStmt& q, const std::unordered_map<int64_t, std::string>& users,
                    const std::unordered_map<int64_t, std::string>& devices,
                    const std::unordered_map<int64_t, std::string>& sessions) {
      IndexEvent ie;
      ie.time_ms = q.Int(0);
      ie.type = static_cast<EventType>(q.Int(1));
      ie.user = static_cast<uint32_t>(q.Int(2));
      ie.device = static_cast<uint32_t>(q.Int(3));
      ie.session = static_cast<uint32_t>(q.Int(4));
      auto key = [](const std::unordered_map<int64_t, std::string>& m, int64_t row) {
        auto it = m.find(row);
        return it == m.end() ? std::string_view() : std::string_view(it->second);
      };
      ie.user_key = key(users, ie.user);
      ie.device_key = key(devices, ie.device);
      ie.session_key = key(sessions, ie.session);
      name = q.Text(5);
      ie.name = name;
      const bool wants_props = with_props && (ie.type == EventType::kInit || ie.type == EventType::kEvent ||
                               ie.type == EventType::kProps || ie.type == EventType::kUserId);
      props = wants_props ? ParsePayloadProps(q.Text(6)) : std::vector<std::pair<std::string, PropValue>>();
      ie.props = &props;
      platform = q.Text(7);
      os_version = q.Text(8);
      locale = q.Text(9);
      version = q.Text(10);
      module_version = q.Text(11);
      arch = q.Text(12);
      country = q.Text(13);
      ie.platform = platform;
      ie.os_version = os_version;
      ie.locale = locale;
      ie.version = version;
      ie.module_version = module_version;
      ie.arch = arch;
      ie.country = country;
      ie.total_ram = q.IsNull(14) ? std::nullopt : std::optional<double>(q.Double(14));
      return ie;
    }
  };

  // ---- Readers: a small pool of read-only connections (WAL lets them run
  // beside the writer). ----

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
      NUCLEON_RETURN_IF_ERROR(handle->db->Open(path_, false, true));
    }
    return handle;
  }

  // A RawSource for `app_id`'s index: reads events in a time window, with keys.
  AnalyticsIndex::RawSource RawFor(std::string_view app_id) {
    std::string app(app_id);
    return [this, app](int64_t from_ms, int64_t to_ms, bool with_props,
                       const std::function<void(const IndexEvent&)>& sink) -> Status {
      auto reader = Reader();
      if (!reader.ok()) return reader.status();
      SqliteDb& db = *(*reader)->db;
      auto q = db.Prepare(std::string(kRawColumns) +
                          " WHERE app = (SELECT id FROM apps WHERE app_id = ?)"
                          " AND time_ms BETWEEN ? AND ?");
      if (!q.ok()) return q.status();
      q->Bind(1, app);
      q->Bind(2, from_ms);
      q->Bind(3, to_ms);
      static const std::unordered_map<int64_t, std::string> kNone;
      RawEventReader r;
      r.with_props = with_props;
      Status st;
      while (q->Step(&st)) sink(r.Read(*q, kNone, kNone, kNone));
      return st;
    };
  }

 public:
  Result<QuickGlanceCounts> QuickGlance(std::string_view app_id, int64_t from_ms,
                                        int64_t to_ms) override {
    const AnalyticsIndex* index = FindIndex(app_id);
    if (!index) return QuickGlanceCounts{};
    return index->QuickGlance(from_ms, to_ms, RawFor(app_id));
  }

  Result<DailyAnalytics> Daily(std::string_view app_id, const QueryRange& range) override {
    const AnalyticsIndex* index = FindIndex(app_id);
    if (!index) return DailyAnalytics{};
    return index->Daily(range, RawFor(app_id));
  }

  Result<DailyCounts> EventCounts(std::string_view app_id, const QueryRange& range,
                                  bool errors) override {
    const AnalyticsIndex* index = FindIndex(app_id);
    if (!index) return DailyCounts{};
    return index->EventCounts(range, RawFor(app_id), errors);
  }

  Result<std::vector<EventPropKeys>> EventProps(std::string_view app_id,
                                                const QueryRange& range) override {
    const AnalyticsIndex* index = FindIndex(app_id);
    if (!index) return std::vector<EventPropKeys>{};
    return index->EventProps(range, RawFor(app_id));
  }

  Result<std::vector<ValueCount>> EventAttribute(std::string_view app_id, const QueryRange& range,
                                                 std::string_view event,
                                                 std::string_view attr) override {
    const AnalyticsIndex* index = FindIndex(app_id);
    if (!index) return std::vector<ValueCount>{};
    return index->EventAttribute(range, event, attr, RawFor(app_id));
  }

  Result<UserList> Users(std::string_view app_id, int64_t page, int64_t limit) override {
    const AnalyticsIndex* index = FindIndex(app_id);
    if (!index) return UserList{};
    return index->Users(page, limit);
  }

  Result<UserDetails> User(std::string_view app_id, std::string_view user_key) override {
    const AnalyticsIndex* index = FindIndex(app_id);
    std::optional<UserDetails> details = index ? index->User(user_key) : std::nullopt;
    if (!details) return Status::NotFound("unknown user " + std::string(user_key));
    return std::move(*details);
  }

  Result<std::vector<EventView>> SessionEvents(std::string_view app_id, std::string_view user_key,
                                               std::string_view session_id,
                                               std::string_view device_id) override {
    const AnalyticsIndex* index = FindIndex(app_id);
    if (!index || index->UserRow(user_key) == 0) {
      return Status::NotFound("unknown user " + std::string(user_key));
    }
    std::vector<uint32_t> sessions = index->UserSessions(user_key, session_id, device_id);
    if (sessions.empty()) return Status::NotFound("unknown session " + std::string(session_id));
    auto reader = Reader();
    if (!reader.ok()) return reader.status();
    SqliteDb& db = *(*reader)->db;
    auto q = db.Prepare(
        "SELECT e.type, e.name, e.client_id, d.device_key, s.session_key, u.user_key, e.time_ms,"
        " e.platform, e.os_version, e.locale, e.version, e.module_version, e.arch, e.country,"
        " e.total_ram, e.payload, e.error_hash, e.session"
        " FROM events e JOIN devices d ON d.id = e.device JOIN sessions s ON s.id = e.session"
        " JOIN users u ON u.id = e.user WHERE e.session = ?");
    if (!q.ok()) return q.status();
    std::vector<EventView> out;
    for (uint32_t session : sessions) {
      Event context;
      bool install = false;
      index->SessionContext(session, &context, &install);
      q->Bind(1, static_cast<int64_t>(session));
      Status st;
      while (q->Step(&st)) {
        EventView v;
        Event& e = v.event;
        e.app_id = std::string(app_id);
        e.type = static_cast<EventType>(q->Int(0));
        e.name = q->Text(1);
        e.client_id = q->Text(2);
        e.device_id = q->Text(3);
        e.session_id = q->Text(4);
        e.user_key = q->Text(5);
        e.time_ms = q->Int(6);
        auto field = [&](int col, const std::string& fallback) {
          return q->IsNull(col) ? fallback : std::string(q->Text(col));
        };
        e.platform = field(7, context.platform);
        e.os_version = field(8, context.os_version);
        e.locale = field(9, context.locale);
        e.version = field(10, context.version);
        e.module_version = field(11, context.module_version);
        e.arch = field(12, context.arch);
        e.country = field(13, context.country);
        e.total_ram = q->IsNull(14) ? context.total_ram : std::optional<double>(q->Double(14));
        e.payload_json = q->IsNull(15) ? "{}" : std::string(q->Text(15));
        e.error_hash = q->Text(16);
        v.first_time = install && e.type == EventType::kInit;
        out.push_back(std::move(v));
      }
      q->Reset();
      if (!st.ok()) return st;
    }
    std::stable_sort(out.begin(), out.end(), [](const EventView& a, const EventView& b) {
      return a.event.time_ms < b.event.time_ms;
    });
    return out;
  }

  Result<EventView> DeviceContext(std::string_view app_id, std::string_view device_id) override {
    EventView v;
    auto reader = Reader();
    if (!reader.ok()) return reader.status();
    SqliteDb& db = *(*reader)->db;
    auto q = db.Prepare(
        "SELECT s.id FROM sessions s JOIN devices d ON d.id = s.device JOIN apps a ON a.id = d.app"
        " WHERE a.app_id = ? AND d.device_key = ? ORDER BY s.start_ms DESC LIMIT 1");
    if (!q.ok()) return q.status();
    q->Bind(1, app_id);
    q->Bind(2, device_id);
    Status st;
    if (!q->Step(&st)) return st.ok() ? Status::NotFound("unknown device") : st;
    const AnalyticsIndex* index = FindIndex(app_id);
    bool install = false;
    if (index) index->SessionContext(static_cast<uint32_t>(q->Int(0)), &v.event, &install);
    return v;
  }

  EventView WithSessionContext(const Event& event) override {
    EventView v;
    v.event = event;
    const AnalyticsIndex* index = FindIndex(event.app_id);
    if (!index) return v;
    uint32_t session = index->SessionRow(event.device_id, event.session_id);
    Event context;
    bool install = false;
    if (session == 0 || !index->SessionContext(session, &context, &install)) return v;
    Event& e = v.event;
    for (auto [field, from] : {std::pair{&e.platform, &context.platform},
                               {&e.os_version, &context.os_version}, {&e.locale, &context.locale},
                               {&e.version, &context.version},
                               {&e.module_version, &context.module_version},
                               {&e.arch, &context.arch}, {&e.country, &context.country}}) {
      if (field->empty()) *field = *from;
    }
    if (!e.total_ram) e.total_ram = context.total_ram;
    v.first_time = install && e.type == EventType::kInit;
    return v;
  }

  Status DeleteUser(std::string_view app_id, std::string_view user_key) override {
    auto app_it = apps_.find(std::string(app_id));
    if (app_it == apps_.end()) return Status::NotFound("unknown user " + std::string(user_key));
    const int64_t app = app_it->second;
    const std::string ukey = Key(app, user_key);
    auto user_it = users_.find(ukey);
    if (user_it == users_.end()) return Status::NotFound("unknown user " + std::string(user_key));
    const int64_t user = user_it->second;

    const AnalyticsIndex* index = FindIndex(app_id);
    const std::vector<uint32_t> sessions =
        index ? index->AllUserSessions(user_key) : std::vector<uint32_t>();
    NUCLEON_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
    Status st = DeleteUserInTransaction(app, user, sessions);
    if (st.ok()) st = db_.Exec("COMMIT");
    if (!st.ok()) {
      (void)db_.Exec("ROLLBACK");
      return st;
    }
    // The write-ahead log still holds the deleted rows' old pages: copy the
    // zeroed pages into the database and empty the log. Readers are waited for
    // (busy timeout); if one holds on, the log is emptied at a later checkpoint.
    if (sqlite3_wal_checkpoint_v2(db_.raw(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr,
                                  nullptr) != SQLITE_OK) {
      LogWarn("after a user delete the write-ahead log could not be emptied yet (busy readers)");
      NUCLEON_RETURN_IF_ERROR(Sync());  // the delete must be durable before it is answered
    }
    // The writer's memory and the index are rebuilt from the file: exact by
    // construction, at a cost proportional to the app's size.
    apps_.clear();
    devices_.clear();
    users_.clear();
    sessions_.clear();
    NUCLEON_RETURN_IF_ERROR(LoadState());
    return RebuildIndex(app, std::string(app_id));
  }

 private:
  Status DeleteUserInTransaction(int64_t app, int64_t user, const std::vector<uint32_t>& sessions) {
    Status st;
    NUCLEON_RETURN_IF_ERROR(db_.Exec(
        "CREATE TEMP TABLE IF NOT EXISTS touched(session INTEGER PRIMARY KEY, device INTEGER)"));
    NUCLEON_RETURN_IF_ERROR(db_.Exec("DELETE FROM temp.touched"));
    {
      auto ins = db_.Prepare(
          "INSERT OR IGNORE INTO temp.touched SELECT id, device FROM sessions WHERE id = ?");
      if (!ins.ok()) return ins.status();
      for (uint32_t session : sessions) {
        ins->Bind(1, static_cast<int64_t>(session));
        NUCLEON_RETURN_IF_ERROR(ins->Run());
        ins->Reset();
      }
    }
    // Remember the identities of the user's events (hashes only).
    {
      auto q = db_.Prepare(
          "SELECT d.device_key, s.session_key, e.ident FROM temp.touched t"
          " JOIN events e ON e.session = t.session JOIN devices d ON d.id = e.device"
          " JOIN sessions s ON s.id = e.session WHERE e.user = ? AND e.ident IS NOT NULL");
      if (!q.ok()) return q.status();
      auto ins = db_.Prepare("INSERT OR IGNORE INTO tombstones(app, hash) VALUES(?, ?)");
      if (!ins.ok()) return ins.status();
      q->Bind(1, user);
      while (q->Step(&st)) {
        ins->Bind(1, app);
        ins->Bind(2, TombstoneHash(q->Text(0), q->Text(1), q->Int(2)));
        NUCLEON_RETURN_IF_ERROR(ins->Run());
        ins->Reset();
        has_tombstones_ = true;
      }
      if (!st.ok()) return st;
    }
    const char* kSteps[] = {
        "DELETE FROM events WHERE session IN (SELECT session FROM temp.touched) AND user = ?1",
        // Sessions left without events go; the others are recomputed from what remains.
        "DELETE FROM sessions WHERE id IN (SELECT session FROM temp.touched)"
        " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.session = sessions.id)",
        "UPDATE sessions SET"
        " start_ms = coalesce((SELECT min(time_ms) FROM events e WHERE e.session = sessions.id AND"
        " e.type = 1), (SELECT min(time_ms) FROM events e WHERE e.session = sessions.id)),"
        " end_ms = (SELECT max(time_ms) FROM events e WHERE e.session = sessions.id),"
        " has_init = EXISTS (SELECT 1 FROM events e WHERE e.session = sessions.id AND e.type = 1),"
        " user = (SELECT e.user FROM events e WHERE e.session = sessions.id"
        " ORDER BY e.time_ms DESC, e.id DESC LIMIT 1)"
        " WHERE id IN (SELECT session FROM temp.touched)",
        "DELETE FROM devices WHERE id IN (SELECT device FROM temp.touched)"
        " AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.device = devices.id)",
        "DELETE FROM users WHERE id = ?1",
        "DELETE FROM temp.touched",
    };
    for (const char* sql : kSteps) {
      auto q = db_.Prepare(sql);
      if (!q.ok()) return q.status();
      if (std::string_view(sql).find("?1") != std::string_view::npos) q->Bind(1, user);
      NUCLEON_RETURN_IF_ERROR(q->Run());
    }
    return Status::Ok();
  }

 private:
  SqliteStoreOptions options_;
  SqliteDb db_;
  SqliteStmt insert_app_, insert_device_, insert_user_, insert_session_, update_session_,
      find_event_, tombstone_check_, probe_stmt_;
  // Events are inserted up to kRowsPerInsert per statement: one statement per
  // SDK message, in the common case, instead of one per event.
  static constexpr size_t kRowsPerInsert = 64;
  static constexpr size_t kEventColumns = 22;
  std::vector<SqliteStmt> insert_events_;  // [n]: inserts n rows
  struct PendingRow {
    size_t index;  // in the batch
    int64_t ident;
    bool has_identity;
  };
  std::vector<PendingRow> pending_;  // rows of the current run not inserted yet

  std::unordered_map<std::string, int64_t> apps_;
  std::unordered_map<std::string, DeviceState> devices_;
  std::unordered_map<std::string, int64_t> users_;
  std::unordered_map<std::string, SessionState> sessions_;
  bool has_tombstones_ = false;
  struct Applied {
    size_t index;
    int64_t app, device, user, session;
  };
  std::vector<Applied> applied_;                               // newly stored this batch
  std::vector<std::pair<int64_t, std::string>> session_updates_;  // (app, session key)
  std::string path_;
  std::mutex wal_fd_mu_;
  int wal_fd_ = -1;  // the write-ahead log, for Sync()
  mutable std::shared_mutex index_mu_;  // guards the map; each index locks itself
  std::unordered_map<int64_t, std::unique_ptr<AnalyticsIndex>> indexes_;
  std::unordered_map<std::string, AnalyticsIndex*> indexes_by_app_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<SqliteDb>> pool_;
  std::vector<UndoEntry> undo_;
  std::vector<std::string> dirty_sessions_;
};

}  // namespace

Result<std::unique_ptr<EventStore>> OpenSqliteEventStore(const std::string& data_dir,
                                                         const SqliteStoreOptions& options) {
  auto store = std::make_unique<SqliteEventStore>();
  NUCLEON_RETURN_IF_ERROR(store->Open(data_dir, options));
  return std::unique_ptr<EventStore>(std::move(store));
}

}  // namespace nucleon
