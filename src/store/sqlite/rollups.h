// Rollups: the per-bucket aggregates of every app (see bucket.h), kept so that
// no answer and no start-up ever replays the whole history.
//
// On disk (tables `rollups` and `rollup_props`) they hold exactly the events
// whose row id is at most the checkpoint mark (meta `rollup_mark`). In memory:
//   - hot buckets: those touched since start-up or recently, mutable, owned by
//     the publisher; dirty ones are written by the next checkpoint (on the
//     writer thread, between commits) together with the new mark, in one
//     transaction, so a crash at any moment leaves disk and mark consistent;
//   - a byte-bounded LRU of decoded buckets and property values read from disk;
//   - a byte-bounded LRU of per-day aggregates (users, app starts, hours,
//     breakdowns of one local day in one time zone), dropped when any bucket
//     of the day changes.
// At start-up the events after the mark (the tail) are replayed into hot
// buckets, concurrently with new commits: adding events is commutative, so
// each event is counted once whichever comes first.
//
// A user delete is applied to disk in the delete's own transaction (after a
// checkpoint, so nothing is dirty) and then drops the touched buckets from
// memory, which reloads them from disk on the next read.
//
// Thread-safety: Apply may run on the publisher and the replay thread at the
// same time (one lock per app). The checkpoint and removal methods run on the
// writer thread while no Apply runs (the group committer waits for the
// publisher first). Readers may call the read methods from any thread at any
// time; hot buckets are copy-on-write, so what a reader got stays unchanged.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <roaring/roaring.hh>
#include <set>
#include <shared_mutex>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/status.h"
#include "store/sqlite/bucket.h"
#include "store/sqlite/lru_cache.h"
#include "store/sqlite/sqlite_db.h"
#include "store/sqlite/string_dictionary.h"

namespace nucleon {

// The key of a bucket's row in `rollups`: one integer (the row id), ordered by
// app, then bucket.
inline int64_t RollupKey(int64_t app, int64_t bucket) {
  return app * (int64_t{1} << 40) + (bucket + (int64_t{1} << 39));
}
inline int64_t RollupApp(int64_t key) { return key >> 40; }
inline int64_t RollupBucket(int64_t key) {
  return (key & ((int64_t{1} << 40) - 1)) - (int64_t{1} << 39);
}

// The app starts, hours, users and breakdown users of one local day.
struct DayAgg {
  int64_t usage = 0;
  std::array<int64_t, 24> hours{};
  Roaring users;
  std::array<std::vector<std::pair<uint32_t, Roaring>>, kDims> dims;  // value id -> users
  size_t MemoryBytes() const;
};

// A reader's view: its connection, inside one read transaction, and the cache
// epoch read before that transaction began (Rollups::cache_epoch): what it
// reads from disk is cached only if no bucket left memory or changed on disk
// since, so an old snapshot never replaces a newer version in a cache.
struct ReadTx {
  SqliteDb& db;
  uint64_t epoch = 0;
};

// A bucket as a reader got it.
struct CoreRef {
  int64_t bucket = 0;
  std::shared_ptr<const BucketCore> core;
  bool hot = false;  // taken from the hot set (else from the cache or the disk)
};

struct RollupOptions {
  size_t core_cache_bytes = 48 << 20;
  size_t props_cache_bytes = 16 << 20;
  size_t day_cache_bytes = 16 << 20;
  size_t hot_bytes = 24 << 20;  // clean hot buckets beyond this leave memory
};

class Rollups {
 public:
  Rollups(StringDictionary* dict, RollupOptions options);
  ~Rollups();

  // Reads which buckets every app has, and the mark (at open, before any other use).
  Status Open(SqliteDb& db);
  int64_t mark() const { return mark_.load(std::memory_order_acquire); }

  // ---- Writes.
  // Adds stored events of `app`. `db` is a connection of the calling thread,
  // used to load the buckets the events land in.
  Status Apply(int64_t app, std::span<const RollupEvent> events, SqliteDb& db);

  // Events added since the last checkpoint.
  size_t dirty_events() const { return dirty_events_.load(std::memory_order_relaxed); }
  // Writes every dirty bucket and `mark` inside the caller's transaction on
  // the writer connection; FinishCheckpoint once it committed (or failed).
  struct CheckpointWork {
    std::vector<std::pair<int64_t, int64_t>> cores;             // (app, bucket)
    std::vector<std::tuple<int64_t, int64_t, uint64_t>> slots;  // (app, bucket, slot)
    int64_t mark = 0;
    size_t events = 0;
  };
  Status WriteDirty(SqliteDb& db, int64_t mark, CheckpointWork* work);
  void FinishCheckpoint(const CheckpointWork& work, bool committed);

  // A user's events leave the rollups: `by_bucket` holds every event of
  // theirs, per bucket. Rewrites the touched rows in the caller's transaction
  // (reading them through `db`, which must see everything: nothing may be
  // dirty, see WriteDirty); CommitRemoval once the transaction committed.
  struct Removal {
    int64_t app = 0;
    std::vector<int64_t> buckets;
    std::vector<int64_t> emptied;
  };
  Status WriteRemoval(int64_t app, uint32_t user,
                      const std::map<int64_t, std::vector<RollupEvent>>& by_bucket, SqliteDb& db,
                      Removal* out);
  void CommitRemoval(const Removal& removal);
  // Retention: reads the stored rollup of a whole bucket (false when there is
  // none), then WriteDrop takes it and its property values off the disk, in
  // the caller's transaction (nothing may be dirty); CommitRemoval once
  // committed.
  Result<bool> ReadStored(int64_t app, int64_t bucket, SqliteDb& db, BucketCore* core) const;
  // The same, of the core's users bitmap only.
  Result<bool> ReadStoredUsers(int64_t app, int64_t bucket, SqliteDb& db, Roaring* users) const;
  Status WriteDrop(int64_t app, int64_t bucket, const BucketCore& core, SqliteDb& db, Removal* out);
  // Reads through `db` (a reader's connection, any thread) the rows that
  // WriteRemoval of `by_bucket` will read, so that they are in memory when the
  // writer's transaction needs them. Changes nothing.
  Status ReadAhead(int64_t app, const std::map<int64_t, std::vector<RollupEvent>>& by_bucket,
                   SqliteDb& db) const;

