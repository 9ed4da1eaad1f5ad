#include "store/sqlite/user_reader.h"

#include <algorithm>
#include <map>

#include "core/normalize.h"
#include "store/payload_props.h"
#include "store/sqlite/bucket.h"
#include "store/sqlite/event_codec.h"

namespace nucleon {

namespace {

std::string ClientIdText(const SqliteStmt& q, int col) {
  if (q.Type(col) == SQLITE_INTEGER) return std::to_string(q.Int(col));
  return std::string(q.Text(col));
}

// One stored event with its device, session and user keys, as Export and
// LastStored read it (StoredEvent decodes the row).
#define NUCLEON_STORED_EVENTS                                                          \
  "SELECT e.id, e.type, e.name, e.client_id, d.device_key, s.session_key, u.user_key," \
  " u.anon_id, e.time_ms, e.body, e.ident FROM events e"                               \
  " JOIN sessions s ON s.id = e.session"                                               \
  " JOIN devices d ON d.id = s.device JOIN users u ON u.id = e.user"                   \
  " WHERE e.id BETWEEN ? AND ? AND e.app = ? AND e.time_ms BETWEEN ? AND ?"
constexpr std::string_view kStoredEvents = NUCLEON_STORED_EVENTS;
constexpr std::string_view kStoredEventsNewestFirst = NUCLEON_STORED_EVENTS " ORDER BY e.id DESC";
#undef NUCLEON_STORED_EVENTS

Event StoredEvent(const SqliteStmt& q, std::string_view app_id, const StringDictionary& dict) {
  Event e;
  e.app_id = std::string(app_id);
  e.type = static_cast<EventType>(q.Int(1));
  e.name = std::string(dict.Text(static_cast<uint32_t>(q.Int(2))));
  e.client_id = ClientIdText(q, 3);
  e.device_id = std::string(q.Text(4));
  e.session_id = std::string(q.Text(5));
  e.user_key = std::string(q.Text(6));
  e.time_ms = q.Int(8);
  DecodeBodyInto(ParseBody(q.Blob(9)), dict, e.user_key, q.Text(7), &e);
  // The date as sent is not kept, its share of the identity is: the stored
  // 48 bits, as the hash whose StoredIdent they are.
  if (e.HasIdentity() && !q.IsNull(10)) e.ident_hash = q.Int(10) << 16;
  return e;
}

}  // namespace

Status UserReader::ReadContext(int64_t event_id, SqliteDb& db, Event* out) {
  if (event_id == 0) return Status::Ok();
  auto q = db.Cached("SELECT body FROM events WHERE id = ?");
  if (!q.ok()) return q.status();
  (*q)->Bind(1, event_id);
  Status st;
  if ((*q)->Step(&st)) {
    const BodyParts p = ParseBody((*q)->Blob(0));
    std::string* fields[kCtxFields] = {&out->platform, &out->os_version,     &out->locale,
                                       &out->version,  &out->module_version, &out->arch,
                                       &out->client,   &out->country};
    for (size_t i = 0; i < kCtxFields; ++i) fields[i]->assign(dict_->Text(p.ctx[i]));
    out->total_ram = p.total_ram;
  }
  return st;
}

Result<int64_t> UserReader::UserRowOf(int64_t app, std::string_view user_key, SqliteDb& db,
                                      UserRow* out) {
  auto q = db.Cached("SELECT id, first_ms, last_ms FROM users WHERE app = ? AND user_key = ?");
  if (!q.ok()) return q.status();
  (*q)->Bind(1, app);
  (*q)->Bind(2, user_key);
  Status st;
  if ((*q)->Step(&st)) {
    out->row = (*q)->Int(0);
    out->key = std::string(user_key);
    out->first_ms = (*q)->Int(1);
    out->last_ms = (*q)->Int(2);
    return out->row;
  }
  NUCLEON_RETURN_IF_ERROR(st);
  return int64_t{0};
}

Result<UserSummary> UserReader::Summarize(const UserRow& u, std::string_view app_id, SqliteDb& db,
                                          std::vector<SessionSummary>* out_sessions) {
  UserSummary s;
  s.id = UserDbId(app_id, u.key);
  s.user_key = u.key;
  s.created_ms = u.first_ms;
  s.last_seen_ms = u.last_ms;
  struct Ses {
    int64_t row, device, start, end, ctx_event, actions, errors;
    std::string key, device_key;
  };
  std::vector<Ses> sessions;
  {
    auto q = db.Cached(
        "SELECT s.id, s.device, s.start_ms, s.end_ms, s.ctx_event, s.actions, s.errors,"
        " s.session_key, d.device_key FROM user_sessions us JOIN sessions s ON s.id = us.session"
        " JOIN devices d ON d.id = s.device WHERE us.user = ? ORDER BY s.id");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, u.row);
    Status st;
    while ((*q)->Step(&st)) {
      sessions.push_back({(*q)->Int(0), (*q)->Int(1), (*q)->Int(2), (*q)->Int(3), (*q)->Int(4),
                          (*q)->Int(5), (*q)->Int(6), std::string((*q)->Text(7)),
                          std::string((*q)->Text(8))});
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }
  // Per device: the latest session (by start; a tie goes to the session
  // created later) and the latest end; the newest session overall.
  std::map<int64_t, const Ses*> latest;
  std::map<int64_t, int64_t> last_seen;
  const Ses* newest = nullptr;
  for (const Ses& si : sessions) {
    auto& l = latest[si.device];
    if (!l || si.start >= l->start) l = &si;
    auto [it, added] = last_seen.emplace(si.device, si.end);
    if (!added) it->second = std::max(it->second, si.end);
    if (!newest || si.start >= newest->start) newest = &si;
  }
  for (const auto& [device, si] : latest) {
    DeviceSummary d;
    d.device_id = si->device_key;
    d.last_seen_ms = last_seen[device];
    Event ctx;
    NUCLEON_RETURN_IF_ERROR(ReadContext(si->ctx_event, db, &ctx));
    if (!ctx.platform.empty()) d.platform = NormalizePlatform(ctx.platform);
    if (!ctx.os_version.empty()) d.os_version = ctx.os_version;
    if (!ctx.version.empty()) d.version = ctx.version;
    s.devices.push_back(std::move(d));
  }
  std::sort(s.devices.begin(), s.devices.end(), [](const DeviceSummary& a, const DeviceSummary& b) {
    return a.last_seen_ms != b.last_seen_ms ? a.last_seen_ms < b.last_seen_ms
                                            : a.device_id < b.device_id;
  });
  std::map<std::string, std::string> props;
  if (newest) {
    Event ctx;
    NUCLEON_RETURN_IF_ERROR(ReadContext(newest->ctx_event, db, &ctx));
    if (!ctx.country.empty()) {
      props["country"] = PropJson(PropValue{PropValue::Kind::kString, ctx.country});
    }
    const std::string lang = LanguageOf(ctx.locale);
    if (!lang.empty()) props["locale"] = PropJson(PropValue{PropValue::Kind::kString, lang});
  }
  {
    auto q = db.Cached("SELECT key, value FROM user_props WHERE user = ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, u.row);
    Status st;
    while ((*q)->Step(&st)) props[std::string((*q)->Text(0))] = std::string((*q)->Text(1));
    NUCLEON_RETURN_IF_ERROR(st);
  }
  // country and locale first, then the custom props in key order.
  for (const char* k : {"country", "locale"}) {
    auto it = props.find(k);
    if (it != props.end()) {
      s.props.emplace_back(it->first, it->second);
      props.erase(it);
    }
  }
  for (auto& [k, v] : props) s.props.emplace_back(k, v);
  if (out_sessions) {
    std::vector<const Ses*> order;
    for (const Ses& si : sessions) order.push_back(&si);
    std::sort(order.begin(), order.end(), [](const Ses* a, const Ses* b) {
      if (a->start != b->start) return a->start > b->start;
      return a->key != b->key ? a->key > b->key : a->device_key > b->device_key;
    });
    for (const Ses* si : order) {
      out_sessions->push_back(
          {si->key, si->device_key, si->start, si->end, si->actions, si->errors});
    }
  }
  return s;
}

Result<UserList> UserReader::Users(int64_t app, std::string_view app_id, int64_t page,
                                   int64_t limit, std::string_view search, SqliteDb& db) {
  UserList out;
  int64_t all = 0;  // the app's users
  {
    auto q = db.Cached("SELECT users FROM apps WHERE id = ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, app);
    Status st;
    if ((*q)->Step(&st)) all = (*q)->Int(0);
    NUCLEON_RETURN_IF_ERROR(st);
  }
  const int64_t offset = (page - 1) * limit;
  std::vector<UserRow> rows;
  if (search.empty()) {
    out.total = all;
    if (out.total > offset) NUCLEON_RETURN_IF_ERROR(ByLastSeen(app, "", limit, offset, db, &rows));
  } else {
    // LIKE folds ASCII letters only, as the search promises; the pattern's
    // own wildcards are escaped.
    std::string pattern = "%";
    for (char c : search) {
      if (c == '%' || c == '_' || c == '\\') pattern.push_back('\\');
      pattern.push_back(c);
    }
    pattern.push_back('%');
    // The matches, from the index on (app, user_key) alone.
    std::vector<int64_t> ids;
    {
      auto q = db.Cached("SELECT id FROM users WHERE app = ? AND user_key LIKE ? ESCAPE '\\'");
      if (!q.ok()) return q.status();
      (*q)->Bind(1, app);
      (*q)->Bind(2, pattern);
      Status st;
      while ((*q)->Step(&st)) {
        if (ids.size() < kMaxSortedMatches) ids.push_back((*q)->Int(0));
        ++out.total;
      }
      NUCLEON_RETURN_IF_ERROR(st);
    }
    // Few matches: read and sort them. Many: walk the users by last seen,
    // which meets a full page after about (offset + limit) * all / total rows.
    const bool sort_matches = out.total == static_cast<int64_t>(ids.size()) &&
                              out.total * out.total <= (offset + limit) * std::max<int64_t>(all, 1);
    if (out.total <= offset) {
      // past the end
    } else if (sort_matches) {
      auto q = db.Cached("SELECT id, user_key, first_ms, last_ms FROM users WHERE id = ?");
      if (!q.ok()) return q.status();
      std::vector<UserRow> matches;
      for (int64_t id : ids) {
        (*q)->Bind(1, id);
        Status st;
        if ((*q)->Step(&st)) {
          matches.push_back({(*q)->Int(0), std::string((*q)->Text(1)), (*q)->Int(2), (*q)->Int(3)});
        }
        NUCLEON_RETURN_IF_ERROR(st);
        (*q)->Reset();
      }
      std::sort(matches.begin(), matches.end(), [](const UserRow& a, const UserRow& b) {
        return a.last_ms != b.last_ms ? a.last_ms > b.last_ms : a.row > b.row;
      });
      for (size_t i = offset; i < matches.size() && i < static_cast<size_t>(offset + limit); ++i) {
        rows.push_back(std::move(matches[i]));
      }
    } else {
      NUCLEON_RETURN_IF_ERROR(ByLastSeen(app, pattern, limit, offset, db, &rows));
    }
  }
  for (const UserRow& u : rows) {
    auto s = Summarize(u, app_id, db, nullptr);
    if (!s.ok()) return s.status();
    out.users.push_back(std::move(*s));
  }
  return out;
}

Status UserReader::ByLastSeen(int64_t app, const std::string& pattern, int64_t limit,
                              int64_t offset, SqliteDb& db, std::vector<UserRow>* out) {
  auto q = db.Cached(
      "SELECT id, user_key, first_ms, last_ms FROM users WHERE app = ?1"
      " AND (?4 = '' OR user_key LIKE ?4 ESCAPE '\\')"
      " ORDER BY last_ms DESC, id DESC LIMIT ?2 OFFSET ?3");
  if (!q.ok()) return q.status();
  (*q)->Bind(1, app);
  (*q)->Bind(2, limit);
  (*q)->Bind(3, offset);
  (*q)->Bind(4, pattern);
  Status st;
  while ((*q)->Step(&st)) {
    out->push_back({(*q)->Int(0), std::string((*q)->Text(1)), (*q)->Int(2), (*q)->Int(3)});
  }
  return st;
}

Result<UserDetails> UserReader::User(int64_t app, std::string_view app_id,
                                     std::string_view user_key, SqliteDb& db) {
  UserRow u;
  auto row = UserRowOf(app, user_key, db, &u);
  if (!row.ok()) return row.status();
  if (*row == 0) return Status::NotFound("unknown user " + std::string(user_key));
  UserDetails out;
  auto s = Summarize(u, app_id, db, &out.sessions);
  if (!s.ok()) return s.status();
  out.user = std::move(*s);
  return out;
}

Result<std::vector<EventView>> UserReader::SessionEvents(int64_t app, std::string_view app_id,
                                                         std::string_view user_key,
                                                         std::string_view session_id,
                                                         std::string_view device_id, SqliteDb& db) {
  UserRow u;
  auto row = UserRowOf(app, user_key, db, &u);
  if (!row.ok()) return row.status();
  if (*row == 0) return Status::NotFound("unknown user " + std::string(user_key));
  struct Ses {
    int64_t row, ctx_event;
    bool ctx_from_init, install;
    std::string device_key;
  };
  std::vector<Ses> sessions;
  {
    auto q = db.Cached(
        "SELECT s.id, s.ctx_event, s.ctx_from_init, d.install_session = s.id, d.device_key"
        " FROM user_sessions us JOIN sessions s ON s.id = us.session"
        " JOIN devices d ON d.id = s.device WHERE us.user = ? AND s.session_key = ? ORDER BY s.id");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, u.row);
    (*q)->Bind(2, session_id);
    Status st;
    while ((*q)->Step(&st)) {
      if (!device_id.empty() && (*q)->Text(4) != device_id) continue;
      sessions.push_back({(*q)->Int(0), (*q)->Int(1), (*q)->Int(2) != 0, (*q)->Int(3) != 0,
                          std::string((*q)->Text(4))});
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }
  if (sessions.empty()) return Status::NotFound("unknown session " + std::string(session_id));
  std::vector<std::pair<int64_t, EventView>> out;  // (row id, view)
  for (const Ses& s : sessions) {
    // An event's context falls back to its session's init only: a later
    // event that happened to carry context says nothing about earlier ones.
    Event context;
    if (s.ctx_from_init) NUCLEON_RETURN_IF_ERROR(ReadContext(s.ctx_event, db, &context));
    auto q = db.Cached(
        "SELECT e.id, e.type, e.name, e.client_id, e.time_ms, e.body, u.user_key, u.anon_id"
        " FROM events e JOIN users u ON u.id = e.user WHERE e.session = ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, s.row);
    Status st;
    while ((*q)->Step(&st)) {
      EventView v;
      Event& e = v.event;
      e.app_id = std::string(app_id);
      e.type = static_cast<EventType>((*q)->Int(1));
      e.name = std::string(dict_->Text(static_cast<uint32_t>((*q)->Int(2))));
      e.client_id = ClientIdText(**q, 3);
      e.device_id = s.device_key;
      e.session_id = std::string(session_id);
      e.user_key = std::string((*q)->Text(6));
      e.time_ms = (*q)->Int(4);
      const BodyParts parts = ParseBody((*q)->Blob(5));
      DecodeBodyInto(parts, *dict_, e.user_key, (*q)->Text(7), &e);
      CompleteFromInitContext(context, &e);
      v.first_time = s.install && e.type == EventType::kInit;
      out.emplace_back((*q)->Int(0), std::move(v));
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }
  // Oldest first; events of the same time in the order they were stored.
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.second.event.time_ms != b.second.event.time_ms
               ? a.second.event.time_ms < b.second.event.time_ms
               : a.first < b.first;
  });
  std::vector<EventView> views;
  views.reserve(out.size());
  for (auto& [id, v] : out) views.push_back(std::move(v));
  return views;
}

Result<EventView> UserReader::DeviceContext(int64_t app, std::string_view device_id, SqliteDb& db) {
  EventView v;
  auto q = db.Cached(
      "SELECT s.ctx_event, s.ctx_from_init FROM sessions s JOIN devices d ON d.id = s.device"
      " WHERE d.app = ? AND d.device_key = ? ORDER BY s.start_ms DESC, s.id DESC LIMIT 1");
  if (!q.ok()) return q.status();
  (*q)->Bind(1, app);
  (*q)->Bind(2, device_id);
  Status st;
  if (!(*q)->Step(&st)) return st.ok() ? Status::NotFound("unknown device") : st;
  const int64_t ctx = (*q)->Int(0);
  const bool from_init = (*q)->Int(1) != 0;
  if (from_init) NUCLEON_RETURN_IF_ERROR(ReadContext(ctx, db, &v.event));
  return v;
}

EventView UserReader::WithSessionContext(int64_t app, const Event& event, SqliteDb& db) {
  EventView v;
  v.event = event;
  auto q = db.Cached(
      "SELECT s.ctx_event, s.ctx_from_init, d.install_session = s.id FROM sessions s"
      " JOIN devices d ON d.id = s.device WHERE d.app = ? AND d.device_key = ? AND s.session_key = "
      "?");
  if (!q.ok()) return v;
  (*q)->Bind(1, app);
  (*q)->Bind(2, event.device_id);
  (*q)->Bind(3, event.session_id);
  Status st;
  if (!(*q)->Step(&st)) return v;
  const int64_t ctx_event = (*q)->Int(0);
  const bool from_init = (*q)->Int(1) != 0;
  const bool install = (*q)->Int(2) != 0;
  Event context;
  if (from_init && !ReadContext(ctx_event, db, &context).ok()) return v;
  Event& e = v.event;
  CompleteFromInitContext(context, &e);
  v.first_time = install && e.type == EventType::kInit;
  return v;
}

Status UserReader::Export(int64_t app, std::string_view app_id, const BucketRuns& buckets,
                          int64_t from_ms, int64_t to_ms, int64_t max_id,
                          const std::function<bool(const Event&)>& sink, SqliteDb& db) {
  auto q = db.Cached(kStoredEvents);
  if (!q.ok()) return q.status();
  std::vector<std::pair<std::pair<int64_t, int64_t>, Event>> rows;  // ((time, id), event)
  for (const auto& [bucket, runs] : buckets) {
    if ((bucket + 1) * kBucketMs - 1 < from_ms || bucket * kBucketMs > to_ms) continue;
    rows.clear();
    for (const auto& [first, last] : runs) {
      if (first > max_id) break;
      (*q)->Bind(1, first);
      (*q)->Bind(2, std::min(last, max_id));
      (*q)->Bind(3, app);
      (*q)->Bind(4, std::max(from_ms, bucket * kBucketMs));
      (*q)->Bind(5, std::min(to_ms, (bucket + 1) * kBucketMs - 1));
      Status st;
      while ((*q)->Step(&st)) {
        Event e = StoredEvent(**q, app_id, *dict_);
        rows.emplace_back(std::make_pair(e.time_ms, (*q)->Int(0)), std::move(e));
      }
      NUCLEON_RETURN_IF_ERROR(st);
      (*q)->Reset();
    }
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [key, e] : rows) {
      if (!sink(e)) return Status::Ok();
    }
  }
  return Status::Ok();
}

Status UserReader::LastStored(int64_t app, std::string_view app_id, const BucketRuns& buckets,
                              int64_t from_ms, int64_t to_ms, int64_t max_id, size_t limit,
                              const std::function<void(const Event&)>& sink, SqliteDb& db) {
  // Every run of every bucket, newest rows first, until `limit` events.
  std::vector<std::pair<int64_t, int64_t>> runs;
  for (const auto& [bucket, bucket_runs] : buckets) {
    for (const auto& [first, last] : bucket_runs) {
      if (first <= max_id) runs.emplace_back(first, std::min(last, max_id));
    }
  }
  std::sort(runs.begin(), runs.end());
  auto q = db.Cached(kStoredEventsNewestFirst);
  if (!q.ok()) return q.status();
  std::vector<std::pair<int64_t, Event>> found;  // (row id, event)
  int64_t below = INT64_MAX;                     // runs may overlap across buckets: each row once
  for (auto it = runs.rbegin(); it != runs.rend() && found.size() < limit; ++it) {
    const int64_t last = std::min(it->second, below - 1);
    if (last < it->first) continue;
    (*q)->Bind(1, it->first);
    (*q)->Bind(2, last);
    (*q)->Bind(3, app);
    (*q)->Bind(4, from_ms);
    (*q)->Bind(5, to_ms);
    Status st;
    while (found.size() < limit && (*q)->Step(&st)) {
      found.emplace_back((*q)->Int(0), StoredEvent(**q, app_id, *dict_));
    }
    (*q)->Reset();
    NUCLEON_RETURN_IF_ERROR(st);
    below = it->first;
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [id, e] : found) sink(e);
  return Status::Ok();
}

Result<StoreStats> UserReader::Stats(int64_t app, bool all_apps, SqliteDb& db) {
  StoreStats stats;
  const char* kTables[] = {"events", "sessions", "devices", "users"};
  int64_t* kOut[] = {&stats.events, &stats.sessions, &stats.devices, &stats.users};
  for (int i = 0; i < 4; ++i) {
    std::string sql = std::string("SELECT count(*) FROM ") + kTables[i];
    if (!all_apps) sql += " WHERE app = ?";
    auto q = db.Prepare(sql);
    if (!q.ok()) return q.status();
    if (!all_apps) q->Bind(1, app);
    Status st;
    if (q->Step(&st)) *kOut[i] = q->Int(0);
    NUCLEON_RETURN_IF_ERROR(st);
  }
  if (all_apps) {
    auto q = db.Prepare("SELECT count(*) FROM apps");
    if (!q.ok()) return q.status();
    Status st;
    if (q->Step(&st)) stats.apps = q->Int(0);
    NUCLEON_RETURN_IF_ERROR(st);
  } else {
    stats.apps = app != 0 ? 1 : 0;
  }
  return stats;
}

}  // namespace nucleon
