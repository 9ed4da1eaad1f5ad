#include "live/live_state.h"

#include <algorithm>
#include <unordered_set>

#include "core/time_util.h"
#include "store/analytics.h"

namespace nucleon {

void LiveState::Seen(uint64_t connection, std::string_view app_id, const Event& event,
                     int64_t now_ms) {
  if (event.device_id.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, created] = connections_[connection].try_emplace(event.device_id);
  Presence& p = it->second;
  // A presence that appears, comes back from expiry, changes user or moves to
  // another app changes the counts.
  if (created || p.row.last_seen_ms < now_ms - kPresenceMs) ++generation_;
  if (p.app_id != app_id) {
    if (!created) ++generation_;
    p.app_id = std::string(app_id);
    auto apps = app_connections_.find(app_id);
    if (apps == app_connections_.end()) apps = app_connections_.try_emplace(p.app_id).first;
    apps->second.insert(connection);
    p.row.user_db_id.clear();
  }
  p.row.device_id = event.device_id;
  // A heartbeat from 3.x, Python or Swift carries only the device: keep the user we know.
  if ((!event.user_id.empty() || !event.anon_id.empty() || p.row.user_key.empty()) &&
      p.row.user_key != event.user_key) {
    p.row.user_key = event.user_key;
    p.row.user_db_id.clear();
    ++generation_;
  }
  // Computed once per device and user, not on every live/users answer.
  if (p.row.user_db_id.empty()) p.row.user_db_id = UserDbId(app_id, p.row.user_key);
  if (!event.platform.empty()) p.row.platform = event.platform;
  if (!event.os_version.empty()) p.row.os_version = event.os_version;
  if (!event.country.empty()) p.row.country = event.country;
  p.row.last_seen_ms = now_ms;
  if (shared_) MarkChanged(app_id, p.row);
}

void LiveState::Closed(uint64_t connection) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  // Published as they stand once the connection is gone: still live through
  // another connection of this node, or closed.
  if (shared_) {
    for (const auto& [id, p] : it->second) MarkChanged(p.app_id, p.row);
  }
  connections_.erase(it);
  // Every app it was listed under (also one a device of it left since).
  for (auto apps = app_connections_.begin(); apps != app_connections_.end();) {
    apps->second.erase(connection);
    apps = apps->second.empty() ? app_connections_.erase(apps) : std::next(apps);
  }
  ++generation_;
}

PresenceRecord LiveState::ToRecord(std::string_view app_id, const LiveDeviceRow& row) {
  PresenceRecord r;
  r.app_id = std::string(app_id);
  r.user_key = row.user_key;
  r.device_id = row.device_id;
  r.platform = row.platform;
  r.os_version = row.os_version;
  r.country = row.country;
  r.last_seen_ms = row.last_seen_ms;
  return r;
}

void LiveState::MarkChanged(std::string_view app_id, const LiveDeviceRow& row) {
  PresenceRecord r = ToRecord(app_id, row);
  std::string key = r.app_id + '\0' + r.device_id;
  changed_[std::move(key)] = std::move(r);
}

Status LiveState::PublishShared(int64_t now_ms) {
  if (!shared_) return Status::Ok();
  std::vector<PresenceRecord> changes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!changed_.empty()) {
      // Each changed device as this node holds it now: its latest activity
      // over the connections that still have it, else closed.
      for (auto& [key, record] : changed_) record.open = false;
      for (const auto& [conn, devices] : connections_) {
        for (const auto& [id, p] : devices) {
          auto it = changed_.find(p.app_id + '\0' + id);
          if (it == changed_.end()) continue;
          if (!it->second.open || p.row.last_seen_ms > it->second.last_seen_ms) {
            it->second = ToRecord(p.app_id, p.row);  // open
          }
        }
      }
      changes.reserve(changed_.size());
      for (auto& [key, record] : changed_) changes.push_back(std::move(record));
      changed_.clear();
    }
  }
  Status st = shared_->Publish(changes, now_ms);
  if (!st.ok()) {
    // Published with the next call instead, unless changed again meanwhile.
    std::lock_guard<std::mutex> lock(mu_);
    for (PresenceRecord& r : changes) {
      std::string key = r.app_id + '\0' + r.device_id;
      changed_.try_emplace(std::move(key), std::move(r));
    }
  }
  return st;
}

