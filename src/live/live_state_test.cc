#include "live/live_state.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "core/time_util.h"
#include "store/analytics.h"

namespace nucleon {
namespace {

Event Tracked(const std::string& app, const std::string& device, const std::string& user,
              int64_t time_ms, int id) {
  Event e;
  e.app_id = app;
  e.type = EventType::kEvent;
  e.name = "E";
  e.device_id = device;
  e.session_id = "1";
  e.user_key = user;
  e.user_id = user;
  e.time_ms = time_ms;
  e.client_id = std::to_string(id);
  return e;
}

TEST(LiveStateTest, PresenceLastsWhileTheSocketIsOpenAndRecent) {
  LiveState live;
  const int64_t now = 1'800'000'000'000;
  live.Seen(1, "app", Tracked("app", "d1", "u1", now, 1), now);
  live.Seen(2, "app", Tracked("app", "d2", "u1", now, 2), now - 1000);
  live.Seen(3, "other", Tracked("other", "d3", "u3", now, 3), now);

  std::vector<LiveDeviceRow> devices = live.Devices("app", now);
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].device_id, "d1");  // newest activity first
  EXPECT_EQ(live.UserCount("app", now), 1);
  EXPECT_EQ(live.Devices("app", now + LiveState::kPresenceMs + 1).size(), 0u);

  live.Closed(1);
  devices = live.Devices("app", now);
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0].device_id, "d2");
}

TEST(LiveStateTest, EachAppSeesItsOwnDevicesAcrossMovesForgetsAndCloses) {
  LiveState live;
  const int64_t now = 1'800'000'000'000;
  // One connection that carried devices of two apps, one device moving.
  live.Seen(1, "a", Tracked("a", "d1", "u1", now, 1), now);
  live.Seen(1, "b", Tracked("b", "d2", "u2", now, 2), now);
  live.Seen(2, "a", Tracked("a", "d3", "u3", now, 3), now);
  live.Seen(2, "b", Tracked("b", "d3", "u3", now, 4), now);  // d3 now counts for b
  EXPECT_EQ(live.Devices("a", now).size(), 1u);
  EXPECT_EQ(live.Devices("b", now).size(), 2u);
  EXPECT_EQ(live.Devices("c", now).size(), 0u);
  std::vector<LiveDeviceRow> a = live.Devices("a", now);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].user_db_id, UserDbId("a", "u1"));
  live.ForgetUser("b", "u2");
  EXPECT_EQ(live.Devices("b", now).size(), 1u);
  EXPECT_EQ(live.UserCount("b", now), 1);
  live.Closed(1);
  EXPECT_EQ(live.Devices("a", now).size(), 0u);
  EXPECT_EQ(live.UserCount("a", now), 0);
  live.Closed(2);
  EXPECT_EQ(live.Devices("b", now).size(), 0u);
  // A connection id seen again after its close starts afresh.
  live.Seen(1, "b", Tracked("b", "d9", "u9", now, 5), now);
  EXPECT_EQ(live.Devices("b", now).size(), 1u);
  EXPECT_EQ(live.Devices("a", now).size(), 0u);
}

TEST(LiveStateTest, UserCountFollowsEveryChangeWhileReusedBetweenThem) {
  LiveState live;
  const int64_t now = 1'800'000'000'000;
  live.Seen(1, "app", Tracked("app", "d1", "u1", now, 1), now);
  live.Seen(2, "app", Tracked("app", "d2", "u2", now, 2), now - 60'000);
  EXPECT_EQ(live.UserCount("app", now), 2);
  // The same answer again, from the last count.
  EXPECT_EQ(live.UserCount("app", now), 2);
  live.Seen(3, "app", Tracked("app", "d3", "u3", now, 3), now);  // a new device
  EXPECT_EQ(live.UserCount("app", now), 3);
  live.Seen(3, "app", Tracked("app", "d3", "u1", now, 4), now);  // it changes user
  EXPECT_EQ(live.UserCount("app", now), 2);
  live.Closed(1);
  EXPECT_EQ(live.UserCount("app", now), 2);  // u1 still on d3
  live.Closed(3);
  EXPECT_EQ(live.UserCount("app", now), 1);
  // d2 (seen a minute earlier) expires first, then comes back.
  const int64_t later = now + LiveState::kPresenceMs - 30'000;
  EXPECT_EQ(live.UserCount("app", later), 0);
  live.Seen(2, "app", Tracked("app", "d2", "u2", later, 5), later);
  EXPECT_EQ(live.UserCount("app", later), 1);
  live.ForgetUser("app", "u2");
  EXPECT_EQ(live.UserCount("app", later), 0);
  EXPECT_EQ(live.UserCount("other", later), 0);
}

TEST(LiveStateTest, ADeviceMovingToAnotherAppChangesBothCounts) {
  LiveState live;
  const int64_t now = 1'800'000'000'000;
  live.Seen(1, "a", Tracked("a", "d1", "u1", now, 1), now);
  live.Seen(2, "a", Tracked("a", "d2", "u2", now, 2), now);
  EXPECT_EQ(live.UserCount("a", now), 2);
  EXPECT_EQ(live.UserCount("b", now), 0);
  // Same connection, device and user: only the app changes.
  live.Seen(1, "b", Tracked("b", "d1", "u1", now, 3), now);
  EXPECT_EQ(live.UserCount("a", now), 1);
  EXPECT_EQ(live.UserCount("b", now), 1);
  std::vector<LiveDeviceRow> b = live.Devices("b", now);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].user_db_id, UserDbId("b", "u1"));
}

