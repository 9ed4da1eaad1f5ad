// The writer on a real events file: after any sequence of appends the entity
// tables (sessions, users, devices, memberships, props, per-bucket counts, the
// apps' user counts) must equal a plain recomputation from the stored event
// rows, and the stored rows must be exactly the events a simple model says are
// new (resends and tombstoned identities refused, id-less events always kept).
// A failed transaction must leave nothing behind, in the file or in the
// writer's caches: what follows must read as if it never happened.
#include "store/sqlite/event_writer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "core/testing/temp_dir.h"
#include "core/time_util.h"
#include "store/payload_props.h"
#include "store/sqlite/bucket.h"
#include "store/sqlite/byte_io.h"
#include "store/sqlite/event_codec.h"
#include "store/sqlite/events_schema.h"
#include "store/sqlite/migration_runner.h"

namespace nucleon {
namespace {

constexpr int64_t kT0 = 1795685880000;  // 2026-11-26

// ---- Events.

Event Make(EventType type, std::string name, std::string client_id, int64_t time_ms,
           std::string device = "dev1", std::string session = "s1", std::string user_key = "") {
  Event e;
  e.app_id = "app1";
  e.type = type;
  e.name = std::move(name);
  e.client_id = std::move(client_id);
  e.client_date = e.client_id.empty() ? "" : std::to_string(time_ms);
  e.device_id = std::move(device);
  e.session_id = std::move(session);
  e.user_key = user_key.empty() ? e.device_id : std::move(user_key);
  e.time_ms = time_ms;
  return e;
}

Event Init(std::string client_id, int64_t t, std::string device = "dev1",
           std::string session = "s1", std::string user_key = "") {
  Event e = Make(EventType::kInit, "", std::move(client_id), t, std::move(device),
                 std::move(session), std::move(user_key));
  e.platform = "Linux";
  e.locale = "en-US";
  e.version = "1.0";
  return e;
}

Event Named(std::string name, std::string client_id, int64_t t, std::string device = "dev1",
            std::string session = "s1", std::string user_key = "") {
  return Make(EventType::kEvent, std::move(name), std::move(client_id), t, std::move(device),
              std::move(session), std::move(user_key));
}

Event Heartbeat(int64_t t, std::string device = "dev1", std::string session = "s1") {
  Event e = Make(EventType::kHeartbeat, "", "", t, std::move(device), std::move(session));
  return e;
}

void SetPayload(Event* e, const std::string& json_text) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(json_text, ec);
  ASSERT_FALSE(ec);
  e->payload_json = boost::json::serialize(v);
  e->props = ScalarProps(v.get_object());
}

// ---- One events file with its writer, wired as the store wires them.

class File {
 public:
  explicit File(WriterCacheOptions cache = {}) {
    EXPECT_TRUE(db_.Open(path(), true).ok());
    EXPECT_TRUE(db_.Exec("PRAGMA synchronous=OFF").ok());
    EXPECT_TRUE(RunMigrations(db_, "events.db", EventsMigrations()).ok());
    EXPECT_TRUE(dict_.Load(db_).ok());
    writer_ = std::make_unique<EventWriter>(&db_, &dict_, cache);
    EXPECT_TRUE(writer_->Open().ok());
  }

  std::string path() const { return dir_.path() + "/events.db"; }
  SqliteDb& db() { return db_; }
  StringDictionary& dict() { return dict_; }
  EventWriter& writer() { return *writer_; }

  Status Append(const std::vector<Event>& events, std::vector<uint8_t>* inserted) {
    std::vector<PublishedEvent> published;
    Status st = writer_->Append(events, {}, inserted, &published);
    if (st.ok()) {
      size_t n = 0;
      for (uint8_t i : *inserted) n += i;
      EXPECT_EQ(published.size(), n) << "every stored event is published, once";
      // Each with its own row (the rollups record where a bucket's rows are).
      for (const PublishedEvent& p : published) {
        auto rows = Rows(
            "SELECT e.time_ms, e.type, u.user_key, e.user FROM events e JOIN users u ON"
            " u.id = e.user WHERE e.id = " +
            std::to_string(p.id));
        EXPECT_EQ(rows.size(), 1u) << "published row " << p.id;
        if (rows.size() != 1) continue;
        EXPECT_EQ(rows[0], std::to_string(p.event->time_ms) + "|" +
                               std::to_string(static_cast<int>(p.event->type)) + "|" +
                               p.event->user_key + "|" + std::to_string(p.user))
            << "published row " << p.id;
      }
    }
    return st;
  }

  std::vector<uint8_t> MustAppend(const std::vector<Event>& events) {
    std::vector<uint8_t> inserted;
    Status st = Append(events, &inserted);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return inserted;
  }