void LiveState::OnCommitted(std::vector<Event>&& events, const std::vector<uint8_t>& inserted) {
  const int64_t now = NowMs();
  // Walk backwards: only the newest kMaxRecentPerApp of a large batch can stay.
  std::unordered_map<std::string_view, std::vector<Event*>> fresh;
  std::string_view app;  // consecutive events mostly share their app
  std::vector<Event*>* list = nullptr;
  for (size_t i = events.size(); i-- > 0;) {
    Event& e = events[i];
    if (!inserted[i] || e.type == EventType::kHeartbeat || e.time_ms < now - kRecentMs) continue;
    if (!list || e.app_id != app) {
      app = e.app_id;
      list = &fresh[app];
    }
    if (list->size() < kMaxRecentPerApp) list->push_back(&e);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [app, list] : fresh) {
    // `app` views an event that is about to be moved: look the ring up first.
    auto& ring = recent_[std::string(app)];
    for (auto it = list.rbegin(); it != list.rend(); ++it) ring.push_back(std::move(**it));
    while (ring.size() > kMaxRecentPerApp) ring.pop_front();
  }
}

void LiveState::Seed(std::vector<Event> events) {
  std::unordered_map<std::string, std::vector<Event>> by_app;
  for (Event& e : events) {
    if (e.type != EventType::kHeartbeat) by_app[e.app_id].push_back(std::move(e));
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [app, list] : by_app) {
    auto& ring = recent_[app];
    // Older than everything seen since the start: in front, newest last.
    for (auto it = list.rbegin(); it != list.rend() && ring.size() < kMaxRecentPerApp; ++it) {
      ring.push_front(std::move(*it));
    }
  }
}

// The newest live presence of each device of the app: views into the state,
// valid while `mu_` is held.
std::vector<const LiveDeviceRow*> LiveState::LiveRows(std::string_view app_id,
                                                      int64_t now_ms) const {
  std::unordered_map<std::string_view, const LiveDeviceRow*> by_device;
  auto apps = app_connections_.find(app_id);
  if (apps == app_connections_.end()) return {};
  by_device.reserve(apps->second.size());
  for (uint64_t conn : apps->second) {
    auto devices = connections_.find(conn);
    if (devices == connections_.end()) continue;
    for (const auto& [id, p] : devices->second) {
      if (p.app_id != app_id || p.row.last_seen_ms < now_ms - kPresenceMs) continue;
      auto [it, fresh] = by_device.emplace(id, &p.row);
      if (!fresh && p.row.last_seen_ms > it->second->last_seen_ms) it->second = &p.row;
    }
  }
  std::vector<const LiveDeviceRow*> rows;
  rows.reserve(by_device.size());
  for (const auto& [id, row] : by_device) rows.push_back(row);
  return rows;
}

std::vector<LiveDeviceRow> LiveState::Devices(std::string_view app_id, int64_t now_ms) const {
  if (shared_) {
    std::vector<PresenceRecord> local;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const LiveDeviceRow* row : LiveRows(app_id, now_ms)) {
        local.push_back(ToRecord(app_id, *row));
      }
    }
    auto all = shared_->Present(app_id, local, now_ms);
    // A shared store that does not answer leaves this node's own devices.
    std::vector<PresenceRecord>& records = all.ok() ? *all : local;
    std::vector<LiveDeviceRow> out;
    out.reserve(records.size());
    for (PresenceRecord& r : records) {
      out.push_back(LiveDeviceRow{std::move(r.user_key), "", std::move(r.device_id),
                                  std::move(r.platform), std::move(r.os_version),
                                  std::move(r.country), r.last_seen_ms});
    }
    std::sort(out.begin(), out.end(), [](const LiveDeviceRow& a, const LiveDeviceRow& b) {
      return a.last_seen_ms != b.last_seen_ms ? a.last_seen_ms > b.last_seen_ms
                                              : a.device_id < b.device_id;
    });
    return out;
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<const LiveDeviceRow*> rows = LiveRows(app_id, now_ms);
  std::sort(rows.begin(), rows.end(), [](const LiveDeviceRow* a, const LiveDeviceRow* b) {
    return a->last_seen_ms != b->last_seen_ms ? a->last_seen_ms > b->last_seen_ms
                                              : a->device_id < b->device_id;
  });
  std::vector<LiveDeviceRow> out;
  out.reserve(rows.size());
  for (const LiveDeviceRow* row : rows) out.push_back(*row);
  return out;
}

