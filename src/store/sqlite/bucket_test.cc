// Rollup buckets: a user's events taken out again (RemoveUser) must leave the
// bucket exactly as if they had never been added, and the binary forms must
// round-trip and reject garbage without crashing.
#include "store/sqlite/bucket.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace nucleon {
namespace {

constexpr int64_t kBase = 1795685400000;  // a bucket edge (2026-11-26)

// Random events of a few users in one bucket. Props live in `props` (the
// events' spans point into it).
struct Stream {
  std::deque<std::vector<BodyProp>> props;
  std::vector<RollupEvent> events;
};

void Generate(std::mt19937_64& rng, const std::vector<uint32_t>& users, size_t count, Stream* s) {
  static const EventType kTypes[] = {EventType::kInit,  EventType::kEvent, EventType::kEvent,
                                     EventType::kError, EventType::kView,  EventType::kUserId,
                                     EventType::kProps};
  int64_t next_id = 1000;
  for (size_t i = 0; i < count; ++i) {
    RollupEvent e;
    // Row ids: mostly increasing, a few late or far (0: a piece built from raw rows).
    next_id += 1 + static_cast<int64_t>(rng() % 3);
    e.id = rng() % 10 == 0 ? static_cast<int64_t>(rng() % 100000) : rng() % 20 == 0 ? 0 : next_id;
    e.user = users[rng() % users.size()];
    e.time_ms = kBase + static_cast<int64_t>(rng() % kBucketMs);
    e.type = kTypes[rng() % std::size(kTypes)];
    switch (e.type) {
      case EventType::kInit:
        e.name = 1;  // "init"
        for (size_t d = 0; d < kDims; ++d) {
          // 0 (no value) sometimes; values shared between users often.
          e.dims[d] = rng() % 4 == 0 ? 0 : 100 + static_cast<uint32_t>(d * 10 + rng() % 3);
        }
        break;
      case EventType::kEvent:
      case EventType::kError:
        e.name = rng() % 8 == 0 ? 0 : 2 + static_cast<uint32_t>(rng() % 4);
        break;
      default:
        e.name = 0;
        break;
    }
    std::vector<BodyProp>& props = s->props.emplace_back();
    const size_t n = rng() % 4;
    for (size_t k = 0; k < n; ++k) {
      BodyProp p;
      p.key = 50 + static_cast<uint32_t>(rng() % 3);
      p.value.kind = static_cast<PropValue::Kind>(rng() % 3);
      p.value.text = std::to_string(rng() % 3);
      props.push_back(p);
    }
    e.props = props;
    s->events.push_back(e);
  }
}

bool Covered(const BucketCore& b, int64_t id) {
  for (const auto& [first, last] : b.runs) {
    if (id >= first && id <= last) return true;
  }
  return false;
}

// Everything but the bounds and the row runs, which RemoveUser keeps as they
// were (they must still hold every remaining event's row).
void ExpectEqualButBounds(const BucketCore& got, const BucketCore& want,
                          const std::vector<RollupEvent>& remaining, const std::string& what) {
  if (want.empty()) {
    EXPECT_TRUE(got == BucketCore()) << what << ": an emptied bucket is reset";
    EXPECT_TRUE(got.runs.empty()) << what;
    EXPECT_EQ(got.min_ms, INT64_MAX) << what;
    return;
  }
  EXPECT_LE(got.min_ms, want.min_ms) << what;
  EXPECT_GE(got.max_ms, want.max_ms) << what;
  for (const RollupEvent& e : remaining) {
    if (e.id > 0) {
      EXPECT_TRUE(Covered(got, e.id)) << what << ": row " << e.id << " left the runs";
    }
  }
  BucketCore adjusted = got;
  adjusted.min_ms = want.min_ms;
  adjusted.max_ms = want.max_ms;
  adjusted.runs = want.runs;
  EXPECT_EQ(adjusted.inits, want.inits) << what;
  EXPECT_EQ(adjusted.users.cardinality(), want.users.cardinality()) << what;
  EXPECT_EQ(adjusted.events, want.events) << what;
  EXPECT_EQ(adjusted.errors, want.errors) << what;
  EXPECT_EQ(adjusted.dims.size(), want.dims.size()) << what;
  EXPECT_EQ(adjusted.prop_keys.size(), want.prop_keys.size()) << what;
  EXPECT_TRUE(adjusted == want) << what;
  std::string a, b;
  adjusted.Encode(&a);
  want.Encode(&b);
  EXPECT_EQ(a, b) << what;
}

TEST(BucketTest, RemovingAUserEqualsNeverAddingThem) {
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    std::mt19937_64 rng(seed);
    // Few users (small bitmaps) or many (Roaring form), ids small and large.
    std::vector<uint32_t> users;
    const size_t nusers = seed % 3 == 0 ? 60 : 2 + seed % 5;
    for (size_t i = 0; i < nusers; ++i) {
      users.push_back(seed % 2 ? static_cast<uint32_t>(i + 1)
                               : static_cast<uint32_t>(4000000000u - i * 977));
    }
    Stream s;
    Generate(rng, users, 5 + rng() % 120, &s);
    const uint32_t gone = users[rng() % users.size()];

    BucketCore all, others;
    std::vector<RollupEvent> removed, kept;
    for (const RollupEvent& e : s.events) {
      all.Add(e);
      if (e.user == gone) {
        removed.push_back(e);
      } else {
        others.Add(e);
        kept.push_back(e);
      }
    }
    // Storage order of the removed events does not matter.
    std::shuffle(removed.begin(), removed.end(), rng);
    BucketCore after = all;
    after.RemoveUser(gone, removed);
    ExpectEqualButBounds(after, others, kept, "seed " + std::to_string(seed));

    // And a second user after the first.
    const uint32_t second = users[rng() % users.size()];
    if (second == gone) continue;
    BucketCore rest;
    std::vector<RollupEvent> removed2, kept2;
    for (const RollupEvent& e : s.events) {
      if (e.user == second) {
        removed2.push_back(e);
      } else if (e.user != gone) {
        rest.Add(e);
        kept2.push_back(e);
      }
    }
    after.RemoveUser(second, removed2);
    ExpectEqualButBounds(after, rest, kept2, "seed " + std::to_string(seed) + ", second user");
  }
}