  // Rows of `sql` as text, one string per row (columns joined by '|').
  std::vector<std::string> Rows(const std::string& sql) {
    std::vector<std::string> out;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_.raw(), sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_.raw());
      return out;
    }
    const int cols = sqlite3_column_count(stmt);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      std::string row;
      for (int c = 0; c < cols; ++c) {
        if (c) row += "|";
        switch (sqlite3_column_type(stmt, c)) {
          case SQLITE_NULL:
            row += "NULL";
            break;
          case SQLITE_INTEGER:
            row += std::to_string(sqlite3_column_int64(stmt, c));
            break;
          case SQLITE_BLOB:
            row += Hex(std::string_view(static_cast<const char*>(sqlite3_column_blob(stmt, c)),
                                        static_cast<size_t>(sqlite3_column_bytes(stmt, c))));
            break;
          default:
            row += std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, c)),
                               static_cast<size_t>(sqlite3_column_bytes(stmt, c)));
        }
      }
      out.push_back(row);
    }
    EXPECT_EQ(rc, SQLITE_DONE) << sql << ": " << sqlite3_errmsg(db_.raw());
    sqlite3_finalize(stmt);
    return out;
  }

  int64_t Count(const std::string& table) {
    auto rows = Rows("SELECT count(*) FROM " + table);
    return rows.empty() ? -1 : std::stoll(rows[0]);
  }

  static std::string Hex(std::string_view b) {
    static const char kHex[] = "0123456789abcdef";
    std::string s;
    for (char c : b) {
      s.push_back(kHex[static_cast<uint8_t>(c) >> 4]);
      s.push_back(kHex[static_cast<uint8_t>(c) & 15]);
    }
    return s;
  }

 private:
  TempDir dir_;
  SqliteDb db_;
  StringDictionary dict_;
  std::unique_ptr<EventWriter> writer_;
};

// ---- The model: which events are new, and what heartbeats extend.

class Model {
 public:
  // The expected `inserted` flags of a batch, updating the model.
  std::vector<uint8_t> Apply(const std::vector<Event>& batch) {
    std::vector<uint8_t> out;
    for (const Event& e : batch) {
      if (e.type == EventType::kHeartbeat) {
        Heartbeat(e);
        out.push_back(0);
        continue;
      }
      if (e.HasIdentity()) {
        const auto key = std::make_tuple(e.app_id, e.device_id, e.session_id, EventIdentHash(e));
        if (tombstoned_.count(key) || !seen_.insert(key).second) {
          out.push_back(0);
          continue;
        }
      }
      Store(e);
      out.push_back(1);
    }
    return out;
  }
  void Tombstone(const Event& e) {
    tombstoned_.insert(std::make_tuple(e.app_id, e.device_id, e.session_id, EventIdentHash(e)));
  }

  // (app, device, session) -> the latest heartbeat that extended it.
  const std::map<std::tuple<std::string, std::string, std::string>, int64_t>& extended() const {
    return extended_;
  }
  // The stored events, in storage order, as comparable text.
  const std::vector<std::string>& stored() const { return stored_text_; }

  static std::string Describe(const Event& e) {
    std::ostringstream s;
    s << e.app_id << "|" << e.device_id << "|" << e.session_id << "|" << e.user_key << "|"
      << static_cast<int>(e.type) << "|" << e.name << "|" << e.time_ms << "|" << e.client_id;
    return s.str();
  }

 private:
  using SessionKey = std::tuple<std::string, std::string, std::string>;
  struct SessionSoFar {
    size_t created = 0;  // creation order
    bool has_init = false;
    int64_t start = 0;
  };

  void Store(const Event& e) {
    stored_text_.push_back(Describe(e));
    const SessionKey key{e.app_id, e.device_id, e.session_id};
    auto [it, added] = sessions_.try_emplace(key);
    SessionSoFar& s = it->second;
    if (added) {
      s.created = sessions_.size();
      s.start = e.time_ms;
      s.has_init = e.type == EventType::kInit;
      return;
    }
    if (e.type == EventType::kInit) {
      s.start = s.has_init ? std::min(s.start, e.time_ms) : e.time_ms;
      s.has_init = true;
    } else if (!s.has_init) {
      s.start = std::min(s.start, e.time_ms);
    }
  }

  void Heartbeat(const Event& e) {
    SessionKey key{e.app_id, e.device_id, e.session_id};
    if (e.session_id.empty()) {
      // The device's latest session: by start, then the one created later.
      const SessionSoFar* best = nullptr;
      for (const auto& [k, s] : sessions_) {
        if (std::get<0>(k) != e.app_id || std::get<1>(k) != e.device_id) continue;
        if (!best ||
            std::make_pair(s.start, s.created) > std::make_pair(best->start, best->created)) {
          best = &s;
          key = k;
        }
      }
      if (!best) return;
    } else if (!sessions_.count(key)) {
      return;  // creates nothing
    }
    int64_t& t = extended_[key];
    t = std::max(t, e.time_ms);
  }

  std::set<std::tuple<std::string, std::string, std::string, int64_t>> seen_, tombstoned_;
  std::map<SessionKey, SessionSoFar> sessions_;
  std::map<SessionKey, int64_t> extended_;
  std::vector<std::string> stored_text_;
};

// ---- The recomputation.

struct EventRow {
  int64_t id, app, session, user, type, time;
  bool carries;
  std::vector<std::pair<std::string, std::string>> props;  // key -> JSON value
};

