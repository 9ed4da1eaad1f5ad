#include "server/connection_limiter.h"

namespace nucleon {

ConnectionLimiter::Lease& ConnectionLimiter::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Reset();
    limiter_ = other.limiter_;
    key_ = std::move(other.key_);
    other.limiter_ = nullptr;
    other.key_.clear();
  }
  return *this;
}

void ConnectionLimiter::Lease::Reset() {
  if (limiter_) limiter_->Release(key_);
  limiter_ = nullptr;
  key_.clear();
}

ConnectionLimiter::Admission ConnectionLimiter::Acquire(std::string_view key, Lease* lease) {
  const size_t before = total_.fetch_add(1, std::memory_order_relaxed);
  if (max_total_ > 0 && before >= max_total_) {
    total_.fetch_sub(1, std::memory_order_relaxed);
    return Admission::kTotalFull;
  }
  if (!key.empty()) {
    Shard& shard = ShardOf(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto [it, inserted] = shard.open.try_emplace(std::string(key), 0);
    if (max_per_key_ > 0 && it->second >= max_per_key_) {
      total_.fetch_sub(1, std::memory_order_relaxed);
      return Admission::kKeyFull;
    }
    ++it->second;
  }
  lease->Reset();
  lease->limiter_ = this;
  lease->key_ = std::string(key);
  return Admission::kAdmitted;
}

void ConnectionLimiter::Release(const std::string& key) {
  if (!key.empty()) {
    Shard& shard = ShardOf(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.open.find(key);
    if (it != shard.open.end() && --it->second == 0) shard.open.erase(it);
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
