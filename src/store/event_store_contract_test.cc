// The EventStore contract, held against every backend through the factory
// (store/backend.h) and the interface alone: what a stored event, a resend, a
// context lookup, a user delete and a reopen must do, whatever keeps the data.
// A backend joins by adding itself to Backends() below. The numbers in detail
// are the golden and differential suites' business (tests/); these cases pin
// the interface's own promises.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/crypto.h"
#include "core/testing/temp_dir.h"
#include "core/time_util.h"
#include "store/backend.h"
#include "store/clickhouse/clickhouse_client.h"
#include "store/clickhouse/clickhouse_schema.h"
#include "store/clickhouse/testing/clickhouse_server.h"

namespace nucleon {
namespace {

constexpr int64_t kDayMs = 86400000;
constexpr int64_t kT0 = 1795685880000;  // 2026-11-26 06:58 UTC
constexpr char kApp[] = "contract-app";

struct Backend {
  std::string name;
  std::function<StoreConfig(const std::string& dir)> config;
};

// One clickhouse-server for the whole binary, started by the first test that
// needs it; each test gets a database of its own (named after its folder).
// Stopped (by its PID) when the binary exits.
ClickHouseServer* SharedClickHouse() {
  static ClickHouseServer server;
  static const bool started = [] {
    std::string error;
    if (!server.Start(&error)) ADD_FAILURE() << "clickhouse-server: " << error;
    return true;
  }();
  (void)started;
  return &server;
}

// A store on the shared test ClickHouse, in its own database.
StoreConfig ClickHouseConfig(const std::string& dir, const std::string& database) {
  StoreConfig config;
  config.backend = "clickhouse";
  config.data_dir = dir;
  config.clickhouse.urls = {SharedClickHouse()->url()};
  config.clickhouse.database = database;
  config.clickhouse.fsync_full = false;
  return config;
}

// Reads may answer Unavailable until the read side is loaded: waits for it
// (up to 30 s).
void WaitUntilReady(EventStore& store) {
  for (int i = 0; i < 3000 && !store.Ready(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// The statements that leave `version` the only schema version recorded, as
// a database of that release has it.
std::vector<std::string> RecordOnlyVersion(const ClickHouseTables& tables, int version) {
  return {
      "DROP TABLE " + tables("schema_versions"),
      "CREATE TABLE " + tables("schema_versions") +
          " (version UInt32, applied_ms Int64) ENGINE = MergeTree ORDER BY version",
      "INSERT INTO " + tables("schema_versions") + " VALUES (" + std::to_string(version) + ", 1)"};
}

std::vector<Backend> Backends() {
  std::vector<Backend> backends = {{"sqlite", [](const std::string& dir) {
                                      StoreConfig config;
                                      config.data_dir = dir;
                                      config.sqlite.fsync_full = false;
                                      return config;
                                    }}};
  if (ClickHouseServer::Available()) {
    backends.push_back({"clickhouse", [](const std::string& dir) {
                          const Sha256Digest d = Sha256(dir);
                          return ClickHouseConfig(dir, "contract_" + HexEncode(d.data(), 6));
                        }});
  }
  return backends;
}

Event Make(EventType type, const std::string& name, const std::string& id, int64_t time_ms,
           const std::string& device = "device-1", const std::string& session = "s1",
           const std::string& user = "user-1") {
  Event e;
  e.app_id = kApp;
  e.type = type;
  e.name = name;
  e.client_id = id;
  e.client_date = id.empty() ? "" : std::to_string(time_ms);
  e.device_id = device;
  e.session_id = session;
  e.user_key = user;
  e.user_id = user;
  e.time_ms = time_ms;
  return e;
}

Event Init(const std::string& id, int64_t time_ms, const std::string& device = "device-1",
           const std::string& session = "s1", const std::string& user = "user-1") {
  Event e = Make(EventType::kInit, "", id, time_ms, device, session, user);
  e.platform = "Linux";
  e.os_version = "6.18.44";
  e.locale = "en-GB";
  e.version = "2.1.0";
  return e;
}

class EventStoreContractTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    store_.reset();
    auto store = OpenEventStore(GetParam().config(dir_.path()));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    WaitUntilReady(*store_);
    ASSERT_TRUE(store_->Ready());
  }

  std::vector<uint8_t> Append(const std::vector<Event>& events) {
    std::vector<uint8_t> inserted;
    const Status st = store_->Append(events, &inserted);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return inserted;
  }

  StoreStats Stats() {
    auto stats = store_->Stats(kApp);
    EXPECT_TRUE(stats.ok()) << stats.status().ToString();
    return stats.ok() ? *stats : StoreStats{};
  }

  // One session of user-1 on device-1: an init and two events.
  std::vector<Event> Session() {
    return {Init("1", kT0), Make(EventType::kEvent, "SAVED", "2", kT0 + 1000),
            Make(EventType::kEvent, "SAVED", "3", kT0 + 2000)};
  }

  TempDir dir_;
  std::unique_ptr<EventStore> store_;
};

TEST_P(EventStoreContractTest, StoresEachEventOnceAndRecognisesResends) {
  EXPECT_EQ(Append(Session()), (std::vector<uint8_t>{1, 1, 1}));
  EXPECT_EQ(Append(Session()), (std::vector<uint8_t>{0, 0, 0})) << "a resend";
  // The same client id in another session is another event.
  EXPECT_EQ(Append({Make(EventType::kEvent, "SAVED", "2", kT0 + 3000, "device-1", "s2")}),
            (std::vector<uint8_t>{1}));
  // Without a client id nothing identifies a resend: stored every time.
  const Event anonymous = Make(EventType::kEvent, "OPENED", "", kT0 + 4000);
  EXPECT_EQ(Append({anonymous, anonymous}), (std::vector<uint8_t>{1, 1}));
  const StoreStats stats = Stats();
  EXPECT_EQ(stats.events, 6);
  EXPECT_EQ(stats.sessions, 2);
  EXPECT_EQ(stats.devices, 1);
  EXPECT_EQ(stats.users, 1);
}

TEST_P(EventStoreContractTest, ALargeBatchIsStoredOnceAndItsResendRecognised) {
  // As a group commit under load hands over: tens of thousands of events
  // with ids from many devices in one call.
  std::vector<Event> batch;
  for (int i = 0; i < 30000; ++i) {
    batch.push_back(Make(EventType::kEvent, "SAVED", std::to_string(i), kT0 + i,
                         "device-" + std::to_string(i % 2000), "s1",
                         "user-" + std::to_string(i % 500)));
  }
  const std::vector<uint8_t> all(batch.size(), 1), none(batch.size(), 0);
  // A backend that stores in the background (ClickHouse's forwarder) may
  // take a while for this much, several times longer under a sanitizer: the
  // counts are waited for, within a bound.
  auto stats_once_settled = [&] {
    StoreStats stats = Stats();
    for (int i = 0; i < 600 && stats.events < 30000; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      stats = Stats();
    }
    return stats;
  };
  EXPECT_EQ(Append(batch), all);
  EXPECT_EQ(stats_once_settled().events, 30000);
  EXPECT_EQ(Append(batch), none) << "the whole batch resent";
  const StoreStats stats = stats_once_settled();
  EXPECT_EQ(stats.events, 30000);
  EXPECT_EQ(stats.devices, 2000);
}

TEST_P(EventStoreContractTest, AnswersCountWhatWasStored) {
  Append(Session());
  Append({Init("9", kT0 + 5000, "device-2", "s9", "user-2")});
  const QueryRange day{kT0 - kT0 % kDayMs, kT0 - kT0 % kDayMs + kDayMs - 1, 0};
  const int64_t day_number = kT0 / kDayMs;

  auto glance = store_->QuickGlance(kApp, day.from_ms, day.to_ms);
  ASSERT_TRUE(glance.ok()) << glance.status().ToString();
  EXPECT_EQ(glance->users, 2);
  EXPECT_EQ(glance->app_starts, 2);
  EXPECT_EQ(glance->installs, 2);
  EXPECT_EQ(glance->errors, 0);

  auto daily = store_->Daily(kApp, day);
  ASSERT_TRUE(daily.ok()) << daily.status().ToString();
  EXPECT_EQ(daily->users, 2);
  EXPECT_EQ(daily->active_users[day_number], 2);

  auto counts = store_->EventCounts(kApp, day, /*errors=*/false);
  ASSERT_TRUE(counts.ok()) << counts.status().ToString();
  EXPECT_EQ((*counts)["SAVED"][day_number], 2);

  auto users = store_->Users(kApp, 1, 10, "");
  ASSERT_TRUE(users.ok()) << users.status().ToString();
  EXPECT_EQ(users->total, 2);
  ASSERT_EQ(users->users.size(), 2u);
  EXPECT_EQ(users->users[0].user_key, "user-2") << "newest last seen first";

  auto user = store_->User(kApp, "user-1");
  ASSERT_TRUE(user.ok()) << user.status().ToString();
  ASSERT_EQ(user->sessions.size(), 1u);
  EXPECT_EQ(user->sessions[0].session_id, "s1");
  EXPECT_EQ(store_->User(kApp, "nobody").status().code(), StatusCode::kNotFound);

  auto events = store_->SessionEvents(kApp, "user-1", "s1", "");
  ASSERT_TRUE(events.ok()) << events.status().ToString();
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].event.type, EventType::kInit) << "oldest first";
  EXPECT_EQ((*events)[2].event.name, "SAVED");

