#include "ingest/group_committer.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/testing/temp_dir.h"
#include "store/event_store.h"
#include "store/fault_injecting_event_store.h"
#include "store/sqlite/sqlite_event_store.h"

namespace nucleon {
namespace {

Event MakeEvent(const std::string& device, int id, const std::string& name = "E",
                EventType type = EventType::kEvent) {
  Event e;
  e.app_id = "app1";
  e.type = type;
  e.name = type == EventType::kEvent ? name : "";
  e.device_id = device;
  e.session_id = "1";
  e.user_key = device;
  e.time_ms = 1795685880000 + id;
  e.client_id = std::to_string(id);
  e.client_date = std::to_string(e.time_ms);
  return e;
}

Event Heartbeat(const std::string& device) {
  Event e;
  e.app_id = "app1";
  e.type = EventType::kHeartbeat;
  e.device_id = device;
  e.session_id = "1";
  e.user_key = device;
  e.time_ms = 1795685890000;
  return e;
}

std::vector<Event> Batch(const std::string& device, int first_id, int n) {
  std::vector<Event> out;
  for (int i = 0; i < n; ++i) out.push_back(MakeEvent(device, first_id + i));
  return out;
}

// What one batch's completion saw.
struct Completion {
  bool ran = false;
  Status status;
  std::vector<uint8_t> inserted;
};

// Records completions; thread-safe.
class Completions {
 public:
  explicit Completions(size_t n) : results_(n) {}
  GroupCommitter::Done For(size_t i) {
    return [this, i](const Status& st, const std::vector<uint8_t>& inserted) {
      std::lock_guard<std::mutex> lock(mu_);
      EXPECT_FALSE(results_[i].ran) << "completion " << i << " ran twice";
      results_[i] = {true, st, inserted};
      ++ran_;
    };
  }
  Completion Get(size_t i) const {
    std::lock_guard<std::mutex> lock(mu_);
    return results_[i];
  }
  size_t ran() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ran_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Completion> results_;
  size_t ran_ = 0;
};

// Waits (bounded, never asserted on time) for `pred`.
template <typename Pred>
bool WaitFor(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

class GroupCommitterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteStoreOptions opts;
    opts.fsync_full = false;
    auto store = OpenSqliteEventStore(dir_.path(), opts);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    fault_ = std::make_unique<FaultInjectingEventStore>(store_.get());
  }
  void TearDown() override {
    if (fault_) fault_->ReleaseAppends();
    committer_.reset();
  }

  // No idle probes unless a test asks: the test thread reads the store only
  // while the writer is idle or stopped.
  GroupCommitter& Start(GroupCommitter::Options options = NoProbes()) {
    committer_ = std::make_unique<GroupCommitter>(fault_.get(), options, &counters_);
    return *committer_;
  }
  static GroupCommitter::Options NoProbes() {
    GroupCommitter::Options o;
    o.probe_interval_ms = 3600 * 1000;
    return o;
  }

  // Events stored for app1; call only while the committer is stopped.
  int64_t StoredEvents() {
    auto stats = store_->Stats("app1");
    EXPECT_TRUE(stats.ok()) << stats.status().ToString();
    return stats.ok() ? stats->events : -1;
  }

  // Submits a one-event batch and waits until its Append is held, so that
  // what is submitted next queues up behind a commit in progress.
  void OccupyWriter(GroupCommitter& c, Completions& done, size_t slot) {
    fault_->HoldAppends();
    ASSERT_TRUE(c.Submit(Batch("warmup", 900000 + static_cast<int>(slot), 1), done.For(slot)).ok());
    fault_->WaitUntilAppendHeld();
  }

