// AnalyticsIndex: the in-memory structures that let one machine answer the
// API's analytics questions over millions of events in milliseconds, exactly.
// One instance per app. It is fed every newly stored event and every session
// change by its backend (and rebuilt from the backend's files at start-up), and
// never holds a raw event: only
//   - per 15-minute UTC bucket: app starts, a Roaring bitmap of active users,
//     counts per event and error name, the (dimension, value, user) triples of
//     app starts, and counts per (event, property, value);
//   - per user, device and session: first/last times, props, session context.
// Every time zone in use is a multiple of 15 minutes, so local days and hours
// are whole sets of buckets; the parts of a range that cut a bucket (the
// range's ends, or days in an unusual offset) are computed from raw events the
// backend fetches, through exactly the same Bucket::Add as ingestion.
//
// Thread-safety: writers (Add*, Upsert*, Clear) and readers (queries) may run
// concurrently; an internal shared_mutex serialises them.
#pragma once

#include <ext/pb_ds/assoc_container.hpp>
#include <ext/pb_ds/tree_policy.hpp>
#include <roaring/roaring.hh>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <map>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/event.h"
#include "core/status.h"
#include "store/analytics.h"

namespace nucleon {

// What the index needs of one stored event.
struct IndexEvent {
  int64_t time_ms = 0;
  EventType type = EventType::kEvent;
  uint32_t user = 0, device = 0, session = 0;  // the backend's stable row ids
  std::string_view user_key, device_key, session_key;
  std::string_view name;
  const std::vector<std::pair<std::string, PropValue>>* props = nullptr;
  std::string_view platform, os_version, locale, version, module_version, arch, country;
  std::optional<double> total_ram;
};

// Hashing that lets string-keyed maps be searched with a string_view.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Interned strings: id <-> text. Ids are dense from 0.
class Dictionary {
 public:
  uint32_t Intern(std::string_view s);
  // kMissing when absent.
  uint32_t Find(std::string_view s) const;
  const std::string& Text(uint32_t id) const { return texts_[id]; }
  static constexpr uint32_t kMissing = UINT32_MAX;

 private:
  std::unordered_map<std::string, uint32_t, StringViewHash, std::equal_to<>> ids_;
  std::vector<std::string> texts_;
};

enum class Dim : uint8_t { kPlatform = 0, kLanguage, kVersion, kCountry, kRam, kCount };

// The aggregates of one 15-minute bucket (or of a piece of one).
struct Bucket {
  struct InitDim {
    Dim dim;
    uint32_t value;
    uint32_t user;
  };
  uint32_t inits = 0;
  int64_t min_ms = INT64_MAX, max_ms = INT64_MIN;  // times of the events in it
  Roaring users;
  std::vector<std::pair<uint32_t, uint32_t>> events;  // name id -> count
  std::vector<std::pair<uint32_t, uint32_t>> errors;  // name id -> count
  std::vector<InitDim> init_dims;
  // (event id << 32 | key id) -> value id -> count. Hashed, not sorted: a busy
  // bucket takes millions of values and every insert must stay O(1).
  std::unordered_map<uint64_t, std::unordered_map<uint32_t, uint32_t>> props;
  // The distinct (event, key, kind) triples of `props`, packed by PackPropKey, sorted.
  std::vector<uint64_t> prop_keys;
};

// (event id, key id, value kind) in one sortable integer (24 + 24 + 2 bits).
inline uint64_t PackPropKey(uint32_t event, uint32_t key, uint8_t kind) {
  return (static_cast<uint64_t>(event & 0xFFFFFF) << 26) | (static_cast<uint64_t>(key & 0xFFFFFF) << 2) |
         (kind & 3);
}

// Ids filed under a time in 15-minute buckets, to answer "whose time falls in
// [from, to]" without visiting every id. Callers check the exact time.
class TimeIndex {
 public:
  static constexpr int64_t kNone = INT64_MIN;
  // Refiles `id` from `old_ms` (kNone: not filed) to `new_ms` (kNone: unfile).
  void Move(uint32_t id, int64_t old_ms, int64_t new_ms);
  template <typename Fn>
  void ForRange(int64_t from_ms, int64_t to_ms, Fn&& fn) const {
    auto end = buckets_.upper_bound(Bucket(to_ms));
    for (auto it = buckets_.lower_bound(Bucket(from_ms)); it != end; ++it) {
      for (uint32_t id : it->second) fn(id);
    }
  }
  void Clear() { buckets_.clear(); }