  // Another app sees none of it.
  auto other = store_->QuickGlance("another-app", day.from_ms, day.to_ms);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->users, 0);
  auto none = store_->Users("another-app", 1, 10, "");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->total, 0);
}

TEST_P(EventStoreContractTest, UsersSearchMatchesPartOfTheUserKeyInEitherCase) {
  Append({Init("1", kT0, "d1", "s1", "Ada.Lovelace"), Init("2", kT0 + 1000, "d2", "s2", "bob"),
          Init("3", kT0 + 2000, "d3", "s3", "ada-2"), Init("4", kT0 + 3000, "d4", "s4", "Zed")});
  auto found = store_->Users(kApp, 1, 10, "ADA");
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(found->total, 2);
  ASSERT_EQ(found->users.size(), 2u);
  EXPECT_EQ(found->users[0].user_key, "ada-2") << "newest last seen first";
  EXPECT_EQ(found->users[1].user_key, "Ada.Lovelace");
  auto middle = store_->Users(kApp, 1, 10, "love");
  ASSERT_TRUE(middle.ok());
  ASSERT_EQ(middle->users.size(), 1u);
  EXPECT_EQ(middle->users[0].user_key, "Ada.Lovelace");
  auto second_page = store_->Users(kApp, 2, 1, "a");
  ASSERT_TRUE(second_page.ok());
  EXPECT_EQ(second_page->total, 2) << "ada-2, Ada.Lovelace";
  ASSERT_EQ(second_page->users.size(), 1u);
  EXPECT_EQ(second_page->users[0].user_key, "Ada.Lovelace");
  // Many matches for a small page (a backend may then walk the users by last
  // seen rather than sort the matches): the same order.
  std::vector<std::string> walked;
  for (int page = 1; page <= 4; ++page) {
    auto one = store_->Users(kApp, page, 1, "D");
    ASSERT_TRUE(one.ok());
    EXPECT_EQ(one->total, 3);
    for (const UserSummary& u : one->users) walked.push_back(u.user_key);
  }
  EXPECT_EQ(walked, (std::vector<std::string>{"Zed", "ada-2", "Ada.Lovelace"}));
  auto none = store_->Users(kApp, 1, 10, "%");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->total, 0) << "no wildcards";
  EXPECT_TRUE(none->users.empty());
  auto all = store_->Users(kApp, 1, 10, "");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->total, 4);
}

TEST_P(EventStoreContractTest, ErrorGroupsCountUsersAndKeepTheLatestSample) {
  auto error = [](const std::string& name, const std::string& id, int64_t t,
                  const std::string& user, const std::string& message) {
    Event e = Make(EventType::kError, name, id, t, "dev-" + user, "s-" + user, user);
    e.payload_json = "{\"message\":\"" + message + "\",\"stack\":\"at f (a.js:1)\"}";
    e.error_hash = "0123456789abcdef0123456789abcdef";
    return e;
  };
  Append({Init("1", kT0, "dev-ann", "s-ann", "ann"),
          error("TypeError", "2", kT0 + 1000, "ann", "a"),
          error("TypeError", "3", kT0 + 2000, "ann", "b"),
          Init("4", kT0 + 3000, "dev-bo", "s-bo", "bo"),
          error("TypeError", "5", kT0 + 4000, "bo", "c"),
          error("RangeError", "6", kT0 + 5000, "bo", "d"),
          // The same time: the one stored later is the sample.
          error("RangeError", "8", kT0 + 5000, "ann", "e"),
          // Outside the range asked below.
          error("TypeError", "7", kT0 + 2 * kDayMs, "ann", "later")});
  const QueryRange range{kT0 - 1000, kT0 + kDayMs, 0};
  auto groups = store_->ErrorGroups(kApp, range);
  ASSERT_TRUE(groups.ok()) << groups.status().ToString();
  ASSERT_EQ(groups->size(), 2u);
  const ErrorGroup& t = (*groups)[0];
  EXPECT_EQ(t.name, "TypeError") << "most frequent first";
  EXPECT_EQ(t.count, 3);
  EXPECT_EQ(t.users, 2);
  EXPECT_EQ(t.first_ms, kT0 + 1000);
  EXPECT_EQ(t.last_ms, kT0 + 4000);
  EXPECT_EQ(t.sample_ms, kT0 + 4000);
  EXPECT_EQ(t.sample_user, "bo");
  EXPECT_EQ(t.sample_session, "s-bo");
  EXPECT_EQ(t.sample_device, "dev-bo");
  EXPECT_EQ(t.message, "c");
  EXPECT_EQ(t.stack, "at f (a.js:1)");
  const ErrorGroup& r = (*groups)[1];
  EXPECT_EQ(r.name, "RangeError");
  EXPECT_EQ(r.count, 2);
  EXPECT_EQ(r.users, 2);
  EXPECT_EQ(r.sample_user, "ann");
  EXPECT_EQ(r.message, "e");
  auto empty = store_->ErrorGroups("another-app", range);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  // After a delete, the user's errors are gone from every group.
  ASSERT_TRUE(store_->DeleteUser(kApp, "bo").ok());
  auto after = store_->ErrorGroups(kApp, range);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), 2u);
  EXPECT_EQ((*after)[0].count, 2);
  EXPECT_EQ((*after)[0].users, 1);
  EXPECT_EQ((*after)[0].message, "b");
  EXPECT_EQ((*after)[1].count, 1);
  EXPECT_EQ((*after)[1].message, "e");
}

