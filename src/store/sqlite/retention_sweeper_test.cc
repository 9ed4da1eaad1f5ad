// Retention on the embedded store: a store that removed its events before a
// cut answers every question exactly as a store that never received them, and
// the removal takes several bounded steps. The history includes users whose
// last seen came from a session they leave (shared, or heartbeat-extended).
#include "store/sqlite/retention_sweeper.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/testing/temp_dir.h"
#include "core/time_util.h"
#include "store/event_store.h"
#include "store/sqlite/sqlite_db.h"
#include "store/sqlite/sqlite_event_store.h"

namespace nucleon {
namespace {

constexpr int64_t kDayMs = 86400000;
constexpr char kApp[] = "app1";

std::unique_ptr<EventStore> OpenStore(
    const std::string& dir, size_t scan_buckets = SqliteStoreOptions().retention_scan_buckets) {
  SqliteStoreOptions options;
  options.fsync_full = false;
  options.retention_scan_buckets = scan_buckets;
  auto store = OpenSqliteEventStore(dir, options);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(store).value() : nullptr;
}

// Twelve days of a small app, at distinct instants: devices with several
// sessions (some across midnights), users that identify within a session
// (an anonymous key, then a user id), errors, props and page views.
std::vector<Event> History(int64_t now) {
  std::mt19937 rng(7);
  std::vector<Event> out;
  const int64_t begin = now - now % kDayMs - 11 * kDayMs;
  int64_t serial = 0;
  for (int device = 0; device < 12; ++device) {
    int64_t t = begin + device * 977000 + 13;
    for (int session = 0; session < 40 && t < now - 3600000; ++session) {
      const std::string dev = "dev-" + std::to_string(device);
      const std::string sid = std::to_string(1000 + session);
      const std::string anon = "anon-" + std::to_string(device);
      const std::string named = "user-" + std::to_string(device % 7);
      const int n = 3 + static_cast<int>(rng() % 12);
      for (int i = 0; i < n; ++i) {
        Event e;
        e.app_id = kApp;
        e.device_id = dev;
        e.session_id = sid;
        e.user_key = (session % 3 == 2 && i >= n / 2) ? named : anon;
        if (e.user_key == named) e.user_id = named;
        e.anon_id = anon;
        e.time_ms = t;
        e.client_id = std::to_string(++serial);
        e.client_date = std::to_string(t);
        if (i == 0) {
          e.type = EventType::kInit;
          e.platform = device % 2 ? "Linux" : "darwin";
          e.locale = device % 3 ? "en-GB" : "fr_FR";
          e.version = "1." + std::to_string(session % 3);
          e.country = device % 4 ? "DE" : "";
          e.total_ram = 8.0 + device;
          e.payload_json = "{\"plan\":\"" + std::string(device % 2 ? "pro" : "free") + "\"}";
          e.props = {{"plan", {PropValue::Kind::kString, device % 2 ? "pro" : "free"}}};
        } else if (i % 5 == 4) {
          e.type = EventType::kError;
          e.name = "uncaughtException";
          e.error_hash = "0123456789abcdef0123456789abcdef";
        } else if (i % 4 == 3) {
          e.type = EventType::kProps;
          e.payload_json = "{\"seen\":" + std::to_string(i) + "}";
          e.props = {{"seen", {PropValue::Kind::kNumber, std::to_string(i)}}};
        } else {
          e.type = EventType::kEvent;
          e.name = i % 2 ? "SAVED" : "OPENED";
          e.payload_json = "{\"size\":" + std::to_string(i % 3) + "}";
          e.props = {{"size", {PropValue::Kind::kNumber, std::to_string(i % 3)}}};
        }
        out.push_back(e);
        t += 1000 + static_cast<int64_t>(rng() % 400000);
      }
      t += 3600000 + static_cast<int64_t>(rng() % kDayMs);
    }
  }
  // Users whose last seen came from a session they leave: "shared" sent the
  // start of a session another user goes on with after the cut, "beaten" a
  // session all before the cut that a heartbeat extended past it; each has a
  // shorter session after the cut elsewhere.
  const int64_t cut = RetentionCutMs(now, 4);
  auto add = [&](const std::string& device, const std::string& session, const std::string& user,
                 EventType type, int64_t t) {
    Event e;
    e.app_id = kApp;
    e.device_id = device;
    e.session_id = session;
    e.user_key = user;
    e.type = type;
    e.name = type == EventType::kEvent ? "OPENED" : "";
    e.time_ms = t;
    e.client_id = std::to_string(++serial);
    out.push_back(e);
  };
  add("dev-shared", "1", "shared", EventType::kInit, cut - 3600000);
  add("dev-shared", "1", "other", EventType::kEvent, cut + 5 * 3600000);
  add("dev-shared-2", "1", "shared", EventType::kInit, cut + 3600000);
  add("dev-beaten", "1", "beaten", EventType::kInit, cut - 2 * 3600000);
  add("dev-beaten", "1", "", EventType::kHeartbeat, cut + 4 * 3600000);
  add("dev-beaten-2", "1", "beaten", EventType::kInit, cut + 3600000);
  // Stored in time order mostly, as SDKs send them; a few late ones.
  std::stable_sort(out.begin(), out.end(),
                   [](const Event& a, const Event& b) { return a.time_ms < b.time_ms; });
  std::rotate(out.begin() + 10, out.begin() + 40, out.begin() + 60);
  return out;
}

void AppendInBatches(EventStore& store, const std::vector<Event>& events) {
  for (size_t i = 0; i < events.size(); i += 50) {
    std::vector<Event> batch(events.begin() + i, events.begin() + std::min(events.size(), i + 50));
    std::vector<uint8_t> inserted;
    const Status st = store.Append(batch, &inserted);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
}

std::string Show(const UserSummary& u) {
  std::ostringstream o;
  o << u.id << " " << u.user_key << " created " << u.created_ms << " seen " << u.last_seen_ms;
  for (const DeviceSummary& d : u.devices) {
    o << " [" << d.device_id << " " << d.last_seen_ms << " " << d.platform.value_or("-") << " "
      << d.os_version.value_or("-") << " " << d.version.value_or("-") << "]";
  }
  for (const auto& [k, v] : u.props) o << " " << k << "=" << v;
  return o.str();
}

std::string Show(const EventView& v) {
  const Event& e = v.event;
  std::ostringstream o;
  o << static_cast<int>(e.type) << " " << e.name << " " << e.time_ms << " " << e.user_key << " "
    << e.device_id << " " << e.session_id << " " << e.platform << " " << e.locale << " "
    << e.version << " " << e.country << " " << e.payload_json << " " << v.first_time;
  return o.str();
}

// Every answer of `store`, as text.
std::string Answers(EventStore& store, int64_t now) {
  std::ostringstream o;
  auto stats = store.Stats(kApp);
  EXPECT_TRUE(stats.ok());
  o << "stats " << stats->events << " " << stats->sessions << " " << stats->devices << " "
    << stats->users << "\n";
  const int64_t from = now - 14 * kDayMs;
  for (const QueryRange& r : {QueryRange{from, now, 0}, QueryRange{from, now, 330},
                              QueryRange{now - 5 * kDayMs + 1234567, now - 2 * kDayMs, -300}}) {
    auto d = store.Daily(kApp, r);
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    o << "daily users " << d->users << " installs " << d->installs << "\n";
    for (const auto& [name, m] : std::map<std::string, const std::map<int64_t, int64_t>*>{
             {"usage", &d->usage}, {"new", &d->new_users}, {"active", &d->active_users}}) {
      o << name;
      for (const auto& [day, n] : *m) o << " " << day << ":" << n;
      o << "\n";
    }
    for (const auto& [day, hours] : d->hours) {
      o << "hours " << day;
      for (int64_t h : hours) o << " " << h;
      o << "\n";
    }
    for (const auto* list : {&d->platforms, &d->languages, &d->versions, &d->countries, &d->ram}) {
      o << "breakdown";
      for (const ValueCount& v : *list) o << " " << v.value << ":" << v.count;
      o << "\n";
    }
    o << "durations";
    for (const auto& [day, mean] : d->avg_session_duration) o << " " << day << ":" << mean;
    o << "\n";
    for (bool errors : {false, true}) {
      auto c = store.EventCounts(kApp, r, errors);
      EXPECT_TRUE(c.ok());
      for (const auto& [name, days] : *c) {
        o << (errors ? "error " : "event ") << name;
        for (const auto& [day, n] : days) o << " " << day << ":" << n;
        o << "\n";
      }
    }
    auto props = store.EventProps(kApp, r);
    EXPECT_TRUE(props.ok());
    for (const EventPropKeys& p : *props) {
      o << "props " << p.event << " " << p.type;
      for (const std::string& k : p.keys) o << " " << k;
      o << "\n";
    }
    for (const auto& [event, attr] : std::vector<std::pair<std::string, std::string>>{
             {"init", "plan"}, {"SAVED", "size"}, {"OPENED", "size"}}) {
      auto values = store.EventAttribute(kApp, r, event, attr);
      EXPECT_TRUE(values.ok());
      o << "attr " << event << " " << attr;
      for (const ValueCount& v : *values) o << " " << v.value << ":" << v.count;
      o << "\n";
    }
  }
  auto glance = store.QuickGlance(kApp, now - kDayMs, now);
  EXPECT_TRUE(glance.ok());
  o << "glance " << glance->installs << " " << glance->users << " " << glance->app_starts << " "
    << glance->errors << "\n";
  // Users, sorted by key (ties in last seen are ordered by creation, which
  // retention keeps and a fresh store would not know).
  auto users = store.Users(kApp, 1, 1000, "");
  EXPECT_TRUE(users.ok());
  o << "users " << users->total << "\n";
  std::map<std::string, UserSummary> by_key;
  for (const UserSummary& u : users->users) by_key[u.user_key] = u;
  for (const auto& [key, summary] : by_key) {
    o << "user " << Show(summary) << "\n";
    auto details = store.User(kApp, key);
    EXPECT_TRUE(details.ok());
    std::set<std::string> sessions;
    for (const SessionSummary& s : details->sessions) {
      o << "  session " << s.session_id << " " << s.device_id << " " << s.start_ms << " "
        << s.end_ms << " " << s.actions << " " << s.errors << "\n";
      sessions.insert(s.session_id);
    }
    for (const std::string& sid : sessions) {
      auto events = store.SessionEvents(kApp, key, sid, "");
      EXPECT_TRUE(events.ok());
      for (const EventView& v : *events) o << "    " << Show(v) << "\n";
    }
  }
  return o.str();
}

// The users that keep events have their first one found in the buckets after
// each step, through their sessions, or both (the scan stops after a few
// buckets): the answers are the same.
class RetentionSweeperScanTest : public ::testing::TestWithParam<size_t> {};

INSTANTIATE_TEST_SUITE_P(ScanBuckets, RetentionSweeperScanTest,
                         ::testing::Values(SqliteStoreOptions().retention_scan_buckets, 0, 3));

TEST_P(RetentionSweeperScanTest, AnswersAsIfTheRemovedEventsHadNeverBeenReceived) {
  const int64_t now = NowMs();
  if (now % kDayMs < 60000) GTEST_SKIP() << "a minute after midnight UTC: the days would move";
  const std::vector<Event> history = History(now);
  const int64_t cut = RetentionCutMs(now, 4);
  std::vector<Event> kept;
  for (const Event& e : history) {
    if (e.time_ms >= cut) kept.push_back(e);
  }
  ASSERT_GT(kept.size(), 50u);
  ASSERT_GT(history.size() - kept.size(), 200u);

  TempDir all_dir, kept_dir;
  auto all = OpenStore(all_dir.path(), GetParam());
  auto fresh = OpenStore(kept_dir.path());
  ASSERT_TRUE(all && fresh);
  AppendInBatches(*all, history);
  AppendInBatches(*fresh, kept);
  ASSERT_NE(Answers(*all, now), Answers(*fresh, now));

  RetentionPolicy policy;
  policy.default_days = 4;
  all->SetRetention(policy);
  int steps = 0;
  for (; steps < 10000 && all->MaintenanceDue(false); ++steps) {
    const Status st = all->Maintain();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  double removal_steps = 0;
  for (const StoreMetric& m : all->Metrics()) {
    if (m.name == "nucleon_retention_steps_total") removal_steps = m.value;
  }
  EXPECT_GE(removal_steps, 2) << "in several steps (at most 256 quarter hours each)";
  EXPECT_LE(removal_steps, steps);
  EXPECT_EQ(Answers(*all, now), Answers(*fresh, now));

  // Nothing of the removed days is left in the aggregates' tables.
  all.reset();
  SqliteDb db;
  ASSERT_TRUE(db.Open(all_dir.path() + "/events.db", false, true).ok());
  for (const std::string sql : {"SELECT count(*) FROM bucket_counts WHERE bucket < ?",
                                "SELECT count(*) FROM rollup_props WHERE bucket < ?",
                                "SELECT count(*) FROM events WHERE time_ms < ? * 900000",
                                "SELECT count(*) FROM user_props WHERE time_ms < ? * 900000"}) {
    auto q = db.Prepare(sql);
    ASSERT_TRUE(q.ok()) << sql;
    q->Bind(1, cut / 900000);
    Status st;
    ASSERT_TRUE(q->Step(&st)) << st.ToString();
    EXPECT_EQ(q->Int(0), 0) << sql;
  }
  // And the same after a reopen (the rollups on disk agree).
  all = OpenStore(all_dir.path());
  for (int i = 0; i < 300 && !all->Ready(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(Answers(*all, now), Answers(*fresh, now));
}

TEST(RetentionSweeperTest, EventsBeforeTheCutAreNotStoredOnceInForce) {
  TempDir dir;
  auto store = OpenStore(dir.path());
  ASSERT_TRUE(store);
  RetentionPolicy policy;
  policy.app_days[kApp] = 2;
  store->SetRetention(policy);
  (void)store->MaintenanceDue(false);  // the writer takes the cuts
  const int64_t now = NowMs();
  Event old;
  old.app_id = kApp;
  old.type = EventType::kInit;
  old.device_id = "d";
  old.session_id = "1";
  old.user_key = "d";
  old.client_id = "1";
  old.time_ms = RetentionCutMs(now, 2) - 1;
  Event recent = old;
  recent.client_id = "2";
  recent.time_ms = RetentionCutMs(now, 2);
  Event other_app = old;
  other_app.app_id = "app2";
  std::vector<uint8_t> inserted;
  const std::vector<Event> batch = {old, recent, other_app};
  ASSERT_TRUE(store->Append(batch, &inserted).ok());
  EXPECT_EQ(inserted, (std::vector<uint8_t>{0, 1, 1}));
}

}  // namespace
}  // namespace nucleon
