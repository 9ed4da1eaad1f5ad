// A user delete, through the public store: store A gets a stream of events and
// then deletes user k; store B gets the same stream without k's events. Every
// answer of the read API must then be the same in both ("as if the user never
// existed"), after more events, after a reopen (the tail replayed at start-up)
// and after a checkpoint. Streams are random: shared devices, shared sessions
// where an anonymous user identifies, users on several devices, inits with
// breakdown values, props, errors, views, resends, id-less events, late
// events. Heartbeats only go to devices of one user, since a session that the
// delete recomputes from its remaining events loses heartbeat extensions (the
// documented exception).
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/testing/temp_dir.h"
#include "store/event_store.h"
#include "store/payload_props.h"
#include "store/sqlite/sqlite_event_store.h"

namespace nucleon {
namespace {

constexpr int64_t kT0 = 1795651200000;  // 2026-11-26T00:00:00Z
constexpr int64_t kMin = 60000;
constexpr int64_t kHour = 60 * kMin;
constexpr int64_t kDay = 24 * kHour;
const char* const kApp = "app1";
const char* const kOtherApp = "app2";

// ---- The stream.

struct Scenario {
  std::vector<std::vector<Event>> batches;  // before the delete
  std::vector<std::vector<Event>> later;    // after it
  std::vector<std::string> users;           // every user key with events
  std::vector<std::string> devices;
  std::vector<std::string> event_names = {"init", "E0", "E1", "E2", "Missing"};
  std::vector<std::string> prop_keys = {"plan", "n", "ok", "score", "", "absent"};
};

class ScenarioGen {
 public:
  explicit ScenarioGen(uint64_t seed) : rng_(seed) {}

