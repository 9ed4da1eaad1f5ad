// UserDeleter: removes every trace of one user in one transaction on the
// writer connection, at a cost proportional to that user's data:
//   - their events (found through their sessions), remembered as tombstones
//     (hashes only) so a late resend is never stored again;
//   - their sessions, devices, props and user row where nothing else uses
//     them; sessions they shared are recomputed from the events that remain
//     (start, end, counts, context, users), as are the installs of the devices
//     and the last seen of the other users of those sessions;
//   - their part of every aggregate: the per-bucket counts and the rollups
//     (rollups.h: the buckets their events touched are rewritten).
// The caller checkpoints the rollups in the same transaction first, so the
// rollups on disk are complete when they are rewritten.
//
// Thread-safety: the writer thread only, except ReadAhead (any thread).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/event.h"
#include "core/status.h"
#include "store/sqlite/event_codec.h"
#include "store/sqlite/rollups.h"
#include "store/sqlite/sqlite_db.h"
#include "store/sqlite/string_dictionary.h"

namespace nucleon {

// An event that stays in a session whose other events are removed (a user
// delete, retention), in storage order.
struct KeptEvent {
  int64_t id = 0, time = 0;
  EventType type = EventType::kEvent;
  int64_t user = 0;
  bool carries = false;  // a non-empty platform, locale or version (session context)
};

// A session computed again from the events that remain in it, by the same
// rules as when events are stored; `end` is the latest remaining event.
struct RebuiltSession {
  int64_t start = INT64_MAX, end = INT64_MIN, actions = 0, errors = 0, ctx_event = 0, ctx_ms = 0;
  bool has_init = false, ctx_from_init = false;
  std::vector<int64_t> users;  // in order of their first remaining event
};
RebuiltSession RebuildSession(std::span<const KeptEvent> kept);
// Whether an event body carries session context (KeptEvent::carries).
bool CarriesContext(const BodyParts& body, const StringDictionary& dict);
// Deletes a user's row, session memberships and props (a user left without
// events), in the caller's transaction.
Status DeleteUserRows(SqliteDb& db, int64_t user);

class UserDeleter {
 public:
  UserDeleter(SqliteDb* db, StringDictionary* dict, Rollups* rollups)
      : db_(db), dict_(dict), rollups_(rollups) {}

  // Inside the caller's open transaction. NotFound for an unknown user.
  // On Ok, `removal` is what Rollups::CommitRemoval applies once committed,
  // and `*tombstones` tells whether any identity was remembered.
  Status Delete(int64_t app, std::string_view user_key, Rollups::Removal* removal,
                bool* tombstones);

  // Reads through `reader` (a read connection, in its own transaction) what
  // Delete of this user reads: their sessions and events, and the rollup rows
  // of the buckets those touched. Changes nothing; what it brings into memory
  // is then read by the writer's transaction, which every commit waits for,
  // without waiting for the disk.
  Status ReadAhead(SqliteDb& reader, int64_t app, std::string_view user_key) const;

 private:
  SqliteDb* db_;
  StringDictionary* dict_;
  Rollups* rollups_;
};

}  // namespace nucleon
