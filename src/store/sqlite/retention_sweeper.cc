#include "store/sqlite/retention_sweeper.h"

#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <vector>

#include "core/time_util.h"
#include "store/sqlite/byte_io.h"
#include "store/sqlite/event_codec.h"
#include "store/sqlite/user_deleter.h"

namespace nucleon {

namespace {

struct Counts {
  int64_t installs = 0, new_users = 0, sessions = 0, seconds = 0;
};

int64_t Seconds(int64_t start_ms, int64_t end_ms) { return (end_ms - start_ms) / 1000; }

std::vector<int64_t> DecodeUsers(std::string_view blob) {
  std::vector<int64_t> users;
  ByteReader r(blob);
  while (r.ok() && !r.done()) {
    const uint64_t u = r.Varint();
    if (r.ok()) users.push_back(static_cast<int64_t>(u));
  }
  return users;
}

// Calls f(id, session, user, time) for each stored event of `bucket` of
// `app`, found through the rollup's row runs (which may hold other rows).
template <typename F>
Status ForEachBucketEvent(SqliteDb& db, int64_t app, int64_t bucket, const BucketCore& core, F f) {
  for (const auto& [lo, hi] : core.runs) {
    auto q = db.Cached(
        "SELECT id, session, user, time_ms FROM events WHERE id BETWEEN ? AND ? AND app = ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, lo);
    (*q)->Bind(2, hi);
    (*q)->Bind(3, app);
    Status st;
    while ((*q)->Step(&st)) {
      const int64_t time = (*q)->Int(3);
      if (FloorDiv(time, kBucketMs) == bucket) f((*q)->Int(0), (*q)->Int(1), (*q)->Int(2), time);
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }
  return Status::Ok();
}

}  // namespace

Status RetentionSweeper::Sweep(int64_t app, std::span<const int64_t> buckets, int64_t budget,
                               Rollups::Removal* removal, Step* step) {
  *step = Step{};
  removal->app = app;
  removal->buckets.clear();
  removal->emptied.clear();
  std::set<int64_t> sessions;
  std::map<std::pair<int64_t, int64_t>, Counts> counts;  // (app, bucket) deltas
  auto add = [&](int64_t t, const Counts& d) {
    Counts& c = counts[{app, FloorDiv(t, kBucketMs)}];
    c.installs += d.installs;
    c.new_users += d.new_users;
    c.sessions += d.sessions;
    c.seconds += d.seconds;
  };

  // The events of whole buckets, oldest first, and the buckets' rollups.
  for (int64_t bucket : buckets) {
    if (step->buckets > 0 && step->events >= budget) break;
    BucketCore core;
    auto found = rollups_->ReadStored(app, bucket, *db_, &core);
    if (!found.ok()) return found.status();
    std::vector<int64_t> ids;
    NUCLEON_RETURN_IF_ERROR(ForEachBucketEvent(*db_, app, bucket, core,
                                               [&](int64_t id, int64_t session, int64_t, int64_t) {
                                                 ids.push_back(id);
                                                 sessions.insert(session);
                                               }));
    for (const auto& [lo, hi] : core.runs) {
      auto del = db_->Cached(
          "DELETE FROM events WHERE id BETWEEN ? AND ? AND app = ? AND time_ms >= ? AND"
          " time_ms < ?");
      if (!del.ok()) return del.status();
      (*del)->Bind(1, lo);
      (*del)->Bind(2, hi);
      (*del)->Bind(3, app);
      (*del)->Bind(4, bucket * kBucketMs);
      (*del)->Bind(5, (bucket + 1) * kBucketMs);
      NUCLEON_RETURN_IF_ERROR((*del)->Run());
    }
    if (*found) NUCLEON_RETURN_IF_ERROR(rollups_->WriteDrop(app, bucket, core, *db_, removal));
    ++step->buckets;
    step->events += static_cast<int64_t>(ids.size());
    step->through_ms = (bucket + 1) * kBucketMs;
  }
  if (step->buckets == 0) return Status::Ok();
  const int64_t through = step->through_ms;

  // The sessions that held them: computed again from what remains, or gone.
  std::set<int64_t> devices, users;
  std::set<int64_t> moved;          // sessions gone or with a later start
  std::map<int64_t, int64_t> lost;  // user -> latest end of the sessions it left
  for (int64_t session : sessions) {
    int64_t device = 0, start = 0, end = 0;
    std::vector<int64_t> before;
    {
      auto q = db_->Cached("SELECT device, start_ms, end_ms, users FROM sessions WHERE id = ?");
      if (!q.ok()) return q.status();
      (*q)->Bind(1, session);
      Status st;
      if (!(*q)->Step(&st)) {
        NUCLEON_RETURN_IF_ERROR(st);
        continue;
      }
      device = (*q)->Int(0);
      start = (*q)->Int(1);
      end = (*q)->Int(2);
      before = DecodeUsers((*q)->Blob(3));
    }
    devices.insert(device);
    users.insert(before.begin(), before.end());
    std::vector<KeptEvent> kept;
    {
      auto q = db_->Cached(
          "SELECT id, type, time_ms, user, body FROM events WHERE session = ? ORDER BY id");
      if (!q.ok()) return q.status();
      (*q)->Bind(1, session);
      Status st;
      while ((*q)->Step(&st)) {
        kept.push_back({(*q)->Int(0), (*q)->Int(2), static_cast<EventType>((*q)->Int(1)),
                        (*q)->Int(3), CarriesContext(ParseBody((*q)->Blob(4)), *dict_)});
      }
      NUCLEON_RETURN_IF_ERROR(st);
    }
    add(start, {0, 0, -1, -Seconds(start, end)});
    std::vector<int64_t> after;
    if (kept.empty()) {
      moved.insert(session);
      auto del = db_->Cached("DELETE FROM sessions WHERE id = ?");
      if (!del.ok()) return del.status();
      (*del)->Bind(1, session);
      NUCLEON_RETURN_IF_ERROR((*del)->Run());
    } else {
      const RebuiltSession r = RebuildSession(kept);
      if (r.start != start) moved.insert(session);
      // The end keeps the heartbeats credited to the session: it is already
      // at least the latest remaining event, all of them after the removed ones.
      const int64_t new_end = std::max(end, r.end);
      after = r.users;
      std::string users_blob;
      ByteWriter w(&users_blob);
      for (int64_t u : r.users) w.Varint(static_cast<uint64_t>(u));
      auto upd = db_->Cached(
          "UPDATE sessions SET start_ms = ?, end_ms = ?, has_init = ?, actions = ?, errors = ?,"
          " ctx_event = ?, ctx_ms = ?, ctx_from_init = ?, users = ? WHERE id = ?");
      if (!upd.ok()) return upd.status();
      (*upd)->Bind(1, r.start);
      (*upd)->Bind(2, new_end);
      (*upd)->Bind(3, static_cast<int64_t>(r.has_init));
      (*upd)->Bind(4, r.actions);
      (*upd)->Bind(5, r.errors);
      (*upd)->Bind(6, r.ctx_event);
      (*upd)->Bind(7, r.ctx_ms);
      (*upd)->Bind(8, static_cast<int64_t>(r.ctx_from_init));
      (*upd)->BindBlob(9, users_blob.data(), users_blob.size());
      (*upd)->Bind(10, session);
      NUCLEON_RETURN_IF_ERROR((*upd)->Run());
      add(r.start, {0, 0, 1, Seconds(r.start, new_end)});
    }
    for (int64_t u : before) {
      if (std::find(after.begin(), after.end(), u) != after.end()) continue;
      auto [it, added] = lost.try_emplace(u, end);
      if (!added) it->second = std::max(it->second, end);
      auto del = db_->Cached("DELETE FROM user_sessions WHERE user = ? AND session = ?");
      if (!del.ok()) return del.status();
      (*del)->Bind(1, u);
      (*del)->Bind(2, session);
      NUCLEON_RETURN_IF_ERROR((*del)->Run());
    }
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
    // Starts only move later: an install whose session kept its start is
    // still the device's first session.
    if (old_session != 0 && !moved.count(old_session)) continue;
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

  // Users: gone with their last event; else their first event, last seen and
  // the props whose latest value came from a removed event. A user whose
  // first event is not before the cut lost none: it stays as it is.
  int64_t users_gone = 0;
  struct Kept {
    int64_t user = 0, first_ms = 0, last_ms = 0;
  };
  std::vector<Kept> kept_users;
  for (int64_t user : users) {
    int64_t first_ms = 0, last_ms = 0;
    {
      auto q = db_->Cached("SELECT first_ms, last_ms FROM users WHERE id = ?");
      if (!q.ok()) return q.status();
      (*q)->Bind(1, user);
      Status st;
      if (!(*q)->Step(&st)) {
        NUCLEON_RETURN_IF_ERROR(st);
        continue;
      }
      first_ms = (*q)->Int(0);
      last_ms = (*q)->Int(1);
    }
    if (first_ms >= through) continue;
    bool member = false;  // of a session, so with events there
    {
      auto q = db_->Cached("SELECT EXISTS (SELECT 1 FROM user_sessions WHERE user = ?)");
      if (!q.ok()) return q.status();
      (*q)->Bind(1, user);
      Status st;
      member = (*q)->Step(&st) && (*q)->Int(0) != 0;
      NUCLEON_RETURN_IF_ERROR(st);
    }
    if (member) {
      kept_users.push_back({user, first_ms, last_ms});
    } else {
      NUCLEON_RETURN_IF_ERROR(DeleteUserRows(*db_, user));
      add(first_ms, {0, -1, 0, 0});
      ++users_gone;
    }
  }
  std::vector<int64_t> wanted;
  for (const Kept& k : kept_users) wanted.push_back(k.user);
  std::map<int64_t, int64_t> firsts;
  NUCLEON_RETURN_IF_ERROR(FirstRemaining(app, through, wanted, &firsts));
  for (const Kept& k : kept_users) {
    const auto found = firsts.find(k.user);
    if (found == firsts.end()) {  // no event after all
      NUCLEON_RETURN_IF_ERROR(DeleteUserRows(*db_, k.user));
      add(k.first_ms, {0, -1, 0, 0});
      ++users_gone;
      continue;
    }
    const int64_t new_first = found->second;
    if (new_first != k.first_ms) {
      add(k.first_ms, {0, -1, 0, 0});
      add(new_first, {0, 1, 0, 0});
    }
    // Last seen: the sessions that stay keep their ends, so it changes only
    // when the user left the session that gave it.
    const auto left = lost.find(k.user);
    auto upd = db_->Cached(
        left != lost.end() && left->second >= k.last_ms
            ? "UPDATE users SET first_ms = ?, last_ms = (SELECT max(s.end_ms) FROM user_sessions us"
              " JOIN sessions s ON s.id = us.session WHERE us.user = users.id) WHERE id = ?"
            : "UPDATE users SET first_ms = ? WHERE id = ?");
    if (!upd.ok()) return upd.status();
    (*upd)->Bind(1, new_first);
    (*upd)->Bind(2, k.user);
    NUCLEON_RETURN_IF_ERROR((*upd)->Run());
    auto props = db_->Cached("DELETE FROM user_props WHERE user = ? AND time_ms < ?");
    if (!props.ok()) return props.status();
    (*props)->Bind(1, k.user);
    (*props)->Bind(2, through);
    NUCLEON_RETURN_IF_ERROR((*props)->Run());
  }
  if (users_gone) {
    auto upd = db_->Cached("UPDATE apps SET users = users - ? WHERE id = ?");
    if (!upd.ok()) return upd.status();
    (*upd)->Bind(1, users_gone);
    (*upd)->Bind(2, app);
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
  // Counts that fell to nothing leave no row behind; before the cut nothing
  // starts any more.
  for (const auto& [key, c] : counts) {
    auto tidy = db_->Cached(
        "DELETE FROM bucket_counts WHERE app = ? AND bucket = ? AND installs = 0 AND"
        " new_users = 0 AND sessions = 0 AND session_seconds = 0");
    if (!tidy.ok()) return tidy.status();
    (*tidy)->Bind(1, key.first);
    (*tidy)->Bind(2, key.second);
    NUCLEON_RETURN_IF_ERROR((*tidy)->Run());
  }
  return Status::Ok();
}

Status RetentionSweeper::FirstRemaining(int64_t app, int64_t through,
                                        std::span<const int64_t> users,
                                        std::map<int64_t, int64_t>* first) {
  first->clear();
  std::set<int64_t> left(users.begin(), users.end());
  // The buckets from the cut on, as long as some user was not seen: the
  // first whose users include one holds its earliest remaining event.
  const std::vector<int64_t> later =
      rollups_->Present(app, FloorDiv(through, kBucketMs), std::numeric_limits<int64_t>::max());
  size_t looked = 0;
  for (int64_t bucket : later) {
    if (left.empty() || looked++ == scan_buckets_) break;
    Roaring present;
    auto found = rollups_->ReadStoredUsers(app, bucket, *db_, &present);
    if (!found.ok()) return found.status();
    if (!*found) continue;
    std::set<int64_t> here;
    for (int64_t u : left) {
      if (u >= 0 && u <= UINT32_MAX && present.contains(static_cast<uint32_t>(u))) here.insert(u);
    }
    if (here.empty()) continue;
    BucketCore core;
    auto stored = rollups_->ReadStored(app, bucket, *db_, &core);
    if (!stored.ok()) return stored.status();
    NUCLEON_RETURN_IF_ERROR(
        ForEachBucketEvent(*db_, app, bucket, core, [&](int64_t, int64_t, int64_t u, int64_t t) {
          if (!here.count(u)) return;
          auto [it, added] = first->try_emplace(u, t);
          if (!added) it->second = std::min(it->second, t);
        }));
    for (int64_t u : here) {
      if (first->count(u)) left.erase(u);
    }
  }
  // The others (back after a long while, if at all): through their sessions.
  for (int64_t u : left) {
    auto q = db_->Cached(
        "SELECT min(e.time_ms) FROM user_sessions us JOIN events e ON e.session = us.session"
        " WHERE us.user = ? AND e.user = ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, u);
    (*q)->Bind(2, u);
    Status st;
    if ((*q)->Step(&st) && !(*q)->IsNull(0)) first->emplace(u, (*q)->Int(0));
    NUCLEON_RETURN_IF_ERROR(st);
  }
  return Status::Ok();
}

}  // namespace nucleon