  TempDir dir_;
  std::unique_ptr<EventStore> store_;
  std::unique_ptr<FaultInjectingEventStore> fault_;
  IngestCounters counters_;
  std::unique_ptr<GroupCommitter> committer_;
};

TEST_F(GroupCommitterTest, AcksRunOnlyAfterAppendReturned) {
  GroupCommitter& c = Start();
  std::atomic<int> appends_seen_by_done{-1};
  std::atomic<int64_t> stored_seen_by_done{-1};
  Completions done(1);
  fault_->HoldAppends();
  ASSERT_TRUE(
      c.Submit(Batch("d1", 1, 3), [&](const Status& st, const std::vector<uint8_t>& inserted) {
         // Runs on the writer thread: the store may be read here.
         appends_seen_by_done = fault_->append_calls();
         auto stats = store_->Stats("app1");
         stored_seen_by_done = stats.ok() ? stats->events : -2;
         done.For(0)(st, inserted);
       }).ok());
  fault_->WaitUntilAppendHeld();
  // The writer is inside Append: no ack may have left.
  EXPECT_EQ(done.ran(), 0u);
  fault_->ReleaseAppends();
  c.Flush();
  ASSERT_EQ(done.ran(), 1u);
  EXPECT_TRUE(done.Get(0).status.ok());
  EXPECT_EQ(done.Get(0).inserted, (std::vector<uint8_t>{1, 1, 1}));
  EXPECT_EQ(appends_seen_by_done.load(), 1);  // counted when Append had returned
  EXPECT_EQ(stored_seen_by_done.load(), 3);   // and the events were in the store
  EXPECT_EQ(counters_.commits.load(), 1u);
  EXPECT_EQ(counters_.events_stored.load(), 3u);
}

TEST_F(GroupCommitterTest, ManySubmissionsFromSeveralThreadsShareFewCommits) {
  GroupCommitter& c = Start();
  constexpr int kThreads = 4, kPerThread = 25, kEventsPerBatch = 2;
  constexpr size_t kBatches = kThreads * kPerThread;
  Completions done(kBatches + 1);
  OccupyWriter(c, done, kBatches);
  std::vector<std::thread> threads;
  std::atomic<int> refused{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const size_t slot = static_cast<size_t>(t * kPerThread + i);
        Status st = c.Submit(Batch("dev" + std::to_string(t), i * kEventsPerBatch, kEventsPerBatch),
                             done.For(slot));
        if (!st.ok()) ++refused;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(refused.load(), 0);
  fault_->ReleaseAppends();
  c.Flush();
  ASSERT_EQ(done.ran(), kBatches + 1);
  for (size_t i = 0; i < kBatches; ++i) {
    Completion r = done.Get(i);
    EXPECT_TRUE(r.status.ok()) << i;
    EXPECT_EQ(r.inserted, (std::vector<uint8_t>{1, 1})) << i;
  }
  // 101 submissions, 2 commits: the held one and one for everything queued behind it.
  EXPECT_EQ(counters_.commits.load(), 2u);
  EXPECT_EQ(fault_->append_calls(), 2);
  EXPECT_EQ(fault_->append_sizes(), (std::vector<size_t>{1, kBatches * kEventsPerBatch}));
  EXPECT_EQ(counters_.events_stored.load(), kBatches * kEventsPerBatch + 1);
  c.Stop();
  EXPECT_EQ(StoredEvents(), static_cast<int64_t>(kBatches * kEventsPerBatch + 1));
}

TEST_F(GroupCommitterTest, GroupsRespectTheCapAndNeverSplitABatch) {
  GroupCommitter::Options o = NoProbes();
  o.max_group_events = 5;
  GroupCommitter& c = Start(o);
  Completions done(5);
  OccupyWriter(c, done, 0);
  ASSERT_TRUE(c.Submit(Batch("b", 0, 3), done.For(1)).ok());
  ASSERT_TRUE(c.Submit(Batch("c", 0, 3), done.For(2)).ok());
  ASSERT_TRUE(c.Submit(Batch("d", 0, 2), done.For(3)).ok());
  ASSERT_TRUE(c.Submit(Batch("e", 0, 7), done.For(4)).ok());  // larger than a group: alone
  fault_->ReleaseAppends();
  c.Flush();
  EXPECT_EQ(done.ran(), 5u);
  EXPECT_EQ(fault_->append_sizes(), (std::vector<size_t>{1, 3, 5, 7}));
  EXPECT_EQ(done.Get(4).inserted, std::vector<uint8_t>(7, 1));
}

TEST_F(GroupCommitterTest, ResendsAndHeartbeatsAreCountedApart) {
  GroupCommitter& c = Start();
  Completions done(3);
  OccupyWriter(c, done, 0);
  ASSERT_TRUE(c.Submit({MakeEvent("d", 1), MakeEvent("d", 2)}, done.For(1)).ok());
  // Same group: a resend of id 1, a heartbeat, and a new event.
  ASSERT_TRUE(c.Submit({MakeEvent("d", 1), Heartbeat("d"), MakeEvent("d", 3)}, done.For(2)).ok());
  fault_->ReleaseAppends();
  c.Flush();
  EXPECT_EQ(done.Get(1).inserted, (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(done.Get(2).inserted, (std::vector<uint8_t>{0, 0, 1}));
  EXPECT_EQ(counters_.events_stored.load(), 4u);  // warm-up + 3
  EXPECT_EQ(counters_.events_duplicate.load(), 1u);
  EXPECT_EQ(counters_.heartbeats.load(), 1u);
  EXPECT_EQ(counters_.commits.load(), 2u);
  c.Stop();
  EXPECT_EQ(StoredEvents(), 4);
}

TEST_F(GroupCommitterTest, FailedAppendFailsEveryBatchOfItsGroupAndRecovers) {
  GroupCommitter& c = Start();
  Completions done(5);
  OccupyWriter(c, done, 0);
  ASSERT_TRUE(c.Submit(Batch("b", 0, 2), done.For(1)).ok());
  ASSERT_TRUE(c.Submit(Batch("c", 0, 3), done.For(2)).ok());
  fault_->FailAppends(Status::Unavailable("disk full"));
  fault_->ReleaseAppends();
  c.Flush();
  ASSERT_EQ(done.ran(), 3u);
  EXPECT_EQ(fault_->append_sizes(), (std::vector<size_t>{1, 5}));  // b and c in one group
  for (size_t i = 0; i < 3; ++i) {
    Completion r = done.Get(i);
    EXPECT_FALSE(r.status.ok()) << i;
    EXPECT_EQ(r.status.code(), StatusCode::kUnavailable) << i;
    EXPECT_EQ(r.inserted, std::vector<uint8_t>(i == 0 ? 1 : i == 1 ? 2 : 3, 0)) << i;
  }
  EXPECT_EQ(counters_.commit_failures.load(), 2u);
  EXPECT_EQ(counters_.commits.load(), 0u);
  EXPECT_EQ(counters_.events_stored.load(), 0u);
  EXPECT_EQ(counters_.events_duplicate.load(), 0u);
  EXPECT_FALSE(c.Healthy());

  // The fault clears: the next commit succeeds (the SDK resends b) and health returns.
  fault_->ClearFaults();
  ASSERT_TRUE(c.Submit(Batch("b", 0, 2), done.For(3)).ok());
  ASSERT_TRUE(c.Submit(Batch("d", 0, 1), done.For(4)).ok());
  c.Flush();
  EXPECT_TRUE(done.Get(3).status.ok());
  EXPECT_EQ(done.Get(3).inserted, (std::vector<uint8_t>{1, 1}));
  EXPECT_TRUE(done.Get(4).status.ok());
  EXPECT_TRUE(c.Healthy());
  // b and d share a commit unless the writer took b before d arrived.
  EXPECT_GE(counters_.commits.load(), 1u);
  EXPECT_LE(counters_.commits.load(), 2u);
  EXPECT_EQ(counters_.events_stored.load(), 3u);
  c.Stop();
  EXPECT_EQ(StoredEvents(), 3);  // nothing of the failed group
}

TEST_F(GroupCommitterTest, HealthFollowsTheIdleProbe) {
  GroupCommitter::Options o;
  o.probe_interval_ms = 5;
  GroupCommitter& c = Start(o);
  EXPECT_TRUE(c.Healthy());
  fault_->FailProbes(Status::Unavailable("read-only file system"));
  ASSERT_TRUE(WaitFor([&] { return !c.Healthy(); })) << "a failing probe never made it unhealthy";
  fault_->ClearFaults();
  ASSERT_TRUE(WaitFor([&] { return c.Healthy(); })) << "a good probe never made it healthy again";
  EXPECT_GE(fault_->probe_calls(), 2);
  EXPECT_EQ(fault_->append_calls(), 0);
}

TEST_F(GroupCommitterTest, ProbeRestoresHealthAfterAFailedCommit) {
  GroupCommitter::Options o;
  o.probe_interval_ms = 5;
  GroupCommitter& c = Start(o);
  Completions done(1);
  fault_->FailAppends(Status::Unavailable("disk full"), 1);
  ASSERT_TRUE(c.Submit(Batch("a", 0, 1), done.For(0)).ok());
  c.Flush();
  EXPECT_FALSE(done.Get(0).status.ok());
  // No further traffic: the idle probe finds the storage writable again.
  ASSERT_TRUE(WaitFor([&] { return c.Healthy(); }));
}

TEST_F(GroupCommitterTest, FlushWaitsForEverythingSubmitted) {
  GroupCommitter& c = Start();
  c.Flush();  // nothing submitted: returns
  constexpr size_t kBatches = 60;
  Completions done(kBatches);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < kBatches; i += 3) {
        EXPECT_TRUE(c.Submit(Batch("d" + std::to_string(i), 0, 1), done.For(i)).ok());
      }
    });
  }
  for (std::thread& th : threads) th.join();
  c.Flush();
  EXPECT_EQ(done.ran(), kBatches);
  EXPECT_EQ(counters_.events_stored.load(), kBatches);
  EXPECT_LE(counters_.commits.load(), kBatches);
}