  Scenario Make() {
    Scenario sc;
    constexpr int kDevices = 7;
    // Who uses each device: one owner; device 5 is shared by two users (each
    // in sessions of their own); device 6 is a family device whose sessions
    // may hold two identified users.
    struct Session {
      int device;
      std::string key;
      std::vector<Event> events;
      std::set<std::string> users;
    };
    std::vector<Session> sessions;
    for (int s = 0; s < 28; ++s) {
      Session ses;
      ses.device = Pick(kDevices);
      ses.key = std::to_string(1000 + s);
      const int owner = ses.device == 5 ? Pick(2) : ses.device == 6 ? 2 : ses.device % 5;
      const int kind = Pick(10);  // 0-1: an anonymous user identifies; 2 (family device): two users
      const int64_t start = kT0 + static_cast<int64_t>(rng_() % (3 * kDay));
      int64_t t = start;
      const int n = 2 + Pick(12);
      const bool identifies = kind < 2;
      const int second = (owner + 2) % 5;
      for (int i = 0; i < n; ++i) {
        Event e;
        e.app_id = kApp;
        e.device_id = Device(ses.device);
        e.session_id = ses.key;
        e.time_ms = t;
        t += static_cast<int64_t>(rng_() % (6 * kMin));
        if (Pick(10))
          e.client_id =
              Pick(2) ? std::to_string(++next_id_) : "\"id" + std::to_string(++next_id_) + "\"";
        e.client_date = e.client_id.empty() ? "" : std::to_string(e.time_ms);
        // The user of this event.
        std::string user = "u" + std::to_string(owner);
        if (identifies && i < n / 2) user = "anon" + std::to_string(owner);
        if (ses.device == 6 && kind == 2 && i % 2) user = "u" + std::to_string(second);
        e.user_key = user;
        if (user.rfind("anon", 0) == 0) {
          e.anon_id = user;
        } else {
          e.user_id = user;
          if (identifies) e.anon_id = "anon" + std::to_string(owner);
        }
        if (i == 0 && Pick(10)) {
          e.type = EventType::kInit;
        } else if (identifies && i == n / 2) {
          e.type = EventType::kUserId;  // the identify call
        } else {
          static const EventType kTypes[] = {
              EventType::kEvent, EventType::kEvent, EventType::kEvent, EventType::kError,
              EventType::kView,  EventType::kProps, EventType::kInit};
          e.type = kTypes[Pick(std::size(kTypes))];
        }
        Fill(&e);
        ses.users.insert(user);
        ses.events.push_back(std::move(e));
      }
      sessions.push_back(std::move(ses));
    }
    // Devices used by one user only may get heartbeats.
    std::map<int, std::set<std::string>> device_users;
    for (const Session& s : sessions) device_users[s.device].insert(s.users.begin(), s.users.end());
    std::vector<Event> all;
    for (Session& s : sessions) {
      for (Event& e : s.events) all.push_back(e);
      if (device_users[s.device].size() != 1) continue;
      for (int h = Pick(3); h > 0; --h) {
        Event hb = Heartbeat(s.device,
                             s.events.back().time_ms + static_cast<int64_t>(rng_() % (20 * kMin)));
        if (Pick(3)) hb.session_id = s.key;
        all.push_back(hb);
      }
    }
    std::stable_sort(all.begin(), all.end(),
                     [](const Event& a, const Event& b) { return a.time_ms < b.time_ms; });
    // Late arrivals: some events move up to a dozen places back.
    for (size_t i = 0; i + 1 < all.size(); ++i) {
      if (Pick(8) == 0) std::swap(all[i], all[std::min(all.size() - 1, i + 1 + Pick(12))]);
    }
    // A second app sees some of the same devices, sessions and users (the
    // same texts, other rows): a delete in one app leaves the other alone.
    for (size_t i = all.size(); i-- > 0;) {
      if (Pick(3) == 0) {
        Event copy = all[i];
        copy.app_id = kOtherApp;
        all.insert(all.begin() + static_cast<std::ptrdiff_t>(i) + 1, std::move(copy));
      }
    }
    // Resends of stored events, later in the stream.
    const size_t n = all.size();
    for (int r = 0; r < 12; ++r) {
      const size_t from = Pick(n);
      if (all[from].type == EventType::kHeartbeat || all[from].client_id.empty()) continue;
      all.insert(
          all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), from + 1 + Pick(40))),
          all[from]);
    }
    // A fifth of the stream comes after the delete.
    const size_t cut = all.size() * 4 / 5;
    for (size_t i = 0; i < all.size();) {
      auto& target = i < cut ? sc.batches : sc.later;
      const size_t size = 1 + Pick(20);
      const size_t end = std::min(i + size, i < cut ? cut : all.size());
      target.emplace_back(all.begin() + static_cast<std::ptrdiff_t>(i),
                          all.begin() + static_cast<std::ptrdiff_t>(end));
      i = end;
    }
    std::set<std::string> users, devices;
    for (const Event& e : all) {
      if (e.type != EventType::kHeartbeat) users.insert(e.user_key);
      devices.insert(e.device_id);
    }
    sc.users.assign(users.begin(), users.end());
    sc.devices.assign(devices.begin(), devices.end());
    return sc;
  }

 private:
  static std::string Device(int d) { return "dev" + std::to_string(d); }

  Event Heartbeat(int device, int64_t t) {
    Event e;
    e.app_id = kApp;
    e.type = EventType::kHeartbeat;
    e.device_id = Device(device);
    e.user_key = e.device_id;
    e.time_ms = t;
    return e;
  }

  void Fill(Event* e) {
    static const char* const kPlatforms[] = {"Linux", "darwin", "Windows_NT", "iOS"};
    static const char* const kLocales[] = {"en-US", "de_DE.UTF-8", "fr", "C"};
    switch (e->type) {
      case EventType::kInit:
        e->platform = kPlatforms[Pick(4)];
        e->os_version = "10." + std::to_string(Pick(3));
        e->locale = kLocales[Pick(4)];
        e->version = "2." + std::to_string(Pick(3));
        e->module_version = "1.0.0";
        e->arch = Pick(2) ? "x64" : "arm64";
        e->client = "js";
        e->country = Pick(3) ? (Pick(2) ? "DE" : "US") : "";
        if (Pick(4)) e->total_ram = 2.0 + Pick(30) + (Pick(2) ? 0.5 : 0.0);
        Payload(e, "{\"plan\":\"" + std::string(Pick(2) ? "pro" : "free") +
                       "\",\"score\":" + std::to_string(Pick(4)) + "}");
        break;
      case EventType::kEvent:
        e->name = "E" + std::to_string(Pick(3));
        if (Pick(3)) {
          Payload(e, "{\"plan\":" + std::string(Pick(2) ? "\"120\"" : "120") + ",\"n\":" +
                         std::to_string(Pick(5)) + ".5,\"ok\":" + (Pick(2) ? "true" : "false") +
                         ",\"\":\"empty key\",\"nested\":{\"a\":[1]}}");
        }
        if (Pick(6) == 0) e->platform = "Linux";  // an event carrying context
        break;
      case EventType::kError:
        e->name = Pick(2) ? "TypeError" : "RangeError";
        e->platform = Pick(2) ? "Linux" : "";
        e->error_hash =
            Pick(2) ? "0123456789abcdef0123456789abcdef" : "fedcba9876543210fedcba9876543210";
        Payload(e, R"({"message":"boom","stack":"at x"})");
        break;
      case EventType::kView:
        e->name = "/page" + std::to_string(Pick(3));
        break;
      case EventType::kProps:
      case EventType::kUserId:
        Payload(e, "{\"plan\":\"" + std::string(Pick(2) ? "team" : "pro") +
                       "\",\"age\":" + std::to_string(20 + Pick(40)) + "}");
        break;
      default:
        break;
    }
  }

  static void Payload(Event* e, const std::string& text) {
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(text, ec);
    ASSERT_FALSE(ec) << text;
    e->payload_json = boost::json::serialize(v);
    e->props = ScalarProps(v.get_object());
  }

  int Pick(size_t n) { return static_cast<int>(rng_() % n); }

  std::mt19937_64 rng_;
  int next_id_ = 0;
};

