#include "store/sqlite/sqlite_event_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/testing/temp_dir.h"
#include "store/event_store.h"
#include "store/sqlite/events_schema.h"
#include "store/sqlite/migration_runner.h"
#include "store/sqlite/sqlite_db.h"

namespace nucleon {
namespace {

constexpr int64_t kT0 = 1795685880000;  // 2026-11-26

Event MakeEvent(EventType type, const std::string& name, const std::string& client_id,
                int64_t time_ms, const std::string& device = "dev1",
                const std::string& session = "490330") {
  Event e;
  e.app_id = "app1";
  e.type = type;
  e.name = name;
  e.client_id = client_id;
  e.client_date = client_id.empty() ? "" : std::to_string(time_ms);
  e.device_id = device;
  e.session_id = session;
  e.user_key = device;
  e.time_ms = time_ms;
  return e;
}

Event Named(const std::string& name, const std::string& client_id, int64_t time_ms,
            const std::string& device = "dev1", const std::string& session = "490330") {
  return MakeEvent(EventType::kEvent, name, client_id, time_ms, device, session);
}

Event Heartbeat(int64_t time_ms, const std::string& device = "dev1",
                const std::string& session = "490330") {
  Event e;
  e.app_id = "app1";
  e.type = EventType::kHeartbeat;
  e.device_id = device;
  e.session_id = session;
  e.user_key = device;
  e.time_ms = time_ms;
  return e;
}

// One session row as the file holds it, read through a separate connection.
struct SessionRow {
  int64_t start_ms = 0, end_ms = 0;
  bool operator==(const SessionRow&) const = default;
};

class SqliteEventStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open(bool read_only = false) {
    store_.reset();
    SqliteStoreOptions opts;
    opts.fsync_full = false;
    opts.read_only = read_only;
    auto store = OpenSqliteEventStore(dir_.path(), opts);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
  }

  std::vector<uint8_t> Append(const std::vector<Event>& events) {
    std::vector<uint8_t> inserted;
    Status st = store_->Append(events, &inserted);
    EXPECT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(inserted.size(), events.size());
    return inserted;
  }

  // The status of appending `events` (for the failure tests).
  Status AppendStatus(const std::vector<Event>& events) {
    std::vector<uint8_t> inserted;
    return store_->Append(events, &inserted);
  }

  std::vector<Event> Export(const std::string& app = "app1") {
    std::vector<Event> out;
    Status st = store_->Export(app, [&](const Event& e) { out.push_back(e); });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }

  StoreStats Stats(const std::string& app = "app1") {
    auto stats = store_->Stats(app);
    EXPECT_TRUE(stats.ok()) << stats.status().ToString();
    return stats.ok() ? *stats : StoreStats{};
  }

  // Runs `sql` on a second connection to events.db.
  void ExecOnFile(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_.path() + "/events.db").c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }

  std::optional<SessionRow> Session(const std::string& device, const std::string& session) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2((dir_.path() + "/events.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
        SQLITE_OK) {
      ADD_FAILURE() << "cannot open events.db";
      sqlite3_close(db);
      return std::nullopt;
    }
    sqlite3_stmt* stmt = nullptr;
    const char* sql =
        "SELECT s.start_ms, s.end_ms FROM sessions s JOIN devices d ON d.id = s.device"
        " WHERE d.device_key = ? AND s.session_key = ?";
    std::optional<SessionRow> row;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK) {
      sqlite3_bind_text(stmt, 1, device.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(stmt, 2, session.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(stmt) == SQLITE_ROW) {
        row = SessionRow{sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1)};
      }
    } else {
      ADD_FAILURE() << sqlite3_errmsg(db);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return row;
  }

  TempDir dir_;
  std::unique_ptr<EventStore> store_;
};