int64_t LiveState::UserCount(std::string_view app_id, int64_t now_ms) const {
  if (shared_) {
    // Other nodes' devices change without this node knowing: counted afresh.
    std::unordered_set<std::string> users;
    for (LiveDeviceRow& row : Devices(app_id, now_ms)) users.insert(std::move(row.user_key));
    return static_cast<int64_t>(users.size());
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto cached = counted_.find(app_id);
  if (cached != counted_.end() && cached->second.generation == generation_ &&
      now_ms >= cached->second.counted_ms && now_ms < cached->second.valid_until_ms) {
    return cached->second.users;
  }
  std::vector<const LiveDeviceRow*> rows = LiveRows(app_id, now_ms);
  std::unordered_set<std::string_view> users;
  users.reserve(rows.size());
  int64_t oldest_seen_ms = now_ms;
  for (const LiveDeviceRow* row : rows) {
    users.insert(row->user_key);
    oldest_seen_ms = std::min(oldest_seen_ms, row->last_seen_ms);
  }
  const auto count = static_cast<int64_t>(users.size());
  if (cached == counted_.end()) cached = counted_.emplace(std::string(app_id), UserTally{}).first;
  // Valid until something changes or the oldest counted presence expires.
  cached->second = UserTally{generation_, now_ms, oldest_seen_ms + kPresenceMs, count};
  return count;
}

std::vector<Event> LiveState::RecentEvents(std::string_view app_id, int64_t now_ms,
                                           size_t limit) const {
  if (shared_) {
    // Every node's events, from the shared store; this node's own window
    // when it does not answer.
    auto shared = shared_->Recent(app_id, now_ms - kRecentMs, now_ms, limit);
    if (shared.ok()) return std::move(*shared);
  }
  std::vector<Event> out;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = recent_.find(std::string(app_id));
  if (it == recent_.end()) return out;
  // Pick the newest `limit` by time without copying the rest.
  const auto& ring = it->second;
  std::vector<std::pair<int64_t, size_t>> picked;  // (time, position in commit order)
  picked.reserve(ring.size());
  for (size_t i = 0; i < ring.size(); ++i) {
    // Within the last ten minutes; an event dated ahead of the clock is not live before its time.
    if (ring[i].time_ms >= now_ms - kRecentMs && ring[i].time_ms <= now_ms) {
      picked.emplace_back(ring[i].time_ms, i);
    }
  }
  const size_t n = std::min(limit, picked.size());
  // Newest first; equal times in the order they were stored.
  std::partial_sort(picked.begin(), picked.begin() + static_cast<std::ptrdiff_t>(n), picked.end(),
                    [](const auto& a, const auto& b) {
                      return a.first != b.first ? a.first > b.first : a.second < b.second;
                    });
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(ring[picked[i].second]);
  return out;
}

void LiveState::ForgetUser(std::string_view app_id, std::string_view user_key) {
  std::lock_guard<std::mutex> lock(mu_);
  ++generation_;
  for (auto& [conn, devices] : connections_) {
    for (auto it = devices.begin(); it != devices.end();) {
      if (it->second.app_id == app_id && it->second.row.user_key == user_key) {
        it = devices.erase(it);
      } else {
        ++it;
      }
    }
  }
  auto it = recent_.find(std::string(app_id));
  if (it != recent_.end()) {
    auto& ring = it->second;
    ring.erase(std::remove_if(ring.begin(), ring.end(),
                              [&](const Event& e) { return e.user_key == user_key; }),
               ring.end());
  }
}

}  // namespace nucleon