// Checks every entity table of `f` against a recomputation from its event
// rows, and the rows against the model.
void ExpectConsistent(File& f, const Model& model, const std::string& when) {
  SCOPED_TRACE(when);
  SqliteDb& db = f.db();
  // The stored events, as the model describes them.
  {
    std::vector<std::string> got;
    auto q = db.Prepare(
        "SELECT a.app_id, d.device_key, s.session_key, u.user_key, e.type, coalesce(st.text, ''),"
        " e.time_ms, coalesce(e.client_id, '') FROM events e JOIN apps a ON a.id = e.app"
        " JOIN sessions s ON s.id = e.session JOIN devices d ON d.id = s.device"
        " JOIN users u ON u.id = e.user LEFT JOIN strings st ON st.id = e.name ORDER BY e.id");
    ASSERT_TRUE(q.ok());
    Status st;
    while (q->Step(&st)) {
      std::ostringstream s;
      s << q->Text(0) << "|" << q->Text(1) << "|" << q->Text(2) << "|" << q->Text(3) << "|"
        << q->Int(4) << "|" << q->Text(5) << "|" << q->Int(6) << "|"
        << (q->Type(7) == SQLITE_INTEGER ? std::to_string(q->Int(7)) : std::string(q->Text(7)));
      got.push_back(s.str());
    }
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(got, model.stored()) << "the stored rows (joined to their entities) are the model's";
    EXPECT_EQ(f.Count("events"), static_cast<int64_t>(model.stored().size()));
  }

  std::vector<EventRow> events;
  {
    auto q =
        db.Prepare("SELECT id, app, session, user, type, time_ms, body FROM events ORDER BY id");
    ASSERT_TRUE(q.ok());
    Status st;
    std::vector<BodyProp> props;
    while (q->Step(&st)) {
      const BodyParts body = ParseBody(q->Blob(6));
      EXPECT_TRUE(body.ok);
      auto text = [&](CtxField c) { return f.dict().Text(body.ctx[static_cast<size_t>(c)]); };
      EventRow r{q->Int(0),
                 q->Int(1),
                 q->Int(2),
                 q->Int(3),
                 q->Int(4),
                 q->Int(5),
                 !text(CtxField::kPlatform).empty() || !text(CtxField::kLocale).empty() ||
                     !text(CtxField::kVersion).empty(),
                 {}};
      DecodeBodyProps(body, f.dict(), &props);
      for (const BodyProp& p : props)
        r.props.emplace_back(std::string(f.dict().Text(p.key)), PropJson(p.value));
      events.push_back(std::move(r));
    }
    ASSERT_TRUE(st.ok());
  }

  // Session rows and where heartbeats went.
  struct Ses {
    int64_t app, device, start, end, has_init, actions, errors, ctx_event, ctx_ms, ctx_from_init;
    std::string users;
    std::string name;  // app|device|session
  };
  std::map<int64_t, Ses> sessions;
  std::map<int64_t, int64_t> extended;  // session row -> heartbeat end
  {
    auto q = db.Prepare(
        "SELECT s.id, s.app, s.device, s.start_ms, s.end_ms, s.has_init, s.actions, s.errors,"
        " s.ctx_event, s.ctx_ms, s.ctx_from_init, s.users, a.app_id, d.device_key, s.session_key"
        " FROM sessions s JOIN devices d ON d.id = s.device JOIN apps a ON a.id = s.app");
    ASSERT_TRUE(q.ok());
    Status st;
    while (q->Step(&st)) {
      Ses s{q->Int(1),
            q->Int(2),
            q->Int(3),
            q->Int(4),
            q->Int(5),
            q->Int(6),
            q->Int(7),
            q->Int(8),
            q->Int(9),
            q->Int(10),
            std::string(q->Blob(11)),
            std::string(q->Text(12)) + "|" + std::string(q->Text(13)) + "|" +
                std::string(q->Text(14))};
      auto it = model.extended().find(
          {std::string(q->Text(12)), std::string(q->Text(13)), std::string(q->Text(14))});
      if (it != model.extended().end()) extended[q->Int(0)] = it->second;
      sessions[q->Int(0)] = s;
    }
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(sessions.size(), static_cast<size_t>(f.Count("sessions")));
  }

  // Expected sessions: the documented rules over their events in storage order.
  struct Want {
    bool seen = false;
    int64_t start = INT64_MAX, end = INT64_MIN, has_init = 0, actions = 0, errors = 0;
    int64_t ctx_event = 0, ctx_ms = 0, ctx_from_init = 0;
    std::vector<int64_t> users;
  };
  std::map<int64_t, Want> want;
  std::map<int64_t, int64_t> user_first;
  std::set<std::pair<int64_t, int64_t>> memberships;  // (user, session)
  std::map<std::pair<int64_t, std::string>, std::pair<int64_t, std::string>> user_props;
  for (const EventRow& e : events) {
    Want& w = want[e.session];
    const bool is_init = e.type == static_cast<int64_t>(EventType::kInit);
    if (is_init) {
      w.start = w.has_init ? std::min(w.start, e.time) : e.time;
      w.has_init = 1;
    } else if (!w.has_init) {
      w.start = std::min(w.start, e.time);
    }
    w.end = std::max(w.end, e.time);
    ++w.actions;
    if (e.type == static_cast<int64_t>(EventType::kError)) ++w.errors;
    if ((is_init && (!w.ctx_from_init || e.time < w.ctx_ms)) ||
        (!is_init && e.carries && !w.ctx_from_init && (w.ctx_event == 0 || e.time >= w.ctx_ms))) {
      w.ctx_event = e.id;
      w.ctx_ms = e.time;
      w.ctx_from_init = is_init;
    }
    if (std::find(w.users.begin(), w.users.end(), e.user) == w.users.end())
      w.users.push_back(e.user);
    auto [it, added] = user_first.emplace(e.user, e.time);
    if (!added) it->second = std::min(it->second, e.time);
    memberships.insert({e.user, e.session});
    const bool props_type = is_init || e.type == static_cast<int64_t>(EventType::kProps) ||
                            e.type == static_cast<int64_t>(EventType::kUserId);
    if (props_type) {
      for (const auto& [k, v] : e.props) {
        auto [p, fresh] = user_props.try_emplace({e.user, k}, e.time, v);
        if (!fresh && e.time >= p->second.first) p->second = {e.time, v};
      }
    }
  }
  for (auto& [row, w] : want) {
    auto it = extended.find(row);
    if (it != extended.end()) w.end = std::max(w.end, it->second);
    w.end = std::max(w.end, w.start);
  }
  EXPECT_EQ(want.size(), sessions.size()) << "every session has a stored event, and only those";
  for (const auto& [row, s] : sessions) {
    SCOPED_TRACE("session " + s.name);
    ASSERT_TRUE(want.count(row)) << "a session without events";
    const Want& w = want[row];
    EXPECT_EQ(s.start, w.start);
    EXPECT_EQ(s.end, w.end);
    EXPECT_EQ(s.has_init, w.has_init);
    EXPECT_EQ(s.actions, w.actions);
    EXPECT_EQ(s.errors, w.errors);
    EXPECT_EQ(s.ctx_event, w.ctx_event);
    EXPECT_EQ(s.ctx_ms, w.ctx_ms);
    EXPECT_EQ(s.ctx_from_init, w.ctx_from_init);
    std::vector<int64_t> users;
    ByteReader r(s.users);
    while (r.ok() && !r.done()) users.push_back(static_cast<int64_t>(r.Varint()));
    EXPECT_EQ(users, w.users);
  }

  // Memberships.
  {
    std::set<std::pair<int64_t, int64_t>> got;
    for (const std::string& row : f.Rows("SELECT user, session FROM user_sessions")) {
      const auto bar = row.find('|');
      got.insert({std::stoll(row.substr(0, bar)), std::stoll(row.substr(bar + 1))});
    }
    EXPECT_EQ(got, memberships);
  }

  // Users: first event, latest end of their sessions; the apps' counts.
  std::map<int64_t, std::pair<int64_t, int64_t>> users;  // row -> (first, last)
  std::map<int64_t, int64_t> user_app, per_app;
  {
    auto q = db.Prepare("SELECT id, app, first_ms, last_ms FROM users");
    ASSERT_TRUE(q.ok());
    Status st;
    while (q->Step(&st)) {
      users[q->Int(0)] = {q->Int(2), q->Int(3)};
      user_app[q->Int(0)] = q->Int(1);
      ++per_app[q->Int(1)];
    }
    ASSERT_TRUE(st.ok());
  }
  EXPECT_EQ(users.size(), user_first.size()) << "every user has a stored event, and only those";
  std::map<int64_t, int64_t> user_last;
  for (const auto& [user, session] : memberships) {
    int64_t& last = user_last[user];
    last = std::max(last, want[session].end);
  }
  for (const auto& [row, fl] : users) {
    EXPECT_EQ(fl.first, user_first[row]) << "user " << row << " first";
    EXPECT_EQ(fl.second, user_last[row]) << "user " << row << " last";
  }
  for (const std::string& row : f.Rows("SELECT id, users FROM apps")) {
    const auto bar = row.find('|');
    EXPECT_EQ(std::stoll(row.substr(bar + 1)), per_app[std::stoll(row.substr(0, bar))])
        << "apps.users";
  }

  // Devices: install = the first session by start, then by id.
  std::map<int64_t, std::pair<int64_t, int64_t>> install;  // device -> (start, session)
  for (const auto& [row, s] : sessions) {
    auto [it, added] = install.try_emplace(s.device, s.start, row);
    if (!added && std::make_pair(s.start, row) < it->second) it->second = {s.start, row};
  }
  std::map<int64_t, int64_t> device_app;
  {
    auto q = db.Prepare("SELECT id, app, install_ms, install_session FROM devices");
    ASSERT_TRUE(q.ok());
    Status st;
    size_t n = 0;
    while (q->Step(&st)) {
      ++n;
      device_app[q->Int(0)] = q->Int(1);
      ASSERT_TRUE(install.count(q->Int(0))) << "a device without sessions";
      EXPECT_EQ(q->Int(2), install[q->Int(0)].first) << "device " << q->Int(0) << " install_ms";
      EXPECT_EQ(q->Int(3), install[q->Int(0)].second)
          << "device " << q->Int(0) << " install_session";
    }
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(n, install.size());
  }

  // Per-bucket counts.
  std::map<std::pair<int64_t, int64_t>, std::array<int64_t, 4>> counts;
  for (const auto& [device, in] : install)
    counts[{device_app[device], FloorDiv(in.first, kBucketMs)}][0]++;
  for (const auto& [user, first] : user_first)
    counts[{user_app[user], FloorDiv(first, kBucketMs)}][1]++;
  for (const auto& [row, s] : sessions) {
    auto& c = counts[{s.app, FloorDiv(s.start, kBucketMs)}];
    c[2]++;
    c[3] += (s.end - s.start) / 1000;
  }
  {
    std::map<std::pair<int64_t, int64_t>, std::array<int64_t, 4>> got;
    auto q = db.Prepare(
        "SELECT app, bucket, installs, new_users, sessions, session_seconds FROM bucket_counts");
    ASSERT_TRUE(q.ok());
    Status st;
    while (q->Step(&st)) {
      const std::array<int64_t, 4> c = {q->Int(2), q->Int(3), q->Int(4), q->Int(5)};
      if (c != std::array<int64_t, 4>{}) got[{q->Int(0), q->Int(1)}] = c;
    }
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(got, counts) << "bucket_counts";
  }

  // The latest value of each custom prop.
  {
    std::map<std::pair<int64_t, std::string>, std::pair<int64_t, std::string>> got;
    auto q = db.Prepare("SELECT user, key, time_ms, value FROM user_props");
    ASSERT_TRUE(q.ok());
    Status st;
    while (q->Step(&st))
      got[{q->Int(0), std::string(q->Text(1))}] = {q->Int(2), std::string(q->Text(3))};
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(got, user_props) << "user_props";
  }
}