TEST(BucketTest, RemovingTheOnlyUserEmptiesTheBucket) {
  BucketCore b;
  std::vector<BodyProp> props = {{7, {PropValue::Kind::kString, "x"}}};
  RollupEvent init;
  init.type = EventType::kInit;
  init.user = 3;
  init.name = 1;
  init.time_ms = kBase;
  init.dims = {10, 11, 12, 13, 14};
  init.props = props;
  RollupEvent ev;
  ev.type = EventType::kEvent;
  ev.user = 3;
  ev.name = 2;
  ev.time_ms = kBase + 5;
  ev.props = props;
  b.Add(init);
  b.Add(ev);
  EXPECT_FALSE(b.empty());
  b.RemoveUser(3, {init, ev});
  EXPECT_TRUE(b.empty());
  EXPECT_TRUE(b == BucketCore());
  EXPECT_EQ(b.min_ms, INT64_MAX);
}

TEST(BucketTest, CountsAndPropsFollowTheDocumentedRules) {
  BucketCore b;
  std::vector<BodyProp> props = {{7, {PropValue::Kind::kString, "x"}},
                                 {7, {PropValue::Kind::kNumber, "1"}},
                                 {8, {PropValue::Kind::kBool, "true"}}};
  auto make = [&](EventType type, uint32_t user, uint32_t name) {
    RollupEvent e;
    e.type = type;
    e.user = user;
    e.name = name;
    e.time_ms = kBase + user;
    e.props = props;
    return e;
  };
  b.Add(make(EventType::kEvent, 1, 2));
  b.Add(make(EventType::kEvent, 2, 2));
  b.Add(make(EventType::kError, 1, 3));
  b.Add(make(EventType::kView, 4, 0));   // a view: a user, no count, no props
  b.Add(make(EventType::kProps, 5, 0));  // props events: no counted props
  b.Add(make(EventType::kEvent, 6, 0));  // a nameless event: not counted
  EXPECT_EQ(b.users.cardinality(), 5u);
  EXPECT_EQ(b.events, (std::vector<std::pair<uint32_t, uint32_t>>{{2, 2}}));
  EXPECT_EQ(b.errors, (std::vector<std::pair<uint32_t, uint32_t>>{{3, 1}}));
  EXPECT_EQ(b.inits, 0u);
  ASSERT_EQ(b.prop_keys.size(), 3u);  // (2,7,string), (2,7,number), (2,8,bool); errors have none
  for (const auto& k : b.prop_keys) {
    EXPECT_EQ(k.event, 2u);
    EXPECT_EQ(k.occurrences, 2u);
  }
  EXPECT_EQ(b.min_ms, kBase + 1);
  EXPECT_EQ(b.max_ms, kBase + 6);
}