// ---- Answers in a comparable form.

std::string Num(double d) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

std::string Show(const QuickGlanceCounts& c) {
  std::ostringstream s;
  s << "installs=" << c.installs << " users=" << c.users << " starts=" << c.app_starts
    << " errors=" << c.errors;
  return s.str();
}

template <typename M>
std::string ShowMap(const M& m) {
  std::ostringstream s;
  for (const auto& [k, v] : m) s << k << ":" << v << " ";
  return s.str();
}

std::string Show(const std::vector<ValueCount>& v) {
  std::ostringstream s;
  for (const ValueCount& c : v) s << "[" << c.value << "]=" << c.count << " ";
  return s.str();
}

std::string Show(const DailyAnalytics& d) {
  std::ostringstream s;
  s << "users=" << d.users << " installs=" << d.installs << "\n usage " << ShowMap(d.usage)
    << "\n new " << ShowMap(d.new_users) << "\n active " << ShowMap(d.active_users) << "\n hours ";
  for (const auto& [day, hours] : d.hours) {
    s << day << ":";
    for (int64_t h : hours) s << h << ",";
    s << " ";
  }
  s << "\n platforms " << Show(d.platforms) << "\n languages " << Show(d.languages)
    << "\n versions " << Show(d.versions) << "\n countries " << Show(d.countries) << "\n ram "
    << Show(d.ram) << "\n duration ";
  for (const auto& [day, avg] : d.avg_session_duration) s << day << ":" << Num(avg) << " ";
  return s.str();
}

std::string Show(const DailyCounts& c) {
  std::ostringstream s;
  for (const auto& [name, days] : c) s << name << "{" << ShowMap(days) << "} ";
  return s.str();
}

std::string Show(const std::vector<EventPropKeys>& v) {
  std::ostringstream s;
  for (const auto& e : v) {
    s << e.event << "/" << e.type << ":";
    for (const auto& k : e.keys) s << "[" << k << "]";
    s << " ";
  }
  return s.str();
}

std::string Show(const UserSummary& u) {
  std::ostringstream s;
  s << u.id << " " << u.user_key << " created=" << u.created_ms << " last=" << u.last_seen_ms
    << " devices:";
  for (const auto& d : u.devices) {
    s << " {" << d.device_id << " " << d.last_seen_ms << " " << d.platform.value_or("-") << " "
      << d.os_version.value_or("-") << " " << d.version.value_or("-") << "}";
  }
  s << " props:";
  for (const auto& [k, v] : u.props) s << " " << k << "=" << v;
  return s.str();
}

