#include "store/sqlite/event_writer.h"

#include <algorithm>

#include "core/crypto.h"
#include "core/time_util.h"
#include "store/payload_props.h"
#include "store/sqlite/bucket.h"
#include "store/sqlite/byte_io.h"
#include "store/sqlite/event_codec.h"

namespace nucleon {

namespace {

std::string Key(int64_t parent, std::string_view key) {
  std::string k = std::to_string(parent);
  k.push_back('\x1f');
  k.append(key);
  return k;
}

std::string EncodeUsers(const std::vector<int64_t>& users) {
  std::string out;
  ByteWriter w(&out);
  for (int64_t u : users) w.Varint(static_cast<uint64_t>(u));
  return out;
}

std::vector<int64_t> DecodeUsers(std::string_view blob) {
  std::vector<int64_t> out;
  ByteReader r(blob);
  while (r.ok() && !r.done()) out.push_back(static_cast<int64_t>(r.Varint()));
  return out;
}

int64_t Seconds(int64_t start_ms, int64_t end_ms) { return (end_ms - start_ms) / 1000; }

}  // namespace

EventWriter::EventWriter(SqliteDb* db, StringDictionary* dict, WriterCacheOptions options)
    : db_(db),
      dict_(dict),
      devices_(options.devices),
      users_(options.users),
      sessions_(options.sessions) {
  insert_events_.resize(kRowsPerInsert + 1);
}

Status EventWriter::Open() {
  auto apps = db_->Prepare("SELECT id, app_id FROM apps");
  if (!apps.ok()) return apps.status();
  Status st;
  while (apps->Step(&st)) apps_.emplace(apps->Text(1), apps->Int(0));
  NUCLEON_RETURN_IF_ERROR(st);
  auto tomb = db_->Prepare("SELECT 1 FROM tombstones LIMIT 1");
  if (!tomb.ok()) return tomb.status();
  has_tombstones_ = tomb->Step(&st);
  NUCLEON_RETURN_IF_ERROR(st);
  auto legacy = db_->Prepare("SELECT 1 FROM meta WHERE key = 'legacy_tombstones'");
  if (!legacy.ok()) return legacy.status();
  legacy_tombstones_ = legacy->Step(&st);
  NUCLEON_RETURN_IF_ERROR(st);
  return ReadSeq();
}

Status EventWriter::ReadSeq() {
  auto q = db_->Prepare(
      "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),"
      " coalesce((SELECT max(id) FROM events), 0))");
  if (!q.ok()) return q.status();
  Status st;
  if (q->Step(&st)) seq_ = q->Int(0);
  return st;
}

int64_t EventWriter::AppRow(std::string_view app_id) const {
  auto it = apps_.find(std::string(app_id));
  return it == apps_.end() ? 0 : it->second;
}

std::string EventWriter::AppIdOf(int64_t row) const {
  for (const auto& [id, r] : apps_) {
    if (r == row) return id;
  }
  return {};
}

void EventWriter::ForgetEntities() {
  devices_.Clear();
  users_.Clear();
  sessions_.Clear();
}

int64_t EventWriter::cached_entities() const {
  return static_cast<int64_t>(devices_.size() + users_.size() + sessions_.size());
}

Status EventWriter::Append(std::span<const Event> events, std::span<const int64_t> idents,
                           std::vector<uint8_t>* inserted, std::vector<PublishedEvent>* published,
                           const std::function<Status()>& in_transaction) {
  inserted->assign(events.size(), 0);
  published->clear();
  if (events.empty() && !in_transaction) return Status::Ok();
  Status st = db_->Exec("BEGIN IMMEDIATE");
  if (st.ok()) st = AppendInTransaction(events, idents, inserted, published);
  if (st.ok()) st = FlushEntities();
  if (st.ok() && in_transaction) st = in_transaction();
  if (st.ok()) st = dict_->FlushPending(*db_);
  if (st.ok()) st = db_->Exec("COMMIT");
  if (!st.ok()) {
    (void)db_->Exec("ROLLBACK");
    Rollback();
    dict_->DropFlushed();
    inserted->assign(events.size(), 0);
    published->clear();
  } else {
    dict_->CommitFlushed();
    for (auto& t : touched_devices_) {
      if (DeviceState* d = devices_.Find(t.key)) d->touched = false;
    }
    for (auto& t : touched_users_) {
      UserState* u = users_.Find(t.key);
      if (!u) continue;
      if (!t.before && u->first_ms == INT64_MAX) {
        users_.Erase(t.key);  // its row was removed again (FlushEntities)
      } else {
        u->touched = false;
      }
    }
    for (auto& t : touched_sessions_) {
      if (SessionState* s = sessions_.Find(t.key)) s->touched = false;
    }
  }
  touched_devices_.clear();
  touched_users_.clear();
  touched_sessions_.clear();
  new_memberships_.clear();
  counts_.clear();
  app_users_.clear();
  new_apps_.clear();
  devices_.Trim();
  users_.Trim();
  sessions_.Trim();
  return st;
}

void EventWriter::Rollback() {
  // Whatever this transaction touched is read back from the file when needed.
  for (auto& t : touched_devices_) devices_.Erase(t.key);
  for (auto& t : touched_users_) users_.Erase(t.key);
  for (auto& t : touched_sessions_) sessions_.Erase(t.key);
  // A failed lookup may have cached a device's latest session: forget all of
  // the devices' derived state too (cheap, and failures are rare).
  devices_.Clear();
  for (const std::string& id : new_apps_) apps_.erase(id);
  (void)ReadSeq();  // the ids the rolled back statements took are free again
}

Result<int64_t> EventWriter::App(std::string_view app_id, bool create) {
  auto it = apps_.find(std::string(app_id));
  if (it != apps_.end()) return it->second;
  if (!create) return int64_t{0};
  auto ins = db_->Cached("INSERT INTO apps(app_id) VALUES(?)");
  if (!ins.ok()) return ins.status();
  (*ins)->Bind(1, app_id);
  NUCLEON_RETURN_IF_ERROR((*ins)->Run());
  const int64_t row = db_->LastInsertRowid();
  apps_.emplace(std::string(app_id), row);
  new_apps_.emplace_back(app_id);
  return row;
}

void EventWriter::TouchDevice(const std::string& key, DeviceState* d) {
  if (d->touched) return;
  d->touched = true;
  touched_devices_.push_back({key, *d});
}

void EventWriter::TouchUser(const std::string& key, UserState* u) {
  if (u->touched) return;
  u->touched = true;
  touched_users_.push_back({key, *u});
}

void EventWriter::TouchSession(const std::string& key, SessionState* s) {
  if (s->touched) return;
  s->touched = true;
  touched_sessions_.push_back({key, *s});
}

Result<EventWriter::DeviceState*> EventWriter::Device(int64_t app, std::string_view device_id,
                                                      bool create) {
  const std::string key = Key(app, device_id);
  if (DeviceState* d = devices_.Find(key)) return d;
  {
    auto q = db_->Cached(
        "SELECT id, install_ms, install_session FROM devices WHERE app = ? AND device_key = ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, app);
    (*q)->Bind(2, device_id);
    Status st;
    if ((*q)->Step(&st)) {
      DeviceState d;
      d.row = (*q)->Int(0);
      d.app = app;
      d.install_ms = (*q)->Int(1);
      d.install_session = (*q)->Int(2);
      return devices_.Insert(key, std::move(d));
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }
  if (!create) return static_cast<DeviceState*>(nullptr);
  // The install columns are set when its first session is written (FlushEntities).
  auto ins = db_->Cached(
      "INSERT INTO devices(app, device_key, install_ms, install_session) VALUES(?, ?, 0, 0)");
  if (!ins.ok()) return ins.status();
  (*ins)->Bind(1, app);
  (*ins)->Bind(2, device_id);
  NUCLEON_RETURN_IF_ERROR((*ins)->Run());
  DeviceState d;
  d.row = db_->LastInsertRowid();
  d.app = app;
  d.latest_known = true;  // no sessions yet
  DeviceState* out = devices_.Insert(key, std::move(d));
  out->touched = true;
  touched_devices_.push_back({key, std::nullopt});
  return out;
}

Result<EventWriter::UserState*> EventWriter::User(int64_t app, std::string_view user_key,
                                                  std::string_view anon, int64_t time_ms,
                                                  bool create) {
  const std::string key = Key(app, user_key);
  if (UserState* u = users_.Find(key)) return u;
  {
    auto q = db_->Cached("SELECT id, anon_id, first_ms FROM users WHERE app = ? AND user_key = ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, app);
    (*q)->Bind(2, user_key);
    Status st;
    if ((*q)->Step(&st)) {
      UserState u;
      u.row = (*q)->Int(0);
      u.app = app;
      u.anon = std::string((*q)->Text(1));
      u.first_ms = (*q)->Int(2);
      return users_.Insert(key, std::move(u));
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }
  if (!create) return static_cast<UserState*>(nullptr);
  // The row's times are set when the transaction ends, from the events
  // actually stored for the user; a user none of whose events is stored (a
  // resend under a new user key) is removed again then.
  (void)time_ms;
  auto ins = db_->Cached(
      "INSERT INTO users(app, user_key, anon_id, first_ms, last_ms) VALUES(?, ?, ?, ?, ?)");
  if (!ins.ok()) return ins.status();
  (*ins)->Bind(1, app);
  (*ins)->Bind(2, user_key);
  (*ins)->BindTextOrNull(3, anon);
  (*ins)->Bind(4, INT64_MAX);
  (*ins)->Bind(5, INT64_MIN);
  NUCLEON_RETURN_IF_ERROR((*ins)->Run());
  UserState u;
  u.row = db_->LastInsertRowid();
  u.app = app;
  u.anon = std::string(anon);
  u.first_ms = INT64_MAX;
  UserState* out = users_.Insert(key, std::move(u));
  out->touched = true;
  touched_users_.push_back({key, std::nullopt});
  ++app_users_[app];
  return out;
}

Result<EventWriter::SessionState*> EventWriter::Session(const std::string& device_key,
                                                        DeviceState* d, std::string_view session_id,
                                                        int64_t time_ms, bool is_init,
                                                        bool create) {
  const std::string key = Key(d->row, session_id);
  if (SessionState* s = sessions_.Find(key)) return s;
  {
    auto q = db_->Cached(
        "SELECT id, start_ms, end_ms, has_init, actions, errors, ctx_event, ctx_ms, ctx_from_init,"
        " users FROM sessions WHERE device = ? AND session_key = ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, d->row);
    (*q)->Bind(2, session_id);
    Status st;
    if ((*q)->Step(&st)) {
      SessionState s;
      s.row = (*q)->Int(0);
      s.app = d->app;
      s.device = d->row;
      s.key = std::string(session_id);
      s.start_ms = (*q)->Int(1);
      s.end_ms = (*q)->Int(2);
      s.has_init = (*q)->Int(3) != 0;
      s.actions = (*q)->Int(4);
      s.errors = (*q)->Int(5);
      s.ctx_event = (*q)->Int(6);
      s.ctx_ms = (*q)->Int(7);
      s.ctx_from_init = (*q)->Int(8) != 0;
      s.users = DecodeUsers((*q)->Blob(9));
      return sessions_.Insert(key, std::move(s));
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }
  if (!create) return static_cast<SessionState*>(nullptr);
  auto ins = db_->Cached(
      "INSERT INTO sessions(app, device, session_key, start_ms, end_ms, has_init, actions, errors,"
      " ctx_event, ctx_ms, ctx_from_init, users) VALUES(?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, NULL)");
  if (!ins.ok()) return ins.status();
  (*ins)->Bind(1, d->app);
  (*ins)->Bind(2, d->row);
  (*ins)->Bind(3, session_id);
  (*ins)->Bind(4, time_ms);
  (*ins)->Bind(5, time_ms);
  (*ins)->Bind(6, static_cast<int64_t>(is_init ? 1 : 0));
  NUCLEON_RETURN_IF_ERROR((*ins)->Run());
  SessionState s;
  s.row = db_->LastInsertRowid();
  s.app = d->app;
  s.device = d->row;
  s.key = std::string(session_id);
  s.start_ms = time_ms;
  s.end_ms = time_ms;
  s.has_init = is_init;
  SessionState* out = sessions_.Insert(key, std::move(s));
  out->touched = true;
  touched_sessions_.push_back({key, std::nullopt});
  TouchDevice(device_key, d);
  NoteSessionStart(d, out, 0, /*created=*/true);
  return out;
}

// Keeps the device's install and latest session current as a session of it
// is created or its start moves.
void EventWriter::NoteSessionStart(DeviceState* d, SessionState* s, int64_t old_start,
                                   bool created) {
  const int64_t start = s->start_ms;
  if (std::make_pair(start, s->row) < std::make_pair(d->install_ms, d->install_session)) {
    d->install_ms = start;
    d->install_session = s->row;
  } else if (!created && d->install_session == s->row && start > old_start) {
    // The first session started later than thought: another may be first now.
    d->recompute_install = true;
  }
  if (d->latest_known) {
    if (d->latest_row == s->row) {
      if (start < d->latest_start) d->latest_known = false;  // another may be latest now
      d->latest_start = start;
    } else if (std::make_pair(start, s->row) > std::make_pair(d->latest_start, d->latest_row)) {
      d->latest_row = s->row;
      d->latest_start = start;
      d->latest_key = s->key;
    }
  }
}

Status EventWriter::LatestSession(DeviceState* d) {
  if (d->latest_known) return Status::Ok();
  // Sessions of the device as the file has them, with this transaction's
  // changes (not yet written) taken from the cache.
  auto q = db_->Cached("SELECT id, session_key, start_ms FROM sessions WHERE device = ?");
  if (!q.ok()) return q.status();
  (*q)->Bind(1, d->row);
  Status st;
  d->latest_row = 0;
  d->latest_start = INT64_MIN;
  d->latest_key.clear();
  while ((*q)->Step(&st)) {
    const int64_t row = (*q)->Int(0);
    const std::string_view skey = (*q)->Text(1);
    int64_t start = (*q)->Int(2);
    if (const SessionState* s = sessions_.Find(Key(d->row, skey))) start = s->start_ms;
    if (std::make_pair(start, row) > std::make_pair(d->latest_start, d->latest_row)) {
      d->latest_row = row;
      d->latest_start = start;
      d->latest_key = std::string(skey);
    }
  }
  NUCLEON_RETURN_IF_ERROR(st);
  // Sessions created by this transaction are in the file already (inserted).
  d->latest_known = true;
  return Status::Ok();
}

Result<bool> EventWriter::IsTombstoned(int64_t app, int64_t hash) {
  auto q = db_->Cached("SELECT 1 FROM tombstones WHERE app = ? AND hash = ?");
  if (!q.ok()) return q.status();
  (*q)->Bind(1, app);
  (*q)->Bind(2, hash);
  Status st;
  const bool found = (*q)->Step(&st);
  NUCLEON_RETURN_IF_ERROR(st);
  return found;
}

Result<int64_t> EventWriter::FindEvent(int64_t session_row, int64_t ident) {
  auto q = db_->Cached("SELECT id FROM events WHERE session = ? AND ident = ?");
  if (!q.ok()) return q.status();
  (*q)->Bind(1, session_row);
  (*q)->Bind(2, ident);
  Status st;
  const bool found = (*q)->Step(&st);
  const int64_t id = found ? (*q)->Int(0) : 0;
  NUCLEON_RETURN_IF_ERROR(st);
  if (!found) return Status::Internal("an ignored event has no stored twin");
  return id;
}

Status EventWriter::Heartbeat(const Event& e) {
  // A heartbeat only extends a session that exists; it creates nothing.
  auto app = App(e.app_id, false);
  if (!app.ok()) return app.status();
  if (*app == 0) return Status::Ok();
  auto dev = Device(*app, e.device_id, false);
  if (!dev.ok()) return dev.status();
  DeviceState* d = *dev;
  if (!d) return Status::Ok();
  std::string session_id = e.session_id;
  if (session_id.empty()) {
    NUCLEON_RETURN_IF_ERROR(LatestSession(d));
    if (d->latest_row == 0) return Status::Ok();
    session_id = d->latest_key;
  }
  auto ses = Session(Key(*app, e.device_id), d, session_id, e.time_ms, false, false);
  if (!ses.ok()) return ses.status();
  SessionState* s = *ses;
  if (!s || e.time_ms <= s->end_ms) return Status::Ok();
  TouchSession(Key(d->row, session_id), s);
  s->end_ms = e.time_ms;
  return Status::Ok();
}

Status EventWriter::Resolve(const Event& e, Run* run) {
  run->valid = false;
  auto app = App(e.app_id, true);
  if (!app.ok()) return app.status();
  auto dev = Device(*app, e.device_id, true);
  if (!dev.ok()) return dev.status();
  auto user = User(*app, e.user_key, e.anon_id, e.time_ms, true);
  if (!user.ok()) return user.status();
  auto ses = Session(Key(*app, e.device_id), *dev, e.session_id, e.time_ms,
                     e.type == EventType::kInit, true);
  if (!ses.ok()) return ses.status();
  run->app_id = e.app_id;
  run->device_id = e.device_id;
  run->session_id = e.session_id;
  run->user_key = e.user_key;
  run->app = *app;
  run->device_key = Key(*app, e.device_id);
  run->session_key = Key((*dev)->row, e.session_id);
  run->user_cache_key = Key(*app, e.user_key);
  run->valid = true;
  return Status::Ok();
}

Status EventWriter::AppendInTransaction(std::span<const Event> events,
                                        std::span<const int64_t> idents,
                                        std::vector<uint8_t>* inserted,
                                        std::vector<PublishedEvent>* published) {
  Run run;
  pending_.clear();
  for (size_t i = 0; i < events.size(); ++i) {
    const Event& e = events[i];
    if (e.type == EventType::kHeartbeat) {
      NUCLEON_RETURN_IF_ERROR(FlushRows(events, run, inserted, published));
      NUCLEON_RETURN_IF_ERROR(Heartbeat(e));
      continue;
    }
    if (default_cut_ != INT64_MIN || !cuts_.empty()) {
      auto cut = cuts_.find(e.app_id);
      if (e.time_ms < (cut != cuts_.end() ? cut->second : default_cut_)) {
        continue;  // older than the app's retention: as if never received
      }
    }
    const bool has_identity = e.HasIdentity();
    const int64_t hash = !has_identity ? 0 : idents.empty() ? EventIdentHash(e) : idents[i];
    const int64_t ident = StoredIdent(hash);
    if (has_identity && has_tombstones_) {
      const int64_t app = AppRow(e.app_id);
      if (app != 0) {
        auto dead = IsTombstoned(app, TombstoneHash(e.device_id, e.session_id, ident));
        if (!dead.ok()) return dead.status();
        if (!*dead && legacy_tombstones_) {
          // The first release remembered the whole 64-bit identity.
          dead = IsTombstoned(app, TombstoneHash(e.device_id, e.session_id, hash));
          if (!dead.ok()) return dead.status();
        }
        if (*dead) continue;  // a deleted user's event: never stored again
      }
    }
    // An SDK message holds one device's events, mostly of one session and
    // user: resolve the rows once per run of such events.
    if (!run.valid || e.app_id != run.app_id || e.device_id != run.device_id ||
        e.session_id != run.session_id || e.user_key != run.user_key) {
      NUCLEON_RETURN_IF_ERROR(FlushRows(events, run, inserted, published));
      NUCLEON_RETURN_IF_ERROR(Resolve(e, &run));
    }
    // The same event twice in one run: the later one is a resend.
    if (has_identity && std::any_of(pending_.begin(), pending_.end(), [&](const PendingRow& r) {
          return r.has_identity && r.ident == ident;
        })) {
      continue;
    }
    pending_.push_back({i, ident, has_identity});
    if (pending_.size() == kRowsPerInsert) {
      NUCLEON_RETURN_IF_ERROR(FlushRows(events, run, inserted, published));
    }
  }
  return FlushRows(events, run, inserted, published);
}

// Inserts the pending rows of `run` with one statement, then applies the
// entity changes of those that were new. A row is ignored when its identity is
// already stored (a resend). Row ids are assigned in increasing order, so when
// the statement inserted fewer rows than it had, each identity is looked up:
// the rows this statement inserted are exactly those with ids from the first new one.
Status EventWriter::FlushRows(std::span<const Event> events, const Run& run,
                              std::vector<uint8_t>* inserted,
                              std::vector<PublishedEvent>* published) {
  if (pending_.empty()) return Status::Ok();
  const size_t n = pending_.size();
  SqliteStmt& q = insert_events_[n];
  if (!q.valid()) {
    std::string sql =
        "INSERT OR IGNORE INTO events(app, session, user, type, name, time_ms, ident, client_id,"
        " body) VALUES";
    for (size_t r = 0; r < n; ++r) {
      sql += r ? ",(" : "(";
      for (size_t c = 0; c < kEventColumns; ++c) sql += c ? ",?" : "?";
      sql += ")";
    }
    auto stmt = db_->Prepare(sql);
    if (!stmt.ok()) return stmt.status();
    q = std::move(*stmt);
  }
  SessionState* s = sessions_.Find(run.session_key);
  UserState* u = users_.Find(run.user_cache_key);
  DeviceState* d = devices_.Find(run.device_key);
  if (!s || !u || !d) return Status::Internal("an entity of the batch left the cache");
  if (bodies_.size() < n) bodies_.resize(n);
  for (size_t r = 0; r < n; ++r) {
    const Event& e = events[pending_[r].index];
    const int b = static_cast<int>(r * kEventColumns);
    q.Bind(b + 1, run.app);
    q.Bind(b + 2, s->row);
    q.Bind(b + 3, u->row);
    q.Bind(b + 4, static_cast<int64_t>(e.type));
    const uint32_t name = dict_->Intern(e.name);
    if (name)
      q.Bind(b + 5, static_cast<int64_t>(name));
    else
      q.BindNull(b + 5);
    q.Bind(b + 6, e.time_ms);
    if (pending_[r].has_identity)
      q.Bind(b + 7, pending_[r].ident);
    else
      q.BindNull(b + 7);
    const ClientIdColumn cid = EncodeClientId(e.client_id);
    if (cid.is_int) {
      q.Bind(b + 8, cid.int_value);
    } else {
      q.BindViewOrNull(b + 8, cid.text);
    }
    EncodeBody(e, u->anon, *dict_, &bodies_[r]);
    if (bodies_[r].empty()) {
      q.BindNull(b + 9);
    } else {
      q.BindBlob(b + 9, bodies_[r].data(), bodies_[r].size());
    }
  }
  Status st = q.Run();
  q.Reset();
  if (!st.ok()) return st;
  // Every row of the statement takes the next id, stored or ignored
  // (AUTOINCREMENT): row r has id seq_ + 1 + r.
  const int64_t base = seq_ + 1;
  seq_ += static_cast<int64_t>(n);
  const int64_t changes = db_->Changes();
  if (changes == static_cast<int64_t>(n) && db_->LastInsertRowid() != seq_) {
    return Status::Internal("event row ids are not assigned in statement order");
  }
  for (size_t r = 0; r < n; ++r) {
    const PendingRow& row = pending_[r];
    if (changes == 0) break;  // every row was a resend
    const int64_t id = base + static_cast<int64_t>(r);
    if (changes < static_cast<int64_t>(n) && row.has_identity) {
      auto found = FindEvent(s->row, row.ident);
      if (!found.ok()) return found.status();
      if (*found != id) continue;  // stored before: a resend
    }
    const Event& e = events[row.index];
    (*inserted)[row.index] = 1;
    published->push_back({run.app, &e, id, static_cast<uint32_t>(u->row)});

    TouchSession(run.session_key, s);
    TouchUser(run.user_cache_key, u);
    // The session: starts at its init (else its earliest event), ends at its last event.
    const int64_t old_start = s->start_ms;
    int64_t start = s->start_ms;
    if (e.type == EventType::kInit) {
      start = s->has_init ? std::min(start, e.time_ms) : e.time_ms;
      s->has_init = true;
    } else if (!s->has_init) {
      start = std::min(start, e.time_ms);
    }
    s->start_ms = start;
    s->end_ms = std::max({s->end_ms, e.time_ms, start});
    if (start != old_start) {
      TouchDevice(run.device_key, d);
      NoteSessionStart(d, s, old_start, false);
    }
    ++s->actions;
    if (e.type == EventType::kError) ++s->errors;
    // Context: the init's, else the latest event that carried one.
    const bool carries = !e.platform.empty() || !e.locale.empty() || !e.version.empty();
    const bool is_init = e.type == EventType::kInit;
    if ((is_init && (!s->ctx_from_init || e.time_ms < s->ctx_ms)) ||
        (!is_init && carries && !s->ctx_from_init &&
         (s->ctx_event == 0 || e.time_ms >= s->ctx_ms))) {
      s->ctx_event = id;
      s->ctx_ms = e.time_ms;
      s->ctx_from_init = is_init;
    }
    if (std::find(s->users.begin(), s->users.end(), u->row) == s->users.end()) {
      s->users.push_back(u->row);
      new_memberships_.emplace_back(u->row, s->row);
    }
    u->first_ms = std::min(u->first_ms, e.time_ms);
    if ((is_init || e.type == EventType::kProps || e.type == EventType::kUserId) &&
        !e.props.empty()) {
      NUCLEON_RETURN_IF_ERROR(UpsertUserProps(u->row, e));
    }
  }
  pending_.clear();
  return Status::Ok();
}

Status EventWriter::UpsertUserProps(int64_t user, const Event& e) {
  auto q = db_->Cached(
      "INSERT INTO user_props(user, key, time_ms, value) VALUES(?, ?, ?, ?)"
      " ON CONFLICT(user, key) DO UPDATE SET time_ms = excluded.time_ms, value = excluded.value"
      " WHERE excluded.time_ms >= user_props.time_ms");
  if (!q.ok()) return q.status();
  for (const auto& [key, value] : e.props) {
    (*q)->Bind(1, user);
    (*q)->Bind(2, key);
    (*q)->Bind(3, e.time_ms);
    (*q)->Bind(4, PropJson(value));
    NUCLEON_RETURN_IF_ERROR((*q)->Run());
    (*q)->Reset();
  }
  return Status::Ok();
}

void EventWriter::AddCounts(int64_t app, int64_t time_ms, const Counts& delta) {
  Counts& c = counts_[{app, FloorDiv(time_ms, kBucketMs)}];
  c.installs += delta.installs;
  c.new_users += delta.new_users;
  c.sessions += delta.sessions;
  c.seconds += delta.seconds;
}

Status EventWriter::FlushEntities() {
  // Sessions first: the install of a device may have to be found among them.
  for (const auto& t : touched_sessions_) {
    SessionState* s = sessions_.Find(t.key);
    if (!s) return Status::Internal("a session of the batch left the cache");
    auto q = db_->Cached(
        "UPDATE sessions SET start_ms = ?, end_ms = ?, has_init = ?, actions = ?, errors = ?,"
        " ctx_event = ?, ctx_ms = ?, ctx_from_init = ?, users = ? WHERE id = ?");
    if (!q.ok()) return q.status();
    const std::string users = EncodeUsers(s->users);
    (*q)->Bind(1, s->start_ms);
    (*q)->Bind(2, s->end_ms);
    (*q)->Bind(3, static_cast<int64_t>(s->has_init));
    (*q)->Bind(4, s->actions);
    (*q)->Bind(5, s->errors);
    (*q)->Bind(6, s->ctx_event);
    (*q)->Bind(7, s->ctx_ms);
    (*q)->Bind(8, static_cast<int64_t>(s->ctx_from_init));
    (*q)->BindBlob(9, users.data(), users.size());
    (*q)->Bind(10, s->row);
    NUCLEON_RETURN_IF_ERROR((*q)->Run());
    if (t.before) {
      AddCounts(s->app, t.before->start_ms,
                {0, 0, -1, -Seconds(t.before->start_ms, t.before->end_ms)});
    }
    AddCounts(s->app, s->start_ms, {0, 0, 1, Seconds(s->start_ms, s->end_ms)});
    // Last seen: the latest end of the user's sessions.
    if (!t.before || t.before->end_ms != s->end_ms || t.before->users != s->users) {
      auto last = db_->Cached("UPDATE users SET last_ms = ? WHERE id = ? AND last_ms < ?");
      if (!last.ok()) return last.status();
      for (int64_t user : s->users) {
        (*last)->Bind(1, s->end_ms);
        (*last)->Bind(2, user);
        (*last)->Bind(3, s->end_ms);
        NUCLEON_RETURN_IF_ERROR((*last)->Run());
        (*last)->Reset();
      }
    }
  }
  for (const auto& [user, session] : new_memberships_) {
    auto q = db_->Cached("INSERT OR IGNORE INTO user_sessions(user, session) VALUES(?, ?)");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, user);
    (*q)->Bind(2, session);
    NUCLEON_RETURN_IF_ERROR((*q)->Run());
  }
  for (const auto& t : touched_users_) {
    UserState* u = users_.Find(t.key);
    if (!u) return Status::Internal("a user of the batch left the cache");
    if (!t.before && u->first_ms == INT64_MAX) {
      // Created for a run none of whose events was stored: no trace of it.
      auto del = db_->Cached("DELETE FROM users WHERE id = ?");
      if (!del.ok()) return del.status();
      (*del)->Bind(1, u->row);
      NUCLEON_RETURN_IF_ERROR((*del)->Run());
      --app_users_[u->app];
      continue;
    }
    if (t.before && t.before->first_ms == u->first_ms) continue;
    auto q = db_->Cached("UPDATE users SET first_ms = ? WHERE id = ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, u->first_ms);
    (*q)->Bind(2, u->row);
    NUCLEON_RETURN_IF_ERROR((*q)->Run());
    if (t.before) AddCounts(u->app, t.before->first_ms, {0, -1, 0, 0});
    AddCounts(u->app, u->first_ms, {0, 1, 0, 0});
  }
  for (const auto& t : touched_devices_) {
    DeviceState* d = devices_.Find(t.key);
    if (!d) return Status::Internal("a device of the batch left the cache");
    if (d->recompute_install) {
      d->recompute_install = false;
      auto q = db_->Cached(
          "SELECT id, start_ms FROM sessions WHERE device = ? ORDER BY start_ms, id LIMIT 1");
      if (!q.ok()) return q.status();
      (*q)->Bind(1, d->row);
      Status st;
      if ((*q)->Step(&st)) {
        d->install_session = (*q)->Int(0);
        d->install_ms = (*q)->Int(1);
      }
      NUCLEON_RETURN_IF_ERROR(st);
    }
    const bool had = t.before && t.before->install_session != 0;
    if (had && t.before->install_ms == d->install_ms &&
        t.before->install_session == d->install_session) {
      continue;
    }
    auto q = db_->Cached("UPDATE devices SET install_ms = ?, install_session = ? WHERE id = ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, d->install_ms);
    (*q)->Bind(2, d->install_session);
    (*q)->Bind(3, d->row);
    NUCLEON_RETURN_IF_ERROR((*q)->Run());
    if (had) AddCounts(d->app, t.before->install_ms, {-1, 0, 0, 0});
    if (d->install_session != 0) AddCounts(d->app, d->install_ms, {1, 0, 0, 0});
  }
  for (const auto& [app, added] : app_users_) {
    auto q = db_->Cached("UPDATE apps SET users = users + ? WHERE id = ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, added);
    (*q)->Bind(2, app);
    NUCLEON_RETURN_IF_ERROR((*q)->Run());
  }
  for (const auto& [key, c] : counts_) {
    if (c.installs == 0 && c.new_users == 0 && c.sessions == 0 && c.seconds == 0) continue;
    auto q = db_->Cached(
        "INSERT INTO bucket_counts(app, bucket, installs, new_users, sessions, session_seconds)"
        " VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(app, bucket) DO UPDATE SET"
        " installs = installs + excluded.installs, new_users = new_users + excluded.new_users,"
        " sessions = sessions + excluded.sessions,"
        " session_seconds = session_seconds + excluded.session_seconds");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, key.first);
    (*q)->Bind(2, key.second);
    (*q)->Bind(3, c.installs);
    (*q)->Bind(4, c.new_users);
    (*q)->Bind(5, c.sessions);
    (*q)->Bind(6, c.seconds);
    NUCLEON_RETURN_IF_ERROR((*q)->Run());
  }
  return Status::Ok();
}

}  // namespace nucleon
