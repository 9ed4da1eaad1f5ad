#include "store/sqlite/rollups.h"

#include <algorithm>
#include <mutex>

#include "core/log.h"
#include "core/time_util.h"

namespace nucleon {

namespace {

constexpr int64_t kDayMs = 86400000;
constexpr std::string_view kSelectCore = "SELECT core FROM rollups WHERE key = ?";
// The property values of one (event, key) in one bucket: parameters 1-4 are
// bound by BindSlot, the values (kPutValues) are parameter 5.
constexpr std::string_view kSelectValues =
    "SELECT vals FROM rollup_props WHERE app = ? AND event = ? AND key = ? AND bucket = ?";
constexpr std::string_view kDeleteValues =
    "DELETE FROM rollup_props WHERE app = ? AND event = ? AND key = ? AND bucket = ?";
constexpr std::string_view kPutValues =
    "INSERT OR REPLACE INTO rollup_props(app, event, key, bucket, vals) VALUES(?, ?, ?, ?, ?)";

void BindSlot(SqliteStmt& q, int64_t app, uint64_t slot, int64_t bucket) {
  q.Bind(1, app);
  q.Bind(2, static_cast<int64_t>(slot >> 32));
  q.Bind(3, static_cast<int64_t>(slot & 0xFFFFFFFFu));
  q.Bind(4, bucket);
}

// The property values a user's events added to one bucket, per (event, key).
std::map<uint64_t, std::vector<const PropValue*>> ValuesBySlot(
    const std::vector<RollupEvent>& events) {
  std::map<uint64_t, std::vector<const PropValue*>> per_slot;
  for (const RollupEvent& e : events) {
    if (!e.name || (e.type != EventType::kInit && e.type != EventType::kEvent)) continue;
    for (const BodyProp& p : e.props) per_slot[PropSlot(e.name, p.key)].push_back(&p.value);
  }
  return per_slot;
}

std::shared_ptr<const PropValues> EmptyValues() {
  static const auto kEmpty = std::make_shared<const PropValues>();
  return kEmpty;
}

size_t RoaringBytes(const Roaring& r) { return r.getSizeInBytes(false) + 48; }

}  // namespace

size_t DayAgg::MemoryBytes() const {
  size_t n = sizeof(*this) + RoaringBytes(users);
  for (const auto& dim : dims) {
    for (const auto& [value, users] : dim) n += sizeof(value) + RoaringBytes(users);
  }
  return n;
}

Rollups::Rollups(StringDictionary* dict, RollupOptions options)
    : dict_(dict),
      options_(options),
      cores_(options.core_cache_bytes),
      slots_(options.props_cache_bytes),
      days_(options.day_cache_bytes) {}

Rollups::~Rollups() = default;

Rollups::App& Rollups::AppFor(int64_t app) {
  {
    std::shared_lock<std::shared_mutex> lock(apps_mu_);
    auto it = apps_.find(app);
    if (it != apps_.end()) return *it->second;
  }
  std::unique_lock<std::shared_mutex> lock(apps_mu_);
  auto& slot = apps_[app];
  if (!slot) slot = std::make_unique<App>();
  return *slot;
}

const Rollups::App* Rollups::FindApp(int64_t app) const {
  std::shared_lock<std::shared_mutex> lock(apps_mu_);
  auto it = apps_.find(app);
  return it == apps_.end() ? nullptr : it->second.get();
}

Status Rollups::Open(SqliteDb& db) {
  {
    auto q = db.Prepare("SELECT value FROM meta WHERE key = 'rollup_mark'");
    if (!q.ok()) return q.status();
    Status st;
    if (q->Step(&st)) mark_.store(std::stoll(std::string(q->Text(0))), std::memory_order_release);
    if (!st.ok()) return st;
  }
  auto q = db.Prepare("SELECT key FROM rollups");
  if (!q.ok()) return q.status();
  Status st;
  int64_t last_app = -1;
  App* a = nullptr;
  while (q->Step(&st)) {
    const int64_t app = RollupApp(q->Int(0));
    if (app != last_app) {
      a = &AppFor(app);
      last_app = app;
    }
    // Rows come in key order: appending at the end is constant time.
    a->present.insert(a->present.end(), RollupBucket(q->Int(0)));
  }
  return st;
}

Result<Rollups::HotBucket*> Rollups::Hot(int64_t app, App& a, int64_t bucket, SqliteDb& db) {
  auto it = a.hot.find(bucket);
  if (it != a.hot.end()) return &it->second;
  HotBucket hb;
  hb.core = std::make_shared<BucketCore>();
  if (a.present.count(bucket)) {
    // Present and not hot: its rollup is on disk (and maybe in the cache).
    if (auto cached = cores_.Get({app, bucket})) {
      *hb.core = *cached;
    } else {
      auto q = db.Cached(kSelectCore);
      if (!q.ok()) return q.status();
      (*q)->Bind(1, RollupKey(app, bucket));
      Status st;
      if ((*q)->Step(&st)) {
        if (!BucketCore::Decode((*q)->Blob(0), hb.core.get())) {
          return Status::Internal("corrupt rollup of bucket " + std::to_string(bucket));
        }
      }
      if (!st.ok()) return st;
    }
    for (const BucketCore::PropKey& k : hb.core->prop_keys) {
      hb.disk_slots.insert(PropSlot(k.event, k.key));
    }
  }
  a.present.insert(bucket);
  return &a.hot.emplace(bucket, std::move(hb)).first->second;
}

Result<Rollups::HotSlot*> Rollups::Slot(int64_t app, HotBucket& hb, int64_t bucket, uint64_t slot,
                                        SqliteDb& db) {
  auto it = hb.slots.find(slot);
  if (it != hb.slots.end()) return &it->second;
  HotSlot hs;
  hs.values = std::make_shared<PropValues>();
  if (hb.disk_slots.erase(slot)) {
    if (auto cached = slots_.Get({app, bucket, slot})) {
      *hs.values = *cached;
    } else {
      auto q = db.Cached(kSelectValues);
      if (!q.ok()) return q.status();
      BindSlot(**q, app, slot, bucket);
      Status st;
      if ((*q)->Step(&st) && !PropValues::Decode((*q)->Blob(0), hs.values.get())) {
        return Status::Internal("corrupt property rollup of bucket " + std::to_string(bucket));
      }
      if (!st.ok()) return st;
    }
  }
  return &hb.slots.emplace(slot, std::move(hs)).first->second;
}

Status Rollups::Apply(int64_t app, std::span<const RollupEvent> events, SqliteDb& db) {
  if (events.empty()) return Status::Ok();
  App& a = AppFor(app);
  std::vector<int64_t> touched;
  {
    std::unique_lock<std::shared_mutex> lock(a.mu);
    const uint64_t now = touch_clock_.fetch_add(1, std::memory_order_relaxed) + 1;
    int64_t last = INT64_MIN;
    HotBucket* hb = nullptr;
    for (const RollupEvent& e : events) {
      const int64_t b = FloorDiv(e.time_ms, kBucketMs);
      if (b != last || !hb) {
        auto hot = Hot(app, a, b, db);
        if (!hot.ok()) return hot.status();
        hb = *hot;
        last = b;
        hb->touched = now;
        touched.push_back(b);
      }
      // Copy-on-write: a reader may hold the current version.
      if (hb->core.use_count() > 1) hb->core = std::make_shared<BucketCore>(*hb->core);
      hb->core->Add(e);
      hb->dirty = true;
      if (e.props.empty() || !e.name ||
          (e.type != EventType::kInit && e.type != EventType::kEvent)) {
        continue;
      }
      for (const BodyProp& p : e.props) {
        auto slot = Slot(app, *hb, b, PropSlot(e.name, p.key), db);
        if (!slot.ok()) return slot.status();
        HotSlot& hs = **slot;
        if (hs.values.use_count() > 1) hs.values = std::make_shared<PropValues>(*hs.values);
        hs.values->Add(p.value);
        hs.dirty = true;
      }
    }
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (int64_t b : touched) Recount(a.hot.at(b));
  }
  dirty_events_.fetch_add(events.size(), std::memory_order_relaxed);
  for (int64_t b : touched) InvalidateDays(app, b);
  return Status::Ok();
}

void Rollups::InvalidateDays(int64_t app, int64_t bucket) {
  std::vector<int> offsets;
  {
    std::lock_guard<std::mutex> lock(days_mu_);
    const App* a = FindApp(app);
    if (!a || a->offsets.empty()) return;
    offsets.assign(a->offsets.begin(), a->offsets.end());
  }
  for (int offset : offsets) {
    const int64_t offset_ms = static_cast<int64_t>(offset) * 60000;
    const int64_t first = FloorDiv(bucket * kBucketMs + offset_ms, kDayMs);
    const int64_t last = FloorDiv((bucket + 1) * kBucketMs - 1 + offset_ms, kDayMs);
    for (int64_t d = first; d <= last; ++d) days_.Erase({app, offset, d});
  }
}

Status Rollups::WriteDirty(SqliteDb& db, int64_t mark, CheckpointWork* work) {
  *work = CheckpointWork();
  work->events = dirty_events_.load(std::memory_order_relaxed);
  std::vector<std::pair<int64_t, App*>> apps;
  {
    std::shared_lock<std::shared_mutex> lock(apps_mu_);
    for (auto& [id, a] : apps_) apps.emplace_back(id, a.get());
  }
  std::string blob;
  for (auto& [app, a] : apps) {
    std::shared_lock<std::shared_mutex> lock(a->mu);
    for (auto& [bucket, hb] : a->hot) {
      if (hb.dirty) {
        if (hb.core->empty()) {
          auto del = db.Cached("DELETE FROM rollups WHERE key = ?");
          if (!del.ok()) return del.status();
          (*del)->Bind(1, RollupKey(app, bucket));
          NUCLEON_RETURN_IF_ERROR((*del)->Run());
        } else {
          hb.core->Encode(&blob);
          auto put = db.Cached("INSERT OR REPLACE INTO rollups(key, core) VALUES(?, ?)");
          if (!put.ok()) return put.status();
          (*put)->Bind(1, RollupKey(app, bucket));
          (*put)->BindBlob(2, blob.data(), blob.size());
          NUCLEON_RETURN_IF_ERROR((*put)->Run());
        }
        work->cores.emplace_back(app, bucket);
      }
      for (auto& [slot, hs] : hb.slots) {
        if (!hs.dirty) continue;
        if (hs.values->counts.empty()) {
          auto del = db.Cached(kDeleteValues);
          if (!del.ok()) return del.status();
          BindSlot(**del, app, slot, bucket);
          NUCLEON_RETURN_IF_ERROR((*del)->Run());
        } else {
          hs.values->Encode(&blob);
          auto put = db.Cached(kPutValues);
          if (!put.ok()) return put.status();
          BindSlot(**put, app, slot, bucket);
          (*put)->BindBlob(5, blob.data(), blob.size());
          NUCLEON_RETURN_IF_ERROR((*put)->Run());
        }
        work->slots.emplace_back(app, bucket, slot);
      }
    }
  }
  auto m = db.Cached("INSERT OR REPLACE INTO meta(key, value) VALUES('rollup_mark', ?)");
  if (!m.ok()) return m.status();
  (*m)->Bind(1, std::to_string(mark));
  NUCLEON_RETURN_IF_ERROR((*m)->Run());
  work->mark = mark;
  return Status::Ok();
}

void Rollups::Evict(int64_t app, App& a, int64_t bucket, HotBucket& hb) {
  (void)a;
  epoch_.fetch_add(1, std::memory_order_acq_rel);  // first: in-flight disk reads are older
  // The disk has the bucket (it is clean). Only what the caches already hold
  // (what readers asked for) is brought up to date: a load of old events must
  // not fill the read caches with buckets nobody reads.
  cores_.Refresh({app, bucket}, hb.core, hb.core->MemoryBytes());
  for (auto& [slot, hs] : hb.slots)
    slots_.Refresh({app, bucket, slot}, hs.values, hs.values->MemoryBytes());
}

void Rollups::FinishCheckpoint(const CheckpointWork& work, bool committed) {
  if (!committed) return;
  std::vector<std::pair<int64_t, App*>> apps;
  {
    std::shared_lock<std::shared_mutex> lock(apps_mu_);
    for (auto& [id, a] : apps_) apps.emplace_back(id, a.get());
  }
  for (auto& [app, a] : apps) {
    std::unique_lock<std::shared_mutex> lock(a->mu);
    for (const auto& [wapp, bucket] : work.cores) {
      if (wapp != app) continue;
      auto it = a->hot.find(bucket);
      if (it != a->hot.end()) it->second.dirty = false;
    }
    for (const auto& [wapp, bucket, slot] : work.slots) {
      if (wapp != app) continue;
      auto it = a->hot.find(bucket);
      if (it == a->hot.end()) continue;
      auto s = it->second.slots.find(slot);
      if (s != it->second.slots.end()) s->second.dirty = false;
    }
  }
  mark_.store(work.mark, std::memory_order_release);
  dirty_events_.fetch_sub(std::min(work.events, dirty_events_.load()), std::memory_order_relaxed);

  // Keep the hot set within its budget: the least recently touched clean
  // buckets leave memory.
  struct Candidate {
    uint64_t touched;
    int64_t app, bucket;
    App* a;
  };
  std::vector<Candidate> clean;
  size_t total = 0;
  for (auto& [app, a] : apps) {
    std::unique_lock<std::shared_mutex> lock(a->mu);
    for (auto& [bucket, hb] : a->hot) {
      Recount(hb);
      total += hb.bytes;
      bool dirty = hb.dirty;
      for (auto& [slot, hs] : hb.slots) dirty = dirty || hs.dirty;
      if (!dirty) clean.push_back({hb.touched, app, bucket, a});
    }
  }
  if (total <= options_.hot_bytes) return;
  std::sort(clean.begin(), clean.end(),
            [](const Candidate& x, const Candidate& y) { return x.touched < y.touched; });
  for (const Candidate& c : clean) {
    if (total <= options_.hot_bytes) break;
    std::unique_lock<std::shared_mutex> lock(c.a->mu);
    auto it = c.a->hot.find(c.bucket);
    if (it == c.a->hot.end()) continue;
    total -= std::min(total, it->second.bytes);
    hot_total_.fetch_sub(it->second.bytes, std::memory_order_relaxed);
    Evict(c.app, *c.a, c.bucket, it->second);
    c.a->hot.erase(it);
  }
}

Status Rollups::WriteRemoval(int64_t app, uint32_t user,
                             const std::map<int64_t, std::vector<RollupEvent>>& by_bucket,
                             SqliteDb& db, Removal* out) {
  out->app = app;
  out->buckets.clear();
  out->emptied.clear();
  std::string blob;
  for (const auto& [bucket, events] : by_bucket) {
    out->buckets.push_back(bucket);
    BucketCore core;
    {
      auto q = db.Cached(kSelectCore);
      if (!q.ok()) return q.status();
      (*q)->Bind(1, RollupKey(app, bucket));
      Status st;
      if ((*q)->Step(&st) && !BucketCore::Decode((*q)->Blob(0), &core)) {
        return Status::Internal("corrupt rollup of bucket " + std::to_string(bucket));
      }
      NUCLEON_RETURN_IF_ERROR(st);
    }
    core.RemoveUser(user, events);
    if (core.empty()) {
      out->emptied.push_back(bucket);
      auto del = db.Cached("DELETE FROM rollups WHERE key = ?");
      if (!del.ok()) return del.status();
      (*del)->Bind(1, RollupKey(app, bucket));
      NUCLEON_RETURN_IF_ERROR((*del)->Run());
    } else {
      core.Encode(&blob);
      auto put = db.Cached("INSERT OR REPLACE INTO rollups(key, core) VALUES(?, ?)");
      if (!put.ok()) return put.status();
      (*put)->Bind(1, RollupKey(app, bucket));
      (*put)->BindBlob(2, blob.data(), blob.size());
      NUCLEON_RETURN_IF_ERROR((*put)->Run());
    }
    for (const auto& [slot, values] : ValuesBySlot(events)) {
      PropValues pv;
      {
        auto q = db.Cached(kSelectValues);
        if (!q.ok()) return q.status();
        BindSlot(**q, app, slot, bucket);
        Status st;
        if ((*q)->Step(&st) && !PropValues::Decode((*q)->Blob(0), &pv)) {
          return Status::Internal("corrupt property rollup of bucket " + std::to_string(bucket));
        }
        NUCLEON_RETURN_IF_ERROR(st);
      }
      for (const PropValue* v : values) pv.Remove(*v);
      if (pv.counts.empty()) {
        auto del = db.Cached(kDeleteValues);
        if (!del.ok()) return del.status();
        BindSlot(**del, app, slot, bucket);
        NUCLEON_RETURN_IF_ERROR((*del)->Run());
      } else {
        pv.Encode(&blob);
        auto put = db.Cached(kPutValues);
        if (!put.ok()) return put.status();
        BindSlot(**put, app, slot, bucket);
        (*put)->BindBlob(5, blob.data(), blob.size());
        NUCLEON_RETURN_IF_ERROR((*put)->Run());
      }
    }
  }
  return Status::Ok();
}

Status Rollups::ReadAhead(int64_t app, const std::map<int64_t, std::vector<RollupEvent>>& by_bucket,
                          SqliteDb& db) const {
  const auto touch = [](StmtLease& q) {
    Status st;
    while (q->Step(&st)) (void)q->Blob(0);  // the whole value, overflow pages too
    return st;
  };
  for (const auto& [bucket, events] : by_bucket) {
    auto q = db.Cached(kSelectCore);
    if (!q.ok()) return q.status();
    (*q)->Bind(1, RollupKey(app, bucket));
    NUCLEON_RETURN_IF_ERROR(touch(*q));
    for (const auto& [slot, values] : ValuesBySlot(events)) {
      auto v = db.Cached(kSelectValues);
      if (!v.ok()) return v.status();
      BindSlot(**v, app, slot, bucket);
      NUCLEON_RETURN_IF_ERROR(touch(*v));
    }
  }
  return Status::Ok();
}

namespace {

// The stored core of (app, bucket) decoded by `decode` (false: corrupt);
// false when there is none.
template <typename Decode>
Result<bool> DecodeStored(int64_t app, int64_t bucket, SqliteDb& db, Decode decode) {
  auto q = db.Cached(kSelectCore);
  if (!q.ok()) return q.status();
  (*q)->Bind(1, RollupKey(app, bucket));
  Status st;
  if (!(*q)->Step(&st)) {
    NUCLEON_RETURN_IF_ERROR(st);
    return false;
  }
  if (!decode((*q)->Blob(0))) {
    return Status::Internal("corrupt rollup of bucket " + std::to_string(bucket));
  }
  return true;
}

}  // namespace

Result<bool> Rollups::ReadStored(int64_t app, int64_t bucket, SqliteDb& db,
                                 BucketCore* core) const {
  return DecodeStored(app, bucket, db,
                      [&](std::string_view blob) { return BucketCore::Decode(blob, core); });
}

Result<bool> Rollups::ReadStoredUsers(int64_t app, int64_t bucket, SqliteDb& db,
                                      Roaring* users) const {
  return DecodeStored(app, bucket, db,
                      [&](std::string_view blob) { return BucketCore::DecodeUsers(blob, users); });
}

Status Rollups::WriteDrop(int64_t app, int64_t bucket, const BucketCore& core, SqliteDb& db,
                          Removal* out) {
  out->app = app;
  out->buckets.push_back(bucket);
  out->emptied.push_back(bucket);
  auto del = db.Cached("DELETE FROM rollups WHERE key = ?");
  if (!del.ok()) return del.status();
  (*del)->Bind(1, RollupKey(app, bucket));
  NUCLEON_RETURN_IF_ERROR((*del)->Run());
  std::set<uint64_t> slots;
  for (const BucketCore::PropKey& k : core.prop_keys) slots.insert(PropSlot(k.event, k.key));
  for (uint64_t slot : slots) {
    auto dv = db.Cached(kDeleteValues);
    if (!dv.ok()) return dv.status();
    BindSlot(**dv, app, slot, bucket);
    NUCLEON_RETURN_IF_ERROR((*dv)->Run());
  }
  return Status::Ok();
}

void Rollups::CommitRemoval(const Removal& r) {
  epoch_.fetch_add(1, std::memory_order_acq_rel);  // first: in-flight disk reads are older
  App& a = AppFor(r.app);
  {
    std::unique_lock<std::shared_mutex> lock(a.mu);
    for (int64_t b : r.buckets) {
      // Clean (the delete checkpointed first): the disk has it all.
      auto it = a.hot.find(b);
      if (it != a.hot.end()) {
        hot_total_.fetch_sub(it->second.bytes, std::memory_order_relaxed);
        a.hot.erase(it);
      }
      cores_.Erase({r.app, b});
    }
    for (int64_t b : r.emptied) a.present.erase(b);
  }
  std::set<int64_t> buckets(r.buckets.begin(), r.buckets.end());
  slots_.EraseIf([&](const SlotKey& k) { return k.app == r.app && buckets.count(k.bucket); });
  for (int64_t b : r.buckets) InvalidateDays(r.app, b);
}

std::vector<int64_t> Rollups::Present(int64_t app, int64_t first, int64_t last) const {
  std::vector<int64_t> out;
  const App* a = FindApp(app);
  if (!a || first > last) return out;
  std::shared_lock<std::shared_mutex> lock(a->mu);
  for (auto it = a->present.lower_bound(first); it != a->present.end() && *it <= last; ++it) {
    out.push_back(*it);
  }
  return out;
}

bool Rollups::Span(int64_t app, int64_t* first, int64_t* last) const {
  const App* a = FindApp(app);
  if (!a) return false;
  std::shared_lock<std::shared_mutex> lock(a->mu);
  if (a->present.empty()) return false;
  *first = *a->present.begin();
  *last = *a->present.rbegin();
  return true;
}

Status Rollups::Cores(int64_t app, std::span<const int64_t> buckets, const ReadTx& tx,
                      std::vector<CoreRef>* out, bool keep) {
  SqliteDb& db = tx.db;
  auto current = [this, &tx] { return epoch_.load(std::memory_order_acquire) == tx.epoch; };
  out->assign(buckets.size(), CoreRef());
  std::vector<size_t> missing;
  if (const App* a = FindApp(app)) {
    std::shared_lock<std::shared_mutex> lock(a->mu);
    for (size_t i = 0; i < buckets.size(); ++i) {
      (*out)[i].bucket = buckets[i];
      auto it = a->hot.find(buckets[i]);
      if (it != a->hot.end()) {
        (*out)[i].core = it->second.core;
        (*out)[i].hot = true;
      } else {
        missing.push_back(i);
      }
    }
  } else {
    for (size_t i = 0; i < buckets.size(); ++i) {
      (*out)[i].bucket = buckets[i];
      missing.push_back(i);
    }
  }
  std::vector<size_t> from_disk;
  for (size_t i : missing) {
    if (auto c = cores_.Get({app, buckets[i]})) {
      (*out)[i].core = std::move(c);
    } else {
      from_disk.push_back(i);
    }
  }
  if (!from_disk.empty()) {
    auto q = db.Cached("SELECT key, core FROM rollups WHERE key BETWEEN ? AND ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, RollupKey(app, buckets[from_disk.front()]));
    (*q)->Bind(2, RollupKey(app, buckets[from_disk.back()]));
    Status st;
    size_t next = 0;
    while (next < from_disk.size() && (*q)->Step(&st)) {
      const int64_t b = RollupBucket((*q)->Int(0));
      while (next < from_disk.size() && buckets[from_disk[next]] < b) ++next;
      if (next == from_disk.size() || buckets[from_disk[next]] != b) continue;
      auto core = std::make_shared<BucketCore>();
      if (!BucketCore::Decode((*q)->Blob(1), core.get())) {
        return Status::Internal("corrupt rollup of bucket " + std::to_string(b));
      }
      if (keep) cores_.PutIf({app, b}, core, core->MemoryBytes(), current);
      (*out)[from_disk[next]].core = std::move(core);
      ++next;
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }
  static const auto kEmptyCore = std::make_shared<const BucketCore>();
  for (CoreRef& r : *out) {
    if (!r.core) r.core = kEmptyCore;
  }
  return Status::Ok();
}

Status Rollups::PropSlots(int64_t app, uint32_t event, uint32_t key,
                          std::span<const int64_t> buckets, const ReadTx& tx,
                          std::vector<std::shared_ptr<const PropValues>>* out) {
  SqliteDb& db = tx.db;
  auto current = [this, &tx] { return epoch_.load(std::memory_order_acquire) == tx.epoch; };
  out->assign(buckets.size(), nullptr);
  const uint64_t slot = PropSlot(event, key);
  std::vector<size_t> missing;
  if (const App* a = FindApp(app)) {
    std::shared_lock<std::shared_mutex> lock(a->mu);
    for (size_t i = 0; i < buckets.size(); ++i) {
      auto it = a->hot.find(buckets[i]);
      if (it == a->hot.end()) {
        missing.push_back(i);
        continue;
      }
      auto s = it->second.slots.find(slot);
      if (s != it->second.slots.end()) {
        (*out)[i] = s->second.values;
      } else if (it->second.disk_slots.count(slot)) {
        missing.push_back(i);
      } else {
        (*out)[i] = EmptyValues();
      }
    }
  } else {
    for (size_t i = 0; i < buckets.size(); ++i) missing.push_back(i);
  }
  std::vector<size_t> from_disk;
  for (size_t i : missing) {
    if (auto c = slots_.Get({app, buckets[i], slot})) {
      (*out)[i] = std::move(c);
    } else {
      from_disk.push_back(i);
    }
  }
  if (!from_disk.empty()) {
    auto q = db.Cached(
        "SELECT bucket, vals FROM rollup_props WHERE app = ? AND event = ? AND key = ?"
        " AND bucket BETWEEN ? AND ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, app);
    (*q)->Bind(2, static_cast<int64_t>(event));
    (*q)->Bind(3, static_cast<int64_t>(key));
    (*q)->Bind(4, buckets[from_disk.front()]);
    (*q)->Bind(5, buckets[from_disk.back()]);
    Status st;
    size_t next = 0;
    while (next < from_disk.size() && (*q)->Step(&st)) {
      const int64_t b = (*q)->Int(0);
      while (next < from_disk.size() && buckets[from_disk[next]] < b) {
        // No row: the bucket has no such property (remembered as such).
        slots_.PutIf({app, buckets[from_disk[next]], slot}, EmptyValues(), 64, current);
        (*out)[from_disk[next]] = EmptyValues();
        ++next;
      }
      if (next == from_disk.size() || buckets[from_disk[next]] != b) continue;
      auto pv = std::make_shared<PropValues>();
      if (!PropValues::Decode((*q)->Blob(1), pv.get())) {
        return Status::Internal("corrupt property rollup of bucket " + std::to_string(b));
      }
      slots_.PutIf({app, b, slot}, pv, pv->MemoryBytes(), current);
      (*out)[from_disk[next]] = std::move(pv);
      ++next;
    }
    NUCLEON_RETURN_IF_ERROR(st);
    for (; next < from_disk.size(); ++next) {
      slots_.PutIf({app, buckets[from_disk[next]], slot}, EmptyValues(), 64, current);
      (*out)[from_disk[next]] = EmptyValues();
    }
  }
  return Status::Ok();
}

std::shared_ptr<const DayAgg> Rollups::CachedDay(int64_t app, int offset_min, int64_t day) {
  return days_.Get({app, offset_min, day});
}

void Rollups::CacheDay(int64_t app, int offset_min, int64_t day, std::shared_ptr<const DayAgg> agg,
                       std::span<const CoreRef> built_from, const ReadTx& tx) {
  App& a = AppFor(app);
  {
    std::lock_guard<std::mutex> lock(days_mu_);
    a.offsets.insert(offset_min);
  }
  const int64_t offset_ms = static_cast<int64_t>(offset_min) * 60000;
  const int64_t first = FloorDiv(day * kDayMs - offset_ms, kBucketMs);
  const int64_t last = FloorDiv((day + 1) * kDayMs - offset_ms - 1, kBucketMs);
  std::shared_lock<std::shared_mutex> lock(a.mu);
  // Valid only if the day's buckets are exactly the ones it was built from, in
  // the same versions: a bucket that became hot, changed, or appeared since
  // would make it stale.
  size_t i = 0;
  for (auto it = a.present.lower_bound(first); it != a.present.end() && *it <= last; ++it, ++i) {
    if (i >= built_from.size() || built_from[i].bucket != *it) return;
    auto hot = a.hot.find(*it);
    if (built_from[i].hot) {
      if (hot == a.hot.end() || hot->second.core.get() != built_from[i].core.get()) return;
    } else if (hot != a.hot.end()) {
      return;
    }
  }
  if (i != built_from.size()) return;
  const size_t bytes = agg ? agg->MemoryBytes() : 0;
  days_.PutIf({app, offset_min, day}, std::move(agg), bytes,
              [this, &tx] { return epoch_.load(std::memory_order_acquire) == tx.epoch; });
}

void Rollups::Recount(HotBucket& hb) {
  size_t bytes = hb.core->MemoryBytes();
  for (const auto& [slot, hs] : hb.slots) bytes += hs.values->MemoryBytes() + 32;
  // Under the app's unique lock: bytes changes only here, so the sum stays exact.
  if (bytes >= hb.bytes) {
    hot_total_.fetch_add(bytes - hb.bytes, std::memory_order_relaxed);
  } else {
    hot_total_.fetch_sub(hb.bytes - bytes, std::memory_order_relaxed);
  }
  hb.bytes = bytes;
}

Rollups::CacheStats Rollups::Stats() const {
  CacheStats s;
  {
    std::shared_lock<std::shared_mutex> lock(apps_mu_);
    for (const auto& [id, a] : apps_) {
      std::shared_lock<std::shared_mutex> al(a->mu);
      s.hot_buckets += a->hot.size();
    }
  }
  s.core_cache_bytes = cores_.used_bytes();
  s.props_cache_bytes = slots_.used_bytes();
  s.day_cache_bytes = days_.used_bytes();
  return s;
}

}  // namespace nucleon
