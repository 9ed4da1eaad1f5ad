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
// the budget and the sessions and users those events touch. The caller
// checkpoints the rollups in the same transaction first (nothing dirty).
//
// Thread-safety: the writer thread only.
#pragma once

#include <cstdint>
#include <span>

#include "core/status.h"
#include "store/sqlite/rollups.h"
#include "store/sqlite/sqlite_db.h"
#include "store/sqlite/string_dictionary.h"

namespace nucleon {

class RetentionSweeper {
 public:
  RetentionSweeper(SqliteDb* db, StringDictionary* dict, Rollups* rollups)
      : db_(db), dict_(dict), rollups_(rollups) {}

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
  SqliteDb* db_;
  StringDictionary* dict_;
  Rollups* rollups_;
};

}  // namespace nucleon