  // ---- Reads (any thread).
  // The present buckets of `app` in [first, last], ascending.
  std::vector<int64_t> Present(int64_t app, int64_t first, int64_t last) const;
  // The first and last present bucket; false when the app has none.
  bool Span(int64_t app, int64_t* first, int64_t* last) const;
  // The cores of `buckets` (ascending, present), from memory or through `db`.
  // `keep`: cache what was read from disk (a caller that only folds them into
  // day aggregates, which are cached instead, passes false).
  Status Cores(int64_t app, std::span<const int64_t> buckets, const ReadTx& tx,
               std::vector<CoreRef>* out, bool keep = true);
  // The values of (event, key) in `buckets` (ascending); null where none.
  Status PropSlots(int64_t app, uint32_t event, uint32_t key, std::span<const int64_t> buckets,
                   const ReadTx& tx, std::vector<std::shared_ptr<const PropValues>>* out);

  std::shared_ptr<const DayAgg> CachedDay(int64_t app, int offset_min, int64_t day);
  // Caches `agg` unless one of the buckets it was built from changed meanwhile.
  void CacheDay(int64_t app, int offset_min, int64_t day, std::shared_ptr<const DayAgg> agg,
                std::span<const CoreRef> built_from, const ReadTx& tx);

  // Moves on whenever a bucket leaves memory or is rewritten on disk by a delete.
  uint64_t cache_epoch() const { return epoch_.load(std::memory_order_acquire); }

  // Memory held by hot buckets (an estimate kept as events are added). Dirty
  // buckets leave memory only after a checkpoint, so the store checkpoints
  // early once they outgrow twice the hot budget (a load spread over the past).
  size_t hot_bytes() const { return hot_total_.load(std::memory_order_relaxed); }
  bool hot_over_budget() const { return hot_bytes() > 2 * options_.hot_bytes; }
  struct CacheStats {
    size_t hot_buckets = 0, core_cache_bytes = 0, props_cache_bytes = 0, day_cache_bytes = 0;
  };
  CacheStats Stats() const;

 private:
  struct HotSlot {
    std::shared_ptr<PropValues> values;
    bool dirty = false;
  };
  struct HotBucket {
    std::shared_ptr<BucketCore> core;
    bool dirty = false;
    std::unordered_map<uint64_t, HotSlot> slots;  // loaded or created
    std::unordered_set<uint64_t> disk_slots;      // on disk, not loaded
    uint64_t touched = 0;                         // for eviction, larger = more recent
    size_t bytes = 0;                             // estimate, counted in hot_total_
  };
  struct App {
    mutable std::shared_mutex mu;
    std::set<int64_t> present;
    std::unordered_map<int64_t, HotBucket> hot;
    std::set<int> offsets;  // time zones with cached days, under days_mu_
  };
  struct CoreKey {
    int64_t app, bucket;
    bool operator==(const CoreKey&) const = default;
  };
  struct CoreKeyHash {
    size_t operator()(const CoreKey& k) const {
      return std::hash<int64_t>{}(k.app * 1000003 + k.bucket);
    }
  };
  struct SlotKey {
    int64_t app, bucket;
    uint64_t slot;
    bool operator==(const SlotKey&) const = default;
  };
  struct SlotKeyHash {
    size_t operator()(const SlotKey& k) const {
      return std::hash<uint64_t>{}(static_cast<uint64_t>(k.app * 1000003 + k.bucket) * 31 + k.slot);
    }
  };
  struct DayKey {
    int64_t app;
    int offset;
    int64_t day;
    bool operator==(const DayKey&) const = default;
  };
  struct DayKeyHash {
    size_t operator()(const DayKey& k) const {
      return std::hash<int64_t>{}((k.app * 1000003 + k.offset) * 1000003 + k.day);
    }
  };

  App& AppFor(int64_t app);
  const App* FindApp(int64_t app) const;
  // The hot bucket `b` of `a` (under a's unique lock), loading it when needed.
  Result<HotBucket*> Hot(int64_t app, App& a, int64_t bucket, SqliteDb& db);
  Result<HotSlot*> Slot(int64_t app, HotBucket& hb, int64_t bucket, uint64_t slot, SqliteDb& db);
  void InvalidateDays(int64_t app, int64_t bucket);
  void Evict(int64_t app, App& a, int64_t bucket, HotBucket& hb);
  // Refreshes hb.bytes (and hot_total_) from what the bucket holds now.
  void Recount(HotBucket& hb);

  StringDictionary* dict_;
  RollupOptions options_;
  std::atomic<int64_t> mark_{0};
  std::atomic<size_t> dirty_events_{0};
  std::atomic<size_t> hot_total_{0};  // sum of HotBucket::bytes
  std::atomic<uint64_t> touch_clock_{0};
  std::atomic<uint64_t> epoch_{0};
  mutable std::shared_mutex apps_mu_;
  std::unordered_map<int64_t, std::unique_ptr<App>> apps_;
  LruCache<CoreKey, BucketCore, CoreKeyHash> cores_;
  LruCache<SlotKey, PropValues, SlotKeyHash> slots_;
  std::mutex days_mu_;  // the offsets sets
  LruCache<DayKey, DayAgg, DayKeyHash> days_;
};

}  // namespace nucleon