// ---- A random event stream.

class StreamGen {
 public:
  explicit StreamGen(uint64_t seed) : rng_(seed) {}

  Event Next() {
    const int roll = Pick(100);
    if (roll < 7 && !history_.empty()) return history_[Pick(history_.size())];  // a resend
    if (roll < 16) {
      Event hb = Heartbeat(Time(), "d" + std::to_string(Pick(4)), "");
      hb.app_id = Pick(10) ? "app1" : "app2";
      if (Pick(10) < 7) hb.session_id = "s" + std::to_string(Pick(4));
      return hb;
    }
    const int device = Pick(4);
    static const EventType kTypes[] = {EventType::kInit,  EventType::kInit,  EventType::kEvent,
                                       EventType::kEvent, EventType::kEvent, EventType::kError,
                                       EventType::kView,  EventType::kProps, EventType::kUserId,
                                       EventType::kEvent};
    const EventType type = kTypes[Pick(std::size(kTypes))];
    std::string name;
    if (type == EventType::kEvent) name = "E" + std::to_string(Pick(3));
    if (type == EventType::kError) name = "TypeError";
    if (type == EventType::kView) name = "/page" + std::to_string(Pick(2));
    std::string client_id;
    if (Pick(100) >= 15) {
      const int id = ++next_id_;
      client_id = Pick(2) ? std::to_string(id) : "\"c" + std::to_string(id) + "\"";
    }
    Event e = Make(type, name, client_id, Time(), "d" + std::to_string(device),
                   "s" + std::to_string(Pick(4)));
    e.app_id = Pick(10) ? "app1" : "app2";
    // Mostly the device's own user; sometimes an anonymous user, or a user
    // of another device (two users in one session, one user on two devices).
    const int who = Pick(10);
    if (who < 6) {
      e.user_key = "user" + std::to_string(device);
      e.user_id = e.user_key;
      if (Pick(2)) e.anon_id = "anon" + std::to_string(device);
    } else if (who < 8) {
      e.user_key = "anon" + std::to_string(device);
      e.anon_id = e.user_key;
    } else {
      e.user_key = "user" + std::to_string((device + 1) % 4);
      e.user_id = e.user_key;
    }
    if (type == EventType::kInit || (type == EventType::kError && Pick(2)) || Pick(8) == 0) {
      static const char* const kPlatforms[] = {"Linux", "darwin", "win32", ""};
      e.platform = kPlatforms[Pick(4)];
      e.locale = Pick(3) ? "en-US" : "";
      e.version = Pick(3) ? "1." + std::to_string(Pick(3)) : "";
      e.country = Pick(2) ? "DE" : "";
      if (Pick(2)) e.total_ram = 4 + Pick(12);
    }
    if (type != EventType::kView && Pick(3)) {
      SetPayload(&e, "{\"plan\":\"" + std::string(Pick(2) ? "pro" : "free") +
                         "\",\"n\":" + std::to_string(Pick(5)) +
                         ",\"ok\":" + (Pick(2) ? "true" : "false") + ",\"nested\":{\"a\":1}}");
    }
    if (!client_id.empty()) history_.push_back(e);
    return e;
  }

