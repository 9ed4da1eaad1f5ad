// Rollups on a real events file: what is applied, checkpointed, evicted,
// reloaded, removed and reopened must always read back as the plain sum of the
// events (a model built with BucketCore/PropValues directly), and a day
// aggregate built from buckets that changed meanwhile must never be cached.
#include "store/sqlite/rollups.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/testing/temp_dir.h"
#include "core/time_util.h"
#include "store/sqlite/events_schema.h"
#include "store/sqlite/migration_runner.h"

namespace nucleon {
namespace {

constexpr int64_t kDayMs = 86400000;
constexpr int64_t kDay0 = 1795651200000;  // 2026-11-26T00:00:00Z
constexpr int64_t kDay = kDay0 / kDayMs;

// Events with the props their spans point into.
struct Events {
  std::deque<std::vector<BodyProp>> props;
  std::vector<RollupEvent> list;
};

// What the rollups must hold: the events added up directly.
struct Model {
  std::map<int64_t, BucketCore> cores;
  std::map<std::pair<int64_t, uint64_t>, PropValues> slots;  // (bucket, slot)

  void Add(const RollupEvent& e) {
    const int64_t b = FloorDiv(e.time_ms, kBucketMs);
    cores[b].Add(e);
    if (!e.name || (e.type != EventType::kInit && e.type != EventType::kEvent)) return;
    for (const BodyProp& p : e.props) slots[{b, PropSlot(e.name, p.key)}].Add(p.value);
  }
};

class RollupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(db_.Open(Path(), true).ok());
    ASSERT_TRUE(RunMigrations(db_, "events.db", EventsMigrations()).ok());
    ASSERT_TRUE(read_.Open(Path(), false, true).ok());
    init_ = dict_.Intern("init");
    for (int i = 0; i < 4; ++i) names_.push_back(dict_.Intern("event-" + std::to_string(i)));
    for (int i = 0; i < 3; ++i) keys_.push_back(dict_.Intern("key-" + std::to_string(i)));
    for (int i = 0; i < 6; ++i) dim_values_.push_back(dict_.Intern("dim-" + std::to_string(i)));
  }

  std::string Path() const { return dir_.path() + "/events.db"; }

  // `n` random events of `users` between `from` and `to`.
  void Generate(std::mt19937_64& rng, size_t n, int64_t from, int64_t to,
                const std::vector<uint32_t>& users, Events* out) {
    for (size_t i = 0; i < n; ++i) {
      RollupEvent e;
      e.id = ++next_row_;  // rows in storage order, as the publisher hands them over
      e.time_ms = from + static_cast<int64_t>(rng() % static_cast<uint64_t>(to - from));
      e.user = users[rng() % users.size()];
      switch (rng() % 5) {
        case 0:
          e.type = EventType::kInit;
          e.name = init_;
          for (size_t d = 0; d < kDims; ++d)
            e.dims[d] = rng() % 3 ? dim_values_[rng() % dim_values_.size()] : 0;
          break;
        case 1:
          e.type = EventType::kError;
          e.name = names_[rng() % names_.size()];
          break;
        case 2:
          e.type = EventType::kView;
          break;
        default:
          e.type = EventType::kEvent;
          e.name = names_[rng() % names_.size()];
          break;
      }
      auto& props = out->props.emplace_back();
      if (e.type == EventType::kInit || e.type == EventType::kEvent) {
        for (size_t k = rng() % 3; k > 0; --k) {
          props.push_back({keys_[rng() % keys_.size()],
                           {static_cast<PropValue::Kind>(rng() % 3), std::to_string(rng() % 4)}});
        }
      }
      e.props = props;
      out->list.push_back(e);
    }
  }

  // Rollups::Apply takes one app's events in any order; the publisher hands
  // them over in commit order, in groups.
  void Apply(Rollups& r, int64_t app, const std::vector<RollupEvent>& events, size_t group = 17) {
    for (size_t i = 0; i < events.size(); i += group) {
      const size_t n = std::min(group, events.size() - i);
      ASSERT_TRUE(r.Apply(app, std::span<const RollupEvent>(events.data() + i, n), read_).ok());
    }
  }

