// A byte-bounded least-recently-used cache of immutable values shared by
// pointer: a reader keeps what it got even if the cache drops it meanwhile.
// Used for decoded rollups and per-day aggregates, so the memory they take is
// set by --cache-mb, not by the history.
//
// Thread-safety: every method may be called from any thread (one mutex).
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace nucleon {

template <typename K, typename V, typename Hash = std::hash<K>>
class LruCache {
 public:
  using Ptr = std::shared_ptr<const V>;
  explicit LruCache(size_t capacity_bytes) : capacity_(capacity_bytes) {}

  Ptr Get(const K& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) {
      ++misses_;
      return nullptr;
    }
    ++hits_;
    order_.splice(order_.begin(), order_, it->second.pos);
    return it->second.value;
  }

  // Inserts or replaces; evicts the least recently used entries beyond capacity.
  void Put(const K& key, Ptr value, size_t bytes) {
    PutIf(key, std::move(value), bytes, [] { return true; });
  }

  // Put, if `still_valid()` (evaluated under the cache's lock) holds: a value
  // read from an older snapshot must not replace a newer one.
  template <typename Pred>
  void PutIf(const K& key, Ptr value, size_t bytes, Pred still_valid) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!still_valid()) return;
    Replace(key, std::move(value), bytes);
  }

  // Replaces the value of `key` if the cache holds one (a newer version of
  // what was read); otherwise leaves the cache as it is.
  void Refresh(const K& key, Ptr value, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!map_.count(key)) return;
    Replace(key, std::move(value), bytes);
  }

  void Erase(const K& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return;
    used_ -= it->second.bytes;
    order_.erase(it->second.pos);
    map_.erase(it);
  }

  // Erases every entry whose key satisfies `pred`.
  void EraseIf(const std::function<bool(const K&)>& pred) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = order_.begin(); it != order_.end();) {
      if (pred(*it)) {
        auto m = map_.find(*it);
        used_ -= m->second.bytes;
        map_.erase(m);
        it = order_.erase(it);
      } else {
        ++it;
      }
    }
  }

  size_t used_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return used_;
  }
  size_t capacity_bytes() const { return capacity_; }
  std::pair<uint64_t, uint64_t> hits_misses() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {hits_, misses_};
  }

 private:
  // Inserts or replaces (under mu_); evicts the least recently used entries beyond capacity.
  void Replace(const K& key, Ptr value, size_t bytes) {
    auto it = map_.find(key);
    if (it != map_.end()) {
      used_ -= it->second.bytes;
      order_.erase(it->second.pos);
      map_.erase(it);
    }
    if (bytes > capacity_) return;
    order_.push_front(key);
    map_.emplace(key, Entry{std::move(value), bytes, order_.begin()});
    used_ += bytes;
    while (used_ > capacity_ && !order_.empty()) {
      auto last = map_.find(order_.back());
      used_ -= last->second.bytes;
      map_.erase(last);
      order_.pop_back();
    }
  }

  struct Entry {
    Ptr value;
    size_t bytes;
    typename std::list<K>::iterator pos;
  };
  mutable std::mutex mu_;
  const size_t capacity_;
  size_t used_ = 0;
  uint64_t hits_ = 0, misses_ = 0;
  std::list<K> order_;  // most recent first
  std::unordered_map<K, Entry, Hash> map_;
};

}  // namespace nucleon