TEST(LiveStateTest, UserDbIdAsBytesAndTextIsTheSameId) {
  EXPECT_EQ(UserDbId("a", "u1"), "5adc225f28feae78b4e4e10c");  // SHA-256("a/u1"), 12 bytes
  EXPECT_EQ(UserDbIdText(UserDbIdOf("a", "u1")), UserDbId("a", "u1"));
  EXPECT_NE(UserDbIdOf("a", "u1"), UserDbIdOf("b", "u1"));
}

TEST(LiveStateTest, ADeviceKeepsWhatItSentAndAConnectionMayCarrySeveral) {
  LiveState live;
  const int64_t now = 1'800'000'000'000;
  const std::string long_device(300, 'x');  // longer than a one-byte length
  Event first = Tracked("app", long_device, "u1", now, 1);
  first.platform = std::string(200, 'p');
  first.os_version = "14";
  first.country = "FR";
  live.Seen(1, "app", first, now - 10);
  // A heartbeat carries only the device: the user, platform, OS and country stay.
  Event heartbeat;
  heartbeat.app_id = "app";
  heartbeat.type = EventType::kHeartbeat;
  heartbeat.device_id = long_device;
  heartbeat.user_key = long_device;
  live.Seen(1, "app", heartbeat, now);
  // Two more devices on the same socket, one with a user made of many bytes.
  const std::string long_user(20000, 'u');
  live.Seen(1, "app", Tracked("app", "d2", long_user, now, 2), now - 20);
  live.Seen(1, "app", Tracked("app", "d3", "u3", now, 3), now - 30);

  std::vector<LiveDeviceRow> rows = live.Devices("app", now);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].device_id, long_device);
  EXPECT_EQ(rows[0].user_key, "u1");
  EXPECT_EQ(rows[0].user_db_id, UserDbId("app", "u1"));
  EXPECT_EQ(rows[0].platform, std::string(200, 'p'));
  EXPECT_EQ(rows[0].os_version, "14");
  EXPECT_EQ(rows[0].country, "FR");
  EXPECT_EQ(rows[0].last_seen_ms, now);
  EXPECT_EQ(rows[1].device_id, "d2");
  EXPECT_EQ(rows[1].user_key, long_user);
  EXPECT_EQ(rows[1].user_db_id, UserDbId("app", long_user));
  EXPECT_EQ(rows[1].platform, "");
  EXPECT_EQ(rows[2].device_id, "d3");
  EXPECT_EQ(live.UserCount("app", now), 3);

  // Forgetting the user of the connection's first device leaves the others.
  live.ForgetUser("app", "u1");
  rows = live.Devices("app", now);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].device_id, "d2");
  EXPECT_EQ(rows[1].device_id, "d3");
  EXPECT_EQ(live.UserCount("app", now), 2);
  live.ForgetUser("app", long_user);
  live.ForgetUser("app", "u3");
  EXPECT_TRUE(live.Devices("app", now).empty());
  EXPECT_EQ(live.UserCount("app", now), 0);
  // The connection is still open: a device it sends again is live again.
  live.Seen(1, "app", Tracked("app", "d3", "u3", now, 4), now);
  EXPECT_EQ(live.UserCount("app", now), 1);
  live.Closed(1);
  EXPECT_TRUE(live.Devices("app", now).empty());
  EXPECT_EQ(live.UserCount("app", now), 0);
}

TEST(LiveStateTest, RecentEventsAreTheCommittedOnesNewestFirst) {
  LiveState live;
  const int64_t now = NowMs();
  std::vector<Event> events = {Tracked("app", "d", "u", now - 2000, 1),
                               Tracked("app", "d", "u", now - 1000, 2),
                               Tracked("app", "d", "u", now - 3000, 3)};
  live.OnCommitted(std::vector<Event>(events), {1, 1, 0});  // the third was a resend
  std::vector<Event> recent = live.RecentEvents("app", now, 10);
  ASSERT_EQ(recent.size(), 2u);
  EXPECT_EQ(recent[0].client_id, "2");
  EXPECT_EQ(recent[1].client_id, "1");

  live.ForgetUser("app", "u");
  EXPECT_TRUE(live.RecentEvents("app", now, 10).empty());
}