TEST_F(GroupCommitterTest, StopCommitsWhatIsQueued) {
  GroupCommitter& c = Start();
  Completions done(3);
  OccupyWriter(c, done, 0);
  ASSERT_TRUE(c.Submit(Batch("b", 0, 2), done.For(1)).ok());
  ASSERT_TRUE(c.Submit(Batch("c", 0, 2), done.For(2)).ok());
  std::thread stopper([&] { c.Stop(); });
  // Once Stop has begun, Submit refuses; whatever got in before is committed too.
  std::atomic<int> extra_done{0};
  int extra_accepted = 0;
  for (int i = 0;; ++i) {
    Status st = c.Submit(Batch("late", i, 1), [&](const Status& s, const std::vector<uint8_t>&) {
      EXPECT_TRUE(s.ok());
      ++extra_done;
    });
    if (!st.ok()) {
      EXPECT_EQ(st.code(), StatusCode::kUnavailable);
      break;
    }
    ++extra_accepted;
    std::this_thread::yield();
  }
  fault_->ReleaseAppends();
  stopper.join();
  EXPECT_EQ(done.ran(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(done.Get(i).status.ok()) << i;
  EXPECT_EQ(extra_done.load(), extra_accepted);
  EXPECT_EQ(StoredEvents(), 5 + extra_accepted);

  bool ran = false;
  Status after =
      c.Submit(Batch("x", 0, 1), [&](const Status&, const std::vector<uint8_t>&) { ran = true; });
  EXPECT_EQ(after.code(), StatusCode::kUnavailable);
  c.Flush();  // returns at once when stopped
  EXPECT_FALSE(ran);
  c.Stop();  // idempotent
}

TEST_F(GroupCommitterTest, FullBacklogRefusesSubmissions) {
  GroupCommitter::Options o = NoProbes();
  o.max_pending_events = 10;
  GroupCommitter& c = Start(o);
  Completions done(5);
  OccupyWriter(c, done, 0);  // taken by the writer: no longer pending
  EXPECT_TRUE(c.Submit(Batch("b", 0, 6), done.For(1)).ok());
  Status refused = c.Submit(Batch("c", 0, 5), done.For(2));  // 6 + 5 > 10
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(c.Submit(Batch("d", 0, 4), done.For(3)).ok());  // 6 + 4 = 10
  EXPECT_EQ(c.Submit(Batch("e", 0, 1), done.For(4)).code(), StatusCode::kUnavailable);
  EXPECT_EQ(counters_.rejected_backlog.load(), 2u);
  fault_->ReleaseAppends();
  c.Flush();
  EXPECT_EQ(done.ran(), 3u);
  EXPECT_FALSE(done.Get(2).ran);
  EXPECT_FALSE(done.Get(4).ran);
  EXPECT_TRUE(done.Get(1).status.ok());
  EXPECT_TRUE(done.Get(3).status.ok());
  // Once drained, the backlog takes batches again.
  EXPECT_TRUE(c.Submit(Batch("c", 0, 5), done.For(2)).ok());
  c.Flush();
  EXPECT_TRUE(done.Get(2).status.ok());
}

class RecordingObserver : public CommitObserver {
 public:
  explicit RecordingObserver(const Completions* done) : done_(done) {}
  void OnCommitted(std::vector<Event>&& events,
                   const std::vector<uint8_t>& inserted) override {
    std::lock_guard<std::mutex> lock(mu_);
    sizes.push_back(events.size());
    inserted_total.push_back(inserted);
    acks_before.push_back(done_->ran());
  }
  std::mutex mu_;
  std::vector<size_t> sizes;
  std::vector<std::vector<uint8_t>> inserted_total;
  std::vector<size_t> acks_before;

 private:
  const Completions* done_;
};

TEST_F(GroupCommitterTest, ObserverSeesSuccessfulCommitsBeforeTheirAcks) {
  Completions done(3);
  RecordingObserver observer(&done);
  committer_ = std::make_unique<GroupCommitter>(fault_.get(), NoProbes(), &counters_);
  GroupCommitter& c = *committer_;
  c.SetObserver(&observer);
  ASSERT_TRUE(c.Submit({MakeEvent("a", 1), MakeEvent("a", 1)}, done.For(0)).ok());
  c.Flush();
  fault_->FailAppends(Status::Unavailable("disk full"), 1);
  ASSERT_TRUE(c.Submit(Batch("b", 0, 1), done.For(1)).ok());
  c.Flush();
  ASSERT_TRUE(c.Submit(Batch("b", 0, 1), done.For(2)).ok());
  c.Flush();
  c.Stop();
  std::lock_guard<std::mutex> lock(observer.mu_);
  EXPECT_EQ(observer.sizes, (std::vector<size_t>{2, 1}));  // not the failed commit
  EXPECT_EQ(observer.inserted_total[0], (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(observer.acks_before, (std::vector<size_t>{0, 2}));
}

}  // namespace
}  // namespace nucleon

namespace nucleon {
namespace {

// Commits in steps like the SQLite store, and lets a test hold or fail the
// flush (EventStore::Sync) that makes commits durable.
class FlushControlledStore : public EventStoreWrapper {
 public:
  using EventStoreWrapper::EventStoreWrapper;
  Status AppendDeferred(std::span<const Event> events, std::vector<uint8_t>* inserted,
                        std::function<void()>* publish) override {
    appends_.fetch_add(1);
    return target()->AppendDeferred(events, inserted, publish);
  }
  Status Sync() override {
    std::unique_lock<std::mutex> lock(mu_);
    ++syncs_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !hold_; });
    return fail_ ? Status::Unavailable("injected flush failure") : target()->Sync();
  }
  void Hold(bool hold) {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = hold;
    cv_.notify_all();
  }
  void Fail(bool fail) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_ = fail;
  }
  int syncs() {
    std::lock_guard<std::mutex> lock(mu_);
    return syncs_;
  }
  int appends() const { return appends_.load(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false, fail_ = false;
  int syncs_ = 0;
  std::atomic<int> appends_{0};
};

TEST(GroupCommitterFlushTest, AcksWaitForTheFlushWhileTheWriterGoesOnAndAFailedFlushAcksNothing) {
  TempDir dir;
  SqliteStoreOptions opts;
  opts.fsync_full = false;
  auto sqlite = OpenSqliteEventStore(dir.path(), opts);
  ASSERT_TRUE(sqlite.ok()) << sqlite.status().ToString();
  FlushControlledStore store(sqlite->get());
  IngestCounters counters;
  GroupCommitter::Options o;
  o.probe_interval_ms = 3600 * 1000;
  auto committer = std::make_unique<GroupCommitter>(&store, o, &counters);

  Completions done(4);
  store.Hold(true);
  ASSERT_TRUE(committer->Submit(Batch("a", 1, 3), done.For(0)).ok());
  ASSERT_TRUE(WaitFor([&] { return store.syncs() >= 1; }));
  EXPECT_FALSE(done.Get(0).ran);  // committed, not yet durable: no ack
  // The writer is not waiting for the disk: the next group commits meanwhile.
  ASSERT_TRUE(committer->Submit(Batch("b", 10, 2), done.For(1)).ok());
  ASSERT_TRUE(WaitFor([&] { return store.appends() >= 2; }));
  EXPECT_FALSE(done.Get(1).ran);

  store.Fail(true);
  store.Hold(false);
  ASSERT_TRUE(WaitFor([&] { return done.ran() >= 2; }));
  for (size_t i : {0u, 1u}) {
    EXPECT_FALSE(done.Get(i).status.ok()) << i;  // not acked: the SDK will resend
    EXPECT_EQ(done.Get(i).inserted, std::vector<uint8_t>(i == 0 ? 3 : 2, 0)) << i;
  }
  EXPECT_FALSE(committer->Healthy());

  // The resends are recognised (the commits were in the file all along) and acked.
  store.Fail(false);
  ASSERT_TRUE(committer->Submit(Batch("a", 1, 3), done.For(2)).ok());
  ASSERT_TRUE(committer->Submit(Batch("b", 10, 2), done.For(3)).ok());
  ASSERT_TRUE(WaitFor([&] { return done.ran() >= 4; }));
  EXPECT_TRUE(done.Get(2).status.ok());
  EXPECT_EQ(done.Get(2).inserted, std::vector<uint8_t>(3, 0));
  EXPECT_EQ(done.Get(3).inserted, std::vector<uint8_t>(2, 0));
  EXPECT_TRUE(committer->Healthy());
  committer.reset();
  auto stats = (*sqlite)->Stats("app1");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->events, 5);
}

}  // namespace
}  // namespace nucleon
