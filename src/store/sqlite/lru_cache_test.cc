// The byte-bounded LRU of shared immutable values: eviction order, the byte
// bound, PutIf refusing a stale value, EraseIf, and values surviving eviction
// while a reader holds them.
#include "store/sqlite/lru_cache.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

namespace nucleon {
namespace {

using Cache = LruCache<int, std::string>;

std::shared_ptr<const std::string> V(const std::string& s) {
  return std::make_shared<const std::string>(s);
}

// The keys present, probing every one of `keys` (Get marks them used, so
// callers probe only at the end of a scenario).
std::vector<int> Present(Cache& c, const std::vector<int>& keys) {
  std::vector<int> out;
  for (int k : keys) {
    if (c.Get(k)) out.push_back(k);
  }
  return out;
}

TEST(LruCacheTest, GetPutAndReplace) {
  Cache c(100);
  EXPECT_EQ(c.Get(1), nullptr);
  c.Put(1, V("one"), 10);
  ASSERT_NE(c.Get(1), nullptr);
  EXPECT_EQ(*c.Get(1), "one");
  c.Put(1, V("uno"), 30);  // replaced: its bytes counted once
  EXPECT_EQ(*c.Get(1), "uno");
  EXPECT_EQ(c.used_bytes(), 30u);
  c.Erase(1);
  EXPECT_EQ(c.Get(1), nullptr);
  EXPECT_EQ(c.used_bytes(), 0u);
  c.Erase(1);  // absent: nothing happens
  const auto [hits, misses] = c.hits_misses();
  EXPECT_EQ(hits, 3u);
  EXPECT_EQ(misses, 2u);
}

TEST(LruCacheTest, EvictsLeastRecentlyUsedWithinTheByteBound) {
  Cache c(100);
  for (int k = 1; k <= 4; ++k) c.Put(k, V(std::to_string(k)), 25);  // full: 100 bytes
  EXPECT_EQ(c.used_bytes(), 100u);
  ASSERT_NE(c.Get(1), nullptr);  // 1 is now the most recent; 2 the least
  c.Put(5, V("5"), 25);
  EXPECT_EQ(c.used_bytes(), 100u);
  EXPECT_EQ(Present(c, {1, 2, 3, 4, 5}), (std::vector<int>{1, 3, 4, 5}));

  // A large value pushes out as many of the oldest as needed.
  c.Put(6, V("6"), 60);  // order before: 5 4 3 1 (most recent first) after the probes
  EXPECT_LE(c.used_bytes(), 100u);
  EXPECT_EQ(Present(c, {1, 3, 4, 5, 6}), (std::vector<int>{5, 6}));
}

TEST(LruCacheTest, RefreshReplacesOnlyWhatTheCacheHolds) {
  Cache c(100);
  c.Refresh(1, V("new"), 10);
  EXPECT_EQ(c.Get(1), nullptr) << "an absent key stays absent";
  EXPECT_EQ(c.used_bytes(), 0u);
  c.Put(2, V("old"), 10);
  c.Refresh(2, V("newer"), 30);
  ASSERT_NE(c.Get(2), nullptr);
  EXPECT_EQ(*c.Get(2), "newer");
  EXPECT_EQ(c.used_bytes(), 30u);
}

TEST(LruCacheTest, ValueLargerThanTheCacheIsNotKept) {
  Cache c(100);
  c.Put(1, V("small"), 10);
  c.Put(2, V("huge"), 101);
  EXPECT_EQ(c.Get(2), nullptr);
  EXPECT_NE(c.Get(1), nullptr) << "nothing else was evicted for it";
  // Replacing a kept key by a value too large drops the old one too (it
  // would be stale).
  c.Put(1, V("huge"), 500);
  EXPECT_EQ(c.Get(1), nullptr);
  EXPECT_EQ(c.used_bytes(), 0u);
}

TEST(LruCacheTest, PutIfRefusesWhenNoLongerValid) {
  Cache c(100);
  c.Put(1, V("new"), 10);
  c.PutIf(1, V("old snapshot"), 10, [] { return false; });
  EXPECT_EQ(*c.Get(1), "new") << "a refused PutIf leaves the entry alone";
  c.PutIf(2, V("old"), 10, [] { return false; });
  EXPECT_EQ(c.Get(2), nullptr);
  c.PutIf(2, V("fresh"), 10, [] { return true; });
  EXPECT_EQ(*c.Get(2), "fresh");
}

TEST(LruCacheTest, EraseIfErasesExactlyTheMatchingKeys) {
  Cache c(1000);
  for (int k = 0; k < 20; ++k) c.Put(k, V(std::to_string(k)), 10);
  c.EraseIf([](const int& k) { return k % 3 == 0; });
  EXPECT_EQ(c.used_bytes(), 130u);
  std::vector<int> all;
  for (int k = 0; k < 20; ++k) all.push_back(k);
  for (int k : Present(c, all)) EXPECT_NE(k % 3, 0);
  EXPECT_EQ(Present(c, all).size(), 13u);
  // The order of the rest is intact: filling up evicts the oldest survivors.
  Cache d(50);
  for (int k = 0; k < 5; ++k) d.Put(k, V(""), 10);
  d.EraseIf([](const int& k) { return k == 1; });
  d.Put(10, V(""), 10);
  d.Put(11, V(""), 10);  // evicts 0 (the oldest left)
  EXPECT_EQ(Present(d, {0, 1, 2, 3, 4, 10, 11}), (std::vector<int>{2, 3, 4, 10, 11}));
}

TEST(LruCacheTest, ReaderKeepsAValueTheCacheDropped) {
  Cache c(10);
  c.Put(1, V("kept by the reader"), 10);
  auto held = c.Get(1);
  c.Put(2, V("other"), 10);  // evicts 1
  EXPECT_EQ(c.Get(1), nullptr);
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(*held, "kept by the reader");
}

// Against a simple model: a list of (key, bytes), most recent first.
TEST(LruCacheTest, MatchesAModelUnderRandomOperations) {
  std::mt19937 rng(3);
  Cache c(200);
  std::vector<std::pair<int, size_t>> model;
  auto touch = [&](int k) {
    for (size_t i = 0; i < model.size(); ++i) {
      if (model[i].first == k) {
        auto e = model[i];
        model.erase(model.begin() + static_cast<std::ptrdiff_t>(i));
        model.insert(model.begin(), e);
        return true;
      }
    }
    return false;
  };
  auto erase = [&](int k) {
    for (size_t i = 0; i < model.size(); ++i) {
      if (model[i].first == k) {
        model.erase(model.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
    }
  };
  for (int step = 0; step < 20000; ++step) {
    const int k = static_cast<int>(rng() % 30);
    switch (rng() % 4) {
      case 0: {
        const bool there = c.Get(k) != nullptr;
        ASSERT_EQ(there, touch(k)) << "step " << step;
        break;
      }
      case 1:
      case 2: {
        const size_t bytes = rng() % 70;
        c.Put(k, V(std::to_string(step)), bytes);
        erase(k);
        if (bytes <= 200) {
          model.insert(model.begin(), {k, bytes});
          size_t used = 0;
          for (auto& e : model) used += e.second;
          while (used > 200) {
            used -= model.back().second;
            model.pop_back();
          }
        }
        break;
      }
      default:
        c.Erase(k);
        erase(k);
        break;
    }
    size_t used = 0;
    for (auto& e : model) used += e.second;
    ASSERT_EQ(c.used_bytes(), used) << "step " << step;
    ASSERT_LE(c.used_bytes(), c.capacity_bytes());
  }
}

}  // namespace
}  // namespace nucleon