  // The checkpoint as the store runs it: one transaction on the writer connection.
  void Checkpoint(Rollups& r, int64_t mark) {
    Rollups::CheckpointWork work;
    ASSERT_TRUE(db_.Exec("BEGIN IMMEDIATE").ok());
    ASSERT_TRUE(dict_.FlushPending(db_).ok());
    ASSERT_TRUE(r.WriteDirty(db_, mark, &work).ok());
    ASSERT_TRUE(db_.Exec("COMMIT").ok());
    dict_.CommitFlushed();
    r.FinishCheckpoint(work, true);
  }

  // Every bucket and property slot `r` shows for `app`, read as a reader does
  // (one read transaction), in a comparable form.
  struct Snapshot {
    std::map<int64_t, std::string> cores;  // bucket -> encoded core (bounds as given)
    std::map<int64_t, std::pair<int64_t, int64_t>> bounds;
    std::map<int64_t, std::vector<std::pair<int64_t, int64_t>>> runs;
    std::map<std::pair<int64_t, uint64_t>, std::map<std::string, uint32_t>> slots;
  };
  Snapshot Read(Rollups& r, int64_t app, bool ignore_bounds = false) {
    Snapshot s;
    ReadTx tx{read_, r.cache_epoch()};
    EXPECT_TRUE(read_.Exec("BEGIN").ok());
    const std::vector<int64_t> buckets = r.Present(app, INT64_MIN / 4, INT64_MAX / 4);
    std::vector<CoreRef> refs;
    EXPECT_TRUE(r.Cores(app, buckets, tx, &refs).ok());
    std::set<uint64_t> slot_ids;
    for (const CoreRef& ref : refs) {
      BucketCore c = *ref.core;
      s.bounds[ref.bucket] = {c.min_ms, c.max_ms};
      s.runs[ref.bucket] = c.runs;
      if (ignore_bounds) {
        c.min_ms = c.max_ms = 0;
        c.runs.clear();
      }
      c.Encode(&s.cores[ref.bucket]);
      for (const auto& k : c.prop_keys) slot_ids.insert(PropSlot(k.event, k.key));
    }
    // Every slot any bucket has, asked for every bucket (absent ones must be empty).
    for (uint64_t slot : slot_ids) {
      std::vector<std::shared_ptr<const PropValues>> values;
      EXPECT_TRUE(r.PropSlots(app, static_cast<uint32_t>(slot >> 32), static_cast<uint32_t>(slot),
                              buckets, tx, &values)
                      .ok());
      EXPECT_EQ(values.size(), buckets.size());
      for (size_t i = 0; i < buckets.size() && i < values.size(); ++i) {
        if (values[i] && !values[i]->counts.empty()) {
          s.slots[{buckets[i], slot}] = {values[i]->counts.begin(), values[i]->counts.end()};
        }
      }
    }
    EXPECT_TRUE(read_.Exec("COMMIT").ok());
    return s;
  }

  static Snapshot FromModel(const Model& m, bool ignore_bounds = false) {
    Snapshot s;
    for (const auto& [b, core] : m.cores) {
      if (core.empty()) continue;
      BucketCore c = core;
      s.bounds[b] = {c.min_ms, c.max_ms};
      s.runs[b] = c.runs;
      if (ignore_bounds) {
        c.min_ms = c.max_ms = 0;
        c.runs.clear();
      }
      c.Encode(&s.cores[b]);
    }
    for (const auto& [key, v] : m.slots) {
      if (!v.counts.empty()) s.slots[key] = {v.counts.begin(), v.counts.end()};
    }
    return s;
  }

  static void ExpectSame(const Snapshot& got, const Snapshot& want, const std::string& what) {
    EXPECT_EQ(got.cores.size(), want.cores.size()) << what;
    for (const auto& [b, blob] : want.cores) {
      auto it = got.cores.find(b);
      if (it == got.cores.end()) {
        ADD_FAILURE() << what << ": bucket " << b << " missing";
        continue;
      }
      EXPECT_EQ(it->second, blob) << what << ": bucket " << b;
    }
    for (const auto& [b, blob] : got.cores) {
      EXPECT_TRUE(want.cores.count(b)) << what << ": extra bucket " << b;
    }
    EXPECT_EQ(got.slots, want.slots) << what;
  }