TEST(BucketTest, RowRunsHoldEveryNotedRow) {
  std::mt19937_64 rng(21);
  for (int round = 0; round < 40; ++round) {
    BucketCore b;
    std::vector<int64_t> ids;
    int64_t next = 1 + static_cast<int64_t>(rng() % 1000);
    const int n = 1 + static_cast<int>(rng() % 3000);
    for (int i = 0; i < n; ++i) {
      next += 1 + static_cast<int64_t>(rng() % (round % 2 ? 200 : 4));
      int64_t id = next;
      if (rng() % 8 == 0)
        id = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(next));  // late
      ids.push_back(id);
      b.NoteRow(id);
      if (rng() % 5 == 0) b.NoteRow(ids[rng() % ids.size()]);  // again: nothing changes
    }
    ASSERT_FALSE(b.runs.empty());
    EXPECT_LE(b.runs.size(), BucketCore::kMaxRuns);
    for (size_t i = 0; i < b.runs.size(); ++i) {
      EXPECT_LE(b.runs[i].first, b.runs[i].second) << round;
      if (i) {
        EXPECT_GT(b.runs[i].first, b.runs[i - 1].second)
            << round << ": runs overlap or are out of order";
      }
    }
    for (int64_t id : ids) ASSERT_TRUE(Covered(b, id)) << "round " << round << ": row " << id;
    // Rows close together share a run.
    if (round % 2 == 0) {
      EXPECT_LT(b.runs.size(), ids.size() / 4 + 2) << round;
    }
  }
  // More far-apart rows than runs allowed: runs merge, nothing is lost.
  BucketCore b;
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < static_cast<int64_t>(BucketCore::kMaxRuns) + 500; ++i) {
    ids.push_back(1 + i * 1000 + static_cast<int64_t>(rng() % 7) * 100);
  }
  std::shuffle(ids.begin(), ids.end(), rng);
  for (int64_t id : ids) b.NoteRow(id);
  EXPECT_EQ(b.runs.size(), BucketCore::kMaxRuns);
  for (int64_t id : ids) ASSERT_TRUE(Covered(b, id)) << id;
  // And the runs survive the binary form.
  std::string blob;
  b.users.add(1);
  b.Encode(&blob);
  BucketCore back;
  ASSERT_TRUE(BucketCore::Decode(blob, &back));
  EXPECT_EQ(back.runs, b.runs);
}

// ---- The binary form.

BucketCore RandomCore(std::mt19937_64& rng, size_t users) {
  BucketCore b;
  b.inits = static_cast<uint32_t>(rng() % 1000);
  b.min_ms = kBase + static_cast<int64_t>(rng() % 1000);
  b.max_ms = b.min_ms + static_cast<int64_t>(rng() % 1000);
  // A mix of dense runs and scattered ids.
  for (size_t i = 0; i < users; ++i) {
    b.users.add(i % 3 == 0 ? static_cast<uint32_t>(rng()) : static_cast<uint32_t>(1000 + i));
  }
  uint32_t id = 0;
  for (size_t i = rng() % 20; i > 0; --i) {
    id += 1 + static_cast<uint32_t>(rng() % 1000);
    b.events.emplace_back(id, 1 + static_cast<uint32_t>(rng() % 100000));
  }
  id = 0;
  for (size_t i = rng() % 5; i > 0; --i) {
    id += 1 + static_cast<uint32_t>(rng() % 70000);
    b.errors.emplace_back(id, 1 + static_cast<uint32_t>(rng() % 3));
  }
  for (uint8_t d = 0; d < kDims; ++d) {
    const uint32_t values = static_cast<uint32_t>(rng() % 12);
    for (uint32_t v = 1; v <= values; ++v) {
      BucketCore::DimUsers du;
      du.dim = d;
      du.value = v * 17;
      for (size_t i = 0; i < 1 + rng() % (users + 1); ++i)
        du.users.add(static_cast<uint32_t>(rng() % 5000));
      b.dims.push_back(std::move(du));
    }
  }
  for (size_t i = rng() % 30; i > 0; --i) {
    b.prop_keys.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(rng() % 50),
                           static_cast<uint8_t>(rng() % 3), 1 + static_cast<uint32_t>(rng() % 9)});
  }
  for (size_t i = rng() % 40; i > 0; --i) b.NoteRow(1 + static_cast<int64_t>(rng() % 100000));
  return b;
}

TEST(BucketTest, EncodeDecodeRoundTrip) {
  std::mt19937_64 rng(99);
  std::vector<BucketCore> cores;
  cores.push_back(BucketCore());  // empty: INT64_MAX / INT64_MIN bounds
  for (size_t users : {0, 1, 24, 25, 100, 5000, 70000}) cores.push_back(RandomCore(rng, users));
  for (const BucketCore& c : cores) {
    std::string blob;
    c.Encode(&blob);
    BucketCore back;
    ASSERT_TRUE(BucketCore::Decode(blob, &back)) << c.users.cardinality();
    EXPECT_TRUE(back == c) << c.users.cardinality();
    EXPECT_EQ(back.min_ms, c.min_ms);
    EXPECT_EQ(back.max_ms, c.max_ms);
    EXPECT_EQ(back.runs, c.runs);
    std::string again;
    back.Encode(&again);
    EXPECT_EQ(again, blob);
  }
}