TEST_P(EventStoreContractTest, SessionsPerDayAreTheOnesTheMeanDurationAverages) {
  const int64_t day0 = kT0 - kT0 % kDayMs, d0 = day0 / kDayMs;
  Append({// Day 0: 30 s and 10 s.
          Init("1", kT0, "dev-a", "s-a", "ann"),
          Make(EventType::kEvent, "SAVED", "2", kT0 + 30000, "dev-a", "s-a", "ann"),
          Init("3", kT0 + 60000, "dev-b", "s-b", "bo"),
          Make(EventType::kEvent, "SAVED", "4", kT0 + 70500, "dev-b", "s-b", "bo"),
          // Day 1 at 01:00 UTC (day 0 at UTC-2): 5 s.
          Init("5", day0 + kDayMs + 3600000, "dev-a", "s-c", "ann"),
          Make(EventType::kEvent, "SAVED", "6", day0 + kDayMs + 3605000, "dev-a", "s-c", "ann"),
          // Day 1 at 02:00 UTC, no init: it starts with its first event; 2 s.
          Make(EventType::kEvent, "SAVED", "7", day0 + kDayMs + 7200000, "dev-c", "s-d", "cy"),
          Make(EventType::kEvent, "SAVED", "8", day0 + kDayMs + 7202000, "dev-c", "s-d", "cy"),
          // Started the evening before the range: left out though it runs into it.
          Init("9", day0 - 3600000, "dev-b", "s-e", "bo"),
          Make(EventType::kEvent, "SAVED", "10", kT0 + 1000, "dev-b", "s-e", "bo")});
  auto sessions = [&](int64_t from, int64_t to, int offset) {
    auto days = store_->Sessions(kApp, QueryRange{from, to, offset});
    EXPECT_TRUE(days.ok()) << days.status().ToString();
    std::map<int64_t, std::pair<int64_t, int64_t>> out;
    if (days.ok()) {
      for (const auto& [d, s] : *days) out[d - d0] = {s.sessions, s.seconds};
    }
    return out;
  };
  using Days = std::map<int64_t, std::pair<int64_t, int64_t>>;
  const int64_t end = day0 + 2 * kDayMs - 1;
  EXPECT_EQ(sessions(day0, end, 0), (Days{{0, {2, 40}}, {1, {2, 7}}}));
  EXPECT_EQ(sessions(day0, end, -120), (Days{{0, {3, 45}}, {1, {1, 2}}}));
  EXPECT_EQ(sessions(kT0 + 1, end, 0), (Days{{0, {1, 10}}, {1, {2, 7}}})) << "a cut first day";
  EXPECT_EQ(sessions(day0, day0 + 3600000, 0), (Days{})) << "no session starts then";
  auto daily = store_->Daily(kApp, QueryRange{day0, end, 0});
  ASSERT_TRUE(daily.ok()) << daily.status().ToString();
  EXPECT_EQ(daily->avg_session_duration, (std::map<int64_t, double>{{d0, 20.0}, {d0 + 1, 3.5}}));
  auto other = store_->Sessions("another-app", QueryRange{day0, end, 0});
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->empty());
  // A deleted user's sessions are gone.
  ASSERT_TRUE(store_->DeleteUser(kApp, "bo").ok());
  EXPECT_EQ(sessions(day0, end, 0), (Days{{0, {1, 30}}, {1, {2, 7}}}));
}