  int64_t StoredMark() {
    auto q = db_.Prepare("SELECT value FROM meta WHERE key = 'rollup_mark'");
    Status st;
    EXPECT_TRUE(q.ok() && q->Step(&st));
    return std::stoll(std::string(q->Text(0)));
  }

  TempDir dir_;
  SqliteDb db_, read_;
  StringDictionary dict_;
  uint32_t init_ = 0;
  std::vector<uint32_t> names_, keys_, dim_values_;
  int64_t next_row_ = 0;
};

TEST_F(RollupsTest, CheckpointThenReopenReadsTheSame) {
  std::mt19937_64 rng(1);
  Events a, b;
  Generate(rng, 600, kDay0, kDay0 + 2 * kDayMs, {1, 2, 3, 4, 5}, &a);
  Generate(rng, 200, kDay0 + kDayMs / 2, kDay0 + kDayMs, {1, 9}, &b);
  Model ma, mb;
  for (const auto& e : a.list) ma.Add(e);
  for (const auto& e : b.list) mb.Add(e);

  Rollups r(&dict_, RollupOptions{});
  ASSERT_TRUE(r.Open(db_).ok());
  EXPECT_EQ(r.mark(), 0);
  Apply(r, 1, a.list);
  Apply(r, 2, b.list);
  EXPECT_EQ(r.dirty_events(), 800u);
  ExpectSame(Read(r, 1), FromModel(ma), "app 1, hot");
  ExpectSame(Read(r, 2), FromModel(mb), "app 2, hot");

  Checkpoint(r, 800);
  EXPECT_EQ(r.mark(), 800);
  EXPECT_EQ(StoredMark(), 800);
  EXPECT_EQ(r.dirty_events(), 0u);
  ExpectSame(Read(r, 1), FromModel(ma), "app 1, after checkpoint");

  Rollups reopened(&dict_, RollupOptions{});
  ASSERT_TRUE(reopened.Open(db_).ok());
  EXPECT_EQ(reopened.mark(), 800);
  EXPECT_EQ(reopened.Present(1, INT64_MIN / 4, INT64_MAX / 4),
            r.Present(1, INT64_MIN / 4, INT64_MAX / 4));
  EXPECT_EQ(reopened.Present(2, INT64_MIN / 4, INT64_MAX / 4),
            r.Present(2, INT64_MIN / 4, INT64_MAX / 4));
  ExpectSame(Read(reopened, 1), FromModel(ma), "app 1, reopened");
  ExpectSame(Read(reopened, 2), FromModel(mb), "app 2, reopened");
  EXPECT_EQ(reopened.Stats().hot_buckets, 0u);
}

TEST_F(RollupsTest, FailedCheckpointKeepsEverythingDirty) {
  std::mt19937_64 rng(2);
  Events a;
  Generate(rng, 200, kDay0, kDay0 + kDayMs, {1, 2, 3}, &a);
  Model m;
  for (const auto& e : a.list) m.Add(e);
  Rollups r(&dict_, RollupOptions{});
  ASSERT_TRUE(r.Open(db_).ok());
  Apply(r, 1, a.list);

  Rollups::CheckpointWork work;
  ASSERT_TRUE(db_.Exec("BEGIN IMMEDIATE").ok());
  ASSERT_TRUE(dict_.FlushPending(db_).ok());
  ASSERT_TRUE(r.WriteDirty(db_, 200, &work).ok());
  ASSERT_TRUE(db_.Exec("ROLLBACK").ok());
  dict_.DropFlushed();
  r.FinishCheckpoint(work, false);
  EXPECT_EQ(r.mark(), 0);
  EXPECT_EQ(r.dirty_events(), 200u);

  Checkpoint(r, 200);
  Rollups reopened(&dict_, RollupOptions{});
  ASSERT_TRUE(reopened.Open(db_).ok());
  EXPECT_EQ(reopened.mark(), 200);
  ExpectSame(Read(reopened, 1), FromModel(m), "after the retried checkpoint");
}

