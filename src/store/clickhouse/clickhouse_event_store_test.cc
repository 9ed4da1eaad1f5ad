// The ClickHouse backend's exactly-once across nodes and restarts, against a
// clickhouse-server of the test binary's own: the same events spooled by two
// nodes at once, a spool forwarded again after a restart (as after a kill
// between an insert and its mark), resends to another node, and the
// identities an older database kept. Answers must count every event once.
#include "store/clickhouse/clickhouse_event_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/event.h"
#include "core/testing/temp_dir.h"
#include "core/time_util.h"
#include "store/clickhouse/clickhouse_client.h"
#include "store/clickhouse/clickhouse_schema.h"
#include "store/clickhouse/event_rows.h"
#include "store/clickhouse/spool.h"
#include "store/clickhouse/testing/clickhouse_server.h"

namespace nucleon {
namespace {

constexpr int64_t kT0 = 1795685880000;  // 2026-11-26 06:58 UTC
constexpr char kApp[] = "dedup-app";

ClickHouseServer* g_server = nullptr;
std::string g_server_error;

class StopServer : public ::testing::Environment {
 public:
  void TearDown() override {
    delete g_server;
    g_server = nullptr;
  }
};
[[maybe_unused]] ::testing::Environment* const kStopServer =
    ::testing::AddGlobalTestEnvironment(new StopServer);

// `n` events with ids on `devices` devices; their dates as an SDK sends them:
// numbers, ISO strings, or none at all.
std::vector<Event> Batch(int n, int devices, const std::string& prefix) {
  std::vector<Event> out;
  for (int i = 0; i < n; ++i) {
    Event e;
    e.app_id = kApp;
    e.type = i % devices == i ? EventType::kInit : EventType::kEvent;
    if (e.type == EventType::kEvent) e.name = "SAVED";
    e.client_id = prefix + std::to_string(i);
    e.device_id = prefix + "device-" + std::to_string(i % devices);
    e.session_id = "s1";
    e.user_key = e.user_id = prefix + "user-" + std::to_string(i % devices);
    e.time_ms = kT0 + i;
    switch (i % 3) {
      case 0:
        e.client_date = std::to_string(e.time_ms);
        break;
      case 1:
        e.client_date = "\"" + FormatIsoMs(e.time_ms) + "\"";
        break;
      default:
        break;  // no date: the server's time, the identity without one
    }
    out.push_back(std::move(e));
  }
  return out;
}

class ClickHouseEventStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ClickHouseServer::Available()) GTEST_SKIP() << "clickhouse-server is not installed";
    if (g_server == nullptr) {
      g_server = new ClickHouseServer;
      if (!g_server->Start(&g_server_error)) g_server_error = "start: " + g_server_error;
    }
    ASSERT_TRUE(g_server->running()) << g_server_error;
    options_.urls = {g_server->url()};
    options_.database =
        std::string("dedup_") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    options_.fsync_full = false;
  }

  std::unique_ptr<EventStore> OpenNode(const std::string& dir) {
    auto store = OpenClickHouseEventStore(dir, options_);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return nullptr;
    for (int i = 0; i < 3000 && !(*store)->Ready(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE((*store)->Ready());
    return std::move(store).value();
  }

  static std::vector<uint8_t> Append(EventStore& store, const std::vector<Event>& events) {
    std::vector<uint8_t> inserted;
    const Status st = store.Append(events, &inserted);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return inserted;
  }

  // The node's count once what it acknowledged is in ClickHouse (bounded).
  static int64_t Events(EventStore& store, int64_t expected) {
    int64_t events = -1;
    for (int i = 0; i < 100; ++i) {
      auto stats = store.Stats(kApp);
      EXPECT_TRUE(stats.ok()) << stats.status().ToString();
      if (!stats.ok()) return -1;
      events = stats->events;
      if (events == expected) return events;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return events;
  }

  ClickHouseStoreOptions options_;
  TempDir dir_a_, dir_b_;
};

TEST_F(ClickHouseEventStoreTest, TheSameEventsSpooledByTwoNodesAtOnceAreStoredOnce) {
  auto a = OpenNode(dir_a_.path());
  auto b = OpenNode(dir_b_.path());
  ASSERT_TRUE(a && b);
  // Each round: both nodes take the same batch before either forwarded it
  // (a node killed before its ack, the client resending at once elsewhere),
  // so both spool it and their forwarders race.
  int64_t total = 0;
  for (int round = 0; round < 3; ++round) {
    const std::vector<Event> batch = Batch(3000, 300, "r" + std::to_string(round) + "-");
    std::thread other([&] { Append(*b, batch); });
    Append(*a, batch);
    other.join();
    total += static_cast<int64_t>(batch.size());
    EXPECT_EQ(Events(*a, total), total) << "round " << round;
    EXPECT_EQ(Events(*b, total), total) << "round " << round;
  }
  // Resent to either node later: known, not stored again.
  const std::vector<Event> first = Batch(3000, 300, "r0-");
  EXPECT_EQ(Append(*b, first), std::vector<uint8_t>(first.size(), 0));
  EXPECT_EQ(Append(*a, first), std::vector<uint8_t>(first.size(), 0));
  EXPECT_EQ(Events(*a, total), total);
  EXPECT_EQ(Events(*b, total), total);
}

TEST_F(ClickHouseEventStoreTest, ASpoolForwardedAgainAfterARestartStoresNothingTwice) {
  const std::vector<Event> batch = Batch(2000, 100, "");
  {
    auto a = OpenNode(dir_a_.path());
    ASSERT_TRUE(a);
    EXPECT_EQ(Append(*a, batch), std::vector<uint8_t>(batch.size(), 1));
    EXPECT_EQ(Events(*a, 2000), 2000);
  }
  // As after a kill between the inserts and the mark: the node forwards its
  // whole spool again when it starts.
  ASSERT_TRUE(std::filesystem::remove(dir_a_.path() + "/spool/forwarded"));
  auto a = OpenNode(dir_a_.path());
  ASSERT_TRUE(a);
  EXPECT_EQ(Events(*a, 2000), 2000);
  // The client resends after the restart, to this node and to another one.
  EXPECT_EQ(Append(*a, batch), std::vector<uint8_t>(batch.size(), 0));
  auto b = OpenNode(dir_b_.path());
  ASSERT_TRUE(b);
  EXPECT_EQ(Append(*b, batch), std::vector<uint8_t>(batch.size(), 0));
  EXPECT_EQ(Events(*a, 2000), 2000);
  EXPECT_EQ(Events(*b, 2000), 2000);
}

TEST_F(ClickHouseEventStoreTest, IdentitiesAnOlderDatabaseKeptAreStillRecognised) {
  const std::vector<Event> old = Batch(30, 3, "old-");
  const std::vector<Event> fresh = Batch(30, 3, "new-");
  {
    auto a = OpenNode(dir_a_.path());
    ASSERT_TRUE(a);
  }
  // A database of schema 3 kept every identity in `idents` (app, hash).
  ClickHouseClientOptions client_options;
  client_options.urls = options_.urls;
  auto client = ClickHouseClient::Create(client_options);
  ASSERT_TRUE(client.ok());
  const std::string idents = SqlIdentifier(options_.database) + ".idents";
  ASSERT_TRUE((*client)
                  ->Execute("CREATE TABLE " + idents +
                            " (app String, ident String) ENGINE = MergeTree ORDER BY (app, ident)")
                  .ok());
  std::string rows;
  for (const Event& e : old) {
    AppendTsv(&rows, e.app_id);
    rows += "\t" + IdentityHash(e) + "\n";
  }
  ASSERT_TRUE((*client)->Execute("INSERT INTO " + idents + " FORMAT TabSeparated", rows).ok());
  auto a = OpenNode(dir_a_.path());
  ASSERT_TRUE(a);
  std::vector<Event> both = old;
  both.insert(both.end(), fresh.begin(), fresh.end());
  std::vector<uint8_t> expected(old.size(), 0);
  expected.resize(both.size(), 1);
  EXPECT_EQ(Append(*a, both), expected);
  EXPECT_EQ(Events(*a, 30), 30);
  // On a second node, which spools them before asking (busy or not), too.
  auto b = OpenNode(dir_b_.path());
  ASSERT_TRUE(b);
  EXPECT_EQ(Append(*b, both), std::vector<uint8_t>(both.size(), 0));
  EXPECT_EQ(Events(*b, 30), 30);
}

TEST_F(ClickHouseEventStoreTest, RowsAnEarlierReleaseSpooledKeepTheirPropertyValues) {
  { ASSERT_TRUE(OpenNode(dir_a_.path())); }
  // An app start whose property key and value hold a quote, a backslash and
  // a tab, spooled as an earlier release wrote it: the property arrays
  // escaped once more, as TabSeparated text.
  Event e = Batch(1, 1, "legacy-")[0];
  e.client_id.clear();  // no identity: stored as it is
  e.payload_json = R"({"it's":"C:\\new\ttab"})";
  e.props = {{"it's", {PropValue::Kind::kString, "C:\\new\ttab"}}};
  std::string row;
  AppendEventRow(e, /*node=*/1, OrderClock(1).Next(NowMs()), &row);
  row.pop_back();  // the newline
  std::vector<std::string> fields;
  for (size_t at = 0, tab = 0; tab != std::string::npos; at = tab + 1) {
    tab = row.find('\t', at);
    fields.push_back(row.substr(at, tab == std::string::npos ? std::string::npos : tab - at));
  }
  ASSERT_EQ(fields.size(), 34u);
  std::string legacy = "E";
  for (size_t i = 0; i < fields.size(); ++i) {
    legacy.push_back('\t');
    if (std::find(std::begin(kPropArrayFields), std::end(kPropArrayFields), i) !=
        std::end(kPropArrayFields)) {
      AppendTsv(&legacy, fields[i]);
    } else {
      legacy += fields[i];
    }
  }
  ASSERT_NE(legacy.find("\\\\'"), std::string::npos) << "escaped once more";
  {
    Spool spool;
    ASSERT_TRUE(spool.Open(dir_a_.path() + "/spool", /*fsync=*/false).ok());
    ASSERT_TRUE(spool.Append(legacy + "\n").ok());
    ASSERT_TRUE(spool.Sync().ok());
  }
  auto a = OpenNode(dir_a_.path());
  ASSERT_TRUE(a);
  EXPECT_EQ(Events(*a, 1), 1);
  auto values = a->EventAttribute(kApp, QueryRange{kT0 - 1000, kT0 + 1000, 0}, "init", "it's");
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  ASSERT_EQ(values->size(), 1u);
  EXPECT_EQ((*values)[0].value, "C:\\new\ttab");
  auto keys = a->EventProps(kApp, QueryRange{kT0 - 1000, kT0 + 1000, 0});
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].keys, std::vector<std::string>{"it's"});
}