TEST_P(EventStoreContractTest, ContextsComeBatchedInTheOrderAsked) {
  Append(Session());
  std::vector<Event> live = {Make(EventType::kEvent, "SAVED", "", kT0 + 6000),
                             Make(EventType::kEvent, "SAVED", "", kT0 + 7000, "device-9", "s-x")};
  auto views = store_->WithSessionContexts(live);
  ASSERT_TRUE(views.ok()) << views.status().ToString();
  ASSERT_EQ(views->size(), 2u);
  EXPECT_EQ((*views)[0].event.platform, "Linux") << "from the session's init";
  EXPECT_EQ((*views)[0].event.version, "2.1.0");
  EXPECT_EQ((*views)[1].event.platform, "") << "an unknown session: as sent";
  EXPECT_EQ((*views)[1].event.name, "SAVED");

  const std::vector<std::string> devices = {"device-unknown", "device-1"};
  auto contexts = store_->DeviceContexts(kApp, devices);
  ASSERT_TRUE(contexts.ok()) << contexts.status().ToString();
  ASSERT_EQ(contexts->size(), 2u);
  EXPECT_EQ((*contexts)[0].event.platform, "");
  EXPECT_EQ((*contexts)[1].event.platform, "Linux");
  EXPECT_EQ((*contexts)[1].event.os_version, "6.18.44");

  auto empty = store_->WithSessionContexts({});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST_P(EventStoreContractTest, ADeletedUserLeavesNoTraceAndIsNotStoredAgain) {
  Append(Session());
  Append({Init("9", kT0 + 5000, "device-2", "s9", "user-2")});
  store_->PrepareDeleteUser(kApp, "user-1");
  ASSERT_TRUE(store_->DeleteUser(kApp, "user-1").ok());
  EXPECT_EQ(store_->DeleteUser(kApp, "user-1").code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->User(kApp, "user-1").status().code(), StatusCode::kNotFound);
  StoreStats stats = Stats();
  EXPECT_EQ(stats.events, 1);
  EXPECT_EQ(stats.users, 1);
  const QueryRange day{kT0 - kT0 % kDayMs, kT0 - kT0 % kDayMs + kDayMs - 1, 0};
  auto glance = store_->QuickGlance(kApp, day.from_ms, day.to_ms);
  ASSERT_TRUE(glance.ok());
  EXPECT_EQ(glance->users, 1) << "aggregates included";
  auto counts = store_->EventCounts(kApp, day, false);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->count("SAVED"), 0u);

  // The SDK resends the batch it had sent: nothing comes back.
  EXPECT_EQ(Append(Session()), (std::vector<uint8_t>{0, 0, 0}));
  EXPECT_EQ(store_->User(kApp, "user-1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Stats().events, 1);
}

// "event/kind: key|key ..." per entry of EventProps, in the order given.
std::string DescribeProps(const std::vector<EventPropKeys>& props) {
  std::string out;
  for (const EventPropKeys& p : props) {
    out += p.event + "/" + p.type + ":";
    for (const std::string& k : p.keys) out += " [" + k + "]";
    out += "\n";
  }
  return out;
}

std::string DescribeCounts(const std::vector<ValueCount>& counts) {
  std::string out;
  for (const ValueCount& c : counts) out += "[" + c.value + "] " + std::to_string(c.count) + "\n";
  return out;
}

TEST_P(EventStoreContractTest, PropertyKeysAreListedPerEventAndKindWhateverTheirCharacters) {
  using Kind = PropValue::Kind;
  Event init = Init("1", kT0);
  init.payload_json = R"({"plan":"pro"})";
  init.props = {{"plan", {Kind::kString, "pro"}}};
  Event saved = Make(EventType::kEvent, "SAVED", "2", kT0 + 1000);
  saved.payload_json =
      R"({"a,1:b":3,"it's":"O'Brien","C:\\dir":"C:\\dir\\x","tab\there":true,"größe":1.5})";
  saved.props = {{"a,1:b", {Kind::kNumber, "3"}},
                 {"it's", {Kind::kString, "O'Brien"}},
                 {"C:\\dir", {Kind::kString, "C:\\dir\\x"}},
                 {"tab\there", {Kind::kBool, "true"}},
                 {"größe", {Kind::kNumber, "1.5"}}};
  Event again = Make(EventType::kEvent, "SAVED", "3", kT0 + 2000);
  again.payload_json = R"({"it's":"a\ttab"})";
  again.props = {{"it's", {Kind::kString, "a\ttab"}}};
  Event other = Make(EventType::kEvent, "SAVED", "4", kT0 + 3000, "device-2", "s2", "user-2");
  other.payload_json = R"({"only user-2":"x"})";
  other.props = {{"only user-2", {Kind::kString, "x"}}};
  Append({init, saved, again, other});
  const QueryRange day{kT0 - kT0 % kDayMs, kT0 - kT0 % kDayMs + kDayMs - 1, 0};

  auto props = store_->EventProps(kApp, day);
  ASSERT_TRUE(props.ok()) << props.status().ToString();
  EXPECT_EQ(DescribeProps(*props),
            "SAVED/boolean: [tab\there]\n"
            "SAVED/number: [a,1:b] [größe]\n"
            "SAVED/string: [C:\\dir] [it's] [only user-2]\n"
            "init/string: [plan]\n");
  auto values = store_->EventAttribute(kApp, day, "SAVED", "it's");
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  EXPECT_EQ(DescribeCounts(*values), "[O'Brien] 1\n[a\ttab] 1\n");
  values = store_->EventAttribute(kApp, day, "SAVED", "C:\\dir");
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  EXPECT_EQ(DescribeCounts(*values), "[C:\\dir\\x] 1\n");
  values = store_->EventAttribute(kApp, day, "init", "plan");
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  EXPECT_EQ(DescribeCounts(*values), "[pro] 1\n") << "the app start's";
  values = store_->EventAttribute(kApp, day, "SAVED", "only user-2");
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  EXPECT_EQ(DescribeCounts(*values), "[x] 1\n");
  values = store_->EventAttribute(kApp, QueryRange{kT0 + 3001, day.to_ms, 0}, "SAVED", "it's");
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  EXPECT_TRUE(values->empty()) << "outside the range";

  // A deleted user's keys go with its events.
  store_->PrepareDeleteUser(kApp, "user-2");
  ASSERT_TRUE(store_->DeleteUser(kApp, "user-2").ok());
  props = store_->EventProps(kApp, day);
  ASSERT_TRUE(props.ok()) << props.status().ToString();
  EXPECT_EQ(DescribeProps(*props),
            "SAVED/boolean: [tab\there]\n"
            "SAVED/number: [a,1:b] [größe]\n"
            "SAVED/string: [C:\\dir] [it's]\n"
            "init/string: [plan]\n");
  values = store_->EventAttribute(kApp, day, "SAVED", "only user-2");
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  EXPECT_TRUE(values->empty()) << "and its values";
  // Another app sees none of them.
  props = store_->EventProps("another-app", day);
  ASSERT_TRUE(props.ok());
  EXPECT_TRUE(props->empty());
  values = store_->EventAttribute("another-app", day, "SAVED", "it's");
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  EXPECT_TRUE(values->empty());
}

TEST_P(EventStoreContractTest, WhatWasAcknowledgedIsThereAfterAReopen) {
  Append(Session());
  ASSERT_TRUE(store_->DeleteUser(kApp, "user-1").ok());
  Append({Init("9", kT0 + 5000, "device-2", "s9", "user-2")});
  Open();
  const StoreStats stats = Stats();
  EXPECT_EQ(stats.events, 1);
  EXPECT_EQ(stats.users, 1);
  EXPECT_EQ(Append({Init("9", kT0 + 5000, "device-2", "s9", "user-2")}), (std::vector<uint8_t>{0}))
      << "a resend after the reopen";
  EXPECT_EQ(Append(Session()), (std::vector<uint8_t>{0, 0, 0})) << "still deleted";
  auto user = store_->User(kApp, "user-2");
  ASSERT_TRUE(user.ok()) << user.status().ToString();
  EXPECT_EQ(user->sessions.size(), 1u);
}

// Retention: every event before the cut goes, with every number it made; a
// session across the cut keeps its later events and starts at the first of
// them; an event dated before the cut that arrives later is not counted.
TEST_P(EventStoreContractTest, RetentionRemovesExactlyTheEventsBeforeTheCut) {
  const int64_t now = NowMs();
  const int64_t today = now - now % kDayMs;
  if (now - today < 60000) GTEST_SKIP() << "a minute after midnight UTC: the days would move";
  const int64_t old = today - 10 * kDayMs + 3600000;
  const int64_t before_cut = today - 5 * kDayMs + 3600000;
  Append({Init("1", old, "device-old", "s0", "user-old"),
          Make(EventType::kEvent, "OPENED", "2", old + 1000, "device-old", "s0", "user-old")});
  Append({Init("3", before_cut), Make(EventType::kEvent, "SAVED", "4", before_cut + 1000),
          Make(EventType::kEvent, "SAVED", "5", now - 3000)});
  Append({Init("6", now - 2000, "device-2", "s2", "user-2")});
  ASSERT_EQ(Stats().events, 6);

  RetentionPolicy policy;
  policy.app_days[kApp] = 3;  // today and the 3 days before it
  store_->SetRetention(policy);
  for (int i = 0; i < 1000 && store_->MaintenanceDue(false); ++i) {
    const Status st = store_->Maintain();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  StoreStats stats = Stats();
  EXPECT_EQ(stats.events, 2);
  EXPECT_EQ(stats.sessions, 2);
  EXPECT_EQ(stats.devices, 2);
  EXPECT_EQ(stats.users, 2);
  EXPECT_EQ(store_->User(kApp, "user-old").status().code(), StatusCode::kNotFound);
  auto user = store_->User(kApp, "user-1");
  ASSERT_TRUE(user.ok()) << user.status().ToString();
  EXPECT_EQ(user->user.created_ms, now - 3000) << "its first remaining event";
  ASSERT_EQ(user->sessions.size(), 1u);
  EXPECT_EQ(user->sessions[0].start_ms, now - 3000) << "the session starts after the cut now";
  EXPECT_EQ(user->sessions[0].end_ms, now - 3000);
  EXPECT_EQ(user->sessions[0].actions, 1);
  auto events = store_->SessionEvents(kApp, "user-1", "s1", "");
  ASSERT_TRUE(events.ok()) << events.status().ToString();
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].event.time_ms, now - 3000);

  const QueryRange all{today - 20 * kDayMs, now, 0};
  auto daily = store_->Daily(kApp, all);
  ASSERT_TRUE(daily.ok()) << daily.status().ToString();
  EXPECT_EQ(daily->users, 2);
  EXPECT_EQ(daily->installs, 2) << "device-1's install is its session's new start";
  EXPECT_EQ(daily->usage, (std::map<int64_t, int64_t>{{today / kDayMs, 1}}));
  EXPECT_EQ(daily->new_users, (std::map<int64_t, int64_t>{{today / kDayMs, 2}}));
  auto counts = store_->EventCounts(kApp, all, /*errors=*/false);
  ASSERT_TRUE(counts.ok()) << counts.status().ToString();
  EXPECT_EQ(*counts, (DailyCounts{{"SAVED", {{today / kDayMs, 1}}}}));
  auto glance = store_->QuickGlance(kApp, today - 20 * kDayMs, now);
  ASSERT_TRUE(glance.ok());
  EXPECT_EQ(glance->app_starts, 1);
  EXPECT_EQ(glance->users, 2);

  // Old events arriving now (an SDK's offline queue, a resend) are not counted.
  Append({Init("1", old, "device-old", "s0", "user-old"),
          Make(EventType::kEvent, "SAVED", "", before_cut + 5000)});
  stats = Stats();
  EXPECT_EQ(stats.events, 2);
  EXPECT_EQ(stats.users, 2);
  EXPECT_EQ(store_->User(kApp, "user-old").status().code(), StatusCode::kNotFound);
  // Events after the cut are stored as ever.
  EXPECT_EQ(Append({Make(EventType::kEvent, "SAVED", "7", now - 1000)}), (std::vector<uint8_t>{1}));
  EXPECT_EQ(Stats().events, 3);
}

INSTANTIATE_TEST_SUITE_P(Backends, EventStoreContractTest, ::testing::ValuesIn(Backends()),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param.name;
                         });

// Every backend answers the quick glance and the daily analytics alike for
// any range, however it computes them (ClickHouse reads rollups of whole
// 15-minute buckets and the events only at a range's ragged edges and for
// deleted users): checked against the embedded store on a fixture of
// sessions across bucket and day edges, shared by two users, with errors,
// events before their init, a delete, and the deleted user coming back.
std::string Describe(const DailyAnalytics& d) {
  std::string out = "users " + std::to_string(d.users) + " installs " + std::to_string(d.installs);
  const auto days = [&out](const char* name, const std::map<int64_t, int64_t>& m) {
    out += std::string("\n") + name + ":";
    for (const auto& [day, n] : m) out += " " + std::to_string(day) + "=" + std::to_string(n);
  };
  days("usage", d.usage);
  days("new", d.new_users);
  days("active", d.active_users);
  out += "\nhours:";
  for (const auto& [day, hours] : d.hours) {
    out += " " + std::to_string(day) + "=[";
    for (int64_t n : hours) out += std::to_string(n) + ",";
    out += "]";
  }
  for (const auto* values : {&d.platforms, &d.languages, &d.versions, &d.countries, &d.ram}) {
    out += "\nvalues:";
    for (const auto& v : *values) out += " " + v.value + "=" + std::to_string(v.count);
  }
  out += "\ndurations:";
  for (const auto& [day, s] : d.avg_session_duration) {
    out += " " + std::to_string(day) + "=" + std::to_string(s);
  }
  return out;
}

std::string Describe(const QuickGlanceCounts& g) {
  return "installs " + std::to_string(g.installs) + " users " + std::to_string(g.users) +
         " starts " + std::to_string(g.app_starts) + " errors " + std::to_string(g.errors);
}