// The hot set's memory is counted as events are added, so a load spread over
// the past can be checkpointed (and leave memory) before it outgrows the budget.
TEST_F(RollupsTest, HotMemoryIsCountedAsEventsArriveAndFallsBackAfterACheckpoint) {
  std::mt19937_64 rng(7);
  Events a;
  Generate(rng, 2000, kDay0 - 20 * kDayMs, kDay0, {1, 2, 3, 4, 5, 6}, &a);
  RollupOptions opts;
  opts.hot_bytes = 64 << 10;
  Rollups r(&dict_, opts);
  ASSERT_TRUE(r.Open(db_).ok());
  EXPECT_EQ(r.hot_bytes(), 0u);
  EXPECT_FALSE(r.hot_over_budget());

  size_t before = 0;
  for (size_t i = 0; i < a.list.size(); i += 100) {
    std::vector<RollupEvent> part(a.list.begin() + i,
                                  a.list.begin() + std::min(a.list.size(), i + 100));
    Apply(r, 1, part);
    EXPECT_GE(r.hot_bytes(), before) << "adding events never shrinks the hot set";
    before = r.hot_bytes();
  }
  EXPECT_TRUE(r.hot_over_budget()) << r.hot_bytes() << " bytes in 20 days of buckets";

  Checkpoint(r, 2000);
  EXPECT_LE(r.hot_bytes(), opts.hot_bytes);
  EXPECT_FALSE(r.hot_over_budget());
  EXPECT_GT(r.Stats().hot_buckets, 0u) << "the most recently touched buckets stay";
  Model m;
  for (const auto& e : a.list) m.Add(e);
  ExpectSame(Read(r, 1), FromModel(m), "after the eviction");

  // With no room for hot buckets a checkpoint empties the hot set and its count.
  RollupOptions none;
  none.hot_bytes = 0;
  Rollups empty(&dict_, none);
  ASSERT_TRUE(empty.Open(db_).ok());
  Apply(empty, 1, std::vector<RollupEvent>(a.list.begin(), a.list.begin() + 10), 1);
  EXPECT_GT(empty.hot_bytes(), 0u);
  Checkpoint(empty, 2001);
  EXPECT_EQ(empty.hot_bytes(), 0u);
  EXPECT_EQ(empty.Stats().hot_buckets, 0u);
}

// With no room for hot buckets every clean bucket leaves memory at each
// checkpoint; with tiny caches every read and every reload goes to the disk.
class RollupsEvictionTest : public RollupsTest, public ::testing::WithParamInterface<size_t> {};

TEST_P(RollupsEvictionTest, EvictedBucketsReadBackAndKeepCounting) {
  RollupOptions opts;
  opts.hot_bytes = 0;
  opts.core_cache_bytes = GetParam();
  opts.props_cache_bytes = GetParam();
  std::mt19937_64 rng(3);
  Events first, second, third;
  Generate(rng, 500, kDay0, kDay0 + kDayMs, {1, 2, 3, 4}, &first);
  // Later events land in the same buckets (some with props never seen there).
  Generate(rng, 300, kDay0, kDay0 + kDayMs, {2, 5}, &second);
  Generate(rng, 300, kDay0 + kDayMs / 3, kDay0 + 2 * kDayMs, {1, 6}, &third);
  Model m;
  Rollups r(&dict_, opts);
  ASSERT_TRUE(r.Open(db_).ok());

  for (const auto& e : first.list) m.Add(e);
  Apply(r, 1, first.list);
  Checkpoint(r, 500);
  EXPECT_EQ(r.Stats().hot_buckets, 0u) << "every clean bucket left memory";
  ExpectSame(Read(r, 1), FromModel(m), "evicted");
  ExpectSame(Read(r, 1), FromModel(m), "evicted, read again (from the caches)");

  // Applying to evicted buckets loads them (cache or disk) and adds to them.
  for (const auto& e : second.list) m.Add(e);
  Apply(r, 1, second.list, 5);
  ExpectSame(Read(r, 1), FromModel(m), "reloaded and added to");
  Checkpoint(r, 800);
  ExpectSame(Read(r, 1), FromModel(m), "second checkpoint");

  // Half applied, a read (caching what it read), the rest applied.
  for (const auto& e : third.list) m.Add(e);
  std::vector<RollupEvent> head(third.list.begin(), third.list.begin() + 150);
  std::vector<RollupEvent> tail(third.list.begin() + 150, third.list.end());
  Apply(r, 1, head);
  Checkpoint(r, 950);
  (void)Read(r, 1);
  Apply(r, 1, tail, 1);
  ExpectSame(Read(r, 1), FromModel(m), "third batch");
  Checkpoint(r, 1100);
  ExpectSame(Read(r, 1), FromModel(m), "third checkpoint");

  Rollups reopened(&dict_, opts);
  ASSERT_TRUE(reopened.Open(db_).ok());
  ExpectSame(Read(reopened, 1), FromModel(m), "reopened");
}

