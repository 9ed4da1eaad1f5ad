#include "server/rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace nucleon {
namespace {

using Clock = RateLimiter::Clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

RateLimiter Limiter(double rate, double burst, size_t max_keys = 100000) {
  RateLimiterOptions o;
  o.rate_per_second = rate;
  o.burst = burst;
  o.max_keys = max_keys;
  return RateLimiter(o);
}

TEST(RateLimiterTest, OffAllowsEverything) {
  RateLimiter limiter = Limiter(0, 1);
  EXPECT_FALSE(limiter.enabled());
  const Clock::time_point t0;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(limiter.Take("k", t0).allowed);
  EXPECT_EQ(limiter.size(), 0u);
}

TEST(RateLimiterTest, BurstThenRefusedWithRetryAfter) {
  RateLimiter limiter = Limiter(2, 5);
  const Clock::time_point t0 = Clock::time_point() + seconds(100);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.Take("a", t0).allowed) << i;
  RateLimiter::Decision d = limiter.Take("a", t0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_seconds, 1);  // half a second, rounded up to a whole one
  // Half a second later one request has been earned, and only one.
  EXPECT_TRUE(limiter.Take("a", t0 + milliseconds(500)).allowed);
  EXPECT_FALSE(limiter.Take("a", t0 + milliseconds(500)).allowed);
}

TEST(RateLimiterTest, RetryAfterIsWholeSecondsUntilTheNextRequest) {
  RateLimiter limiter = Limiter(0.25, 1);  // one request every four seconds
  const Clock::time_point t0 = Clock::time_point() + seconds(100);
  EXPECT_TRUE(limiter.Take("a", t0).allowed);
  EXPECT_EQ(limiter.Take("a", t0).retry_after_seconds, 4);
  EXPECT_EQ(limiter.Take("a", t0 + milliseconds(1500)).retry_after_seconds, 3);
  EXPECT_TRUE(limiter.Take("a", t0 + seconds(4)).allowed);
}

TEST(RateLimiterTest, SustainedRateIsHonoured) {
  RateLimiter limiter = Limiter(10, 10);
  Clock::time_point t = Clock::time_point() + seconds(100);
  int allowed = 0;
  // 20 requests a second for 10 seconds: the burst plus 10 a second get through.
  for (int i = 0; i < 200; ++i) {
    if (limiter.Take("a", t).allowed) ++allowed;
    t += milliseconds(50);
  }
  EXPECT_GE(allowed, 10 + 99);
  EXPECT_LE(allowed, 10 + 101);
}

TEST(RateLimiterTest, KeysAreIndependent) {
  RateLimiter limiter = Limiter(1, 3);
  const Clock::time_point t0 = Clock::time_point() + seconds(100);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Take("a", t0).allowed);
  EXPECT_FALSE(limiter.Take("a", t0).allowed);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Take("b", t0).allowed);
}

TEST(RateLimiterTest, ATimeGoingBackwardsEarnsNothing) {
  RateLimiter limiter = Limiter(1, 1);
  const Clock::time_point t0 = Clock::time_point() + seconds(100);
  EXPECT_TRUE(limiter.Take("a", t0).allowed);
  EXPECT_FALSE(limiter.Take("a", t0 - seconds(50)).allowed);
  EXPECT_FALSE(limiter.Take("a", t0 + milliseconds(500)).allowed);
  EXPECT_TRUE(limiter.Take("a", t0 + seconds(1)).allowed);
}

TEST(RateLimiterTest, UsesItsClock) {
  Clock::time_point now = Clock::time_point() + seconds(100);
  RateLimiterOptions o;
  o.rate_per_second = 1;
  o.burst = 1;
  RateLimiter limiter(o, [&now] { return now; });
  EXPECT_TRUE(limiter.Take("a").allowed);
  EXPECT_FALSE(limiter.Take("a").allowed);
  now += seconds(1);
  EXPECT_TRUE(limiter.Take("a").allowed);
}

TEST(RateLimiterTest, MemoryIsBoundedAndRestedKeysGoFirst) {
  RateLimiter limiter = Limiter(1, 2, 160);  // 10 keys per shard
  Clock::time_point t = Clock::time_point() + seconds(100);
  // A flood of distinct keys never holds more than the cap.
  for (int i = 0; i < 10000; ++i) {
    EXPECT_TRUE(limiter.Take("flood" + std::to_string(i), t).allowed);
    ASSERT_LE(limiter.size(), 160u);
  }
  // A key that is being limited right now survives a flood of keys that have
  // all rested (their buckets are full again, so they are dropped first).
  RateLimiter l2 = Limiter(1, 2, 160);
  const Clock::time_point t0 = Clock::time_point() + seconds(100);
  for (int i = 0; i < 500; ++i) (void)l2.Take("old" + std::to_string(i), t0);
  const Clock::time_point t1 = t0 + seconds(10);
  EXPECT_TRUE(l2.Take("hot", t1).allowed);
  EXPECT_TRUE(l2.Take("hot", t1).allowed);
  EXPECT_FALSE(l2.Take("hot", t1).allowed);
  for (int i = 0; i < 48; ++i) (void)l2.Take("new" + std::to_string(i), t1);
  EXPECT_LE(l2.size(), 160u);
  EXPECT_FALSE(l2.Take("hot", t1).allowed) << "the limited key was forgotten";
}

TEST(RateLimiterTest, ConcurrentTakesNeverExceedTheBurst) {
  RateLimiter limiter = Limiter(0.001, 100);
  const Clock::time_point t0 = Clock::time_point() + seconds(100);
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (limiter.Take("shared", t0).allowed) allowed.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 100);
}

}  // namespace
}  // namespace nucleon
