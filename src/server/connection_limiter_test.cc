#include "server/connection_limiter.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nucleon {
namespace {

using Admission = ConnectionLimiter::Admission;

TEST(ConnectionLimiterTest, CapsPerKeyAndGivesPlacesBack) {
  ConnectionLimiter limiter(0, 2);
  ConnectionLimiter::Lease a1, a2, a3, b1;
  EXPECT_EQ(limiter.Acquire("a", &a1), Admission::kAdmitted);
  EXPECT_EQ(limiter.Acquire("a", &a2), Admission::kAdmitted);
  EXPECT_EQ(limiter.Acquire("a", &a3), Admission::kKeyFull);
  EXPECT_EQ(limiter.Acquire("b", &b1), Admission::kAdmitted);
  EXPECT_EQ(limiter.count("a"), 2u);
  EXPECT_EQ(limiter.total(), 3u);
  a1.Reset();
  EXPECT_EQ(limiter.count("a"), 1u);
  EXPECT_EQ(limiter.Acquire("a", &a3), Admission::kAdmitted);
}

TEST(ConnectionLimiterTest, CapsTheTotal) {
  ConnectionLimiter limiter(3, 0);
  std::vector<ConnectionLimiter::Lease> leases(4);
  EXPECT_EQ(limiter.Acquire("a", &leases[0]), Admission::kAdmitted);
  EXPECT_EQ(limiter.Acquire("b", &leases[1]), Admission::kAdmitted);
  EXPECT_EQ(limiter.Acquire("", &leases[2]), Admission::kAdmitted);
  EXPECT_EQ(limiter.Acquire("c", &leases[3]), Admission::kTotalFull);
  EXPECT_EQ(limiter.total(), 3u);
  EXPECT_EQ(limiter.count("c"), 0u);
  leases.clear();
  EXPECT_EQ(limiter.total(), 0u);
}

TEST(ConnectionLimiterTest, EmptyKeyCountsOnlyInTheTotal) {
  ConnectionLimiter limiter(0, 1);
  ConnectionLimiter::Lease l1, l2;
  EXPECT_EQ(limiter.Acquire("", &l1), Admission::kAdmitted);
  EXPECT_EQ(limiter.Acquire("", &l2), Admission::kAdmitted);
  EXPECT_EQ(limiter.total(), 2u);
}

TEST(ConnectionLimiterTest, AMovedLeaseReleasesOnce) {
  ConnectionLimiter limiter(0, 1);
  {
    ConnectionLimiter::Lease l1;
    ASSERT_EQ(limiter.Acquire("a", &l1), Admission::kAdmitted);
    ConnectionLimiter::Lease l2 = std::move(l1);
    ConnectionLimiter::Lease l3;
    l3 = std::move(l2);
    EXPECT_EQ(limiter.total(), 1u);
  }
  EXPECT_EQ(limiter.total(), 0u);
  EXPECT_EQ(limiter.count("a"), 0u);
}

// A lease points at its key's count: other keys coming and going (the
// shard's table growing and shrinking around it) leave it in place.
TEST(ConnectionLimiterTest, ALeaseOutlivesOtherKeysComingAndGoing) {
  ConnectionLimiter limiter(0, 2);
  ConnectionLimiter::Lease a1, a2;
  ASSERT_EQ(limiter.Acquire("a", &a1), Admission::kAdmitted);
  {
    std::vector<ConnectionLimiter::Lease> others(2000);
    for (size_t i = 0; i < others.size(); ++i) {
      ASSERT_EQ(limiter.Acquire("k" + std::to_string(i), &others[i]), Admission::kAdmitted);
    }
    ASSERT_EQ(limiter.Acquire("a", &a2), Admission::kAdmitted);
    EXPECT_EQ(limiter.count("a"), 2u);
    EXPECT_EQ(limiter.total(), 2002u);
  }
  EXPECT_EQ(limiter.total(), 2u);
  EXPECT_EQ(limiter.count("k7"), 0u);
  a2.Reset();
  EXPECT_EQ(limiter.count("a"), 1u);
  ConnectionLimiter::Lease a3;
  EXPECT_EQ(limiter.Acquire("a", &a3), Admission::kAdmitted);
  a1.Reset();
  a3.Reset();
  EXPECT_EQ(limiter.count("a"), 0u);
  EXPECT_EQ(limiter.total(), 0u);
  // The key starts afresh.
  EXPECT_EQ(limiter.Acquire("a", &a1), Admission::kAdmitted);
  EXPECT_EQ(limiter.count("a"), 1u);
}

}  // namespace
}  // namespace nucleon
