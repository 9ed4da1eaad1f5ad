#include "server/connection_limiter.h"

namespace nucleon {

ConnectionLimiter::Lease& ConnectionLimiter::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Reset();
    limiter_ = other.limiter_;
    entry_ = other.entry_;
    other.limiter_ = nullptr;
    other.entry_ = nullptr;
  }
  return *this;
}

void ConnectionLimiter::Lease::Reset() {
  if (limiter_) limiter_->Release(entry_);
  limiter_ = nullptr;
  entry_ = nullptr;
}

ConnectionLimiter::Admission ConnectionLimiter::Acquire(std::string_view key, Lease* lease) {
  const size_t before = total_.fetch_add(1, std::memory_order_relaxed);
  if (max_total_ > 0 && before >= max_total_) {
    total_.fetch_sub(1, std::memory_order_relaxed);
    return Admission::kTotalFull;
  }
  KeyCount* entry = nullptr;
  if (!key.empty()) {
    Shard& shard = ShardOf(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto [it, inserted] = shard.open.try_emplace(std::string(key), 0);
    if (max_per_key_ > 0 && it->second >= max_per_key_) {
      total_.fetch_sub(1, std::memory_order_relaxed);
      return Admission::kKeyFull;
    }
    ++it->second;
    entry = &*it;
  }
  lease->Reset();
  lease->limiter_ = this;
  lease->entry_ = entry;
  return Admission::kAdmitted;
}

void ConnectionLimiter::Release(KeyCount* entry) {
  if (entry) {
    // The key is read outside the lock: the entry stays while this lease counts in it.
    Shard& shard = ShardOf(entry->first);
    std::lock_guard<std::mutex> lock(shard.mu);
    if (--entry->second == 0) shard.open.erase(shard.open.find(entry->first));
  }
  total_.fetch_sub(1, std::memory_order_relaxed);
}

size_t ConnectionLimiter::count(std::string_view key) const {
  const Shard& shard = shards_[std::hash<std::string_view>{}(key) % kShards];
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.open.find(std::string(key));
  return it == shard.open.end() ? 0 : it->second;
}

}  // namespace nucleon