 private:
  static int64_t Bucket(int64_t ms);
  std::map<int64_t, std::vector<uint32_t>> buckets_;
};

class AnalyticsIndex {
 public:
  // Fetches the raw events of [from_ms, to_ms] (inclusive) for the cut buckets.
  // `with_props`: whether the caller needs payload properties (parsing them is
  // the expensive part of a raw read).
  using RawSource = std::function<Status(int64_t from_ms, int64_t to_ms, bool with_props,
                                         const std::function<void(const IndexEvent&)>& sink)>;
  static constexpr int64_t kBucketMs = 15 * 60 * 1000;

  explicit AnalyticsIndex(std::string app_id) : app_id_(std::move(app_id)) {}

  struct SessionUpdate {
    uint32_t session, device;
    std::string_view key;
    int64_t start_ms, end_ms;
  };
  // A newly stored event (never a resend, never a heartbeat).
  void Add(const IndexEvent& e);
  // The current start and end of a session (after its events or a heartbeat).
  void UpsertSession(uint32_t session, uint32_t device, std::string_view session_key,
                     int64_t start_ms, int64_t end_ms);
  // Both for one committed batch, under one lock: events first, then sessions.
  void Apply(const std::vector<IndexEvent>& events, const std::vector<SessionUpdate>& sessions);
  void Clear();

  Result<QuickGlanceCounts> QuickGlance(int64_t from_ms, int64_t to_ms, const RawSource& raw) const;
  Result<DailyAnalytics> Daily(const QueryRange& range, const RawSource& raw) const;
  Result<DailyCounts> EventCounts(const QueryRange& range, const RawSource& raw, bool errors) const;
  Result<std::vector<EventPropKeys>> EventProps(const QueryRange& range, const RawSource& raw) const;
  Result<std::vector<ValueCount>> EventAttribute(const QueryRange& range, std::string_view event,
                                                 std::string_view attr, const RawSource& raw) const;
  UserList Users(int64_t page, int64_t limit) const;
  // nullopt when the app has no such user.
  std::optional<UserDetails> User(std::string_view user_key) const;
  // The user's session rows with the given session id (all devices, or one).
  std::vector<uint32_t> UserSessions(std::string_view user_key, std::string_view session_key,
                                     std::string_view device_key) const;
  // Every session row holding the user's events.
  std::vector<uint32_t> AllUserSessions(std::string_view user_key) const;
  // Context of a session (from its init) and whether it is its device's install.
  bool SessionContext(uint32_t session, Event* context, bool* install) const;
  // The session row of (device, session id), or 0.
  uint32_t SessionRow(std::string_view device_key, std::string_view session_key) const;
  // Row ids of a user, or 0.
  uint32_t UserRow(std::string_view user_key) const;

  const std::string& app_id() const { return app_id_; }

 private:
  struct SessionInfo {
    uint32_t device = 0;
    bool filed = false;  // in session_starts_ under start_ms
    int64_t start_ms = 0, end_ms = 0;
    uint32_t actions = 0, errors = 0;
    std::string key;
    bool has_context = false;
    int64_t context_ms = 0;  // time of the event the context came from
    bool context_from_init = false;
    uint32_t platform = Dictionary::kMissing, os_version = Dictionary::kMissing,
             locale = Dictionary::kMissing, version = Dictionary::kMissing,
             module_version = Dictionary::kMissing, arch = Dictionary::kMissing,
             country = Dictionary::kMissing;
    std::optional<double> total_ram;
    std::vector<uint32_t> users;  // users with events in it
  };
  struct DeviceInfo {
    std::string key;
    std::vector<uint32_t> sessions;
    int64_t install_start = INT64_MAX;  // start of its first session
    uint32_t install_session = 0;
  };
  struct UserInfo {
    std::string key;
    int64_t first_ms = INT64_MAX;
    int64_t last_ms = INT64_MIN;  // last event or heartbeat
    int64_t filed_ms = INT64_MIN;  // the time it is filed under in by_last_seen_
    bool refile = false;           // last_ms moved during a batch
    std::vector<uint32_t> sessions;
    std::map<std::string, std::pair<int64_t, std::string>> props;  // key -> (time, JSON)
  };

