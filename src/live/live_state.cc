#include "live/live_state.h"

#include <algorithm>
#include <iterator>
#include <unordered_set>

#include "core/time_util.h"
#include "store/analytics.h"

namespace nucleon {

namespace {

size_t VarintSize(size_t n) {
  size_t bytes = 1;
  while (n >= 0x80) {
    n >>= 7;
    ++bytes;
  }
  return bytes;
}

}  // namespace

std::string_view LiveState::Device::Field(int i) const {
  if (!text_) return {};
  const char* p = text_.get();
  for (int field = 0;; ++field) {
    size_t size = 0;
    for (int shift = 0;; shift += 7) {
      const auto byte = static_cast<unsigned char>(*p++);
      size |= static_cast<size_t>(byte & 0x7f) << shift;
      if (byte < 0x80) break;
    }
    if (field == i) return {p, size};
    p += size;
  }
}

void LiveState::Device::SetText(std::string_view device_id, std::string_view user_key,
                                std::string_view platform, std::string_view os_version,
                                std::string_view country) {
  const std::string_view fields[kFields] = {device_id, user_key, platform, os_version, country};
  bool same = true;
  size_t size = 0;
  for (int i = 0; i < kFields; ++i) {
    same = same && fields[i] == Field(i);
    size += VarintSize(fields[i].size()) + fields[i].size();
  }
  if (same) return;
  // The fields may view the old text: it goes once the new one is written.
  auto text = std::make_unique_for_overwrite<char[]>(size);
  char* p = text.get();
  for (std::string_view f : fields) {
    size_t n = f.size();
    while (n >= 0x80) {
      *p++ = static_cast<char>((n & 0x7f) | 0x80);
      n >>= 7;
    }
    *p++ = static_cast<char>(n);
    p = std::copy(f.begin(), f.end(), p);
  }
  text_ = std::move(text);
}

uint32_t LiveState::AppIndex(std::string_view app_id) {
  auto it = app_index_.find(app_id);
  if (it != app_index_.end()) return it->second;
  const auto index = static_cast<uint32_t>(apps_.size());
  apps_.emplace_back(app_id);
  app_index_.emplace(std::string(app_id), index);
  return index;
}

std::optional<uint32_t> LiveState::FindApp(std::string_view app_id) const {
  auto it = app_index_.find(app_id);
  if (it == app_index_.end()) return std::nullopt;
  return it->second;
}

LiveState::Device& LiveState::DeviceOf(uint64_t connection, std::string_view device_id,
                                       bool* created) {
  auto [first, fresh] = connections_.try_emplace(connection);
  *created = fresh;
  if (fresh || first->second.device_id() == device_id) return first->second;
  // A second device on one socket: rare, kept aside.
  std::vector<Device>& more = extra_[connection];
  for (Device& d : more) {
    if (d.device_id() == device_id) return d;
  }
  *created = true;
  return more.emplace_back();
}

template <typename F>
void LiveState::ForEachDevice(uint64_t connection, const Device& first, F&& f) const {
  f(first);
  if (extra_.empty()) return;
  auto more = extra_.find(connection);
  if (more == extra_.end()) return;
  for (const Device& d : more->second) f(d);
}

void LiveState::Seen(uint64_t connection, std::string_view app_id, const Event& event,
                     int64_t now_ms) {
  if (event.device_id.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  const uint32_t app = AppIndex(app_id);
  bool created = false;
  Device& d = DeviceOf(connection, event.device_id, &created);
  // A presence that appears, comes back from expiry, changes user or moves
  // to another app changes the counts.
  if (created || d.last_seen_ms < now_ms - kPresenceMs) ++generation_;
  bool new_user_db_id = created;
  if (created || d.app != app) {
    if (!created) ++generation_;
    d.app = app;
    app_connections_[app].insert(connection);
    new_user_db_id = true;
  }
  std::string_view user_key = d.user_key();
  // A heartbeat from 3.x, Python or Swift carries only the device: keep the user we know.
  if ((!event.user_id.empty() || !event.anon_id.empty() || user_key.empty()) &&
      user_key != event.user_key) {
    user_key = event.user_key;
    new_user_db_id = true;
    ++generation_;
  }
  d.SetText(event.device_id, user_key, event.platform.empty() ? d.platform() : event.platform,
            event.os_version.empty() ? d.os_version() : event.os_version,
            event.country.empty() ? d.country() : event.country);
  // Computed once per device and user, not on every live/users answer.
  if (new_user_db_id) d.user_db_id = UserDbIdOf(app_id, d.user_key());
  d.last_seen_ms = now_ms;
  if (shared_) MarkChanged(d);
}

void LiveState::Closed(uint64_t connection) {
  std::lock_guard<std::mutex> lock(mu_);
  bool held = false;
  auto it = connections_.find(connection);
  if (it != connections_.end()) {
    // Published as they stand once the connection is gone: still live through
    // another connection of this node, or closed.
    if (shared_) ForEachDevice(connection, it->second, [&](const Device& d) { MarkChanged(d); });
    connections_.erase(it);
    held = true;
  }
  extra_.erase(connection);
  // Every app it was listed under (also one a device of it left since, or
  // whose devices were all forgotten).
  for (auto apps = app_connections_.begin(); apps != app_connections_.end();) {
    held = apps->second.erase(connection) > 0 || held;
    apps = apps->second.empty() ? app_connections_.erase(apps) : std::next(apps);
  }
  if (held) ++generation_;
}

LiveDeviceRow LiveState::ToRow(const Device& d) const {
  return LiveDeviceRow{std::string(d.user_key()),
                       UserDbIdText(d.user_db_id),
                       std::string(d.device_id()),
                       std::string(d.platform()),
                       std::string(d.os_version()),
                       std::string(d.country()),
                       d.last_seen_ms};
}

PresenceRecord LiveState::ToRecord(const Device& d) const {
  PresenceRecord r;
  r.app_id = apps_[d.app];
  r.user_key = std::string(d.user_key());
  r.device_id = std::string(d.device_id());
  r.platform = std::string(d.platform());
  r.os_version = std::string(d.os_version());
  r.country = std::string(d.country());
  r.last_seen_ms = d.last_seen_ms;
  return r;
}

void LiveState::MarkChanged(const Device& d) {
  PresenceRecord r = ToRecord(d);
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
      std::string key;
      for (const auto& [conn, first] : connections_) {
        ForEachDevice(conn, first, [&](const Device& d) {
          key.assign(apps_[d.app]).push_back('\0');
          key.append(d.device_id());
          auto it = changed_.find(key);
          if (it == changed_.end()) return;
          if (!it->second.open || d.last_seen_ms > it->second.last_seen_ms) {
            it->second = ToRecord(d);  // open
          }
        });
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
std::vector<const LiveState::Device*> LiveState::LiveRows(uint32_t app, int64_t now_ms) const {
  auto apps = app_connections_.find(app);
  if (apps == app_connections_.end()) return {};
  std::unordered_map<std::string_view, const Device*> by_device;
  by_device.reserve(apps->second.size());
  for (uint64_t conn : apps->second) {
    auto first = connections_.find(conn);
    if (first == connections_.end()) continue;
    ForEachDevice(conn, first->second, [&](const Device& d) {
      if (d.app != app || d.last_seen_ms < now_ms - kPresenceMs) return;
      auto [it, fresh] = by_device.emplace(d.device_id(), &d);
      if (!fresh && d.last_seen_ms > it->second->last_seen_ms) it->second = &d;
    });
  }
  std::vector<const Device*> rows;
  rows.reserve(by_device.size());
  for (const auto& [id, d] : by_device) rows.push_back(d);
  return rows;
}

std::vector<LiveDeviceRow> LiveState::Devices(std::string_view app_id, int64_t now_ms) const {
  if (shared_) {
    std::vector<PresenceRecord> local;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (std::optional<uint32_t> app = FindApp(app_id)) {
        for (const Device* d : LiveRows(*app, now_ms)) local.push_back(ToRecord(*d));
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
  std::optional<uint32_t> app = FindApp(app_id);
  if (!app) return {};
  std::vector<const Device*> rows = LiveRows(*app, now_ms);
  std::sort(rows.begin(), rows.end(), [](const Device* a, const Device* b) {
    return a->last_seen_ms != b->last_seen_ms ? a->last_seen_ms > b->last_seen_ms
                                              : a->device_id() < b->device_id();
  });
  std::vector<LiveDeviceRow> out;
  out.reserve(rows.size());
  for (const Device* d : rows) out.push_back(ToRow(*d));
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
  std::optional<uint32_t> app = FindApp(app_id);
  if (!app) return 0;  // never had a live device
  auto cached = counted_.find(app_id);
  if (cached != counted_.end() && cached->second.generation == generation_ &&
      now_ms >= cached->second.counted_ms && now_ms < cached->second.valid_until_ms) {
    return cached->second.users;
  }
  std::vector<const Device*> rows = LiveRows(*app, now_ms);
  std::unordered_set<std::string_view> users;
  users.reserve(rows.size());
  int64_t oldest_seen_ms = now_ms;
  for (const Device* d : rows) {
    users.insert(d->user_key());
    oldest_seen_ms = std::min(oldest_seen_ms, d->last_seen_ms);
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
  if (std::optional<uint32_t> app = FindApp(app_id)) {
    auto forgotten = [&](const Device& d) { return d.app == *app && d.user_key() == user_key; };
    for (auto conn = connections_.begin(); conn != connections_.end();) {
      auto more = extra_.empty() ? extra_.end() : extra_.find(conn->first);
      if (more != extra_.end()) {
        std::erase_if(more->second, forgotten);
        if (more->second.empty()) {
          extra_.erase(more);
          more = extra_.end();
        }
      }
      if (!forgotten(conn->second)) {
        ++conn;
      } else if (more != extra_.end()) {
        // Another device of the connection takes the first place.
        conn->second = std::move(more->second.back());
        more->second.pop_back();
        if (more->second.empty()) extra_.erase(more);
        ++conn;
      } else {
        // The connection stays listed under its apps until it closes.
        conn = connections_.erase(conn);
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
