// LiveState: what is happening right now, kept in memory only.
//   - Presence: a device is live while it holds an open tracking WebSocket that
//     delivered an event or heartbeat within the last 2 minutes.
//   - Recent events: newly stored events whose time is within the last 10
//     minutes (a late offline queue is not live), newest first.
// Fed by the Ingestor (presence, as messages are decoded), the GroupCommitter
// (recent events, after they are durable) and the WebSocket server (closes).
// With a SharedLive (a store several nodes share), this node publishes its
// presence changes through it and answers with every node's devices and the
// store's recent events; when the shared store does not answer, with its own.
// Thread-safe: one mutex; every operation is short (a shared read happens
// outside it).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/event.h"
#include "ingest/group_committer.h"
#include "ingest/ingestor.h"
#include "store/analytics.h"
#include "store/shared_live.h"

namespace nucleon {

struct LiveDeviceRow {
  std::string user_key;
  std::string user_db_id;  // UserDbId(app, user_key); "" when not known yet
  std::string device_id;
  std::string platform, os_version, country;  // "" when unknown
  int64_t last_seen_ms = 0;
};

class LiveState final : public PresenceSink, public CommitObserver {
 public:
  static constexpr int64_t kPresenceMs = 2 * 60 * 1000;
  static constexpr int64_t kRecentMs = 10 * 60 * 1000;
  static constexpr size_t kMaxRecentPerApp = 2000;  // the API shows at most 1000

  void Seen(uint64_t connection, std::string_view app_id, const Event& event,
            int64_t now_ms) override;
  void Closed(uint64_t connection) override;
  void OnCommitted(std::vector<Event>&& events, const std::vector<uint8_t>& inserted) override;

  // Live devices of the app, newest activity first.
  std::vector<LiveDeviceRow> Devices(std::string_view app_id, int64_t now_ms) const;
  // Distinct users among them.
  int64_t UserCount(std::string_view app_id, int64_t now_ms) const;
  // Events with time in [now - 10 min, now + ...], newest first, at most `limit`.
  std::vector<Event> RecentEvents(std::string_view app_id, int64_t now_ms, size_t limit) const;
  // Events stored before this process started (oldest first per app), to show
  // again after a restart: they go before everything seen since.
  void Seed(std::vector<Event> events);
  // Drops every trace of a deleted user.
  void ForgetUser(std::string_view app_id, std::string_view user_key);

  // Answers through `shared` from now on (set before serving; outlives this).
  void Share(SharedLive* shared) { shared_ = shared; }
  // Publishes the presence changes since the last call through the shared
  // store (each changed device's state now). One caller, about once a second.
  Status PublishShared(int64_t now_ms);

 private:
  // A device as one connection saw it last. One per connection inline (an
  // SDK's socket carries one device); more are rare and go to `extra_`. Its
  // text lives in one allocation and its app is an index into `apps_`, so that
  // tens of thousands of idle sockets cost a few hundred bytes each here.
  class Device {
   public:
    std::string_view device_id() const { return Field(0); }
    std::string_view user_key() const { return Field(1); }
    std::string_view platform() const { return Field(2); }
    std::string_view os_version() const { return Field(3); }
    std::string_view country() const { return Field(4); }
    // Replaces the text when any field differs (the usual message changes none).
    void SetText(std::string_view device_id, std::string_view user_key, std::string_view platform,
                 std::string_view os_version, std::string_view country);

    int64_t last_seen_ms = 0;
    UserDbIdBytes user_db_id{};  // of (apps_[app], user_key)
    uint32_t app = 0;            // index into apps_

   private:
    static constexpr int kFields = 5;
    // Each field as a varint length then its bytes; null: every field empty.
    std::string_view Field(int i) const;
    std::unique_ptr<char[]> text_;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // The index of an app in `apps_`, added when new (under mu_).
  uint32_t AppIndex(std::string_view app_id);
  // The index of a known app, or nullopt (under mu_).
  std::optional<uint32_t> FindApp(std::string_view app_id) const;
  // The device of a connection, made when new (`*created`) (under mu_).
  Device& DeviceOf(uint64_t connection, std::string_view device_id, bool* created);
  // Calls f(device) for each device a connection holds (under mu_).
  template <typename F>
  void ForEachDevice(uint64_t connection, const Device& first, F&& f) const;
  std::vector<const Device*> LiveRows(uint32_t app, int64_t now_ms) const;
  LiveDeviceRow ToRow(const Device& d) const;
  PresenceRecord ToRecord(const Device& d) const;
  // Marks a device for the next publish (under mu_; only with a shared store).
  void MarkChanged(const Device& d);
  // Interned app ids: the apps that ever had a live device (a handful).
  std::vector<std::string> apps_;
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> app_index_;
  // connection -> its first device; connection -> its other devices.
  std::unordered_map<uint64_t, Device> connections_;
  std::unordered_map<uint64_t, std::vector<Device>> extra_;
  // app -> the connections that hold a presence of it (a superset: kept
  // until the connection closes), so that an app's live views walk its own
  // connections rather than every node's.
  std::unordered_map<uint32_t, std::unordered_set<uint64_t>> app_connections_;
  std::unordered_map<std::string, std::deque<Event>> recent_;  // by app, in commit order
  // UserCount's last answer per app, reused while no presence appeared,
  // disappeared, came back, changed user or moved to another app
  // (`generation_`) and none of the counted ones can have expired: a
  // dashboard polling the count does not walk every connection each time.
  // (Which of two sockets of one device under two users was seen last is not
  // tracked: the count may keep the other's user until the next change.)
  struct UserTally {
    uint64_t generation = 0;
    int64_t counted_ms = 0;
    int64_t valid_until_ms = 0;
    int64_t users = 0;
  };
  mutable std::unordered_map<std::string, UserTally, StringHash, std::equal_to<>> counted_;
  uint64_t generation_ = 0;
  // Devices whose presence changed since the last publish, by app + '\0' +
  // device: the last row seen (what a closed device is published with).
  std::unordered_map<std::string, PresenceRecord> changed_;
  SharedLive* shared_ = nullptr;
  mutable std::mutex mu_;
};

}  // namespace nucleon
