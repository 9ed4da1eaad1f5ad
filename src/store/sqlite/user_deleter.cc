#include "store/sqlite/user_deleter.h"

#include <algorithm>
#include <map>
#include <set>
#include <span>

#include "core/time_util.h"
#include "store/sqlite/byte_io.h"
#include "store/sqlite/event_codec.h"
#include "store/sqlite/event_writer.h"
#include "store/sqlite/rollup_events.h"

namespace nucleon {

namespace {

int64_t Seconds(int64_t start_ms, int64_t end_ms) { return (end_ms - start_ms) / 1000; }

struct Counts {
  int64_t installs = 0, new_users = 0, sessions = 0, seconds = 0;
};

constexpr std::string_view kSelectUser =
    "SELECT id, first_ms FROM users WHERE app = ? AND user_key = ?";
constexpr std::string_view kSelectSessions =
    "SELECT s.id, s.device, s.start_ms, s.end_ms, s.session_key, d.device_key"
    " FROM user_sessions us JOIN sessions s ON s.id = us.session"
    " JOIN devices d ON d.id = s.device WHERE us.user = ? ORDER BY s.id";
constexpr std::string_view kSelectSessionEvents =
    "SELECT id, type, name, time_ms, ident, user, body FROM events WHERE session = ?"
    " ORDER BY id";

std::map<int64_t, std::vector<RollupEvent>> ByBucket(std::span<const RollupEvent> events) {
  std::map<int64_t, std::vector<RollupEvent>> by_bucket;
  for (const RollupEvent& e : events) by_bucket[FloorDiv(e.time_ms, kBucketMs)].push_back(e);
  return by_bucket;
}

}  // namespace

Status DeleteUserRows(SqliteDb& db, int64_t user) {
  for (const char* sql :
       {"DELETE FROM user_sessions WHERE user = ?", "DELETE FROM user_props WHERE user = ?",
        "DELETE FROM users WHERE id = ?"}) {
    auto del = db.Cached(sql);
    if (!del.ok()) return del.status();
    (*del)->Bind(1, user);
    NUCLEON_RETURN_IF_ERROR((*del)->Run());
  }
  return Status::Ok();
}

bool CarriesContext(const BodyParts& body, const StringDictionary& dict) {
  const auto text = [&](CtxField f) { return dict.Text(body.ctx[static_cast<size_t>(f)]); };
  return !text(CtxField::kPlatform).empty() || !text(CtxField::kLocale).empty() ||
         !text(CtxField::kVersion).empty();
}

RebuiltSession RebuildSession(std::span<const KeptEvent> kept) {
  RebuiltSession r;
  for (const KeptEvent& k : kept) {
    if (k.type == EventType::kInit) {
      r.start = r.has_init ? std::min(r.start, k.time) : k.time;
      r.has_init = true;
    } else if (!r.has_init) {
      r.start = std::min(r.start, k.time);
    }
    r.end = std::max({r.end, k.time, r.start});
    ++r.actions;
    if (k.type == EventType::kError) ++r.errors;
    const bool is_init = k.type == EventType::kInit;
    if ((is_init && (!r.ctx_from_init || k.time < r.ctx_ms)) ||
        (!is_init && k.carries && !r.ctx_from_init && (r.ctx_event == 0 || k.time >= r.ctx_ms))) {
      r.ctx_event = k.id;
      r.ctx_ms = k.time;
      r.ctx_from_init = is_init;
    }
    if (std::find(r.users.begin(), r.users.end(), k.user) == r.users.end()) {
      r.users.push_back(k.user);
    }
  }
  return r;
}

Status UserDeleter::ReadAhead(SqliteDb& reader, int64_t app, std::string_view user_key) const {
  int64_t user = 0;
  {
    auto q = reader.Cached(kSelectUser);
    if (!q.ok()) return q.status();
    (*q)->Bind(1, app);
    (*q)->Bind(2, user_key);
    Status st;
    if ((*q)->Step(&st)) user = (*q)->Int(0);
    NUCLEON_RETURN_IF_ERROR(st);
  }
  if (user == 0) return Status::Ok();
  std::vector<int64_t> sessions;
  {
    auto q = reader.Cached(kSelectSessions);
    if (!q.ok()) return q.status();
    (*q)->Bind(1, user);
    Status st;
    while ((*q)->Step(&st)) sessions.push_back((*q)->Int(0));
    NUCLEON_RETURN_IF_ERROR(st);
  }
  RollupEventBuilder theirs(dict_);
  for (int64_t session : sessions) {
    auto q = reader.Cached(kSelectSessionEvents);
    if (!q.ok()) return q.status();
    (*q)->Bind(1, session);
    Status st;
    while ((*q)->Step(&st)) {
      if ((*q)->Int(5) != user) continue;
      theirs.AddStored(0, (*q)->Int(3), static_cast<EventType>((*q)->Int(1)),
                       static_cast<uint32_t>(user), static_cast<uint32_t>((*q)->Int(2)),
                       ParseBody((*q)->Blob(6)), true);
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }
  return rollups_->ReadAhead(app, ByBucket(theirs.events()), reader);
}

Status UserDeleter::Delete(int64_t app, std::string_view user_key, Rollups::Removal* removal,
                           bool* tombstones) {
  *tombstones = false;
  int64_t user = 0, first_ms = 0;
  {
    auto q = db_->Cached(kSelectUser);
    if (!q.ok()) return q.status();
    (*q)->Bind(1, app);
    (*q)->Bind(2, user_key);
    Status st;
    if ((*q)->Step(&st)) {
      user = (*q)->Int(0);
      first_ms = (*q)->Int(1);
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }
  if (user == 0) return Status::NotFound("unknown user " + std::string(user_key));

  struct Session {
    int64_t row, device, start, end;
    std::string key, device_key;
  };
  std::vector<Session> sessions;
  {
    auto q = db_->Cached(kSelectSessions);
    if (!q.ok()) return q.status();
    (*q)->Bind(1, user);
    Status st;
    while ((*q)->Step(&st)) {
      sessions.push_back({(*q)->Int(0), (*q)->Int(1), (*q)->Int(2), (*q)->Int(3),
                          std::string((*q)->Text(4)), std::string((*q)->Text(5))});
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }

  std::map<std::pair<int64_t, int64_t>, Counts> counts;  // (app, bucket) deltas
  auto add = [&](int64_t t, const Counts& d) {
    Counts& c = counts[{app, FloorDiv(t, kBucketMs)}];
    c.installs += d.installs;
    c.new_users += d.new_users;
    c.sessions += d.sessions;
    c.seconds += d.seconds;
  };
  RollupEventBuilder removed(dict_);
  std::set<int64_t> devices;
  std::set<int64_t> other_users;
  for (const Session& s : sessions) {
    devices.insert(s.device);
    // The session's events: the user's go, the others' rebuild the session.
    std::vector<KeptEvent> kept;
    {
      auto q = db_->Cached(kSelectSessionEvents);
      if (!q.ok()) return q.status();
      (*q)->Bind(1, s.row);
      Status st;
      while ((*q)->Step(&st)) {
        const auto type = static_cast<EventType>((*q)->Int(1));
        const int64_t t = (*q)->Int(3);
        const BodyParts body = ParseBody((*q)->Blob(6));
        if ((*q)->Int(5) == user) {
          if (!(*q)->IsNull(4)) {
            auto ins = db_->Cached("INSERT OR IGNORE INTO tombstones(app, hash) VALUES(?, ?)");
            if (!ins.ok()) return ins.status();
            (*ins)->Bind(1, app);
            (*ins)->Bind(2, TombstoneHash(s.device_key, s.key, (*q)->Int(4)));
            NUCLEON_RETURN_IF_ERROR((*ins)->Run());
            *tombstones = true;
          }
          removed.AddStored(0, t, type, static_cast<uint32_t>(user),
                            static_cast<uint32_t>((*q)->Int(2)), body, true);
        } else {
          kept.push_back({(*q)->Int(0), t, type, (*q)->Int(5), CarriesContext(body, *dict_)});
        }
      }
      NUCLEON_RETURN_IF_ERROR(st);
    }
    {
      auto del = db_->Cached("DELETE FROM events WHERE session = ? AND user = ?");
      if (!del.ok()) return del.status();
      (*del)->Bind(1, s.row);
      (*del)->Bind(2, user);
      NUCLEON_RETURN_IF_ERROR((*del)->Run());
    }
    add(s.start, {0, 0, -1, -Seconds(s.start, s.end)});
    if (kept.empty()) {
      auto del = db_->Cached("DELETE FROM sessions WHERE id = ?");
      if (!del.ok()) return del.status();
      (*del)->Bind(1, s.row);
      NUCLEON_RETURN_IF_ERROR((*del)->Run());
      continue;
    }
    // What remains, as if the user's events had never come: the same rules
    // as when events are stored, replayed in storage order.
    const RebuiltSession r = RebuildSession(kept);
    std::string users_blob;
    ByteWriter w(&users_blob);
    for (int64_t u : r.users) {
      w.Varint(static_cast<uint64_t>(u));
      other_users.insert(u);
    }
    auto upd = db_->Cached(
        "UPDATE sessions SET start_ms = ?, end_ms = ?, has_init = ?, actions = ?, errors = ?,"
        " ctx_event = ?, ctx_ms = ?, ctx_from_init = ?, users = ? WHERE id = ?");
    if (!upd.ok()) return upd.status();
    (*upd)->Bind(1, r.start);
    (*upd)->Bind(2, r.end);
    (*upd)->Bind(3, static_cast<int64_t>(r.has_init));
    (*upd)->Bind(4, r.actions);
    (*upd)->Bind(5, r.errors);
    (*upd)->Bind(6, r.ctx_event);
    (*upd)->Bind(7, r.ctx_ms);
    (*upd)->Bind(8, static_cast<int64_t>(r.ctx_from_init));
    (*upd)->BindBlob(9, users_blob.data(), users_blob.size());
    (*upd)->Bind(10, s.row);
    NUCLEON_RETURN_IF_ERROR((*upd)->Run());
    add(r.start, {0, 0, 1, Seconds(r.start, r.end)});
  }

  // Devices: gone with their last session, else their install is found again.
  for (int64_t device : devices) {
    int64_t old_ms = 0, old_session = 0;
    {
      auto q = db_->Cached("SELECT install_ms, install_session FROM devices WHERE id = ?");
      if (!q.ok()) return q.status();
      (*q)->Bind(1, device);
      Status st;
      if ((*q)->Step(&st)) {
        old_ms = (*q)->Int(0);
        old_session = (*q)->Int(1);
      }
      NUCLEON_RETURN_IF_ERROR(st);
    }
    if (old_session != 0) add(old_ms, {-1, 0, 0, 0});
    auto q = db_->Cached(
        "SELECT id, start_ms FROM sessions WHERE device = ? ORDER BY start_ms, id LIMIT 1");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, device);
    Status st;
    if ((*q)->Step(&st)) {
      const int64_t session = (*q)->Int(0), ms = (*q)->Int(1);
      auto upd = db_->Cached("UPDATE devices SET install_ms = ?, install_session = ? WHERE id = ?");
      if (!upd.ok()) return upd.status();
      (*upd)->Bind(1, ms);
      (*upd)->Bind(2, session);
      (*upd)->Bind(3, device);
      NUCLEON_RETURN_IF_ERROR((*upd)->Run());
      add(ms, {1, 0, 0, 0});
    } else {
      NUCLEON_RETURN_IF_ERROR(st);
      auto del = db_->Cached("DELETE FROM devices WHERE id = ?");
      if (!del.ok()) return del.status();
      (*del)->Bind(1, device);
      NUCLEON_RETURN_IF_ERROR((*del)->Run());
    }
  }

  // The user.
  NUCLEON_RETURN_IF_ERROR(DeleteUserRows(*db_, user));
  add(first_ms, {0, -1, 0, 0});
  {
    auto upd = db_->Cached("UPDATE apps SET users = users - 1 WHERE id = ?");
    if (!upd.ok()) return upd.status();
    (*upd)->Bind(1, app);
    NUCLEON_RETURN_IF_ERROR((*upd)->Run());
  }
  // The other users of the shared sessions: their last seen, as their sessions now end.
  other_users.erase(user);
  for (int64_t other : other_users) {
    auto upd = db_->Cached(
        "UPDATE users SET last_ms = (SELECT max(s.end_ms) FROM user_sessions us"
        " JOIN sessions s ON s.id = us.session WHERE us.user = users.id) WHERE id = ?");
    if (!upd.ok()) return upd.status();
    (*upd)->Bind(1, other);
    NUCLEON_RETURN_IF_ERROR((*upd)->Run());
  }

  for (const auto& [key, c] : counts) {
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
  // Counts that fell to nothing leave no row behind.
  auto tidy = db_->Cached(
      "DELETE FROM bucket_counts WHERE app = ? AND bucket = ? AND installs = 0 AND new_users = 0"
      " AND sessions = 0 AND session_seconds = 0");
  if (!tidy.ok()) return tidy.status();
  for (const auto& [key, c] : counts) {
    (*tidy)->Bind(1, key.first);
    (*tidy)->Bind(2, key.second);
    NUCLEON_RETURN_IF_ERROR((*tidy)->Run());
    (*tidy)->Reset();
  }

  // The rollups: every bucket the user's events touched.
  return rollups_->WriteRemoval(app, static_cast<uint32_t>(user), ByBucket(removed.events()), *db_,
                                removal);
}

}  // namespace nucleon
