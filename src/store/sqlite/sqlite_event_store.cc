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
// app and device. A partial unique index over it makes a resend an ignored insert.
//
// The writer keeps the dictionaries and session states in memory (rebuilt at
// open) so that an append costs one indexed insert per event plus one update
// per touched session. In-memory changes made during a batch are undone when
// its transaction fails, so memory never runs ahead of the file.
#include <filesystem>
#include <unordered_map>

#include "core/crypto.h"
#include "core/log.h"
#include "core/time_util.h"
#include "store/event_store.h"
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
  int64_t device = 0;
  int64_t user = 0;
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  bool has_init = false;
  bool dirty = false;
};

class SqliteEventStore final : public EventStore {
 public:
  Status Open(const std::string& data_dir, const SqliteStoreOptions& options) {
    options_ = options;
    const std::string path = data_dir + "/events.db";
    if (!options.read_only) {
      std::error_code ec;
      std::filesystem::create_directories(data_dir, ec);
    } else if (!std::filesystem::exists(path)) {
      return Status::NotFound("no event store in " + data_dir);
    }
    NUCLEON_RETURN_IF_ERROR(db_.Open(path, !options.read_only, options.read_only));
    if (options.read_only) return Status::Ok();
    NUCLEON_RETURN_IF_ERROR(db_.Exec(options.fsync_full ? "PRAGMA synchronous=FULL"
                                                        : "PRAGMA synchronous=NORMAL"));
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA cache_size=-262144"));  // 256 MiB
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA temp_store=MEMORY"));
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA wal_autocheckpoint=4000"));
    NUCLEON_RETURN_IF_ERROR(Migrate());
    NUCLEON_RETURN_IF_ERROR(Prepare());
    return LoadState();
  }

  Status Append(std::span<const Event> events, std::vector<uint8_t>* inserted) override {
    inserted->assign(events.size(), 0);
    if (events.empty()) return Status::Ok();
    undo_.clear();
    Status st = db_.Exec("BEGIN IMMEDIATE");
    if (st.ok()) st = AppendInTransaction(events, inserted);
    if (st.ok()) st = FlushSessions();
    if (st.ok()) st = db_.Exec("COMMIT");
    if (!st.ok()) {
      (void)db_.Exec("ROLLBACK");
      Undo();
      inserted->assign(events.size(), 0);
      return st;
    }
    dirty_sessions_.clear();
    return Status::Ok();
  }

  Status Probe() override {
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
    NUCLEON_RETURN_IF_ERROR(prep(
        &insert_event_,
        "INSERT OR IGNORE INTO events(app, session, device, user, type, name, time_ms, ident,"
        " client_id, user_id, anon_id, platform, os_version, locale, version, module_version,"
        " arch, client, total_ram, country, payload, error_hash)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
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
          "SELECT id, device, session_key, user, start_ms, end_ms, has_init FROM sessions");
      if (!s.ok()) return s.status();
      while (s->Step(&st)) {
        SessionState ss{s->Int(0), s->Int(1), s->Int(3), s->Int(4), s->Int(5), s->Int(6) != 0,
                        false};
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

  Status AppendInTransaction(std::span<const Event> events, std::vector<uint8_t>* inserted) {
    for (size_t i = 0; i < events.size(); ++i) {
      const Event& e = events[i];
      auto app = AppRow(e.app_id);
      if (!app.ok()) return app.status();
      const std::string device_key = Key(*app, e.device_id);
      auto device = Device(*app, e.device_id);
      if (!device.ok()) return device.status();
      DeviceState* d = *device;

      if (e.type == EventType::kHeartbeat) {
        const std::string skey =
            e.session_id.empty() ? d->latest_session : Key(d->row, e.session_id);
        auto s = skey.empty() ? sessions_.end() : sessions_.find(skey);
        if (s != sessions_.end() && e.time_ms > s->second.end_ms) {
          Touch(s->first, s->second);
          s->second.end_ms = e.time_ms;
        }
        continue;
      }

      auto user = UserRow(*app, e.user_key);
      if (!user.ok()) return user.status();
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
        SessionState ss{db_.LastInsertRowid(), d->row, *user, e.time_ms, e.time_ms, init, false};
        undo_.push_back({UndoEntry::Kind::kSession, skey, {}, {}});
        sit = sessions_.emplace(skey, ss).first;
        MoveLatest(device_key, d, skey, ss);
      }
      SessionState& s = sit->second;

      const bool has_identity = e.HasIdentity();
      const int64_t ident = has_identity ? IdentHash(e) : 0;
      if (has_identity && has_tombstones_ && IsTombstoned(*app, e, d->row)) continue;

      SqliteStmt& q = insert_event_;
      q.Bind(1, *app);
      q.Bind(2, s.row);
      q.Bind(3, d->row);
      q.Bind(4, *user);
      q.Bind(5, static_cast<int64_t>(e.type));
      q.BindTextOrNull(6, e.name);
      q.Bind(7, e.time_ms);
      if (has_identity) q.Bind(8, ident); else q.BindNull(8);
      q.BindTextOrNull(9, e.client_id);
      q.BindTextOrNull(10, e.user_id);
      q.BindTextOrNull(11, e.anon_id);
      q.BindTextOrNull(12, e.platform);
      q.BindTextOrNull(13, e.os_version);
      q.BindTextOrNull(14, e.locale);
      q.BindTextOrNull(15, e.version);
      q.BindTextOrNull(16, e.module_version);
      q.BindTextOrNull(17, e.arch);
      q.BindTextOrNull(18, e.client);
      if (e.total_ram) q.Bind(19, *e.total_ram); else q.BindNull(19);
      q.BindTextOrNull(20, e.country);
      q.Bind(21, e.payload_json);
      q.BindTextOrNull(22, e.error_hash);
      Status st = q.Run();
      q.Reset();
      if (!st.ok()) return st;
      if (db_.Changes() == 0) continue;  // a resend
      (*inserted)[i] = 1;

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
      if (start != s.start_ms || end != s.end_ms || has_init != s.has_init || *user != s.user) {
        Touch(skey, s);
        s.start_ms = start;
        s.end_ms = std::max(end, start);
        s.has_init = has_init;
        s.user = *user;
      }
      MoveLatest(device_key, d, skey, s);
    }
    return Status::Ok();
  }

  bool IsTombstoned(int64_t app, const Event& e, int64_t /*device_row*/) {
    tombstone_check_.Bind(1, app);
    tombstone_check_.Bind(2, TombstoneHash(e));
    Status st;
    bool found = tombstone_check_.Step(&st);
    tombstone_check_.Reset();
    return found;
  }

  static int64_t TombstoneHash(const Event& e) {
    std::string material = e.device_id;
    material.push_back('\0');
    material.append(e.session_id).push_back('\0');
    material.append(e.client_id).push_back('\0');
    material.append(EventTypeName(e.type)).push_back('\0');
    material.append(e.name).push_back('\0');
    material.append(e.client_date);
    return StableHash64(material);
  }

  Status FlushSessions() {
    for (const std::string& key : dirty_sessions_) {
      SessionState& s = sessions_[key];
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

  SqliteStoreOptions options_;
  SqliteDb db_;
  SqliteStmt insert_app_, insert_device_, insert_user_, insert_session_, update_session_,
      insert_event_, tombstone_check_, probe_stmt_;

  std::unordered_map<std::string, int64_t> apps_;
  std::unordered_map<std::string, DeviceState> devices_;
  std::unordered_map<std::string, int64_t> users_;
  std::unordered_map<std::string, SessionState> sessions_;
  bool has_tombstones_ = false;
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