// Connections, the committer and API readers reach the state from their own
// threads at once; run under TSan by the `concurrency` label.
TEST(LiveStateTest, ConcurrentWritersAndReaders) {
  LiveState live;
  const int64_t now = NowMs();
  constexpr int kWriters = 4;
  constexpr int kRounds = 300;
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kRounds; ++i) {
        const uint64_t connection = static_cast<uint64_t>(w * kRounds + i);
        const std::string device = "d" + std::to_string(w) + "-" + std::to_string(i % 7);
        const Event e = Tracked("app", device, "u" + std::to_string(i % 5), now, i);
        live.Seen(connection, "app", e, now);
        live.OnCommitted({e}, {1});
        if (i % 3 == 0) live.Closed(connection);
        if (i % 50 == 0) live.ForgetUser("app", "u0");
      }
    });
  }
  std::thread reader([&] {
    while (!done.load()) {
      for (const LiveDeviceRow& row : live.Devices("app", now)) EXPECT_FALSE(row.device_id.empty());
      EXPECT_LE(live.RecentEvents("app", now, 1000).size(), 1000u);
      EXPECT_GE(live.UserCount("app", now), 0);
    }
  });
  for (std::thread& t : threads) t.join();
  done.store(true);
  reader.join();

  // Two of every three connections stayed open; each saw devices of its writer.
  EXPECT_GT(live.Devices("app", now).size(), 0u);
  EXPECT_LE(live.RecentEvents("app", now, 5000).size(), LiveState::kMaxRecentPerApp);
}

// A store shared with other nodes, in memory: what this node published, and
// one other node's device.
class FakeSharedLive final : public SharedLive {
 public:
  Status Publish(std::span<const PresenceRecord> changes, int64_t) override {
    if (down) return Status::Unavailable("down");
    published.insert(published.end(), changes.begin(), changes.end());
    return Status::Ok();
  }
  Result<std::vector<PresenceRecord>> Present(std::string_view app_id,
                                              std::vector<PresenceRecord> local, int64_t) override {
    if (down) return Status::Unavailable("down");
    PresenceRecord other;
    other.app_id = std::string(app_id);
    other.device_id = "elsewhere";
    other.user_key = "u9";
    other.last_seen_ms = 5;
    local.push_back(other);
    return local;
  }
  Result<std::vector<Event>> Recent(std::string_view app_id, int64_t, int64_t, size_t) override {
    if (down) return Status::Unavailable("down");
    return std::vector<Event>{Tracked(std::string(app_id), "elsewhere", "u9", 5, 99)};
  }
  bool down = false;
  std::vector<PresenceRecord> published;
};

TEST(LiveStateTest, SharedPresenceIsPublishedOnceAChangeAndMergedWithOtherNodes) {
  FakeSharedLive shared;
  LiveState live;
  live.Share(&shared);
  const int64_t now = 1'800'000'000'000;
  live.Seen(1, "app", Tracked("app", "d1", "u1", now, 1), now - 10);
  live.Seen(1, "app", Tracked("app", "d1", "u1", now, 2), now);
  live.Seen(2, "app", Tracked("app", "d1", "u1", now, 3), now - 5);  // a second socket
  live.Seen(3, "app", Tracked("app", "d2", "u2", now, 4), now);
  ASSERT_TRUE(live.PublishShared(now).ok());
  ASSERT_EQ(shared.published.size(), 2u);  // each changed device once, as it is now
  for (const PresenceRecord& r : shared.published) {
    EXPECT_TRUE(r.open);
    EXPECT_EQ(r.last_seen_ms, now);
  }
  shared.published.clear();
  ASSERT_TRUE(live.PublishShared(now).ok());
  EXPECT_TRUE(shared.published.empty());  // nothing changed

  // d1 stays through its other socket; d2 is gone.
  live.Closed(1);
  live.Closed(3);
  ASSERT_TRUE(live.PublishShared(now + 1).ok());
  ASSERT_EQ(shared.published.size(), 2u);
  for (const PresenceRecord& r : shared.published) {
    EXPECT_EQ(r.open, r.device_id == "d1") << r.device_id;
    if (r.device_id == "d1") {
      EXPECT_EQ(r.last_seen_ms, now - 5);
    }
  }

  // Answers merge the other node's device; its users count.
  std::vector<LiveDeviceRow> devices = live.Devices("app", now);
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].device_id, "d1");
  EXPECT_EQ(devices[1].device_id, "elsewhere");
  EXPECT_EQ(live.UserCount("app", now), 2);
  live.OnCommitted({Tracked("app", "d1", "u1", now, 7)}, {1});
  std::vector<Event> recent = live.RecentEvents("app", now, 10);
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_EQ(recent[0].device_id, "elsewhere");

  // A shared store that is down: this node's own view, and the changes wait.
  shared.down = true;
  shared.published.clear();
  live.Seen(4, "app", Tracked("app", "d3", "u3", now, 8), now);
  EXPECT_FALSE(live.PublishShared(now).ok());
  ASSERT_EQ(live.Devices("app", now).size(), 2u);  // d1 and d3
  EXPECT_EQ(live.RecentEvents("app", now, 10).size(), 1u);
  EXPECT_EQ(live.RecentEvents("app", now, 10)[0].device_id, "d1");
  shared.down = false;
  ASSERT_TRUE(live.PublishShared(now).ok());
  ASSERT_EQ(shared.published.size(), 1u);
  EXPECT_EQ(shared.published[0].device_id, "d3");
}

}  // namespace
}  // namespace nucleon