TEST(BackendsAgreeTest, QuickGlanceDailyAndUsersAtAnyRangeAndOffset) {
  const std::vector<Backend> backends = Backends();
  if (backends.size() < 2) GTEST_SKIP() << "only one backend here";
  std::vector<TempDir> dirs(backends.size());
  std::vector<std::unique_ptr<EventStore>> stores;
  for (size_t i = 0; i < backends.size(); ++i) {
    auto store = OpenEventStore(backends[i].config(dirs[i].path()));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    stores.push_back(std::move(store).value());
    WaitUntilReady(*stores.back());
  }
  uint64_t seed = 12345;
  const auto next = [&seed](uint64_t bound) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<int64_t>((seed >> 33) % bound);
  };
  const auto append = [&](const std::vector<Event>& events) {
    for (auto& store : stores) {
      std::vector<uint8_t> inserted;
      const Status st = store->Append(events, &inserted);
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
  };
  const int64_t start = kT0 - kT0 % kDayMs - kDayMs;  // a UTC midnight
  int id = 0;
  std::vector<Event> pending;
  const auto session = [&](const std::string& device, const std::string& sess,
                           const std::string& user, const std::string& second_user, int64_t t) {
    std::vector<Event> events;
    // Now and then an event before the init (a late batch of the session).
    if (next(5) == 0) {
      events.push_back(Make(EventType::kEvent, "EARLY", std::to_string(++id), t - 1 - next(600000),
                            device, sess, user));
    }
    Event init = Init(std::to_string(++id), t, device, sess, user);
    init.platform = next(2) ? "Darwin" : "win32";
    init.locale = next(3) ? "en-US" : "fr_FR";
    init.version = "1." + std::to_string(next(3));
    events.push_back(init);
    const int n = 1 + static_cast<int>(next(8));
    for (int k = 0; k < n; ++k) {
      t += next(900000);  // up to 15 minutes apart: sessions cross buckets
      const bool other = !second_user.empty() && k >= n / 2;
      events.push_back(Make(next(6) == 0 ? EventType::kError : EventType::kEvent, "E",
                            std::to_string(++id), t, device, sess, other ? second_user : user));
    }
    pending.insert(pending.end(), events.begin(), events.end());
  };
  for (int s = 0; s < 80; ++s) {
    const std::string user = "user-" + std::to_string(next(25));
    const std::string device = "device-" + std::to_string(next(35));
    const std::string second = next(6) == 0 ? "user-" + std::to_string(next(25)) : "";
    session(device, "s" + std::to_string(s), user, second, start + next(3 * kDayMs));
  }
  // user-3 shares a session with user-4 (deleted below).
  session("device-90", "shared", "user-4", "user-3", start + kDayMs + 123456);
  append(pending);

  std::vector<std::pair<QueryRange, std::string>> ranges;
  for (int r = 0; r < 16; ++r) {
    const int64_t from = start - 3600000 + next(3 * kDayMs);
    const int64_t length = r % 4 == 0 ? 60000 + next(1800000) : next(2 * kDayMs);
    static constexpr int kOffsets[] = {0, 330, -300, 345, 7, -720, 60};
    ranges.push_back({{from, from + length, kOffsets[r % std::size(kOffsets)]}, ""});
  }
  ranges.push_back({{start, start + 3 * kDayMs - 1, 0}, "whole days"});
  ranges.push_back({{start, start + 3 * kDayMs - 1, 7}, "whole days, an offset off the buckets"});
  const auto compare = [&](const std::string& when) {
    for (const auto& [range, note] : ranges) {
      const std::string what = when + " range [" + std::to_string(range.from_ms - start) + ", " +
                               std::to_string(range.to_ms - start) + "] offset " +
                               std::to_string(range.utc_offset_min) + " " + note;
      auto first = stores[0]->Daily(kApp, range);
      ASSERT_TRUE(first.ok()) << first.status().ToString();
      auto glance = stores[0]->QuickGlance(kApp, range.from_ms, range.to_ms);
      ASSERT_TRUE(glance.ok()) << glance.status().ToString();
      for (size_t i = 1; i < stores.size(); ++i) {
        auto other = stores[i]->Daily(kApp, range);
        ASSERT_TRUE(other.ok()) << backends[i].name << ": " << other.status().ToString();
        EXPECT_EQ(Describe(*other), Describe(*first)) << backends[i].name << " daily, " << what;
        auto other_glance = stores[i]->QuickGlance(kApp, range.from_ms, range.to_ms);
        ASSERT_TRUE(other_glance.ok()) << other_glance.status().ToString();
        EXPECT_EQ(Describe(*other_glance), Describe(*glance))
            << backends[i].name << " quick glance, " << what;
      }
      // Several periods at once (the range, the span as long before it, and
      // the range again) answer as each alone.
      const int64_t length = range.to_ms - range.from_ms + 1;
      const TimeSpan periods[] = {{range.from_ms, range.to_ms},
                                  {range.from_ms - length, range.from_ms - 1},
                                  {range.from_ms, range.to_ms}};
      auto before = stores[0]->QuickGlance(kApp, periods[1].from_ms, periods[1].to_ms);
      ASSERT_TRUE(before.ok()) << before.status().ToString();
      for (size_t i = 0; i < stores.size(); ++i) {
        auto all = stores[i]->QuickGlances(kApp, periods);
        ASSERT_TRUE(all.ok()) << all.status().ToString();
        ASSERT_EQ(all->size(), 3u);
        EXPECT_EQ(Describe((*all)[0]), Describe(*glance))
            << backends[i].name << " periods, " << what;
        EXPECT_EQ(Describe((*all)[1]), Describe(*before))
            << backends[i].name << " periods, the one before, " << what;
        EXPECT_EQ(Describe((*all)[2]), Describe(*glance))
            << backends[i].name << " periods, " << what;
      }
    }
  };
  // Users list pages (last seen, then creation): users last seen at the
  // same moment, and one last seen long before the others.
  pending.clear();
  for (int u = 40; u < 46; ++u) {
    pending.push_back(Make(
        EventType::kEvent, "TIED", std::to_string(++id), start + 2 * kDayMs + (u < 43 ? 777 : 888),
        "device-t" + std::to_string(u), "t" + std::to_string(u), "user-" + std::to_string(u)));
  }
  pending.push_back(
      Init(std::to_string(++id), start - 100 * kDayMs, "device-old", "old", "user-old"));
  append(pending);
  const auto describe_users = [](const UserList& list) {
    std::string out = "total " + std::to_string(list.total) + "\n";
    for (const UserSummary& u : list.users) {
      out += u.user_key + " " + u.id + " created " + std::to_string(u.created_ms) + " seen " +
             std::to_string(u.last_seen_ms) + " devices";
      for (const DeviceSummary& d : u.devices) {
        out += " " + d.device_id + "@" + std::to_string(d.last_seen_ms) + "/" +
               d.platform.value_or("-") + "/" + d.version.value_or("-");
      }
      for (const auto& [k, v] : u.props) out += " " + k + "=" + v;
      out += "\n";
    }
    return out;
  };
  const auto compare_users = [&](const std::string& when) {
    for (const std::string search : {"", "user-4", "SER-1", "-3", "nobody"}) {
      for (const int64_t limit : {int64_t{1}, int64_t{4}, int64_t{100}}) {
        for (int64_t page = 1; page <= 60; ++page) {
          auto first = stores[0]->Users(kApp, page, limit, search);
          ASSERT_TRUE(first.ok()) << first.status().ToString();
          for (size_t i = 1; i < stores.size(); ++i) {
            auto other = stores[i]->Users(kApp, page, limit, search);
            ASSERT_TRUE(other.ok()) << backends[i].name << ": " << other.status().ToString();
            EXPECT_EQ(describe_users(*other), describe_users(*first))
                << backends[i].name << " users, " << when << " search '" << search << "' page "
                << page << " limit " << limit;
          }
          if (first->users.empty()) break;
        }
      }
    }
  };
  compare("as stored:");
  compare_users("as stored:");
  for (auto& store : stores) ASSERT_TRUE(store->DeleteUser(kApp, "user-3").ok());
  compare("after deleting user-3:");
  compare_users("after deleting user-3:");
  // user-3 comes back: a new session, and an event in the shared one.
  pending.clear();
  session("device-91", "again", "user-3", "", start + 2 * kDayMs + 5000);
  pending.push_back(Make(EventType::kEvent, "LATE", std::to_string(++id), start + kDayMs + 200000,
                         "device-90", "shared", "user-3"));
  append(pending);
  compare("after user-3 came back:");
  compare_users("after user-3 came back:");
}