TEST_F(SqliteEventStoreTest, ExportReturnsEventsOldestFirstWithAllFields) {
  Event init = MakeEvent(EventType::kInit, "", "308778", kT0);
  init.user_id = "richard";
  init.anon_id = "hGzKvaoI5Mno";
  init.user_key = "richard";
  init.platform = "Linux";
  init.os_version = "6.18.44";
  init.locale = "en-US";
  init.version = "1.2.3";
  init.module_version = "4.0.3";
  init.arch = "x64";
  init.client = "js";
  init.total_ram = 23.54;
  init.country = "DE";
  init.payload_json = R"({"plan":"pro","age":34})";

  Event error = MakeEvent(EventType::kError, "myCustomError", "125047", kT0 + 2000);
  error.user_id = "richard";
  error.user_key = "richard";
  error.payload_json = R"({"stack":"Error: boom","message":"boom"})";
  error.error_hash = "0123456789abcdef";

  Event view = MakeEvent(EventType::kView, "Cart", "\"abc\"", kT0 + 1000);
  view.user_key = "richard";
  view.user_id = "richard";

  // Appended out of time order: Export sorts by time.
  EXPECT_EQ(Append({error, init, view}), (std::vector<uint8_t>{1, 1, 1}));
  std::vector<Event> out = Export();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].type, EventType::kInit);
  EXPECT_EQ(out[1].type, EventType::kView);
  EXPECT_EQ(out[2].type, EventType::kError);

  const Event& a = out[0];
  EXPECT_EQ(a.app_id, "app1");
  EXPECT_EQ(a.name, "");
  EXPECT_EQ(a.client_id, "308778");
  EXPECT_EQ(a.device_id, "dev1");
  EXPECT_EQ(a.session_id, "490330");
  EXPECT_EQ(a.user_key, "richard");
  EXPECT_EQ(a.user_id, "richard");
  EXPECT_EQ(a.anon_id, "hGzKvaoI5Mno");
  EXPECT_EQ(a.time_ms, kT0);
  EXPECT_EQ(a.platform, "Linux");
  EXPECT_EQ(a.os_version, "6.18.44");
  EXPECT_EQ(a.locale, "en-US");
  EXPECT_EQ(a.version, "1.2.3");
  EXPECT_EQ(a.module_version, "4.0.3");
  EXPECT_EQ(a.arch, "x64");
  EXPECT_EQ(a.client, "js");
  ASSERT_TRUE(a.total_ram.has_value());
  EXPECT_DOUBLE_EQ(*a.total_ram, 23.54);
  EXPECT_EQ(a.country, "DE");
  EXPECT_EQ(a.payload_json, R"({"plan":"pro","age":34})");
  EXPECT_EQ(a.error_hash, "");

  EXPECT_EQ(out[1].name, "Cart");
  EXPECT_EQ(out[1].client_id, "\"abc\"");
  EXPECT_EQ(out[1].payload_json, "{}");
  EXPECT_EQ(out[1].platform, "");  // fields from one event do not leak into the next
  EXPECT_FALSE(out[1].total_ram.has_value());
  EXPECT_EQ(out[1].anon_id, "");

  EXPECT_EQ(out[2].name, "myCustomError");
  EXPECT_EQ(out[2].error_hash, "0123456789abcdef");
  EXPECT_EQ(out[2].payload_json, R"({"stack":"Error: boom","message":"boom"})");

  EXPECT_TRUE(Export("other-app").empty());
}