std::string Show(const UserList& l) {
  std::ostringstream s;
  s << "total=" << l.total;
  for (const auto& u : l.users) s << "\n " << Show(u);
  return s.str();
}

std::string Show(const UserDetails& d) {
  std::ostringstream s;
  s << Show(d.user);
  for (const auto& ses : d.sessions) {
    s << "\n session " << ses.session_id << " " << ses.device_id << " " << ses.start_ms << "-"
      << ses.end_ms << " actions=" << ses.actions << " errors=" << ses.errors;
  }
  return s.str();
}

std::string Show(const Event& e) {
  std::ostringstream s;
  s << static_cast<int>(e.type) << " [" << e.name << "] " << e.client_id << " " << e.device_id
    << "/" << e.session_id << " " << e.user_key << " uid=" << e.user_id << " anon=" << e.anon_id
    << " t=" << e.time_ms << " ctx=" << e.platform << "," << e.os_version << "," << e.locale << ","
    << e.version << "," << e.module_version << "," << e.arch << "," << e.client << "," << e.country
    << "," << (e.total_ram ? Num(*e.total_ram) : "-") << " payload=" << e.payload_json
    << " hash=" << e.error_hash;
  return s.str();
}

std::string Show(const EventView& v) { return Show(v.event) + (v.first_time ? " first" : ""); }

std::string Show(const std::vector<EventView>& v) {
  std::string s;
  for (const auto& e : v) s += "\n " + Show(e);
  return s;
}

std::string Show(const StoreStats& s) {
  std::ostringstream o;
  o << "apps=" << s.apps << " events=" << s.events << " sessions=" << s.sessions
    << " devices=" << s.devices << " users=" << s.users;
  return o.str();
}

template <typename T>
std::string Show(const Result<T>& r) {
  if (!r.ok()) return "error " + std::to_string(static_cast<int>(r.status().code()));
  return Show(*r);
}

using Answers = std::vector<std::pair<std::string, std::string>>;  // (question, answer)

// The sessions (user, session id, device) of a stream's events.
std::set<std::tuple<std::string, std::string, std::string>> SessionsOf(const Scenario& sc,
                                                                       const std::string& without,
                                                                       const std::string& app) {
  std::set<std::tuple<std::string, std::string, std::string>> out;
  for (const auto* batches : {&sc.batches, &sc.later}) {
    for (const auto& batch : *batches) {
      for (const Event& e : batch) {
        if (e.app_id == app && e.type != EventType::kHeartbeat && e.user_key != without) {
          out.insert({e.user_key, e.session_id, e.device_id});
        }
      }
    }
  }
  return out;
}

Answers AskApp(EventStore& store, const Scenario& sc, const std::string& deleted, const char* app) {
  Answers a;
  auto add = [&](std::string q, std::string answer) {
    a.emplace_back(std::move(q), std::move(answer));
  };
  const int64_t from = kT0 - kDay, to = kT0 + 5 * kDay;
  struct Range {
    int64_t from, to;
  };
  // The whole data, and ranges whose edges cut buckets and local days.
  const Range ranges[] = {{from, to},
                          {kT0 + 7 * kHour + 13 * kMin + 5, kT0 + 2 * kDay + 5 * kHour + 1234},
                          {kT0 + kDay + 59 * kMin, kT0 + kDay + 3 * kHour}};
  add("quick glance", Show(store.QuickGlance(app, from, to)));
  add("quick glance cut", Show(store.QuickGlance(app, ranges[1].from, ranges[1].to)));
  for (const Range& r : ranges) {
    for (int offset : {0, 60, 330, 7, -197, -600}) {
      const QueryRange q{r.from, r.to, offset};
      const std::string what =
          std::to_string(r.from) + ".." + std::to_string(r.to) + " @" + std::to_string(offset);
      add("daily " + what, Show(store.Daily(app, q)));
      add("events " + what, Show(store.EventCounts(app, q, false)));
      add("errors " + what, Show(store.EventCounts(app, q, true)));
      add("props " + what, Show(store.EventProps(app, q)));
      if (offset == 0 || offset == -197) {
        for (const std::string& ev : sc.event_names) {
          for (const std::string& key : sc.prop_keys) {
            add("attribute " + ev + "." + key + " " + what,
                Show(store.EventAttribute(app, q, ev, key)));
          }
        }
      }
    }
  }
  add("users", Show(store.Users(app, 1, 100, "")));
  add("users page 2", Show(store.Users(app, 2, 3, "")));
  for (const std::string& user : sc.users) {
    add("user " + user, Show(store.User(app, user)));
  }
  for (const auto& [user, session, device] : SessionsOf(sc, deleted, app)) {
    add("session " + user + " " + session, Show(store.SessionEvents(app, user, session, "")));
    add("session " + user + " " + session + " on " + device,
        Show(store.SessionEvents(app, user, session, device)));
  }
  {
    const std::vector<std::string> devices(sc.devices.begin(), sc.devices.end());
    auto contexts = store.DeviceContexts(app, devices);
    add("devices", contexts.ok() ? "" : contexts.status().ToString());
    for (size_t i = 0; contexts.ok() && i < devices.size(); ++i) {
      add("device " + devices[i], Show((*contexts)[i]));
    }
  }
  add("stats", Show(store.Stats(kApp)));
  std::string exported;
  Status st = store.Export(app, [&](const Event& e) { exported += Show(e) + "\n"; });
  add("export", st.ok() ? exported : "error " + st.ToString());
  return a;
}