// The catalog's promises, against every backend's catalog: tokens listed by
// prefix and revoked, and the dashboard's accounts kept, changed and removed.
class CatalogContractTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    auto catalog = OpenCatalog(GetParam().config(dir_.path()));
    ASSERT_TRUE(catalog.ok()) << catalog.status().ToString();
    catalog_ = std::move(catalog).value();
  }
  TempDir dir_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_P(CatalogContractTest, ListsAnAppsTokensByPrefixAndRevokedOnes) {
  auto app = catalog_->CreateApp("one");
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  auto other = catalog_->CreateApp("two");
  ASSERT_TRUE(other.ok());
  auto second = catalog_->CreateToken(app->app_id);
  ASSERT_TRUE(second.ok());
  auto tokens = catalog_->ListTokens(app->app_id);
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  ASSERT_EQ(tokens->size(), 2u) << "not the other app's";
  for (const TokenInfo& t : *tokens) {
    EXPECT_EQ(t.prefix.size(), kTokenPrefixChars);
    EXPECT_FALSE(t.revoked_ms.has_value());
  }
  const std::string first_prefix = app->token.substr(0, kTokenPrefixChars);
  EXPECT_TRUE((*tokens)[0].prefix == first_prefix || (*tokens)[1].prefix == first_prefix);
  auto revoked = catalog_->RevokeTokens(first_prefix);
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(*revoked, 1);
  tokens = catalog_->ListTokens(app->app_id);
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), 2u);
  for (const TokenInfo& t : *tokens) {
    EXPECT_EQ(t.revoked_ms.has_value(), t.prefix == first_prefix) << t.prefix;
  }
  EXPECT_EQ(catalog_->ListTokens("missing").status().code(), StatusCode::kNotFound);
}

TEST_P(CatalogContractTest, KeepsChangesAndRemovesAccounts) {
  ASSERT_TRUE(catalog_->AddAccount(Account{"ann@example.com", "admin", {}, "hash-1", 1000}).ok());
  ASSERT_TRUE(
      catalog_->AddAccount(Account{"bo@example.com", "viewer", {"app-1", "app-2"}, "hash-2", 2000})
          .ok());
  EXPECT_EQ(catalog_->AddAccount(Account{"bo@example.com", "admin", {}, "hash-3", 3000}).code(),
            StatusCode::kInvalidArgument)
      << "taken";
  auto all = catalog_->ListAccounts();
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].email, "ann@example.com") << "by email";
  EXPECT_EQ((*all)[1].apps, (std::vector<std::string>{"app-1", "app-2"}));
  EXPECT_EQ((*all)[1].password_hash, "hash-2");
  EXPECT_EQ((*all)[1].created_ms, 2000);

  auto changed = catalog_->UpdateAccount("bo@example.com", "viewer", {"app-3"});
  ASSERT_TRUE(changed.ok() && *changed);
  auto bo = catalog_->FindAccount("bo@example.com");
  ASSERT_TRUE(bo.ok() && bo->has_value());
  EXPECT_EQ((*bo)->apps, (std::vector<std::string>{"app-3"}));
  EXPECT_EQ((*bo)->password_hash, "hash-2") << "unchanged";
  ASSERT_TRUE(*catalog_->UpdateAccount("bo@example.com", "admin", {"app-3"}));
  bo = catalog_->FindAccount("bo@example.com");
  EXPECT_EQ((*bo)->role, "admin");
  EXPECT_TRUE((*bo)->apps.empty()) << "an admin sees every app";
  ASSERT_TRUE(*catalog_->SetPasswordHash("bo@example.com", "hash-4"));
  bo = catalog_->FindAccount("bo@example.com");
  EXPECT_EQ((*bo)->password_hash, "hash-4");
  EXPECT_EQ((*bo)->created_ms, 2000);
  EXPECT_FALSE(*catalog_->UpdateAccount("nobody@example.com", "viewer", {}));

  ASSERT_TRUE(*catalog_->RemoveAccount("bo@example.com"));
  EXPECT_FALSE(*catalog_->RemoveAccount("bo@example.com"));
  EXPECT_FALSE(catalog_->FindAccount("bo@example.com")->has_value());
  EXPECT_EQ(catalog_->ListAccounts()->size(), 1u);
  // Added again after a removal: a new account.
  ASSERT_TRUE(catalog_->AddAccount(Account{"bo@example.com", "viewer", {}, "hash-5", 5000}).ok());
  EXPECT_EQ((*catalog_->FindAccount("bo@example.com"))->password_hash, "hash-5");

  // Another connection (another node, the admin CLI) sees the same.
  auto again = OpenCatalog(GetParam().config(dir_.path()));
  ASSERT_TRUE(again.ok());
  auto seen = (*again)->ListAccounts();
  ASSERT_TRUE(seen.ok());
  ASSERT_EQ(seen->size(), 2u);
  EXPECT_EQ((*seen)[1].password_hash, "hash-5");
}

INSTANTIATE_TEST_SUITE_P(Backends, CatalogContractTest, ::testing::ValuesIn(Backends()),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param.name;
                         });

// A ClickHouse database made by the release before accounts (schema version
// 3: no accounts table) gains the table when a node opens it, once, and keeps
// working; opening it again changes nothing.
TEST(ClickHouseSchemaTest, AVersion3DatabaseGainsTheAccountsTable) {
  if (!ClickHouseServer::Available()) GTEST_SKIP() << "clickhouse-server is not installed";
  ClickHouseStoreOptions options;
  options.urls = {SharedClickHouse()->url()};
  options.database = "schema_upgrade";
  auto client = ClickHouseClient::Create(ClientOptionsFor(options));
  ASSERT_TRUE(client.ok());
  const ClickHouseTables tables(options);
  ASSERT_TRUE(EnsureClickHouseSchema(**client, tables).ok());
  // Back to version 3: without the accounts table, version rows up to 3.
  std::vector<std::string> back = {"DROP TABLE " + tables("accounts")};
  for (std::string& sql : RecordOnlyVersion(tables, 3)) back.push_back(std::move(sql));
  for (const std::string& sql : back) ASSERT_TRUE((*client)->Execute(sql).ok()) << sql;
  StoreConfig config;
  config.backend = "clickhouse";
  config.clickhouse = options;
  auto catalog = OpenCatalog(config);
  ASSERT_TRUE(catalog.ok()) << catalog.status().ToString();
  ASSERT_TRUE((*catalog)->AddAccount(Account{"ann@example.com", "admin", {}, "hash", 1}).ok());
  auto again = OpenCatalog(config);
  ASSERT_TRUE(again.ok());
  auto accounts = (*again)->ListAccounts();
  ASSERT_TRUE(accounts.ok()) << accounts.status().ToString();
  EXPECT_EQ(accounts->size(), 1u);
  auto versions = (*client)->Execute("SELECT count(), max(version) FROM " +
                                     tables("schema_versions") + " FORMAT TabSeparated");
  ASSERT_TRUE(versions.ok());
  EXPECT_EQ(*versions, "2\t" + std::to_string(kClickHouseSchemaVersion) + "\n")
      << "one row for the new version, however often it is opened";
}

// A marker row in a rollup: still there after an upgrade when the upgrade
// kept the rollups rather than rebuilding them.
std::string MarkRollup(const ClickHouseTables& tables) {
  return "INSERT INTO " + tables("user_buckets") +
         " SELECT 'marker', 0, 0, sumState(toUInt64(0)), sumState(toUInt64(0)),"
         " minState(toInt64(0)), maxState(toUInt64(0))";
}