INSTANTIATE_TEST_SUITE_P(CacheSizes, RollupsEvictionTest,
                         ::testing::Values(size_t{1}, size_t{64} << 20));

TEST_F(RollupsTest, RemovalEqualsNeverHavingAddedTheUser) {
  std::mt19937_64 rng(4);
  Events a, lonely;
  Generate(rng, 700, kDay0, kDay0 + 2 * kDayMs, {1, 2, 3, 4}, &a);
  // User 2 alone in some buckets: they must disappear.
  Generate(rng, 30, kDay0 + 3 * kDayMs, kDay0 + 3 * kDayMs + 3 * kBucketMs, {2}, &lonely);
  Model others;
  std::map<int64_t, std::vector<RollupEvent>> removed;  // user 2's, by bucket
  std::vector<RollupEvent> all;
  for (const auto* list : {&a.list, &lonely.list}) {
    for (const auto& e : *list) {
      all.push_back(e);
      if (e.user == 2) {
        removed[FloorDiv(e.time_ms, kBucketMs)].push_back(e);
      } else {
        others.Add(e);
      }
    }
  }
  for (size_t hot_bytes : {size_t{24} << 20, size_t{0}}) {
    SCOPED_TRACE("hot bytes " + std::to_string(hot_bytes));
    ASSERT_TRUE(db_.Exec("DELETE FROM rollups; DELETE FROM rollup_props;").ok());
    RollupOptions opts;
    opts.hot_bytes = hot_bytes;
    Rollups r(&dict_, opts);
    ASSERT_TRUE(r.Open(db_).ok());
    Apply(r, 1, all);
    // Read first, so that caches hold what the removal makes stale.
    (void)Read(r, 1);
    Checkpoint(r, static_cast<int64_t>(all.size()));
    (void)Read(r, 1);

    Rollups::Removal removal;
    ASSERT_TRUE(db_.Exec("BEGIN IMMEDIATE").ok());
    ASSERT_TRUE(r.WriteRemoval(1, 2, removed, db_, &removal).ok());
    ASSERT_TRUE(db_.Exec("COMMIT").ok());
    r.CommitRemoval(removal);
    EXPECT_EQ(removal.app, 1);
    EXPECT_EQ(removal.buckets.size(), removed.size());
    EXPECT_GE(removal.emptied.size(), 1u);
    for (int64_t b : removal.emptied) EXPECT_FALSE(others.cores.count(b)) << b;

    ExpectSame(Read(r, 1, true), FromModel(others, true), "after the removal");
    // Bounds stay bounds: never narrower than the remaining events; the row
    // runs still hold every remaining event.
    const Snapshot s = Read(r, 1);
    for (const auto& [b, core] : others.cores) {
      ASSERT_TRUE(s.bounds.count(b));
      EXPECT_LE(s.bounds.at(b).first, core.min_ms);
      EXPECT_GE(s.bounds.at(b).second, core.max_ms);
    }
    for (const RollupEvent& e : all) {
      if (e.user == 2) continue;
      const auto& runs = s.runs.at(FloorDiv(e.time_ms, kBucketMs));
      EXPECT_TRUE(
          std::any_of(runs.begin(), runs.end(),
                      [&](const auto& run) { return e.id >= run.first && e.id <= run.second; }))
          << "row " << e.id;
    }
    int64_t first = 0, last = 0;
    ASSERT_TRUE(r.Span(1, &first, &last));
    EXPECT_EQ(first, others.cores.begin()->first);
    EXPECT_EQ(last, others.cores.rbegin()->first) << "the user's lonely buckets are gone";

    // Counting goes on from the rewritten buckets.
    Events more;
    Generate(rng, 100, kDay0, kDay0 + 2 * kDayMs, {1, 3}, &more);
    Model after = others;
    for (const auto& e : more.list) after.Add(e);
    Apply(r, 1, more.list);
    ExpectSame(Read(r, 1, true), FromModel(after, true), "applied after the removal");
    Checkpoint(r, static_cast<int64_t>(all.size() + more.list.size()));
    Rollups reopened(&dict_, opts);
    ASSERT_TRUE(reopened.Open(db_).ok());
    ExpectSame(Read(reopened, 1, true), FromModel(after, true), "reopened");
  }
}