// Every question, for both apps (the user is deleted from the first only).
Answers Ask(EventStore& store, const Scenario& sc, const std::string& deleted) {
  Answers a = AskApp(store, sc, deleted, kApp);
  for (auto& [q, answer] : AskApp(store, sc, "", kOtherApp))
    a.emplace_back("app2 " + q, std::move(answer));
  return a;
}

// ---- The stores.

std::unique_ptr<EventStore> Open(const std::string& dir) {
  SqliteStoreOptions opts;
  opts.fsync_full = false;
  opts.checkpoint_interval_s = 3600;  // checkpoints only when the test says so
  auto store = OpenSqliteEventStore(dir, opts);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  if (!store.ok()) return nullptr;
  // The read side loads in the background after opening.
  for (int i = 0; i < 2000 && !(*store)->Ready(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE((*store)->Ready());
  return std::move(store).value();
}

std::vector<uint8_t> Append(EventStore& store, const std::vector<Event>& events) {
  std::vector<uint8_t> inserted;
  Status st = store.Append(events, &inserted);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return inserted;
}

std::vector<Event> Without(const std::vector<Event>& batch, const std::string& user) {
  std::vector<Event> out;
  for (const Event& e : batch) {
    if (e.type == EventType::kHeartbeat || e.user_key != user || e.app_id != kApp) out.push_back(e);
  }
  return out;
}

// Compares two sets of answers; at most a few differences are reported in full.
void ExpectSameAnswers(const Answers& a, const Answers& b, const std::string& when) {
  ASSERT_EQ(a.size(), b.size());
  int reported = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    if (a[i].second != b[i].second && reported++ < 6) {
      ADD_FAILURE() << when << ": " << a[i].first << "\n  deleted: " << a[i].second
                    << "\n  never added: " << b[i].second;
    }
  }
  EXPECT_EQ(reported, 0) << when << ": answers that differ";
}

class UserDeleteTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(UserDeleteTest, EveryAnswerIsAsIfTheUserNeverExisted) {
  const uint64_t seed = GetParam();
  ScenarioGen gen(seed);
  const Scenario sc = gen.Make();
  // An identified user, and an anonymous one that identified later (or anyone).
  // (Users with events in the first app before the delete.)
  std::set<std::string> present;
  for (const auto& batch : sc.batches) {
    for (const Event& e : batch) {
      if (e.app_id == kApp && e.type != EventType::kHeartbeat) present.insert(e.user_key);
    }
  }
  std::vector<std::string> identified, anonymous;
  for (const std::string& u : present)
    (u.rfind("anon", 0) == 0 ? anonymous : identified).push_back(u);
  ASSERT_FALSE(identified.empty());
  std::vector<std::string> victims = {identified[seed % identified.size()]};
  if (!anonymous.empty()) victims.push_back(anonymous[seed % anonymous.size()]);

  for (const std::string& k : victims) {
    SCOPED_TRACE("seed " + std::to_string(seed) + ", deleting " + k);
    TempDir dir_a, dir_b;
    auto a = Open(dir_a.path());
    auto b = Open(dir_b.path());
    ASSERT_TRUE(a && b);
    for (size_t i = 0; i < sc.batches.size(); ++i) {
      Append(*a, sc.batches[i]);
      Append(*b, Without(sc.batches[i], k));
      // Checkpoints at different moments in the two stores.
      if (i % 4 == 1) {
        EXPECT_TRUE(a->Maintain().ok());
      }
      if (i % 3 == 2) {
        EXPECT_TRUE(b->Maintain().ok());
      }
    }
    // Reads first, so that every cache holds something the delete makes stale
    // (and to see that the comparison tells the user's data apart).
    const Answers before = Ask(*a, sc, k);
    {
      const Answers never = Ask(*b, sc, k);
      size_t differ = 0;
      for (size_t i = 0; i < before.size() && i < never.size(); ++i)
        differ += before[i].second != never[i].second;
      EXPECT_GT(differ, 10u) << "the user's data shows in many answers before the delete";
    }
    // As the API does before it queues the delete: the read-ahead changes
    // nothing, for a known user as for an unknown one.
    a->PrepareDeleteUser(kApp, k);
    a->PrepareDeleteUser(kApp, "nobody");
    ExpectSameAnswers(Ask(*a, sc, k), before, "after reading ahead");
    Status deleted = a->DeleteUser(kApp, k);
    ASSERT_TRUE(deleted.ok()) << deleted.ToString();
    EXPECT_EQ(a->DeleteUser(kApp, k).code(), StatusCode::kNotFound);
    EXPECT_EQ(a->User(kApp, k).status().code(), StatusCode::kNotFound);
    ExpectSameAnswers(Ask(*a, sc, k), Ask(*b, sc, k), "after the delete");
    if (HasFailure()) return;

    // Later events; the deleted user's events come again (an SDK resending)
    // but only those with an id are recognised as deleted.
    std::vector<Event> resent;
    for (const auto& batch : sc.batches) {
      for (const Event& e : batch) {
        if (e.app_id == kApp && e.user_key == k && e.HasIdentity()) resent.push_back(e);
      }
    }
    if (!resent.empty()) {
      EXPECT_EQ(Append(*a, resent), std::vector<uint8_t>(resent.size(), 0)) << "tombstoned";
    }
    for (const auto& batch : sc.later) {
      Append(*a, Without(batch, k));
      Append(*b, Without(batch, k));
    }
    ExpectSameAnswers(Ask(*a, sc, k), Ask(*b, sc, k), "after more events");
    if (HasFailure()) return;

    // Reopened: the events after each store's last checkpoint are replayed.
    a.reset();
    b.reset();
    a = Open(dir_a.path());
    b = Open(dir_b.path());
    ASSERT_TRUE(a && b);
    ExpectSameAnswers(Ask(*a, sc, k), Ask(*b, sc, k), "reopened");
    if (HasFailure()) return;

    // Checkpointed, then reopened again: everything from the rollups on disk.
    EXPECT_TRUE(a->Maintain().ok());
    EXPECT_TRUE(b->Maintain().ok());
    EXPECT_FALSE(a->MaintenanceDue(true)) << "nothing left to checkpoint";
    a.reset();
    b.reset();
    a = Open(dir_a.path());
    b = Open(dir_b.path());
    ASSERT_TRUE(a && b);
    ExpectSameAnswers(Ask(*a, sc, k), Ask(*b, sc, k), "checkpointed and reopened");
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, UserDeleteTest, ::testing::Values(1, 2, 3, 4));

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Users whose own texts (their id, a string value they sent) are unique, each
// with sessions on a device of their own; deleted one after the other while
// the others go on sending. `check(i)` runs after user i's delete.
class UserDeleteFilesTest : public ::testing::Test {
 protected:
  static constexpr int kUsers = 40;
  static std::string Secret(int i) { return "s3cr3t-value-" + std::to_string(1000 + i) + "-zq"; }
  static std::string UserKey(int i) { return "victim-" + std::to_string(1000 + i) + "-id"; }

  static std::vector<Event> EventsOf(int i, int round) {
    std::vector<Event> batch;
    for (int k = 0; k < 20; ++k) {
      Event e;
      e.app_id = kApp;
      e.type = k == 0 ? EventType::kInit : EventType::kEvent;
      e.name = k == 0 ? "" : "E";
      e.client_id = std::to_string(round * 100000 + i * 100 + k);
      e.client_date = std::to_string(kT0 + i * kMin + k);
      e.device_id = "device-" + std::to_string(i);
      e.session_id = std::to_string(round);
      e.user_key = UserKey(i);
      e.user_id = UserKey(i);
      e.time_ms = kT0 + i * kMin + round * kHour + k;
      e.payload_json = "{\"secret\":\"" + Secret(i) + "\",\"k\":" + std::to_string(k) + "}";
      e.props = ParsePayloadProps(e.payload_json);
      batch.push_back(std::move(e));
    }
    return batch;
  }

  void DeleteEachUser(const std::function<void(int)>& check) {
    auto store = Open(dir_.path());
    ASSERT_TRUE(store);
    for (int i = 0; i < kUsers; ++i) Append(*store, EventsOf(i, 0));
    ASSERT_TRUE(store->Maintain().ok());
    for (int i = 0; i < kUsers; ++i) {
      // More events of the users still there: the log has pages to copy
      // when the delete lands.
      std::vector<Event> more;
      for (int j = i + 1; j < kUsers; ++j) {
        for (Event& e : EventsOf(j, i + 1)) more.push_back(std::move(e));
      }
      Append(*store, more);
      ASSERT_TRUE(store->Maintain().ok());
      ASSERT_TRUE(store->DeleteUser(kApp, UserKey(i)).ok());
      // What the API shows first: none of the user's values.
      auto values =
          store->EventAttribute(kApp, QueryRange{kT0 - kDay, kT0 + 5 * kDay, 0}, "E", "secret");
      ASSERT_TRUE(values.ok());
      for (const ValueCount& v : *values) EXPECT_NE(v.value, Secret(i)) << "user " << i;
      check(i);
    }
  }

  std::string Db() const { return FileBytes(dir_.path() + "/events.db"); }
  std::string Wal() const { return FileBytes(dir_.path() + "/events.db-wal"); }

  TempDir dir_;
};

// The delete empties the write-ahead log (which holds the deleted rows' old
// pages). The store also copies the log into the database from a thread of
// its own, so deletes land at every moment of that copy.
TEST_F(UserDeleteFilesTest, EveryDeleteEmptiesTheWriteAheadLog) {
  int kept = 0;
  DeleteEachUser([&](int i) {
    const std::string wal = Wal();
    if (wal.empty()) return;
    ++kept;
    ADD_FAILURE() << "after deleting user " << i << " the write-ahead log still has " << wal.size()
                  << " bytes; the user's id is "
                  << (wal.find(UserKey(i)) == std::string::npos ? "not " : "")
                  << "in it, their value "
                  << (wal.find(Secret(i)) == std::string::npos ? "not " : "") << "in it";
  });
  EXPECT_EQ(kept, 0);
}

// Nothing the user sent remains in the database file: deleted rows are
// overwritten with zeros (secure_delete), and so must be every older copy of
// an aggregate that counted their values.
TEST_F(UserDeleteFilesTest, NoTextOfADeletedUserRemainsInTheDatabase) {
  std::vector<int> leaked;
  DeleteEachUser([&](int i) {
    if (!Wal().empty()) return;  // not yet copied (the test above)
    const std::string db = Db();
    EXPECT_EQ(db.find(UserKey(i)), std::string::npos)
        << "user " << i << ": their id is still in events.db";
    if (db.find(Secret(i)) != std::string::npos) leaked.push_back(i);
  });
  EXPECT_TRUE(leaked.empty()) << leaked.size() << " of " << kUsers
                              << " deleted users' values are still in events.db (first: user "
                              << (leaked.empty() ? -1 : leaked[0]) << ")";
}

}  // namespace
}  // namespace nucleon