TEST(BucketTest, DecodeRejectsTruncationsTrailingBytesAndGarbage) {
  std::mt19937_64 rng(5);
  for (size_t users : {3, 30, 300}) {
    const BucketCore c = RandomCore(rng, users);
    std::string blob;
    c.Encode(&blob);
    for (size_t n = 0; n < blob.size(); ++n) {
      BucketCore out;
      EXPECT_FALSE(BucketCore::Decode(std::string_view(blob).substr(0, n), &out))
          << "prefix " << n << " of " << blob.size();
    }
    BucketCore out;
    EXPECT_FALSE(BucketCore::Decode(blob + '\0', &out)) << "trailing byte";
    // Flipped bytes: any answer, but no crash and no endless loop. (The
    // Roaring reader reports what it refuses on stderr.)
    for (int i = 0; i < 300; ++i) {
      std::string bad = blob;
      bad[rng() % bad.size()] ^= static_cast<char>(1 + rng() % 255);
      (void)BucketCore::Decode(bad, &out);
    }
  }
  for (int i = 0; i < 1000; ++i) {
    std::string garbage(rng() % 80, '\0');
    for (char& ch : garbage) ch = static_cast<char>(rng());
    if (!garbage.empty() && i % 2) garbage[0] = 1;  // the right format byte
    BucketCore out;
    (void)BucketCore::Decode(garbage, &out);
  }
  BucketCore out;
  EXPECT_FALSE(BucketCore::Decode(std::string("\x02", 1), &out)) << "unknown format";
}

TEST(BucketTest, PropValuesAddRemoveAndKinds) {
  const PropValue num{PropValue::Kind::kNumber, "120"};
  const PropValue str{PropValue::Kind::kString, "120"};
  const PropValue yes{PropValue::Kind::kBool, "true"};
  const PropValue yes_text{PropValue::Kind::kString, "true"};
  EXPECT_NE(PropValues::ValueKey(num), PropValues::ValueKey(str));
  EXPECT_NE(PropValues::ValueKey(yes), PropValues::ValueKey(yes_text));
  EXPECT_EQ(PropValues::ValueKey(num).substr(1), "120");

  PropValues v;
  v.Add(num);
  v.Add(num);
  v.Add(str);
  v.Add(yes);
  EXPECT_EQ(v.counts.size(), 3u);
  EXPECT_EQ(v.counts[PropValues::ValueKey(num)], 2u);
  EXPECT_EQ(v.counts[PropValues::ValueKey(str)], 1u);
  v.Remove(num);
  EXPECT_EQ(v.counts[PropValues::ValueKey(num)], 1u);
  v.Remove(str);
  EXPECT_EQ(v.counts.count(PropValues::ValueKey(str)), 0u) << "a value leaves at zero";
  v.Remove(str);  // absent: nothing happens
  v.Remove(yes_text);
  EXPECT_EQ(v.counts.size(), 2u);
  v.Remove(num);
  v.Remove(yes);
  EXPECT_TRUE(v.counts.empty());
}

TEST(BucketTest, PropValuesEncodeDecode) {
  std::mt19937_64 rng(11);
  for (int round = 0; round < 50; ++round) {
    PropValues a;
    std::vector<PropValue> added;
    for (int i = rng() % 200; i > 0; --i) {
      PropValue p{static_cast<PropValue::Kind>(rng() % 3), std::to_string(rng() % 40)};
      if (rng() % 10 == 0) p.text.clear();  // "" is a value too
      if (rng() % 10 == 0) p.text = std::string(300, 'x') + p.text;
      a.Add(p);
      added.push_back(p);
    }
    // The same values added in another order read back the same.
    PropValues b;
    std::shuffle(added.begin(), added.end(), rng);
    for (const PropValue& p : added) b.Add(p);
    std::string ea, eb;
    a.Encode(&ea);
    b.Encode(&eb);
    EXPECT_EQ(ea.size(), eb.size());
    PropValues back, back_b;
    ASSERT_TRUE(PropValues::Decode(ea, &back));
    ASSERT_TRUE(PropValues::Decode(eb, &back_b));
    EXPECT_EQ(back.counts, a.counts);
    EXPECT_EQ(back_b.counts, a.counts);
    // Truncations and a trailing byte are refused.
    for (size_t n = 0; n < ea.size(); n += 1 + ea.size() / 50) {
      PropValues out;
      EXPECT_FALSE(PropValues::Decode(std::string_view(ea).substr(0, n), &out)) << n;
    }
    PropValues out;
    EXPECT_FALSE(PropValues::Decode(ea + 'x', &out));
  }
  for (int i = 0; i < 3000; ++i) {
    std::string garbage(rng() % 40, '\0');
    for (char& ch : garbage) ch = static_cast<char>(rng());
    PropValues out;
    (void)PropValues::Decode(garbage, &out);
  }
}

}  // namespace
}  // namespace nucleon
