// A count-bounded least-recently-used map from text keys to entity state
// (sessions, devices, users) for the writer: the working set stays in memory,
// the rest is read back from its indexed table on a miss. Entries used by the
// transaction in progress are pinned (their addresses stay valid) until Trim.
//
// Thread-safety: the writer thread only.
#pragma once

#include <cstddef>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace nucleon {

template <typename T>
class EntityCache {
 public:
  explicit EntityCache(size_t capacity) : capacity_(capacity ? capacity : 1) {}

  // The entry for `key`, or nullptr; marks it most recently used.
  T* Find(const std::string& key) {
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second.pos);
    return &it->second.value;
  }
  T* Insert(std::string key, T value) {
    auto [it, added] = map_.try_emplace(std::move(key));
    if (added) {
      order_.push_front(&it->first);
      it->second.pos = order_.begin();
    } else {
      order_.splice(order_.begin(), order_, it->second.pos);
    }
    it->second.value = std::move(value);
    return &it->second.value;
  }
  void Erase(const std::string& key) {
    auto it = map_.find(key);
    if (it == map_.end()) return;
    order_.erase(it->second.pos);
    map_.erase(it);
  }
  void Clear() {
    map_.clear();
    order_.clear();
  }
  // Drops the least recently used entries beyond capacity (between transactions).
  void Trim() {
    while (map_.size() > capacity_) {
      const std::string* key = order_.back();
      order_.pop_back();
      map_.erase(*key);
    }
  }
  size_t size() const { return map_.size(); }

 private:
  struct Node {
    T value{};
    typename std::list<const std::string*>::iterator pos;
  };
  size_t capacity_;
  std::unordered_map<std::string, Node> map_;
  std::list<const std::string*> order_;  // most recent first
};

}  // namespace nucleon