// Once its mutations ran, a deleted user's rows are gone from every table
// that holds rows by user (the derived tables and the rollups included) and
// its session from the sessions' rollup; only the deletion row stays.
TEST_F(ClickHouseEventStoreTest, ADeletedUsersRowsLeaveEveryTable) {
  auto a = OpenNode(dir_a_.path());
  ASSERT_TRUE(a);
  std::vector<Event> events = Batch(6, 2, "gone-");
  for (Event& e : events) {
    e.payload_json = R"({"plan":"pro"})";
    e.props = {{"plan", {PropValue::Kind::kString, "pro"}}};
  }
  events[4].type = EventType::kError;  // gone-user-0's, for error_times
  events[4].name = "Crash";
  EXPECT_EQ(Append(*a, events), std::vector<uint8_t>(events.size(), 1)) << "all stored";
  EXPECT_EQ(Events(*a, 6), 6);
  a->PrepareDeleteUser(kApp, "gone-user-0");
  ASSERT_TRUE(a->DeleteUser(kApp, "gone-user-0").ok());

  auto client = ClickHouseClient::Create(ClientOptionsFor(options_));
  ASSERT_TRUE(client.ok());
  const ClickHouseTables tables(options_);
  const std::string db = SqlQuote(options_.database);
  const std::string merge_trees =
      "SELECT name FROM system.tables WHERE database = " + db + " AND engine LIKE '%MergeTree'";
  auto listed = (*client)->Execute("SELECT table FROM system.columns WHERE database = " + db +
                                   " AND name = 'user_h' AND table != 'deletions' AND table IN (" +
                                   merge_trees + ") ORDER BY table FORMAT TabSeparated");
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  std::vector<std::string> by_user;
  for (size_t at = 0, nl; (nl = listed->find('\n', at)) != std::string::npos; at = nl + 1) {
    by_user.push_back(listed->substr(at, nl - at));
  }
  for (const char* table : {"events", "event_times", "user_events", "prop_values", "error_times",
                            "user_buckets", "init_values"}) {
    EXPECT_NE(std::find(by_user.begin(), by_user.end(), table), by_user.end()) << table;
  }
  const auto rows_of = [&](const std::string& user) {
    std::string sql;
    for (const std::string& table : by_user) {
      sql += std::string(sql.empty() ? "" : " UNION ALL ") + "SELECT '" + table +
             "' AS t, count() AS n FROM " + tables(table) +
             " WHERE user_h = " + std::to_string(UserHash(kApp, user));
    }
    auto out = (*client)->Execute("SELECT t, n FROM (" + sql + ") WHERE n > 0 ORDER BY t" +
                                  " FORMAT TabSeparated");
    return out.ok() ? *out : out.status().ToString();
  };
  const auto sessions = [&] {
    auto out = (*client)->Execute("SELECT uniqExact(sess_h) FROM " + tables("session_parts") +
                                  " FORMAT TabSeparated");
    return out.ok() ? *out : out.status().ToString();
  };
  std::string left;
  for (int i = 0; i < 600; ++i) {
    left = rows_of("gone-user-0") + sessions();
    if (left == "1\n") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(left, "1\n") << "rows of the deleted user, then the sessions' parts";
  EXPECT_NE(rows_of("gone-user-1"), "") << "the other user's rows stay";
}

}  // namespace
}  // namespace nucleon