TEST_F(RollupsTest, PresentAndSpan) {
  Rollups r(&dict_, RollupOptions{});
  ASSERT_TRUE(r.Open(db_).ok());
  int64_t first = 0, last = 0;
  EXPECT_FALSE(r.Span(1, &first, &last));
  EXPECT_TRUE(r.Present(1, 0, INT64_MAX / 4).empty());
  Events ev;
  std::vector<BodyProp> none;
  for (int64_t t : {kDay0 + 5, kDay0 + kBucketMs * 3 + 1, kDay0 + kBucketMs * 3 + 2, kDay0 - 1,
                    kDay0 + kBucketMs * 10}) {
    RollupEvent e;
    e.time_ms = t;
    e.user = 1;
    e.type = EventType::kView;
    ev.list.push_back(e);
  }
  Apply(r, 7, ev.list);
  const int64_t b0 = kDay0 / kBucketMs;
  EXPECT_EQ(r.Present(7, INT64_MIN / 4, INT64_MAX / 4),
            (std::vector<int64_t>{b0 - 1, b0, b0 + 3, b0 + 10}));
  EXPECT_EQ(r.Present(7, b0, b0 + 3), (std::vector<int64_t>{b0, b0 + 3}));
  EXPECT_EQ(r.Present(7, b0 + 1, b0 + 2), (std::vector<int64_t>{}));
  EXPECT_EQ(r.Present(7, b0 + 3, b0), (std::vector<int64_t>{}));
  ASSERT_TRUE(r.Span(7, &first, &last));
  EXPECT_EQ(first, b0 - 1);
  EXPECT_EQ(last, b0 + 10);
  EXPECT_FALSE(r.Span(8, &first, &last)) << "another app";
  // A bucket asked for that is not present reads as empty.
  ReadTx tx{read_, r.cache_epoch()};
  std::vector<CoreRef> refs;
  const std::vector<int64_t> asked = {b0 + 1, b0 + 3};
  ASSERT_TRUE(r.Cores(7, asked, tx, &refs).ok());
  ASSERT_EQ(refs.size(), 2u);
  EXPECT_TRUE(refs[0].core->empty());
  EXPECT_EQ(refs[1].core->users.cardinality(), 1u);
}

// Hot buckets are copy-on-write: what a reader got stays as it was while
// events keep arriving.
TEST_F(RollupsTest, WhatAReaderGotStaysUnchanged) {
  Rollups r(&dict_, RollupOptions{});
  ASSERT_TRUE(r.Open(db_).ok());
  std::mt19937_64 rng(9);
  Events first, more;
  Generate(rng, 100, kDay0, kDay0 + kBucketMs, {1, 2}, &first);
  Generate(rng, 100, kDay0, kDay0 + kBucketMs, {3}, &more);
  Apply(r, 1, first.list);
  const std::vector<int64_t> bucket = {kDay0 / kBucketMs};
  ReadTx tx{read_, r.cache_epoch()};
  std::vector<CoreRef> refs;
  ASSERT_TRUE(r.Cores(1, bucket, tx, &refs).ok());
  ASSERT_EQ(refs.size(), 1u);
  std::vector<std::shared_ptr<const PropValues>> values;
  ASSERT_TRUE(r.PropSlots(1, names_[0], keys_[0], bucket, tx, &values).ok());
  ASSERT_EQ(values.size(), 1u);
  ASSERT_TRUE(values[0]);
  std::string core_before;
  refs[0].core->Encode(&core_before);
  const auto values_before = values[0]->counts;

  Apply(r, 1, more.list);
  std::string core_after;
  refs[0].core->Encode(&core_after);
  EXPECT_EQ(core_after, core_before);
  EXPECT_EQ(values[0]->counts, values_before);
  // While a new read sees the new events.
  std::vector<CoreRef> now;
  ASSERT_TRUE(r.Cores(1, bucket, ReadTx{read_, r.cache_epoch()}, &now).ok());
  EXPECT_EQ(now[0].core->users.cardinality(), refs[0].core->users.cardinality() + 1);
}

