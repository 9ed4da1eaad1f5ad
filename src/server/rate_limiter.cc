#include "server/rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace nucleon {

RateLimiter::RateLimiter(RateLimiterOptions options, std::function<Clock::time_point()> clock)
    : options_(options), clock_(std::move(clock)) {
  options_.burst = std::max(1.0, options_.burst);
  options_.max_keys = std::max<size_t>(kShards, options_.max_keys);
  max_per_shard_ = options_.max_keys / kShards;
}

double RateLimiter::Refilled(const Bucket& b, Clock::time_point now) const {
  if (now <= b.last) return b.tokens;
  const double elapsed = std::chrono::duration<double>(now - b.last).count();
  return std::min(options_.burst, b.tokens + elapsed * options_.rate_per_second);
}

RateLimiter::Decision RateLimiter::Take(std::string_view key) {
  if (!enabled()) return {};
  return Take(key, clock_());
}

RateLimiter::Decision RateLimiter::Take(std::string_view key, Clock::time_point now) {
  if (!enabled()) return {};
  Shard& shard = shards_[std::hash<std::string_view>{}(key) % kShards];
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.buckets.find(std::string(key));
  if (it == shard.buckets.end()) {
    if (shard.buckets.size() >= max_per_shard_) Evict(&shard, now);
    it = shard.buckets.emplace(std::string(key), Bucket{options_.burst, now}).first;
  }
  Bucket& b = it->second;
  b.tokens = Refilled(b, now);
  b.last = std::max(b.last, now);
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return {};
  }
  const double wait = (1 - b.tokens) / options_.rate_per_second;
  Decision d;
  d.allowed = false;
  d.retry_after_seconds = static_cast<int>(std::clamp(std::ceil(wait), 1.0, 86400.0));
  return d;
}

void RateLimiter::Evict(Shard* shard, Clock::time_point now) const {
  // A full bucket is what a new one would be: forgetting it changes nothing.
  std::erase_if(shard->buckets,
                [&](const auto& entry) { return Refilled(entry.second, now) >= options_.burst; });
  // Under a flood of distinct keys nothing has refilled: drop the least
  // recently used eighth, so that eviction stays rare (amortised O(1)).
  if (shard->buckets.size() < max_per_shard_) return;
  std::vector<Clock::time_point> times;
  times.reserve(shard->buckets.size());
  for (const auto& [k, b] : shard->buckets) times.push_back(b.last);
  const size_t drop = std::max<size_t>(1, max_per_shard_ / 8);
  std::nth_element(times.begin(), times.begin() + (drop - 1), times.end());
  const Clock::time_point cutoff = times[drop - 1];
  size_t dropped = 0;
  for (auto it = shard->buckets.begin(); it != shard->buckets.end() && dropped < drop;) {
    if (it->second.last <= cutoff) {
      it = shard->buckets.erase(it);
      ++dropped;
    } else {
      ++it;
    }
  }
}

size_t RateLimiter::size() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    n += s.buckets.size();
  }
  return n;
}

}  // namespace nucleon
