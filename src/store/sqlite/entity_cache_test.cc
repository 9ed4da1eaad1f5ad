// The writer's count-bounded entity cache: Find marks an entry used, Trim
// drops the least recently used beyond capacity (only when asked: entries of
// a transaction in progress keep their addresses), Insert replaces.
#include "store/sqlite/entity_cache.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace nucleon {
namespace {

struct State {
  int value = 0;
};

std::vector<std::string> Present(EntityCache<State>& c, const std::vector<std::string>& keys) {
  std::vector<std::string> out;
  for (const auto& k : keys) {
    if (c.Find(k)) out.push_back(k);
  }
  return out;
}

TEST(EntityCacheTest, InsertFindEraseClear) {
  EntityCache<State> c(10);
  EXPECT_EQ(c.Find("a"), nullptr);
  State* a = c.Insert("a", State{1});
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(c.Find("a"), a);
  EXPECT_EQ(c.Find("a")->value, 1);
  // Insert of a present key replaces the value in place.
  State* again = c.Insert("a", State{2});
  EXPECT_EQ(again, a);
  EXPECT_EQ(a->value, 2);
  EXPECT_EQ(c.size(), 1u);
  c.Erase("a");
  EXPECT_EQ(c.Find("a"), nullptr);
  c.Erase("a");  // absent: nothing happens
  c.Insert("b", State{3});
  c.Insert("c", State{4});
  c.Clear();
  EXPECT_EQ(c.size(), 0u);
  EXPECT_EQ(c.Find("b"), nullptr);
  c.Trim();  // empty: nothing happens
}

TEST(EntityCacheTest, GrowsUntilTrimThenKeepsTheMostRecent) {
  EntityCache<State> c(3);
  std::vector<State*> ptrs;
  for (int i = 0; i < 6; ++i) ptrs.push_back(c.Insert("k" + std::to_string(i), State{i}));
  // A transaction in progress: nothing is dropped and addresses hold.
  EXPECT_EQ(c.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(c.Find("k" + std::to_string(i)), ptrs[i]);
  // Order now (most recent first): k5 k4 k3 k2 k1 k0. Touch k0 and k2.
  c.Find("k0");
  c.Find("k2");
  c.Trim();
  EXPECT_EQ(c.size(), 3u);
  EXPECT_EQ(Present(c, {"k0", "k1", "k2", "k3", "k4", "k5"}),
            (std::vector<std::string>{"k0", "k2", "k5"}));
  // Insert of an existing key also counts as use.
  c.Insert("k0", State{100});
  c.Insert("k9", State{9});
  c.Trim();
  // Order: k9 k0 k5 k2 (the probes above touched k0, k2, k5 in that order).
  EXPECT_EQ(Present(c, {"k0", "k2", "k5", "k9"}), (std::vector<std::string>{"k0", "k5", "k9"}));
  EXPECT_EQ(c.Find("k0")->value, 100);
}

TEST(EntityCacheTest, TrimOrderAfterInsertAndErase) {
  EntityCache<State> c(2);
  c.Insert("a", State{});
  c.Insert("b", State{});
  c.Insert("c", State{});
  c.Erase("b");
  c.Insert("a", State{7});  // a is the most recent now
  c.Insert("d", State{});
  c.Trim();  // order: d a c -> keeps d, a
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.Find("c"), nullptr);
  ASSERT_NE(c.Find("a"), nullptr);
  EXPECT_EQ(c.Find("a")->value, 7);
  EXPECT_NE(c.Find("d"), nullptr);
}

TEST(EntityCacheTest, ZeroCapacityKeepsOne) {
  EntityCache<State> c(0);
  c.Insert("a", State{});
  c.Insert("b", State{});
  c.Trim();
  EXPECT_EQ(c.size(), 1u);
  EXPECT_NE(c.Find("b"), nullptr);
}

// Against a model list, most recent first.
TEST(EntityCacheTest, MatchesAModelUnderRandomOperations) {
  std::mt19937 rng(8);
  EntityCache<State> c(7);
  std::vector<std::pair<std::string, int>> model;
  auto find = [&](const std::string& k) -> int {
    for (size_t i = 0; i < model.size(); ++i) {
      if (model[i].first == k) return static_cast<int>(i);
    }
    return -1;
  };
  for (int step = 0; step < 20000; ++step) {
    const std::string k = "k" + std::to_string(rng() % 20);
    const int i = find(k);
    switch (rng() % 5) {
      case 0: {
        State* s = c.Find(k);
        ASSERT_EQ(s != nullptr, i >= 0) << step;
        if (s) {
          ASSERT_EQ(s->value, model[i].second) << step;
          auto e = model[i];
          model.erase(model.begin() + i);
          model.insert(model.begin(), e);
        }
        break;
      }
      case 1:
      case 2:
        c.Insert(k, State{step});
        if (i >= 0) model.erase(model.begin() + i);
        model.insert(model.begin(), {k, step});
        break;
      case 3:
        c.Erase(k);
        if (i >= 0) model.erase(model.begin() + i);
        break;
      default:
        c.Trim();
        if (model.size() > 7) model.resize(7);
        break;
    }
    ASSERT_EQ(c.size(), model.size()) << step;
  }
}

}  // namespace
}  // namespace nucleon
