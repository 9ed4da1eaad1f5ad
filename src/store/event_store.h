// EventStore: where tracked events live. The embedded SQLite backend is the
// default system of record; a ClickHouse backend implements the same interface
// for scale-out. Every method states its contract; implementations are made by
// the factories at the bottom and hidden behind this interface.
//
// Thread-safety: Append/Probe are called from one writer thread (the group
// committer); the read methods may be called from any thread concurrently with
// the writer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/event.h"
#include "core/status.h"

namespace nucleon {

struct StoreStats {
  int64_t apps = 0;
  int64_t events = 0;
  int64_t sessions = 0;
  int64_t devices = 0;
  int64_t users = 0;
};

class EventStore {
 public:
  virtual ~EventStore() = default;

  // Stores `events` in one commit that is durable when this returns Ok (how
  // durable is the backend's documented fsync policy). Heartbeats are accepted:
  // they extend their session (or, without a session id, the device's most
  // recent one) and are never stored as events. An event whose identity (app,
  // device, session, client id, type, name, client date) is already stored is
  // a resend and is not stored again; events without a client id are always
  // new. On Ok, `inserted` (resized to events.size()) holds 1 for each event
  // newly stored, 0 for resends and heartbeats. On error nothing of the batch
  // is stored.
  virtual Status Append(std::span<const Event> events, std::vector<uint8_t>* inserted) = 0;

  // A small write that tells whether the storage is writable right now.
  virtual Status Probe() = 0;

  // Calls `sink` for every stored event of `app_id`, oldest first.
  virtual Status Export(std::string_view app_id,
                        const std::function<void(const Event&)>& sink) = 0;

  // Counts; over all apps when `app_id` is empty.
  virtual Result<StoreStats> Stats(std::string_view app_id) = 0;
};

struct SqliteStoreOptions {
  // true: fsync the write-ahead log on every commit (survives power loss).
  // false: survives a process crash, not power loss.
  bool fsync_full = true;
  bool read_only = false;  // for the export/stats commands
};

// Opens `<data_dir>/events.db`, creating and migrating it when needed.
Result<std::unique_ptr<EventStore>> OpenSqliteEventStore(const std::string& data_dir,
                                                         const SqliteStoreOptions& options);

}  // namespace nucleon