// ---- Day aggregates.

class RollupsDayCacheTest : public RollupsTest {
 protected:
  // The buckets of local day `day` (UTC offset `offset` minutes) as a reader
  // takes them, and an aggregate standing for what it builds.
  struct Built {
    std::vector<CoreRef> refs;
    std::shared_ptr<const DayAgg> agg;
    uint64_t epoch = 0;
  };
  Built Build(Rollups& r, int offset, int64_t day) {
    Built b;
    b.epoch = r.cache_epoch();
    ReadTx tx{read_, b.epoch};
    const int64_t offset_ms = static_cast<int64_t>(offset) * 60000;
    const auto buckets = r.Present(1, FloorDiv(day * kDayMs - offset_ms, kBucketMs),
                                   FloorDiv((day + 1) * kDayMs - offset_ms - 1, kBucketMs));
    EXPECT_TRUE(r.Cores(1, buckets, tx, &b.refs).ok());
    auto agg = std::make_shared<DayAgg>();
    for (const CoreRef& ref : b.refs) agg->usage += ref.core->inits;
    b.agg = agg;
    return b;
  }
  bool Cache(Rollups& r, int offset, int64_t day, const Built& b) {
    ReadTx tx{read_, b.epoch};
    r.CacheDay(1, offset, day, b.agg, b.refs, tx);
    return r.CachedDay(1, offset, day) == b.agg;
  }
  RollupEvent At(int64_t t, uint32_t user = 1) {
    RollupEvent e;
    e.time_ms = t;
    e.user = user;
    e.type = EventType::kInit;
    e.name = init_;
    return e;
  }
  void ApplyOne(Rollups& r, const RollupEvent& e) {
    ASSERT_TRUE(r.Apply(1, std::span<const RollupEvent>(&e, 1), read_).ok());
  }
};

TEST_F(RollupsDayCacheTest, CachesAnUnchangedDayAndDropsItWhenABucketChanges) {
  Rollups r(&dict_, RollupOptions{});
  ASSERT_TRUE(r.Open(db_).ok());
  for (int i = 0; i < 10; ++i) ApplyOne(r, At(kDay0 + i * 3 * kBucketMs + 1));
  ApplyOne(r, At(kDay0 + kDayMs + 5));  // the next day

  Built b = Build(r, 0, kDay);
  ASSERT_EQ(b.refs.size(), 10u);
  EXPECT_TRUE(b.refs[0].hot);
  EXPECT_TRUE(Cache(r, 0, kDay, b)) << "nothing changed: cached";
  EXPECT_EQ(r.CachedDay(1, 0, kDay + 1), nullptr);

  // A change to the next day leaves it; a change to the day drops it.
  ApplyOne(r, At(kDay0 + kDayMs + 6));
  EXPECT_EQ(r.CachedDay(1, 0, kDay), b.agg);
  ApplyOne(r, At(kDay0 + 3 * kBucketMs + 7));
  EXPECT_EQ(r.CachedDay(1, 0, kDay), nullptr) << "a bucket of the day changed";
}

TEST_F(RollupsDayCacheTest, RefusesADayBuiltFromHotBucketsThatChangedMeanwhile) {
  Rollups r(&dict_, RollupOptions{});
  ASSERT_TRUE(r.Open(db_).ok());
  for (int i = 0; i < 5; ++i) ApplyOne(r, At(kDay0 + i * kBucketMs));
  Built b = Build(r, 0, kDay);
  ApplyOne(r, At(kDay0 + 2 * kBucketMs + 9));  // re-applied after the build
  EXPECT_FALSE(Cache(r, 0, kDay, b));
  // A bucket that appeared in the day after the build.
  Built c = Build(r, 0, kDay);
  ApplyOne(r, At(kDay0 + 40 * kBucketMs));
  EXPECT_FALSE(Cache(r, 0, kDay, c));
  // Built again after the changes: fine.
  EXPECT_TRUE(Cache(r, 0, kDay, Build(r, 0, kDay)));
}

