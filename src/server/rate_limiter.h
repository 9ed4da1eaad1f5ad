// RateLimiter: token buckets keyed by an opaque client key (a salted hash of a
// client address for tracking, the hash of an API token for the API). Each key
// may spend `burst` requests at once and earns `rate_per_second` back over time;
// a refused request learns how many whole seconds to wait (Retry-After).
//
// Memory is bounded: at most `max_keys` buckets are held. A bucket that has
// refilled completely carries no information and is dropped first; under a
// flood of distinct keys the least recently used ones go. The keys are held in
// memory only and never logged.
//
// Thread-safe: the buckets are spread over mutex-guarded shards so that network
// threads rarely contend. The clock is a parameter so tests can drive time.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace nucleon {

struct RateLimiterOptions {
  double rate_per_second = 0;  // sustained rate per key; 0 turns the limiter off
  double burst = 1;            // requests a fresh (or rested) key may make at once; at least 1
  size_t max_keys = 100000;    // buckets held at most (spread over the shards)
};

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  struct Decision {
    bool allowed = true;
    int retry_after_seconds = 0;  // when refused: whole seconds until one request is earned (>= 1)
  };

  explicit RateLimiter(RateLimiterOptions options,
                       std::function<Clock::time_point()> clock = &Clock::now);

  bool enabled() const { return options_.rate_per_second > 0; }
  const RateLimiterOptions& options() const { return options_; }

  // Spends one request of `key` now (by the limiter's clock, or at `now`).
  // Always allowed when the limiter is off.
  Decision Take(std::string_view key);
  Decision Take(std::string_view key, Clock::time_point now);

  // Buckets currently held (for tests and metrics).
  size_t size() const;

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point last;  // when `tokens` was last brought up to date
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Bucket> buckets;
  };
  static constexpr size_t kShards = 16;

  // Makes room in a full shard (its mutex held).
  void Evict(Shard* shard, Clock::time_point now) const;
  double Refilled(const Bucket& b, Clock::time_point now) const;

  RateLimiterOptions options_;
  std::function<Clock::time_point()> clock_;
  size_t max_per_shard_;
  std::array<Shard, kShards> shards_;
};

}  // namespace nucleon
