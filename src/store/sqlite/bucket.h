// The aggregates of one app's events in one 15-minute UTC bucket (a rollup),
// and of the property values in it. Every real time zone is a whole number of
// quarter hours away from UTC, so local days and hours are sets of whole
// buckets; the API's numbers over whole buckets are unions and sums of these.
//
//   BucketCore  app starts, the time span of the events, a bitmap of the users
//               with events, counts per event name and per error name, per
//               breakdown value (platform, language, version, country, RAM) the
//               users whose app starts carried it, and the properties present
//               (event, key, value type) with their number of occurrences;
//   PropValues  for one (event, property key): count per value.
//
// A core also knows where its events are in the events table: runs of row ids
// that hold all of them (and maybe other rows, which readers filter out).
// Events arrive close to the time they happened, so a bucket's rows are mostly
// one run; that is what lets the table do without an index on time.
//
// Both are exact and reversible: an event is added once (Add), and a deleted
// user's events are taken out again (RemoveUser), leaving the bucket exactly as
// if they had never been added. Both have a compact binary form (Encode/Decode)
// stored in the `rollups` and `rollup_props` tables.
//
// Thread-safety: plain values; callers synchronise.
#pragma once

#include <array>
#include <cstdint>
#include <roaring/roaring.hh>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/event.h"
#include "store/sqlite/event_codec.h"

namespace nucleon {

inline constexpr int64_t kBucketMs = 15 * 60 * 1000;

enum class Dim : uint8_t { kPlatform = 0, kLanguage, kVersion, kCountry, kRam, kCount };
inline constexpr size_t kDims = static_cast<size_t>(Dim::kCount);

// What a rollup needs of one stored event (heartbeats are never events).
struct RollupEvent {
  int64_t id = 0;  // the event's row id (0: unknown, e.g. a piece built from raw rows)
  int64_t time_ms = 0;
  EventType type = EventType::kEvent;
  uint32_t user = 0;  // the user row
  // Dictionary id of the name the counts use: the event name (event), the error
  // name (error), "init" (init: its payload props are counted under it); 0 otherwise.
  uint32_t name = 0;
  std::array<uint32_t, kDims> dims{};  // init: normalised breakdown value ids, 0 = none
  std::span<const BodyProp> props;     // init and event: scalar payload members
};

// (event name id, property key id): the key of a PropValues.
inline uint64_t PropSlot(uint32_t event, uint32_t key) {
  return (static_cast<uint64_t>(event) << 32) | key;
}

struct BucketCore {
  struct DimUsers {
    uint8_t dim = 0;
    uint32_t value = 0;
    Roaring users;
  };
  struct PropKey {
    uint32_t event = 0, key = 0;
    uint8_t kind = 0;
    uint32_t occurrences = 0;
  };

  uint32_t inits = 0;
  int64_t min_ms = INT64_MAX, max_ms = INT64_MIN;  // bounds of the events' times
  Roaring users;
  std::vector<std::pair<uint32_t, uint32_t>> events;  // name id -> count, by id
  std::vector<std::pair<uint32_t, uint32_t>> errors;  // name id -> count, by id
  std::vector<DimUsers> dims;                         // by (dim, value)
  std::vector<PropKey> prop_keys;                     // by (event, key, kind)
  // Inclusive row id ranges holding every event of the bucket, ascending and
  // disjoint. A superset: RemoveUser leaves them, rows that are gone are not found.
  std::vector<std::pair<int64_t, int64_t>> runs;
  static constexpr size_t kMaxRuns = 4096;
  static constexpr int64_t kRunGap = 64;  // rows between runs worth scanning to save a run

  bool empty() const { return users.isEmpty(); }
  void Add(const RollupEvent& e);
  // Takes out `user` and the given events of theirs (every one of their events
  // in this bucket). min_ms/max_ms stay as bounds (possibly wider than needed).
  void RemoveUser(uint32_t user, const std::vector<RollupEvent>& events);
  // Records that row `id` holds one of the bucket's events.
  void NoteRow(int64_t id);
  size_t MemoryBytes() const;
  void Encode(std::string* out) const;
  static bool Decode(std::string_view in, BucketCore* out);
  // The users bitmap alone of an encoded core (what Decode would give as
  // `users`), without decoding the rest.
  static bool DecodeUsers(std::string_view in, Roaring* users);
  // Equal aggregates (what the API's numbers are made of); the bounds
  // min_ms/max_ms and the row runs are not compared.
  bool operator==(const BucketCore& o) const;
};

// One property's values in one bucket. The map key is the value's kind (one
// character, '0' + PropValue::Kind) followed by its text.
struct PropValues {
  std::unordered_map<std::string, uint32_t> counts;

  static std::string ValueKey(const PropValue& v);
  void Add(const PropValue& v) {
    auto [it, added] = counts.try_emplace(ValueKey(v), 0);
    ++it->second;
    if (added) value_bytes_ += EntryBytes(it->first);
  }
  // Takes one occurrence out; the value disappears at zero.
  void Remove(const PropValue& v);
  size_t MemoryBytes() const;  // constant time
  void Encode(std::string* out) const;
  static bool Decode(std::string_view in, PropValues* out);

 private:
  static size_t EntryBytes(const std::string& key) {
    return 48 + (key.size() > 15 ? key.size() + 1 : 0);
  }
  size_t value_bytes_ = 0;  // the entries' estimate, kept as they come and go
};

}  // namespace nucleon
