// SharedLive: the live view of a store that several Nucleon nodes share.
// Each node knows only the tracking WebSockets it holds itself; a backend
// shared by several nodes (ClickHouse) lets each node publish its devices'
// presence and read the others', so that every node's live users and live
// events show the devices and events of all of them. The embedded store has
// one node and no SharedLive.
//
// Thread-safe: any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/event.h"
#include "core/status.h"

namespace nucleon {

// A device as one node sees it.
struct PresenceRecord {
  std::string app_id;
  std::string user_key;
  std::string device_id;
  std::string platform, os_version, country;  // "" when unknown
  int64_t last_seen_ms = 0;
  bool open = true;  // false: this node no longer holds a connection for it
};

class SharedLive {
 public:
  virtual ~SharedLive() = default;

  // Records the presence changes of this node's devices since the last call
  // (the latest state of each device that changed) and that this node is
  // alive. Called about once a second by one thread; a node that stops
  // calling is taken for gone by the others within a few seconds, with its
  // devices.
  virtual Status Publish(std::span<const PresenceRecord> changes, int64_t now_ms) = 0;

  // The devices of `app_id` live as of `now_ms` on any node: `local` (this
  // node's own, current) merged with what the other live nodes published,
  // each device once with its latest activity, without the devices whose
  // user was deleted after that activity. Unordered.
  virtual Result<std::vector<PresenceRecord>> Present(std::string_view app_id,
                                                      std::vector<PresenceRecord> local,
                                                      int64_t now_ms) = 0;

  // The stored events of `app_id` (whichever node stored them) with a time in
  // [from_ms, to_ms], newest first, equal times in storage order, at most
  // `limit`; a deleted user's events left out.
  virtual Result<std::vector<Event>> Recent(std::string_view app_id, int64_t from_ms, int64_t to_ms,
                                            size_t limit) = 0;
};

}  // namespace nucleon
