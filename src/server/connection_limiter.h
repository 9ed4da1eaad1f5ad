// ConnectionLimiter: caps the connections open at once, in total and per
// client key (a salted hash of the peer address). A connection holds a Lease
// for as long as it is open; the lease gives its place back when destroyed.
// Only keys with an open connection are held, so memory follows the number of
// connections, which the total cap bounds.
//
// Thread-safe: counts per key live in mutex-guarded shards; the total is atomic.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace nucleon {

class ConnectionLimiter {
 public:
  enum class Admission { kAdmitted, kKeyFull, kTotalFull };
  // A key and its open connections.
  using KeyCount = std::pair<const std::string, size_t>;

  // Holds one place until destroyed (or moved from). Empty when refused.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { Reset(); }

    void Reset();

   private:
    friend class ConnectionLimiter;
    ConnectionLimiter* limiter_ = nullptr;
    // The key's count (a node of its shard's map, which stays put while the
    // key has a connection open); null for a connection counted in the total
    // only. A pointer rather than a copy of the key: tens of thousands of
    // open connections each hold a lease.
    KeyCount* entry_ = nullptr;
  };

  // 0 for either cap: no cap of that kind.
  ConnectionLimiter(size_t max_total, size_t max_per_key)
      : max_total_(max_total), max_per_key_(max_per_key) {}

  // Takes a place for a connection of `key` (empty: counted in the total only,
  // e.g. a trusted proxy that speaks for many clients). On kAdmitted `*lease`
  // holds the place.
  Admission Acquire(std::string_view key, Lease* lease);

  size_t total() const { return total_.load(std::memory_order_relaxed); }
  size_t count(std::string_view key) const;

 private:
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, size_t> open;
  };
  static constexpr size_t kShards = 16;

  void Release(KeyCount* entry);
  Shard& ShardOf(std::string_view key) {
    return shards_[std::hash<std::string_view>{}(key) % kShards];
  }

  const size_t max_total_;
  const size_t max_per_key_;
  std::atomic<size_t> total_{0};
  std::array<Shard, kShards> shards_;
};

}  // namespace nucleon
