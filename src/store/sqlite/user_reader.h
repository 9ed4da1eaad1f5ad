// UserReader: the users endpoints (list, details, a session's events), the
// context the live endpoints add to an event, the export and the counts, all
// read from the entity tables and the event rows (no in-memory index).
//
//   users list    users by last seen (index users(app, last_ms)), newest first;
//                 a search reads every user key of the app (the index
//                 users(app, user_key) alone) to count the matches; few
//                 matches are then read and sorted, many found by walking
//                 users(app, last_ms) until the page is full;
//   a user        their sessions (user_sessions) with each session's context
//                 event (its init, else the latest event that carried one);
//   session       the session's event rows, decoded (event_codec.h).
//
// Thread-safety: any number of readers at once, each with its own connection.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "core/event.h"
#include "core/status.h"
#include "store/analytics.h"
#include "store/event_store.h"
#include "store/sqlite/sqlite_db.h"
#include "store/sqlite/string_dictionary.h"

namespace nucleon {

class UserReader {
 public:
  explicit UserReader(StringDictionary* dict) : dict_(dict) {}

  Result<UserList> Users(int64_t app, std::string_view app_id, int64_t page, int64_t limit,
                         std::string_view search, SqliteDb& db);
  Result<UserDetails> User(int64_t app, std::string_view app_id, std::string_view user_key,
                           SqliteDb& db);
  Result<std::vector<EventView>> SessionEvents(int64_t app, std::string_view app_id,
                                               std::string_view user_key,
                                               std::string_view session_id,
                                               std::string_view device_id, SqliteDb& db);
  Result<EventView> DeviceContext(int64_t app, std::string_view device_id, SqliteDb& db);
  EventView WithSessionContext(int64_t app, const Event& event, SqliteDb& db);
  // The events of the app in [from_ms, to_ms] with a row id up to `max_id`,
  // oldest first (then in storage order), until `sink` returns false.
  // `buckets`: each bucket with events, ascending, with the row runs holding them.
  using BucketRuns = std::vector<std::pair<int64_t, std::vector<std::pair<int64_t, int64_t>>>>;
  Status Export(int64_t app, std::string_view app_id, const BucketRuns& buckets, int64_t from_ms,
                int64_t to_ms, int64_t max_id, const std::function<bool(const Event&)>& sink,
                SqliteDb& db);
  // The last `limit` events of the app stored in `buckets` with a time in
  // [from_ms, to_ms] and a row id up to `max_id`, in storage order.
  Status LastStored(int64_t app, std::string_view app_id, const BucketRuns& buckets,
                    int64_t from_ms, int64_t to_ms, int64_t max_id, size_t limit,
                    const std::function<void(const Event&)>& sink, SqliteDb& db);
  Result<StoreStats> Stats(int64_t app, bool all_apps, SqliteDb& db);

 private:
  struct UserRow {
    int64_t row = 0;
    std::string key;
    int64_t first_ms = 0, last_ms = 0;
  };
  // The context fields of a stored event (its body), into *out.
  Status ReadContext(int64_t event_id, SqliteDb& db, Event* out);
  Result<UserSummary> Summarize(const UserRow& u, std::string_view app_id, SqliteDb& db,
                                std::vector<SessionSummary>* sessions);
  Result<int64_t> UserRowOf(int64_t app, std::string_view user_key, SqliteDb& db, UserRow* out);
  // One page of the app's users by last seen, only those whose key is LIKE
  // `pattern` when it is not empty.
  Status ByLastSeen(int64_t app, const std::string& pattern, int64_t limit, int64_t offset,
                    SqliteDb& db, std::vector<UserRow>* out);
  // A search sorts its matches itself when there are at most this many.
  static constexpr size_t kMaxSortedMatches = 100000;

  StringDictionary* dict_;
};

}  // namespace nucleon
