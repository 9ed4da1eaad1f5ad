// `nucleon import`: stores the records of an export (store/event_export.h),
// or tracking messages as an SDK sends them, through the store's Append like
// any tracked batch, so that resends are recognised and every aggregate is
// kept as for live traffic. Idempotent: importing the same input again
// stores nothing. Events with a client id are recognised by their identity
// (as resends are); events without one by their whole content, against the
// events of the app already stored (each stored event matches one imported
// record once, so an event stored twice is imported twice). Heartbeats of
// tracking messages carry no date and are skipped.
// Thread-compatible: runs on the caller's thread, which is the store's writer.
#pragma once

#include <cstdint>
#include <istream>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "store/event_store.h"

namespace nucleon {

struct ImportReport {
  int64_t records = 0;              // lines read (events, session ends, tombstones)
  int64_t stored = 0;               // events newly stored
  int64_t already = 0;              // events the store held already
  int64_t session_ends = 0;         // session ends applied
  int64_t invalid = 0;              // events of tracking messages that are not valid
  std::vector<int64_t> tombstones;  // for the caller to keep (the store's business)
};

// Reads `in` (one JSON object per line; a whole tracking message may also
// span the input) into the store for `app_id`. The store must answer reads
// (Ready). InvalidArgument names the first bad line.
Result<ImportReport> ImportEvents(EventStore& store, std::string_view app_id, std::istream& in);

}  // namespace nucleon