// The rows of `table` matching `where`, as ClickHouse prints the count
// ("3\n"), or the error.
std::string CountRows(ClickHouseClient& client, const ClickHouseTables& tables,
                      const std::string& table, const std::string& where) {
  auto rows = client.Execute("SELECT count() FROM " + tables(table) + " WHERE " + where +
                             " FORMAT TabSeparated");
  return rows.ok() ? *rows : rows.status().ToString();
}

// Makes the database one of schema `version` (`back`, then `version` the
// only one recorded), opens the store again, which upgrades it, and waits
// until it reads; null (with the failure reported) when a step fails.
std::unique_ptr<EventStore> ReopenFromVersion(const StoreConfig& config, ClickHouseClient& client,
                                              const ClickHouseTables& tables,
                                              std::vector<std::string> back, int version) {
  for (std::string& sql : RecordOnlyVersion(tables, version)) back.push_back(std::move(sql));
  for (const std::string& sql : back) {
    if (!client.Execute(sql).ok()) {
      ADD_FAILURE() << sql;
      return nullptr;
    }
  }
  auto store = OpenEventStore(config);
  if (!store.ok()) {
    ADD_FAILURE() << store.status().ToString();
    return nullptr;
  }
  WaitUntilReady(**store);
  return std::move(store).value();
}

// A database of schema 4 (events, no rollups) gets its rollups from the rows
// it holds when a node of this release opens it, and answers from them.
TEST(ClickHouseSchemaTest, AVersion4DatabaseGetsRollupsOfTheRowsItHolds) {
  if (!ClickHouseServer::Available()) GTEST_SKIP() << "clickhouse-server is not installed";
  TempDir dir;
  const StoreConfig config = ClickHouseConfig(dir.path(), "rollup_upgrade");
  const int64_t day_start = kT0 - kT0 % kDayMs;
  const QueryRange day{day_start, day_start + kDayMs - 1, 0};
  {
    auto store = OpenEventStore(config);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    std::vector<uint8_t> inserted;
    const std::vector<Event> events = {Init("1", kT0),
                                       Make(EventType::kError, "E", "2", kT0 + 1000),
                                       Init("3", kT0 + 5000, "device-2", "s2", "user-2")};
    ASSERT_TRUE((*store)->Append(events, &inserted).ok());
    auto stats = (*store)->Stats(kApp);
    ASSERT_TRUE(stats.ok());
    ASSERT_EQ(stats->events, 3);
  }
  auto client = ClickHouseClient::Create(ClientOptionsFor(config.clickhouse));
  ASSERT_TRUE(client.ok());
  const ClickHouseTables tables(config.clickhouse);
  // Back to version 4: no views, no rollups, version rows up to 4.
  std::vector<std::string> back;
  for (const char* view :
       {"event_times_mv", "user_buckets_mv", "init_values_mv", "session_parts_mv",
        "session_beats_mv", "user_events_mv", "prop_values_mv", "error_times_mv"}) {
    back.push_back("DROP TABLE " + tables(view));
  }
  for (const char* table : {"event_times", "user_buckets", "init_values", "session_parts",
                            "user_events", "prop_values", "error_times"}) {
    back.push_back("DROP TABLE " + tables(table));
  }
  auto store = ReopenFromVersion(config, **client, tables, std::move(back), 4);
  ASSERT_TRUE(store);
  auto glance = store->QuickGlance(kApp, day.from_ms, day.to_ms);
  ASSERT_TRUE(glance.ok()) << glance.status().ToString();
  EXPECT_EQ(Describe(*glance), "installs 2 users 2 starts 2 errors 1");
  auto daily = store->Daily(kApp, day);
  ASSERT_TRUE(daily.ok()) << daily.status().ToString();
  EXPECT_EQ(daily->users, 2);
  EXPECT_EQ(daily->new_users, (std::map<int64_t, int64_t>{{kT0 / kDayMs, 2}}));
  auto rollup_rows =
      (*client)->Execute("SELECT count() FROM " + tables("user_buckets") + " FORMAT TabSeparated");
  ASSERT_TRUE(rollup_rows.ok());
  EXPECT_EQ(*rollup_rows, "2\n") << "user-1's and user-2's bucket";
  // New rows reach the rollups through the views again.
  std::vector<uint8_t> inserted;
  const std::vector<Event> more = {Init("4", kT0 + 9000, "device-3", "s3", "user-3")};
  ASSERT_TRUE(store->Append(more, &inserted).ok());
  glance = store->QuickGlance(kApp, day.from_ms, day.to_ms);
  ASSERT_TRUE(glance.ok());
  EXPECT_EQ(Describe(*glance), "installs 3 users 3 starts 3 errors 1");
}

TEST(ClickHouseSchemaTest, AVersion5DatabaseGetsItsNewTablesAndKeepsItsRollups) {
  if (!ClickHouseServer::Available()) GTEST_SKIP() << "clickhouse-server is not installed";
  TempDir dir;
  const StoreConfig config = ClickHouseConfig(dir.path(), "user_events_upgrade");
  {
    auto store = OpenEventStore(config);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    std::vector<uint8_t> inserted;
    const std::vector<Event> events = {Init("1", kT0),
                                       Make(EventType::kEvent, "E", "2", kT0 + 1000),
                                       Init("3", kT0 + 5000, "device-2", "s2", "user-2")};
    ASSERT_TRUE((*store)->Append(events, &inserted).ok());
  }
  auto client = ClickHouseClient::Create(ClientOptionsFor(config.clickhouse));
  ASSERT_TRUE(client.ok());
  const ClickHouseTables tables(config.clickhouse);
  // Back to version 5: no user_events, event_times without names; a marker
  // row in a rollup shows whether the upgrade rebuilt it.
  std::vector<std::string> back = {
      "DROP TABLE " + tables("user_events_mv"), "DROP TABLE " + tables("user_events"),
      "ALTER TABLE " + tables("event_times") + " DROP COLUMN name", MarkRollup(tables)};
  auto store = ReopenFromVersion(config, **client, tables, std::move(back), 5);
  ASSERT_TRUE(store);
  const auto count = [&](const std::string& table, const std::string& where) {
    return CountRows(**client, tables, table, where);
  };
  EXPECT_EQ(count("user_events", "1"), "3\n");
  EXPECT_EQ(count("event_times", "name = 'E'"), "1\n");
  EXPECT_EQ(count("user_buckets", "app = 'marker'"), "1\n") << "the rollups were rebuilt";
  auto users = store->Users(kApp, 1, 10, "");
  ASSERT_TRUE(users.ok()) << users.status().ToString();
  ASSERT_EQ(users->total, 2);
  ASSERT_EQ(users->users.size(), 2u);
  EXPECT_EQ(users->users[0].user_key, "user-2");
  EXPECT_EQ(users->users[1].user_key, "user-1");
  EXPECT_EQ(users->users[1].created_ms, kT0);
  ASSERT_EQ(users->users[1].devices.size(), 1u);
  // New rows reach user_events through its view.
  std::vector<uint8_t> inserted;
  const std::vector<Event> more = {Init("4", kT0 + 9000, "device-3", "s3", "user-3")};
  ASSERT_TRUE(store->Append(more, &inserted).ok());
  auto details = store->User(kApp, "user-3");  // a read waits for the rows to be forwarded
  ASSERT_TRUE(details.ok()) << details.status().ToString();
  EXPECT_EQ(details->user.devices.size(), 1u);
  EXPECT_EQ(count("user_events", "1"), "4\n");
}