TEST_F(RollupsDayCacheTest, RefusesADayWhoseColdBucketBecameHot) {
  RollupOptions opts;
  opts.hot_bytes = 0;  // every clean bucket leaves memory at a checkpoint
  Rollups r(&dict_, opts);
  ASSERT_TRUE(r.Open(db_).ok());
  for (int i = 0; i < 5; ++i) ApplyOne(r, At(kDay0 + i * kBucketMs));
  Checkpoint(r, 5);
  ASSERT_EQ(r.Stats().hot_buckets, 0u);

  Built b = Build(r, 0, kDay);
  ASSERT_EQ(b.refs.size(), 5u);
  EXPECT_FALSE(b.refs[0].hot);
  ApplyOne(r, At(kDay0 + kBucketMs + 3));  // bucket 1 is hot (and changed) now
  EXPECT_FALSE(Cache(r, 0, kDay, b));
}

TEST_F(RollupsDayCacheTest, RefusesADayReadBeforeAnEviction) {
  RollupOptions opts;
  opts.hot_bytes = 0;
  Rollups r(&dict_, opts);
  ASSERT_TRUE(r.Open(db_).ok());
  for (int i = 0; i < 5; ++i) ApplyOne(r, At(kDay0 + i * kBucketMs));
  Checkpoint(r, 5);
  Built b = Build(r, 0, kDay);
  // Another day's bucket goes hot, is checkpointed and leaves memory: the
  // cache epoch moves on, so whatever the reader read from disk may be older.
  ApplyOne(r, At(kDay0 + 3 * kDayMs));
  Checkpoint(r, 6);
  EXPECT_NE(r.cache_epoch(), b.epoch);
  EXPECT_FALSE(Cache(r, 0, kDay, b));
  EXPECT_TRUE(Cache(r, 0, kDay, Build(r, 0, kDay)));
}

TEST_F(RollupsDayCacheTest, ARemovalDropsTheDaysOfItsBuckets) {
  Rollups r(&dict_, RollupOptions{});
  ASSERT_TRUE(r.Open(db_).ok());
  const RollupEvent gone = At(kDay0 + 5 * kBucketMs, 2);
  ApplyOne(r, At(kDay0 + 1));
  ApplyOne(r, gone);
  Checkpoint(r, 2);
  ASSERT_TRUE(Cache(r, 0, kDay, Build(r, 0, kDay)));
  Rollups::Removal removal;
  ASSERT_TRUE(db_.Exec("BEGIN IMMEDIATE").ok());
  ASSERT_TRUE(
      r.WriteRemoval(1, 2, {{FloorDiv(gone.time_ms, kBucketMs), {gone}}}, db_, &removal).ok());
  ASSERT_TRUE(db_.Exec("COMMIT").ok());
  r.CommitRemoval(removal);
  EXPECT_EQ(r.CachedDay(1, 0, kDay), nullptr);
  EXPECT_EQ(removal.emptied, (std::vector<int64_t>{FloorDiv(gone.time_ms, kBucketMs)}));
  EXPECT_EQ(r.Present(1, INT64_MIN / 4, INT64_MAX / 4), (std::vector<int64_t>{kDay0 / kBucketMs}));
}

TEST_F(RollupsDayCacheTest, ABucketAcrossLocalMidnightDropsBothDays) {
  // At UTC+00:07 the bucket [23:45, 24:00) UTC local is [23:52, 00:07): it
  // belongs to two local days.
  Rollups r(&dict_, RollupOptions{});
  ASSERT_TRUE(r.Open(db_).ok());
  const int kOffset = 7;
  ApplyOne(r, At(kDay0 + kDayMs - kBucketMs + 1));  // local 23:52:00.001 (day kDay)
  ApplyOne(r, At(kDay0 + kDayMs - 60000));          // local 00:06 (day kDay + 1)
  ApplyOne(r, At(kDay0 + kDayMs + 3 * kBucketMs));  // day kDay + 1
  ASSERT_TRUE(Cache(r, kOffset, kDay, Build(r, kOffset, kDay)));
  ASSERT_TRUE(Cache(r, kOffset, kDay + 1, Build(r, kOffset, kDay + 1)));
  ApplyOne(r, At(kDay0 + kDayMs - 2 * 60000));
  EXPECT_EQ(r.CachedDay(1, kOffset, kDay), nullptr);
  EXPECT_EQ(r.CachedDay(1, kOffset, kDay + 1), nullptr);
}

}  // namespace
}  // namespace nucleon
