// RetentionSweeper: removes an app's oldest whole 15-minute buckets of events
// (retention, docs/semantics.md §11) in one transaction on the writer
// connection, so that afterwards every answer is as if those events had never
// been received:
//   - the events of the buckets (found through their rollups' row runs) and
//     the buckets' rollups and property values;
//   - the sessions that held them, computed again from their remaining events
//     (start, counts, context, users; the end stays: it is at least the
//     latest remaining event), or gone with their last event, and with them
//     the users' memberships, the devices' installs and their per-bucket
//     counts;
//   - the users left without events; the others' first event, last seen and
//     the props set only by removed events.
// Buckets go oldest first, so after each step the store holds exactly the
// events from some instant on. A step takes whole buckets until it has
// removed `budget` events (at least one bucket), so its cost is bounded by
// the budget and the sessions and users those events touch, not by their
// histories: a user's new first event is found in the first later bucket
// whose users include it (the buckets' user bitmaps), a device's install and
// a user's last seen are looked up again only when the session that gave
// them is gone or starts later. The caller checkpoints the rollups in the
// same transaction first (nothing dirty).
//
// Thread-safety: the writer thread only.
#pragma once

#include <cstdint>
#include <map>
#include <span>

#include "core/status.h"
#include "store/sqlite/rollups.h"
#include "store/sqlite/sqlite_db.h"
#include "store/sqlite/string_dictionary.h"

namespace nucleon {

class RetentionSweeper {
 public:
  // `scan_buckets`: how many buckets after a step's removal it looks through
  // for the first remaining event of the users it touched; the users not
  // seen there are looked up through their sessions (exact either way).
  RetentionSweeper(SqliteDb* db, StringDictionary* dict, Rollups* rollups, size_t scan_buckets)
      : db_(db), dict_(dict), rollups_(rollups), scan_buckets_(scan_buckets) {}

  struct Step {
    size_t buckets = 0;      // how many of the given buckets were removed
    int64_t events = 0;      // events removed
    int64_t through_ms = 0;  // every event of the app before this instant is gone
  };

  // Inside the caller's open transaction: removes the first of `buckets`
  // (present buckets of `app`, ascending, all of them older than every bucket
  // the app keeps) until `budget` events are removed. On Ok, `removal` is
  // what Rollups::CommitRemoval applies once committed.
  Status Sweep(int64_t app, std::span<const int64_t> buckets, int64_t budget,
               Rollups::Removal* removal, Step* step);

 private:
  // The earliest event of each of `users` (all of whose events are from
  // `through` on) that has one.
  Status FirstRemaining(int64_t app, int64_t through, std::span<const int64_t> users,
                        std::map<int64_t, int64_t>* first);

  SqliteDb* db_;
  StringDictionary* dict_;
  Rollups* rollups_;
  size_t scan_buckets_;
};

}  // namespace nucleon