  // Mostly increasing, with late events from up to an hour before.
  int64_t Time() {
    clock_ += Pick(90000);
    return Pick(5) ? clock_ : clock_ - Pick(3600000);
  }

  int Pick(size_t n) { return static_cast<int>(rng_() % n); }

 private:
  std::mt19937_64 rng_;
  int64_t clock_ = kT0;
  int next_id_ = 0;
  std::vector<Event> history_;
};

class EventWriterTest : public ::testing::TestWithParam<WriterCacheOptions> {};

TEST_P(EventWriterTest, EntityTablesEqualARecomputationFromTheEvents) {
  for (uint64_t seed : {1, 2, 3}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    File f(GetParam());
    Model model;
    StreamGen gen(seed);
    for (int batch = 0; batch < 25; ++batch) {
      std::vector<Event> events;
      for (int i = gen.Pick(30); i >= 0; --i) events.push_back(gen.Next());
      const std::vector<uint8_t> want = model.Apply(events);
      ASSERT_EQ(f.MustAppend(events), want) << "batch " << batch;
      if (batch % 6 == 5 || batch == 24) {
        ExpectConsistent(f, model, "after batch " + std::to_string(batch));
        if (HasFailure()) return;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(CacheSizes, EventWriterTest,
                         ::testing::Values(WriterCacheOptions{}, WriterCacheOptions{1, 1, 1},
                                           WriterCacheOptions{3, 2, 2}));

// ---- Deterministic cases.

class EventWriterCaseTest : public ::testing::Test {
 protected:
  std::vector<uint8_t> Append(const std::vector<Event>& events) {
    const std::vector<uint8_t> want = model_.Apply(events);
    std::vector<uint8_t> got = f_.MustAppend(events);
    EXPECT_EQ(got, want);
    return got;
  }
  std::string SessionRow(const std::string& device, const std::string& session) {
    auto rows = f_.Rows(
        "SELECT s.start_ms - " + std::to_string(kT0) + ", s.end_ms - " + std::to_string(kT0) +
        ", s.has_init FROM sessions s JOIN devices d ON d.id = s.device WHERE d.device_key = '" +
        device + "' AND s.session_key = '" + session + "'");
    return rows.empty() ? "none" : rows[0];
  }
  std::string Install(const std::string& device) {
    auto rows = f_.Rows("SELECT d.install_ms - " + std::to_string(kT0) +
                        ", s.session_key FROM devices d JOIN sessions s ON s.id = d.install_session"
                        " WHERE d.device_key = '" +
                        device + "'");
    return rows.empty() ? "none" : rows[0];
  }
  File f_;
  Model model_;
};

TEST_F(EventWriterCaseTest, LateEventsMoveTheStartAndTheInstall) {
  Append({Named("E", "1", kT0 + 10000, "dev1", "a"), Named("E", "2", kT0 + 20000, "dev1", "b")});
  EXPECT_EQ(Install("dev1"), "10000|a");
  // A late event moves b before a: b is the install now.
  Append({Named("E", "3", kT0 + 5000, "dev1", "b")});
  EXPECT_EQ(SessionRow("dev1", "b"), "5000|20000|0");
  EXPECT_EQ(Install("dev1"), "5000|b");
  // b's init arrives after its events and moves its start later: a is first again.
  Append({Init("4", kT0 + 15000, "dev1", "b")});
  EXPECT_EQ(SessionRow("dev1", "b"), "15000|20000|1");
  EXPECT_EQ(Install("dev1"), "10000|a");
  // An earlier init takes over; a later one does not.
  Append({Init("5", kT0 + 12000, "dev1", "b"), Init("6", kT0 + 14000, "dev1", "b")});
  EXPECT_EQ(SessionRow("dev1", "b"), "12000|20000|1");
  // An init later than every event: start and end there.
  Append({Named("E", "7", kT0 + 30000, "dev1", "c"), Init("8", kT0 + 40000, "dev1", "c")});
  EXPECT_EQ(SessionRow("dev1", "c"), "40000|40000|1");
  ExpectConsistent(f_, model_, "end");
}

TEST_F(EventWriterCaseTest, HeartbeatsWithAndWithoutSessionId) {
  Append({Init("1", kT0, "dev1", "a"), Init("2", kT0 + 5000, "dev1", "b")});
  Append({Heartbeat(kT0 + 60000, "dev1", "a")});
  EXPECT_EQ(SessionRow("dev1", "a"), "0|60000|1");
  Append({Heartbeat(kT0 + 70000, "dev1", "")});  // the latest session: b
  EXPECT_EQ(SessionRow("dev1", "b"), "5000|70000|1");
  // A late init moves a after b: a is the latest now, in the same batch.
  Append({Init("3", kT0 + 8000, "dev1", "a"), Init("0", kT0 - 1, "dev1", "a")});
  EXPECT_EQ(SessionRow("dev1", "a"), "-1|60000|1") << "the earliest init is the start";
  Append({Named("E", "4", kT0 + 1000, "dev1", "c"), Heartbeat(kT0 + 90000, "dev1", "")});
  EXPECT_EQ(SessionRow("dev1", "b"), "5000|90000|1");
  // Heartbeats of unknown sessions, devices or apps create nothing.
  Event other_app = Heartbeat(kT0 + 100000, "dev1", "a");
  other_app.app_id = "app9";
  Append({Heartbeat(kT0 + 100000, "dev9", ""), Heartbeat(kT0 + 100000, "dev1", "zz"), other_app});
  EXPECT_EQ(SessionRow("dev1", "zz"), "none");
  EXPECT_EQ(f_.Count("devices"), 1);
  EXPECT_EQ(f_.Count("apps"), 1);
  ExpectConsistent(f_, model_, "end");
}

TEST_F(EventWriterCaseTest, TwoUsersInOneSession) {
  // An anonymous user identifies half-way through a session.
  Event a1 = Init("1", kT0, "dev1", "s", "anon-1");
  a1.anon_id = "anon-1";
  Event id = Make(EventType::kUserId, "", "2", kT0 + 1000, "dev1", "s", "alice");
  id.user_id = "alice";
  id.anon_id = "anon-1";
  SetPayload(&id, R"({"plan":"pro"})");
  Event a2 = Named("E", "3", kT0 + 50000, "dev1", "s", "alice");
  a2.user_id = "alice";
  Append({a1, id});
  Append({a2});
  auto last = f_.Rows("SELECT user_key, first_ms - " + std::to_string(kT0) + ", last_ms - " +
                      std::to_string(kT0) + " FROM users ORDER BY id");
  // Both users' last seen is the session's end.
  EXPECT_EQ(last, (std::vector<std::string>{"anon-1|0|50000", "alice|1000|50000"}));
  EXPECT_EQ(f_.Rows("SELECT key, value FROM user_props"),
            (std::vector<std::string>{"plan|\"pro\""}));
  ExpectConsistent(f_, model_, "end");
}

TEST_F(EventWriterCaseTest, ResendsAndIdlessEvents) {
  const Event e = Named("E", "1", kT0);
  const Event idless = Named("E", "", kT0 + 1);
  EXPECT_EQ(Append({e, idless, e, idless}), (std::vector<uint8_t>{1, 1, 0, 1}));
  EXPECT_EQ(Append({idless, e}), (std::vector<uint8_t>{1, 0}));
  // Long runs: more rows than one insert statement holds.
  std::vector<Event> run;
  for (int i = 0; i < 200; ++i) run.push_back(Named("E", i % 3 ? std::to_string(i) : "", kT0 + i));
  Append(run);
  Append(run);
  ExpectConsistent(f_, model_, "end");
}

// A refused resend leaves no trace, even when it names a user the file does
// not know (an SDK that resends an event after the user identified).
TEST_F(EventWriterCaseTest, ResendUnderAnotherUserKeyCreatesNoUser) {
  Append({Named("E", "1", kT0 + 100000, "dev1", "s", "anon-1")});
  const int64_t users = f_.Count("users");
  const auto counts = f_.Rows("SELECT * FROM bucket_counts ORDER BY bucket");
  Event resend = Named("E", "1", kT0 + 100000, "dev1", "s", "alice");
  resend.user_id = "alice";
  EXPECT_EQ(Append({resend}), (std::vector<uint8_t>{0}));
  EXPECT_EQ(f_.Count("users"), users) << "a user row for an event that was not stored";
  EXPECT_EQ(f_.Rows("SELECT users FROM apps"), (std::vector<std::string>{"1"}));
  EXPECT_EQ(f_.Rows("SELECT * FROM bucket_counts ORDER BY bucket"), counts);

  // The same resend heading a run whose other event is new: the new user's
  // first event is the new one, not the refused resend.
  Event resend_bob = Named("E", "1", kT0 + 100000, "dev1", "s", "bob");
  Event fresh_bob = Named("E", "2", kT0 + 200000, "dev1", "s", "bob");
  EXPECT_EQ(Append({resend_bob, fresh_bob}), (std::vector<uint8_t>{0, 1}));
  EXPECT_EQ(
      f_.Rows("SELECT first_ms - " + std::to_string(kT0) + " FROM users WHERE user_key = 'bob'"),
      (std::vector<std::string>{"200000"}));
  ExpectConsistent(f_, model_, "end");
}

TEST_F(EventWriterCaseTest, TombstonedIdentitiesCreateNoRows) {
  Append({Init("1", kT0, "dev1", "s1")});
  const std::vector<std::string> before = {
      f_.Rows("SELECT count(*) FROM devices")[0], f_.Rows("SELECT count(*) FROM users")[0],
      f_.Rows("SELECT count(*) FROM sessions")[0], f_.Rows("SELECT users FROM apps")[0]};
  const auto counts = f_.Rows("SELECT * FROM bucket_counts ORDER BY bucket");

  // A deleted user's events (new device, session and user) come again.
  std::vector<Event> dead = {Init("10", kT0 + 5000, "dev2", "s9", "gone"),
                             Named("E", "11", kT0 + 6000, "dev2", "s9", "gone"),
                             Named("E", "12", kT0 + 7000, "dev1", "s1", "gone")};
  for (const Event& e : dead) {
    model_.Tombstone(e);
    auto ins = f_.db().Prepare("INSERT INTO tombstones(app, hash) VALUES(1, ?)");
    ASSERT_TRUE(ins.ok());
    ins->Bind(1, TombstoneHash(e.device_id, e.session_id, StoredIdent(EventIdentHash(e))));
    ASSERT_TRUE(ins->Run().ok());
  }
  f_.writer().NoteTombstones();
  EXPECT_EQ(Append(dead), (std::vector<uint8_t>{0, 0, 0}));
  EXPECT_EQ(
      (std::vector<std::string>{
          f_.Rows("SELECT count(*) FROM devices")[0], f_.Rows("SELECT count(*) FROM users")[0],
          f_.Rows("SELECT count(*) FROM sessions")[0], f_.Rows("SELECT users FROM apps")[0]}),
      before);
  EXPECT_EQ(f_.Rows("SELECT * FROM bucket_counts ORDER BY bucket"), counts);

  // Next to a stored event of the same (new) session: only its rows, and its
  // time alone sets the session and the user.
  Event alive = Named("E", "13", kT0 + 9000, "dev2", "s9", "gone");
  EXPECT_EQ(Append({dead[0], alive, dead[1]}), (std::vector<uint8_t>{0, 1, 0}));
  EXPECT_EQ(SessionRow("dev2", "s9"), "9000|9000|0");
  ExpectConsistent(f_, model_, "end");
}

// ---- Failed transactions.

// The file's content in a form independent of dictionary ids: a failed
// transaction may leave interned strings behind that take other ids later.
std::vector<std::string> Dump(File& f) {
  std::vector<std::string> out;
  StringDictionary dict;  // as the file has it: a body referring to an unwritten id shows
  EXPECT_TRUE(dict.Load(f.db()).ok());
  for (const char* sql : {
           "SELECT 'app', * FROM apps ORDER BY id",
           "SELECT 'device', * FROM devices ORDER BY id",
           "SELECT 'user', * FROM users ORDER BY id",
           "SELECT 'session', * FROM sessions ORDER BY id",
           "SELECT 'member', * FROM user_sessions ORDER BY 2, 3",
           "SELECT 'prop', * FROM user_props ORDER BY 2, 3",
           "SELECT 'count', * FROM bucket_counts ORDER BY 2, 3",
           "SELECT 'tomb', * FROM tombstones ORDER BY 2, 3",
           "SELECT 'seq', seq FROM sqlite_sequence WHERE name = 'events'",
       }) {
    for (std::string& row : f.Rows(sql)) out.push_back(std::move(row));
  }
  auto q = f.db().Prepare(
      "SELECT id, app, session, user, type, name, time_ms, ident, client_id, body FROM events "
      "ORDER BY id");
  EXPECT_TRUE(q.ok());
  Status st;
  while (q->Step(&st)) {
    const BodyParts parts = ParseBody(q->Blob(9));
    Event e;
    DecodeBodyInto(parts, dict, "<key>", "<anon>", &e);
    std::ostringstream s;
    s << "event|" << q->Int(0) << "|" << q->Int(1) << "|" << q->Int(2) << "|" << q->Int(3) << "|"
      << q->Int(4) << "|" << dict.Text(static_cast<uint32_t>(q->Int(5))) << "|" << q->Int(6) << "|"
      << (q->IsNull(7) ? "NULL" : std::to_string(q->Int(7))) << "|"
      << (q->Type(8) == SQLITE_INTEGER ? std::to_string(q->Int(8)) : std::string(q->Text(8))) << "|"
      << e.payload_json << "|" << e.user_id << "|" << e.anon_id << "|" << e.platform << "|"
      << e.locale << "|" << e.version << "|" << e.country << "|" << e.error_hash << "|"
      << (e.total_ram ? std::to_string(*e.total_ram) : "");
    out.push_back(s.str());
  }
  EXPECT_TRUE(st.ok());
  return out;
}

struct Failure {
  const char* name;
  const char* trigger;  // SQL creating trigger `boom`
};

class EventWriterFailureTest
    : public ::testing::TestWithParam<std::tuple<Failure, WriterCacheOptions>> {};

TEST_P(EventWriterFailureTest, AFailedAppendLeavesNoTrace) {
  const Failure& failure = std::get<0>(GetParam());
  StreamGen gen(42);
  std::vector<std::vector<Event>> before, after;
  for (int b = 0; b < 6; ++b) {
    before.emplace_back();
    for (int i = 0; i < 25; ++i) before.back().push_back(gen.Next());
  }
  // The failing batch: new app, device, session and user, and changes to
  // existing ones (starts moved, ends extended, new members, props, installs).
  std::vector<Event> failed;
  for (int i = 0; i < 30; ++i) failed.push_back(gen.Next());
  Event fresh = Init("f1", kT0 - 3600000, "d-new", "s-new", "u-new");
  SetPayload(&fresh, R"({"newkey":"newvalue"})");
  fresh.platform = "NewOS";
  failed.push_back(fresh);
  Event other_app = Named("brand-new-name", "f2", kT0 - 7200000, "d1", "s1", "user1");
  other_app.app_id = "app-new";
  failed.push_back(other_app);
  failed.push_back(Init("f3", kT0 - 100, "d0", "s0", "user0"));        // moves an early session
  failed.push_back(Heartbeat(kT0 + 99999999, "d1", ""));               // extends a latest session
  failed.push_back(Named("E0", "f4", kT0 + 50, "d2", "s3", "user3"));  // a new member
  // Afterwards: the failed events again (an SDK retrying) and more.
  for (int b = 0; b < 4; ++b) {
    after.emplace_back();
    for (int i = 0; i < 25; ++i) after.back().push_back(gen.Next());
  }
  after[1].insert(after[1].begin() + 5, failed.begin(), failed.end());

  File reference(std::get<1>(GetParam()));
  File tested(std::get<1>(GetParam()));
  Model model;
  for (const auto& batch : before) {
    const auto want = model.Apply(batch);
    EXPECT_EQ(reference.MustAppend(batch), want);
    EXPECT_EQ(tested.MustAppend(batch), want);
  }
  ASSERT_TRUE(tested.db().Exec(failure.trigger).ok()) << failure.trigger;
  std::vector<uint8_t> inserted = {7};
  Status st = tested.Append(failed, &inserted);
  ASSERT_FALSE(st.ok()) << failure.name << ": the injected failure did not happen";
  EXPECT_EQ(inserted, std::vector<uint8_t>(failed.size(), 0));
  ASSERT_TRUE(tested.db().Exec("DROP TRIGGER boom").ok());
  EXPECT_EQ(Dump(tested), Dump(reference)) << "the failed batch left something in the file";

  for (const auto& batch : after) {
    const auto want = model.Apply(batch);
    EXPECT_EQ(reference.MustAppend(batch), want);
    EXPECT_EQ(tested.MustAppend(batch), want) << failure.name;
  }
  EXPECT_EQ(Dump(tested), Dump(reference)) << failure.name;
  ExpectConsistent(tested, model, failure.name);
}

std::vector<Failure> Failures() {
  static const std::string kOnEvent =
      "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.time_ms = " + std::to_string(kT0 + 50) +
      " BEGIN SELECT RAISE(ABORT, 'injected'); END";
  return {
      {"the last event insert", kOnEvent.c_str()},
      {"a session update",
       "CREATE TRIGGER boom BEFORE UPDATE ON sessions WHEN NEW.session_key = 's-new'"
       " BEGIN SELECT RAISE(ABORT, 'injected'); END"},
      {"a device update",
       "CREATE TRIGGER boom BEFORE UPDATE ON devices WHEN NEW.device_key = 'd0'"
       " BEGIN SELECT RAISE(ABORT, 'injected'); END"},
      {"a user update",
       "CREATE TRIGGER boom BEFORE UPDATE ON users WHEN NEW.user_key = 'user3'"
       " BEGIN SELECT RAISE(ABORT, 'injected'); END"},
      {"the bucket counts",
       "CREATE TRIGGER boom BEFORE UPDATE ON bucket_counts BEGIN SELECT RAISE(ABORT, 'injected'); "
       "END"},
      {"the app's user count",
       "CREATE TRIGGER boom BEFORE UPDATE ON apps BEGIN SELECT RAISE(ABORT, 'injected'); END"},
      {"a user prop",
       "CREATE TRIGGER boom BEFORE INSERT ON user_props WHEN NEW.key = 'newkey'"
       " BEGIN SELECT RAISE(ABORT, 'injected'); END"},
      {"the dictionary (last before the commit)",
       "CREATE TRIGGER boom BEFORE INSERT ON strings BEGIN SELECT RAISE(ABORT, 'injected'); END"},
  };
}

INSTANTIATE_TEST_SUITE_P(Failures, EventWriterFailureTest,
                         ::testing::Combine(::testing::ValuesIn(Failures()),
                                            ::testing::Values(WriterCacheOptions{},
                                                              WriterCacheOptions{2, 1, 1})),
                         [](const auto& info) {
                           std::string name =
                               std::string(std::get<0>(info.param).name) +
                               (std::get<1>(info.param).sessions > 2 ? "_big" : "_small");
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace nucleon
