// The embedded backend's factory and options. The store itself (SQLite in WAL
// mode, the system of record on one machine) is described in
// docs/architecture.md; its parts live beside this file:
//   event_writer    the one writer: events, entity state, per-bucket counts
//   rollups         per 15-minute bucket aggregates, checkpointed, cached
//   analytics_reader, user_reader   the API's questions
//   user_deleter    a user delete in time proportional to the user's data
//   legacy_import   the upgrade from the first release's layout
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "store/event_store.h"

namespace nucleon {

struct SqliteStoreOptions {
  // true: fsync the write-ahead log on every commit (survives power loss).
  // false: survives a process crash, not power loss.
  bool fsync_full = true;
  bool read_only = false;  // for the export/stats commands
  // Memory for caches (decoded rollups, day aggregates, the writer's working
  // set, SQLite's page caches), in MiB. The read caches fill only as far as
  // the queries reach, so a small history uses less.
  size_t cache_mb = 256;
  // The longest time events stay out of the rollups on disk (the checkpoint
  // interval), in seconds: what a restart after a crash replays.
  double checkpoint_interval_s = 5;
  // How many later 15-minute buckets a retention step looks through for the
  // first remaining event of the users it touched, before it asks their
  // sessions instead (RetentionSweeper; tests lower it to take both ways).
  size_t retention_scan_buckets = 4 * 96;
};

// Opens `<data_dir>/events.db`, creating and migrating it when needed. The
// store answers reads once its read side is ready (Ready()); until then every
// read method answers Unavailable, while appends are accepted at once.
Result<std::unique_ptr<EventStore>> OpenSqliteEventStore(const std::string& data_dir,
                                                         const SqliteStoreOptions& options);

// The tombstones of `<data_dir>/events.db` (read only): (app id, tombstone
// hash, store/event_identity.h) for every deleted event that had an identity.
Result<std::vector<std::pair<std::string, int64_t>>> ReadSqliteTombstones(
    const std::string& data_dir);

// Adds tombstones of `app_id` to `<data_dir>/events.db` (an import), so that
// resends of those deleted events are not stored. No store may have the
// folder open.
Status AddSqliteTombstones(const std::string& data_dir, const std::string& app_id,
                           const std::vector<int64_t>& hashes);

// A consistent copy of the data folder (events and catalog) into the folder
// `dest`, taken while a server may be writing: each file as of one moment
// (SQLite's VACUUM INTO, in one read transaction). `dest` must hold no data
// folder yet. The copy opens as any data folder does.
Status BackupSqliteFolder(const std::string& data_dir, const std::string& dest);

// The storage positions (row ids, increasing in the order the events were
// stored) of the app's events, in the order Export gives them (time, then
// position): what a migration keeps as the events' order.
Result<std::vector<int64_t>> ReadSqliteStorageOrder(const std::string& data_dir,
                                                    const std::string& app_id);

}  // namespace nucleon