TEST_F(SqliteEventStoreTest, ResendIsNotStoredAgain) {
  const Event e = Named("PLAYED_TRACK", "808676", kT0);
  EXPECT_EQ(Append({e}), (std::vector<uint8_t>{1}));
  EXPECT_EQ(Append({e}), (std::vector<uint8_t>{0}));
  // The resend next to a new event in one batch.
  EXPECT_EQ(Append({Named("OTHER", "1", kT0 + 5), e}), (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(Stats().events, 2);
  EXPECT_EQ(Export().size(), 2u);
}

TEST_F(SqliteEventStoreTest, DuplicateWithinOneBatchIsStoredOnce) {
  const Event e = Named("PLAYED_TRACK", "808676", kT0);
  EXPECT_EQ(Append({e, e, e}), (std::vector<uint8_t>{1, 0, 0}));
  EXPECT_EQ(Stats().events, 1);
}

TEST_F(SqliteEventStoreTest, ResendsInsideLongRunsAreFoundExactly) {
  // One device and session, longer than one insert statement holds, where
  // stored events, new events, id-less events and repeats are interleaved.
  std::vector<Event> first;
  for (int i = 0; i < 100; i += 2) first.push_back(Named("E", std::to_string(i), kT0 + i));
  ASSERT_EQ(Append(first), std::vector<uint8_t>(first.size(), 1));

  std::vector<Event> second;
  std::vector<uint8_t> expected;
  for (int i = 0; i < 150; ++i) {
    second.push_back(Named("E", std::to_string(i), kT0 + i));
    expected.push_back(i % 2 == 1 || i >= 100);  // even ids below 100 are stored already
    if (i % 10 == 0) {
      second.push_back(Named("E", "", kT0 + i));  // no id: always stored
      expected.push_back(1);
    }
    if (i % 7 == 0) {
      second.push_back(Named("E", std::to_string(i), kT0 + i));  // repeated at once
      expected.push_back(0);
    }
  }
  // The same ids again after another device's run, in the same commit.
  Event other = Named("E", "1", kT0);
  other.device_id = "dev2";
  other.user_key = "dev2";
  second.push_back(other);
  expected.push_back(1);
  second.push_back(Named("E", "101", kT0 + 101));
  expected.push_back(0);
  EXPECT_EQ(Append(second), expected);

  const int64_t stored = std::count(expected.begin(), expected.end(), 1) + 50;
  EXPECT_EQ(Stats().events, stored);
  EXPECT_EQ(static_cast<int64_t>(Export().size()), stored);
  // Nothing of it is new a second time, except the id-less events.
  std::vector<uint8_t> again = Append(second);
  for (size_t i = 0; i < second.size(); ++i) {
    EXPECT_EQ(again[i], second[i].HasIdentity() ? 0 : 1) << i;
  }
}

TEST_F(SqliteEventStoreTest, SameClientIdElsewhereIsANewEvent) {
  const Event base = Named("E", "42", kT0);
  Event other_session = base;
  other_session.session_id = "7";
  Event other_date = base;
  other_date.client_date = std::to_string(kT0 + 1);
  Event other_device = base;
  other_device.device_id = "dev2";
  other_device.user_key = "dev2";
  Event other_name = base;
  other_name.name = "F";
  Event other_type = base;
  other_type.type = EventType::kView;
  Event other_app = base;
  other_app.app_id = "app2";
  EXPECT_EQ(
      Append({base, other_session, other_date, other_device, other_name, other_type, other_app}),
      (std::vector<uint8_t>{1, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(Stats("app1").events, 6);
  EXPECT_EQ(Stats("app2").events, 1);
}

TEST_F(SqliteEventStoreTest, ClientIdsOfDifferentJsonTypesDiffer) {
  // 123 and "123" are different ids to the SDK, which echoes them exactly.
  EXPECT_EQ(Append({Named("E", "123", kT0), Named("E", "\"123\"", kT0)}),
            (std::vector<uint8_t>{1, 1}));
}

TEST_F(SqliteEventStoreTest, EventsWithoutClientIdAreAlwaysStored) {
  const Event e = Named("E", "", kT0);
  ASSERT_FALSE(e.HasIdentity());
  EXPECT_EQ(Append({e, e}), (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(Append({e}), (std::vector<uint8_t>{1}));
  EXPECT_EQ(Stats().events, 3);
}

TEST_F(SqliteEventStoreTest, HeartbeatsExtendTheSessionAndAreNeverEvents) {
  EXPECT_EQ(Append({MakeEvent(EventType::kInit, "", "1", kT0), Named("E", "2", kT0 + 1000)}),
            (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(Session("dev1", "490330"), (SessionRow{kT0, kT0 + 1000}));

  EXPECT_EQ(Append({Heartbeat(kT0 + 60000)}), (std::vector<uint8_t>{0}));
  EXPECT_EQ(Session("dev1", "490330"), (SessionRow{kT0, kT0 + 60000}));
  // An older heartbeat never shortens it.
  EXPECT_EQ(Append({Heartbeat(kT0 + 30000)}), (std::vector<uint8_t>{0}));
  EXPECT_EQ(Session("dev1", "490330"), (SessionRow{kT0, kT0 + 60000}));

  EXPECT_EQ(Export().size(), 2u);
  EXPECT_EQ(Stats().events, 2);
  for (const Event& e : Export()) EXPECT_NE(e.type, EventType::kHeartbeat);
}

TEST_F(SqliteEventStoreTest, HeartbeatWithoutSessionExtendsTheDevicesLatestSession) {
  EXPECT_EQ(Append({MakeEvent(EventType::kInit, "", "1", kT0, "dev1", "100"),
                    MakeEvent(EventType::kInit, "", "2", kT0 + 5000, "dev1", "200"),
                    MakeEvent(EventType::kInit, "", "3", kT0 + 9000, "dev2", "300")}),
            (std::vector<uint8_t>{1, 1, 1}));
  EXPECT_EQ(Append({Heartbeat(kT0 + 70000, "dev1", "")}), (std::vector<uint8_t>{0}));
  EXPECT_EQ(Session("dev1", "100"), (SessionRow{kT0, kT0}));
  EXPECT_EQ(Session("dev1", "200"), (SessionRow{kT0 + 5000, kT0 + 70000}));
  EXPECT_EQ(Session("dev2", "300"), (SessionRow{kT0 + 9000, kT0 + 9000}));

  // After a reopen the device's latest session is rebuilt from the file.
  Open();
  EXPECT_EQ(Append({Heartbeat(kT0 + 80000, "dev1", "")}), (std::vector<uint8_t>{0}));
  EXPECT_EQ(Session("dev1", "200"), (SessionRow{kT0 + 5000, kT0 + 80000}));
  EXPECT_EQ(Session("dev1", "100"), (SessionRow{kT0, kT0}));
}

TEST_F(SqliteEventStoreTest, HeartbeatOfAnUnknownSessionStoresNothing) {
  EXPECT_EQ(Append({Heartbeat(kT0, "dev9", "5")}), (std::vector<uint8_t>{0}));
  EXPECT_EQ(Stats().events, 0);
  EXPECT_EQ(Stats().sessions, 0);
  EXPECT_FALSE(Session("dev9", "5").has_value());
}

TEST_F(SqliteEventStoreTest, SessionStartsAtInitElseEarliestEvent) {
  // Events arrive before their init (out of order); the init fixes the start.
  EXPECT_EQ(Append({Named("E", "1", kT0 + 5000), Named("E", "2", kT0 + 2000)}),
            (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(Session("dev1", "490330"), (SessionRow{kT0 + 2000, kT0 + 5000}));
  EXPECT_EQ(Append({MakeEvent(EventType::kInit, "", "3", kT0 + 3000)}), (std::vector<uint8_t>{1}));
  EXPECT_EQ(Session("dev1", "490330"), (SessionRow{kT0 + 3000, kT0 + 5000}));
}

TEST_F(SqliteEventStoreTest, ResendsAreRecognisedAfterReopen) {
  const std::vector<Event> batch = {MakeEvent(EventType::kInit, "", "1", kT0),
                                    Named("E", "2", kT0 + 1000), Named("E", "", kT0 + 2000)};
  EXPECT_EQ(Append(batch), (std::vector<uint8_t>{1, 1, 1}));
  Open();  // close, then OpenSqliteEventStore again
  EXPECT_EQ(Append(batch), (std::vector<uint8_t>{0, 0, 1}));
  EXPECT_EQ(Append({Named("E", "3", kT0 + 3000)}), (std::vector<uint8_t>{1}));
  StoreStats s = Stats();
  EXPECT_EQ(s.events, 5);
  EXPECT_EQ(s.sessions, 1);  // the same session row, not a second one
  EXPECT_EQ(s.devices, 1);
  EXPECT_EQ(s.users, 1);
  EXPECT_EQ(Session("dev1", "490330"), (SessionRow{kT0, kT0 + 3000}));
}

TEST_F(SqliteEventStoreTest, StatsCounts) {
  Event u1 = Named("E", "1", kT0, "dev1", "1");
  Event u1_other_device = Named("E", "2", kT0, "dev2", "1");
  u1_other_device.user_key = "dev1";  // same user (say, one userId) on a second device
  Event u2 = Named("E", "3", kT0, "dev3", "9");
  Event u2_second_session = Named("E", "4", kT0, "dev3", "10");
  Event other_app = Named("E", "5", kT0, "dev1", "1");
  other_app.app_id = "app2";
  EXPECT_EQ(Append({u1, u1_other_device, u2, u2_second_session, other_app, Heartbeat(kT0 + 1)}),
            (std::vector<uint8_t>{1, 1, 1, 1, 1, 0}));
  StoreStats s = Stats("app1");
  EXPECT_EQ(s.apps, 1);
  EXPECT_EQ(s.events, 4);
  EXPECT_EQ(s.sessions, 4);
  EXPECT_EQ(s.devices, 3);
  EXPECT_EQ(s.users, 2);
  StoreStats all = Stats("");
  EXPECT_EQ(all.apps, 2);
  EXPECT_EQ(all.events, 5);
  EXPECT_EQ(all.sessions, 5);
  EXPECT_EQ(all.devices, 4);
  EXPECT_EQ(all.users, 3);
  StoreStats none = Stats("no-such-app");
  EXPECT_EQ(none.apps, 0);
  EXPECT_EQ(none.events, 0);
}

TEST_F(SqliteEventStoreTest, EmptyAppendIsOk) {
  EXPECT_TRUE(Append({}).empty());
  EXPECT_TRUE(store_->Probe().ok());
}

// A failing insert half-way through a batch: nothing of the batch is stored,
// and the writer's in-memory dictionaries and sessions do not run ahead of the
// file (a retry must recreate the app, device, user and session rows).
TEST_F(SqliteEventStoreTest, FailedInsertLeavesNothingAndMemoryConsistent) {
  ExecOnFile("CREATE TRIGGER fail_boom BEFORE INSERT ON events WHEN NEW.time_ms = " +
             std::to_string(kT0 + 1000) + " BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");
  const std::vector<Event> batch = {MakeEvent(EventType::kInit, "", "1", kT0, "devN", "77"),
                                    Named("boom", "2", kT0 + 1000, "devN", "77")};
  std::vector<uint8_t> inserted = {9};
  Status st = store_->Append(batch, &inserted);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(inserted, (std::vector<uint8_t>{0, 0}));
  StoreStats s = Stats("");
  EXPECT_EQ(s.apps, 0);
  EXPECT_EQ(s.events, 0);
  EXPECT_EQ(s.sessions, 0);
  EXPECT_EQ(s.devices, 0);
  EXPECT_EQ(s.users, 0);

  ExecOnFile("DROP TRIGGER fail_boom;");
  EXPECT_EQ(Append(batch), (std::vector<uint8_t>{1, 1}));
  std::vector<Event> out = Export();
  ASSERT_EQ(out.size(), 2u);  // joins on app, device, session and user rows all resolve
  EXPECT_EQ(out[0].device_id, "devN");
  EXPECT_EQ(out[0].session_id, "77");
  EXPECT_EQ(out[1].name, "boom");
  s = Stats("app1");
  EXPECT_EQ(s.sessions, 1);
  EXPECT_EQ(s.devices, 1);
  EXPECT_EQ(Session("devN", "77"), (SessionRow{kT0, kT0 + 1000}));
}

// A failing session update at commit time: the in-memory session end is rolled
// back with the file, so a later heartbeat still extends it.
TEST_F(SqliteEventStoreTest, FailedSessionUpdateRollsBackTheSessionState) {
  EXPECT_EQ(Append({MakeEvent(EventType::kInit, "", "1", kT0)}), (std::vector<uint8_t>{1}));
  ExecOnFile(
      "CREATE TRIGGER fail_update BEFORE UPDATE ON sessions"
      " BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");
  ASSERT_FALSE(AppendStatus({Named("E", "2", kT0 + 50000)}).ok());
  ExecOnFile("DROP TRIGGER fail_update;");
  EXPECT_EQ(Session("dev1", "490330"), (SessionRow{kT0, kT0}));
  EXPECT_EQ(Stats().events, 1);

  // Had memory kept end = kT0 + 50000, this heartbeat would be ignored.
  EXPECT_EQ(Append({Heartbeat(kT0 + 30000)}), (std::vector<uint8_t>{0}));
  EXPECT_EQ(Session("dev1", "490330"), (SessionRow{kT0, kT0 + 30000}));
  // And the failed event was not recorded as seen: its resend is new.
  EXPECT_EQ(Append({Named("E", "2", kT0 + 50000)}), (std::vector<uint8_t>{1}));
  EXPECT_EQ(Session("dev1", "490330"), (SessionRow{kT0, kT0 + 50000}));
}

// A failed batch that opened a new session, a successful commit of other
// events, then the failed batch again (a full disk and an SDK resending): the
// retry creates the session's row, so every stored event belongs to a session
// that exists in the file and is exported.
TEST_F(SqliteEventStoreTest, SessionOfAFailedBatchIsNotResurrectedByTheNextCommit) {
  EXPECT_EQ(Append({MakeEvent(EventType::kInit, "", "1", kT0)}), (std::vector<uint8_t>{1}));
  ExecOnFile("CREATE TRIGGER fail_boom BEFORE INSERT ON events WHEN NEW.time_ms = " +
             std::to_string(kT0 + 2000) + " BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");
  const std::vector<Event> failed = {MakeEvent(EventType::kInit, "", "2", kT0 + 1000, "dev1", "s2"),
                                     Named("boom", "3", kT0 + 2000, "dev1", "s2")};
  ASSERT_FALSE(AppendStatus(failed).ok());
  ExecOnFile("DROP TRIGGER fail_boom;");

  EXPECT_EQ(Append({Named("E", "4", kT0 + 500)}), (std::vector<uint8_t>{1}));
  EXPECT_EQ(Append(failed), (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(Export().size(), 4u);
  EXPECT_EQ(Stats().sessions, 2);
  EXPECT_EQ(Session("dev1", "s2"), (SessionRow{kT0 + 1000, kT0 + 2000}));
  auto events = store_->SessionEvents("app1", "dev1", "s2", "");
  ASSERT_TRUE(events.ok()) << events.status().ToString();
  EXPECT_EQ(events->size(), 2u);
}

TEST_F(SqliteEventStoreTest, ReadOnlyOpenOfAMissingFolderIsNotFound) {
  SqliteStoreOptions opts;
  opts.read_only = true;
  const std::string missing = dir_.path() + "/does/not/exist";
  auto store = OpenSqliteEventStore(missing, opts);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(missing));  // and it created nothing
}

TEST_F(SqliteEventStoreTest, ReadOnlyStoreExports) {
  EXPECT_EQ(Append({Named("E", "1", kT0)}), (std::vector<uint8_t>{1}));
  Open(/*read_only=*/true);
  EXPECT_EQ(Export().size(), 1u);
  EXPECT_EQ(Stats().events, 1);
}

// A folder of the first release (schema version 3) is imported on open; the
// rollups are checkpointed as the import goes, so its memory stays within the
// budget however long the history (20,000 events, each in a bucket of its own,
// outgrow the smallest budget's hot buckets several times).
TEST(SqliteEventStoreUpgradeTest, ImportCheckpointsAsItGoesAndKeepsEveryEvent) {
  TempDir dir;
  constexpr int kEvents = 20000;
  {
    SqliteDb db;
    ASSERT_TRUE(db.Open(dir.path() + "/events.db", true).ok());
    ASSERT_TRUE(RunMigrations(db, "events.db", EventsMigrations().first(3)).ok());
    const std::string n =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
        std::to_string(kEvents) + ") ";
    const std::string start = "(" + std::to_string(kT0) + " - i * 900000)";
    Status st = db.Exec("INSERT INTO apps(id, app_id) VALUES(1, 'app1');");
    if (st.ok())
      st = db.Exec(n + "INSERT INTO devices(id, app, device_key) SELECT i, 1, 'd' || i FROM n;");
    if (st.ok())
      st = db.Exec(n + "INSERT INTO users(id, app, user_key) SELECT i, 1, 'u' || i FROM n;");
    if (st.ok()) {
      st = db.Exec(n +
                   "INSERT INTO sessions(id, app, device, session_key, user, start_ms, end_ms,"
                   " has_init) SELECT i, 1, i, 's' || i, i, " +
                   start + ", " + start + " + 60000, 1 FROM n;");
    }
    if (st.ok()) {
      st = db.Exec(n +
                   "INSERT INTO events(id, app, session, device, user, type, name, time_ms, ident,"
                   " client_id, platform, payload) SELECT i, 1, i, i, i, 1, NULL, " +
                   start + ", i, 'c' || i, 'Linux', '{\"plan\":\"pro\"}' FROM n;");
    }
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  SqliteStoreOptions opts;
  opts.fsync_full = false;
  opts.cache_mb = 16;  // the smallest budget
  auto store = OpenSqliteEventStore(dir.path(), opts);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto stats = (*store)->Stats("app1");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->events, kEvents);
  EXPECT_EQ(stats->sessions, kEvents);
  double checkpoints = 0;
  for (const StoreMetric& m : (*store)->Metrics()) {
    if (m.name == "nucleon_checkpoints_total") checkpoints = m.value;
  }
  EXPECT_GT(checkpoints, 1);
  store->reset();
  auto meta = [&](const std::string& sql) {
    SqliteDb db;
    EXPECT_TRUE(db.Open(dir.path() + "/events.db", false).ok());
    auto q = db.Prepare(sql);
    EXPECT_TRUE(q.ok());
    Status st;
    const bool row = q.ok() && q->Step(&st);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return row;
  };
  EXPECT_FALSE(meta("SELECT value FROM meta WHERE key = 'legacy_import'"));  // done
  // Stopped after the old tables went but before the compaction: the next
  // start compacts, and every event is still there.
  EXPECT_TRUE(meta("INSERT INTO meta(key, value) VALUES('legacy_import', '-3') RETURNING key"));
  store = OpenSqliteEventStore(dir.path(), opts);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  stats = (*store)->Stats("app1");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->events, kEvents);
  store->reset();
  EXPECT_FALSE(meta("SELECT value FROM meta WHERE key = 'legacy_import'"));
}

// Writes to a read-only store (the export/stats commands) must fail with a
// Status, never crash. Run in a child process so a crash fails only this test.
using SqliteEventStoreDeathTest = SqliteEventStoreTest;

TEST_F(SqliteEventStoreDeathTest, ReadOnlyStoreRefusesWritesWithoutCrashing) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EQ(Append({Named("E", "1", kT0)}), (std::vector<uint8_t>{1}));
  Open(/*read_only=*/true);
  EXPECT_EXIT(
      {
        const bool refused = !AppendStatus({Named("E", "2", kT0)}).ok();
        std::exit(refused ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "")
      << "Append on a read-only store must return an error";
  EXPECT_EXIT(std::exit(store_->Probe().ok() ? 1 : 0), ::testing::ExitedWithCode(0), "")
      << "Probe on a read-only store must return an error";
  Open();
  EXPECT_EQ(Stats().events, 1);
}

}  // namespace
}  // namespace nucleon