  void AddToBucket(Bucket* b, const IndexEvent& e);
  void AddLocked(const IndexEvent& e);
  void Refile(uint32_t user);
  void UpsertSessionLocked(const SessionUpdate& u);
  void Touch(uint32_t user, int64_t t);
  // Calls fn(local_hour, bucket) for every piece of [from, to] cut at local
  // hour boundaries (local_hour = hours since 1970 in local time), using whole
  // buckets where possible and raw events elsewhere.
  // `stable`: the bucket outlives the call (it is the index's own, not a
  // piece built from raw events), so pointers to it may be kept for the query.
  Status ForEachBucket(int64_t from_ms, int64_t to_ms, int offset_min, const RawSource& raw,
                       bool with_props,
                       const std::function<void(int64_t hour, const Bucket&, bool stable)>& fn) const;
  void SetSessionStart(uint32_t row, SessionInfo& s, int64_t start_ms);
  void UpdateInstall(uint32_t device, uint32_t session, int64_t start_ms);
  UserSummary Summarize(uint32_t user) const;
  std::optional<std::string> Text(uint32_t id) const;

  // The app starts, hours, users and breakdown users of one local day.
  struct DayAgg {
    int64_t usage = 0;
    std::array<int64_t, 24> hours;
    Roaring users;
    std::array<std::unordered_map<uint32_t, Roaring>, static_cast<size_t>(Dim::kCount)> dims;
    int64_t session_seconds = 0;  // durations of the sessions started in it
    int64_t sessions = 0;
  };
  Result<std::shared_ptr<const DayAgg>> BuildDay(int64_t from_ms, int64_t to_ms, int offset_min,
                                                 const RawSource& raw) const;
  // Drops the cached days that a change to `bucket` touches.
  void InvalidateDays(int64_t bucket) const;

  const std::string app_id_;
  mutable std::shared_mutex mu_;
  static constexpr size_t kMaxCachedDays = 4096;
  mutable std::mutex day_cache_mu_;
  mutable std::map<std::pair<int, int64_t>, std::shared_ptr<const DayAgg>> day_cache_;
  // Interning is also done while building raw buckets under a shared lock.
  mutable std::mutex dict_mu_;
  mutable Dictionary names_, keys_, values_, strings_;
  std::string value_key_scratch_;  // AddToBucket's value key, under dict_mu_
  std::vector<uint8_t> value_kinds_;  // by value id
  std::map<int64_t, Bucket> buckets_;
  std::unordered_map<uint32_t, SessionInfo> sessions_;
  std::unordered_map<uint32_t, DeviceInfo> devices_;
  std::unordered_map<uint32_t, UserInfo> users_;
  std::unordered_map<std::string, uint32_t> user_rows_;
  uint32_t max_user_row_ = 0;
  std::unordered_map<std::string, uint32_t> device_rows_;
  // (last seen, user) in order, with rank lookups so a deep page costs O(log n).
  __gnu_pbds::tree<std::pair<int64_t, uint32_t>, __gnu_pbds::null_type,
                   std::less<std::pair<int64_t, uint32_t>>, __gnu_pbds::rb_tree_tag,
                   __gnu_pbds::tree_order_statistics_node_update>
      by_last_seen_;
  // During Apply: users whose last_ms moved, refiled once at the end of the batch.
  bool batching_ = false;
  std::vector<uint32_t> refile_;
  TimeIndex session_starts_;  // sessions by start
  TimeIndex first_seen_;      // users by first event
  TimeIndex install_starts_;  // devices by install (first session start)
};

}  // namespace nucleon