// A database of schema 6 (event_times without the property keys) gets them
// for the events it holds; the rollups stay as they were.
TEST(ClickHouseSchemaTest, AVersion6DatabaseGetsThePropertyKeysOfItsEventsAndKeepsItsRollups) {
  if (!ClickHouseServer::Available()) GTEST_SKIP() << "clickhouse-server is not installed";
  TempDir dir;
  const StoreConfig config = ClickHouseConfig(dir.path(), "prop_list_upgrade");
  const QueryRange day{kT0 - kT0 % kDayMs, kT0 - kT0 % kDayMs + kDayMs - 1, 0};
  {
    auto store = OpenEventStore(config);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Event saved = Make(EventType::kEvent, "SAVED", "2", kT0 + 1000);
    saved.payload_json = R"({"size":2})";
    saved.props = {{"size", {PropValue::Kind::kNumber, "2"}}};
    std::vector<uint8_t> inserted;
    const std::vector<Event> events = {Init("1", kT0), saved};
    ASSERT_TRUE((*store)->Append(events, &inserted).ok());
  }
  auto client = ClickHouseClient::Create(ClientOptionsFor(config.clickhouse));
  ASSERT_TRUE(client.ok());
  const ClickHouseTables tables(config.clickhouse);
  // Back to version 6; a marker row in a rollup shows whether the upgrade
  // rebuilt it.
  std::vector<std::string> back = {
      "DROP TABLE " + tables("event_times_mv"),
      "ALTER TABLE " + tables("event_times") + " DROP COLUMN prop_list", MarkRollup(tables)};
  auto store = ReopenFromVersion(config, **client, tables, std::move(back), 6);
  ASSERT_TRUE(store);
  const auto count = [&](const std::string& table, const std::string& where) {
    return CountRows(**client, tables, table, where);
  };
  EXPECT_EQ(count("event_times", "prop_list = '1,4:size'"), "1\n");
  EXPECT_EQ(count("user_buckets", "app = 'marker'"), "1\n") << "the rollups were kept";
  auto props = store->EventProps(kApp, day);
  ASSERT_TRUE(props.ok()) << props.status().ToString();
  EXPECT_EQ(DescribeProps(*props), "SAVED/number: [size]\n");
  // New events get their keys through the view again.
  Event more = Make(EventType::kEvent, "OPENED", "3", kT0 + 2000);
  more.payload_json = R"({"from":"menu"})";
  more.props = {{"from", {PropValue::Kind::kString, "menu"}}};
  std::vector<uint8_t> inserted;
  ASSERT_TRUE(store->Append(std::vector<Event>{more}, &inserted).ok());
  props = store->EventProps(kApp, day);
  ASSERT_TRUE(props.ok()) << props.status().ToString();
  EXPECT_EQ(DescribeProps(*props), "OPENED/string: [from]\nSAVED/number: [size]\n");
}

// A database of schema 7 (no prop_values) gets the property values of the
// events it holds; the rollups stay as they were.
TEST(ClickHouseSchemaTest, AVersion7DatabaseGetsThePropertyValuesOfItsEventsAndKeepsItsRollups) {
  if (!ClickHouseServer::Available()) GTEST_SKIP() << "clickhouse-server is not installed";
  TempDir dir;
  const StoreConfig config = ClickHouseConfig(dir.path(), "prop_values_upgrade");
  const QueryRange day{kT0 - kT0 % kDayMs, kT0 - kT0 % kDayMs + kDayMs - 1, 0};
  const auto saved = [](const std::string& id, int64_t t, const std::string& size) {
    Event e = Make(EventType::kEvent, "SAVED", id, t);
    e.payload_json = R"({"size":)" + size + "}";
    e.props = {{"size", {PropValue::Kind::kNumber, size}}};
    return e;
  };
  {
    auto store = OpenEventStore(config);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Event init = Init("1", kT0);
    init.payload_json = R"({"plan":"pro"})";
    init.props = {{"plan", {PropValue::Kind::kString, "pro"}}};
    std::vector<uint8_t> inserted;
    const std::vector<Event> events = {init, saved("2", kT0 + 1000, "2"),
                                       saved("3", kT0 + 2000, "2")};
    ASSERT_TRUE((*store)->Append(events, &inserted).ok());
  }
  auto client = ClickHouseClient::Create(ClientOptionsFor(config.clickhouse));
  ASSERT_TRUE(client.ok());
  const ClickHouseTables tables(config.clickhouse);
  // Back to version 7; a marker row in a rollup shows whether the upgrade
  // rebuilt it.
  std::vector<std::string> back = {"DROP TABLE " + tables("prop_values_mv"),
                                   "DROP TABLE " + tables("prop_values"),
                                   "DROP TABLE " + tables("error_times_mv"),
                                   "DROP TABLE " + tables("error_times"), MarkRollup(tables)};
  auto store = ReopenFromVersion(config, **client, tables, std::move(back), 7);
  ASSERT_TRUE(store);
  const auto count = [&](const std::string& table, const std::string& where) {
    return CountRows(**client, tables, table, where);
  };
  EXPECT_EQ(count("prop_values", "1"), "3\n");
  EXPECT_EQ(count("prop_values", "ev = 'init' AND prop_keys = ['plan'] AND prop_texts = ['pro']"),
            "1\n");
  EXPECT_EQ(count("user_buckets", "app = 'marker'"), "1\n") << "the rollups were kept";
  auto values = store->EventAttribute(kApp, day, "SAVED", "size");
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  EXPECT_EQ(DescribeCounts(*values), "[2] 2\n");
  // New events get their values through the view again.
  std::vector<uint8_t> inserted;
  ASSERT_TRUE(store->Append(std::vector<Event>{saved("4", kT0 + 3000, "3")}, &inserted).ok());
  values = store->EventAttribute(kApp, day, "SAVED", "size");
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  EXPECT_EQ(DescribeCounts(*values), "[2] 2\n[3] 1\n");
}

// A database of schema 8 (no error_times) gets the errors of the events it
// holds; the rollups stay as they were.
TEST(ClickHouseSchemaTest, AVersion8DatabaseGetsTheErrorsOfItsEventsAndKeepsItsRollups) {
  if (!ClickHouseServer::Available()) GTEST_SKIP() << "clickhouse-server is not installed";
  TempDir dir;
  const StoreConfig config = ClickHouseConfig(dir.path(), "error_times_upgrade");
  const QueryRange day{kT0 - kT0 % kDayMs, kT0 - kT0 % kDayMs + kDayMs - 1, 0};
  {
    auto store = OpenEventStore(config);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    std::vector<uint8_t> inserted;
    const std::vector<Event> events = {Init("1", kT0),
                                       Make(EventType::kError, "Crash", "2", kT0 + 1),
                                       Make(EventType::kError, "Crash", "3", kT0 + 2),
                                       Make(EventType::kEvent, "Crash", "4", kT0 + 3)};
    ASSERT_TRUE((*store)->Append(events, &inserted).ok());
  }
  auto client = ClickHouseClient::Create(ClientOptionsFor(config.clickhouse));
  ASSERT_TRUE(client.ok());
  const ClickHouseTables tables(config.clickhouse);
  std::vector<std::string> back = {"DROP TABLE " + tables("error_times_mv"),
                                   "DROP TABLE " + tables("error_times"), MarkRollup(tables)};
  auto store = ReopenFromVersion(config, **client, tables, std::move(back), 8);
  ASSERT_TRUE(store);
  const auto count = [&](const std::string& table, const std::string& where) {
    return CountRows(**client, tables, table, where);
  };
  EXPECT_EQ(count("error_times", "name = 'Crash'"), "2\n") << "the errors, not the event";
  EXPECT_EQ(count("user_buckets", "app = 'marker'"), "1\n") << "the rollups were kept";
  const auto errors = [&] {
    auto counts = store->EventCounts(kApp, day, true);
    if (!counts.ok()) return counts.status().ToString();
    std::string out;
    for (const auto& [name, days] : *counts) {
      for (const auto& [d, n] : days) out += name + " " + std::to_string(n) + "\n";
    }
    auto groups = store->ErrorGroups(kApp, day);
    if (!groups.ok()) return groups.status().ToString();
    for (const ErrorGroup& g : *groups) {
      out += "group " + g.name + " " + std::to_string(g.count) + " by " + std::to_string(g.users) +
             "\n";
    }
    return out;
  };
  EXPECT_EQ(errors(), "Crash 2\ngroup Crash 2 by 1\n");
  // New errors reach the table through its view again.
  std::vector<uint8_t> inserted;
  ASSERT_TRUE(store
                  ->Append(std::vector<Event>{Make(EventType::kError, "Crash", "5", kT0 + 4,
                                                   "device-2", "s2", "user-2")},
                           &inserted)
                  .ok());
  EXPECT_EQ(errors(), "Crash 3\ngroup Crash 3 by 2\n");
}

}  // namespace
}  // namespace nucleon
