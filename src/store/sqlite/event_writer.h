// EventWriter: the one writer of events.db. Appends a batch of decoded events
// in one transaction: resolves (or creates) each event's device, user and
// session rows, inserts the new events as compact rows (a resend of a stored
// identity is an ignored insert; a deleted user's identities are refused by
// their tombstones), and keeps the entity state and the per-bucket counts
// exact in the same transaction:
//   sessions     start (its init, else its earliest event), end (last event
//                or heartbeat), actions, errors, context event, its users;
//   users        first event, last seen (the latest end of their sessions);
//   devices      install (the first session: earliest start, then first created);
//   bucket_counts  installs, new users, sessions and their seconds per bucket
//                of the start;
//   user_props   the latest value of each custom prop.
// Rows are created only for events that are stored: a refused resend leaves
// no trace. The state of the working set is cached (entity_cache.h); on a
// failed transaction everything it touched is dropped from the caches, so
// memory never runs ahead of the file.
//
// Thread-safety: the writer thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/event.h"
#include "core/status.h"
#include "store/event_identity.h"
#include "store/sqlite/entity_cache.h"
#include "store/sqlite/sqlite_db.h"
#include "store/sqlite/string_dictionary.h"

namespace nucleon {

// A newly stored event, for the read side (valid while the batch is alive).
struct PublishedEvent {
  int64_t app = 0;
  const Event* event = nullptr;
  int64_t id = 0;  // its row
  uint32_t user = 0;
};

struct WriterCacheOptions {
  size_t sessions = 100000;
  size_t devices = 50000;
  size_t users = 50000;
};

class EventWriter {
 public:
  EventWriter(SqliteDb* db, StringDictionary* dict, WriterCacheOptions options);

  // Loads the apps and whether any tombstone exists.
  Status Open();

  // Stores `events` in one transaction. `idents`, when not empty, gives each
  // event's identity hash (EventIdentHash: an import of stored events, whose
  // client date is gone); else it is computed. On Ok, `inserted[i]` is 1 for each newly
  // stored event and `published` lists them; on error nothing is stored.
  // `in_transaction`, when set, runs inside the transaction before it commits.
  Status Append(std::span<const Event> events, std::span<const int64_t> idents,
                std::vector<uint8_t>* inserted, std::vector<PublishedEvent>* published,
                const std::function<Status()>& in_transaction = nullptr);

  // Retention: from now on an event of an app dated before its cut (`cuts`,
  // else `default_cut`) is not stored, as a resend is not.
  void SetCuts(int64_t default_cut, std::unordered_map<std::string, int64_t> cuts) {
    default_cut_ = default_cut;
    cuts_ = std::move(cuts);
  }
  // Every app with a row: (app id, row).
  std::vector<std::pair<std::string, int64_t>> Apps() const { return {apps_.begin(), apps_.end()}; }

  // The app's row, or 0.
  int64_t AppRow(std::string_view app_id) const;
  std::string AppIdOf(int64_t row) const;
  void NoteTombstones() { has_tombstones_ = true; }
  // Entity rows changed behind the caches (a delete): forget them.
  void ForgetEntities();
  int64_t cached_entities() const;
  // The largest event row id ever assigned (the checkpoint mark).
  int64_t last_event_id() const { return seq_; }

 private:
  struct DeviceState {
    int64_t row = 0, app = 0;
    int64_t install_ms = INT64_MAX, install_session = 0;
    int64_t latest_row = 0, latest_start = INT64_MIN;
    std::string latest_key;
    bool latest_known = false;
    bool touched = false, recompute_install = false;
  };
  struct UserState {
    int64_t row = 0, app = 0;
    std::string anon;
    int64_t first_ms = INT64_MAX;
    bool touched = false;
  };
  struct SessionState {
    int64_t row = 0, app = 0, device = 0;
    std::string key;
    int64_t start_ms = 0, end_ms = 0;
    bool has_init = false;
    int64_t actions = 0, errors = 0;
    int64_t ctx_event = 0, ctx_ms = 0;
    bool ctx_from_init = false;
    std::vector<int64_t> users;
    bool touched = false;
  };
  template <typename T>
  struct Touched {
    std::string key;
    std::optional<T> before;  // nullopt: created in this transaction
  };
  struct Run {
    bool valid = false;
    std::string_view app_id, device_id, session_id, user_key;
    int64_t app = 0;
    std::string device_key, session_key, user_cache_key;
  };
  struct PendingRow {
    size_t index;
    int64_t ident;
    bool has_identity;
  };
  struct Counts {
    int64_t installs = 0, new_users = 0, sessions = 0, seconds = 0;
  };

  Status AppendInTransaction(std::span<const Event> events, std::span<const int64_t> idents,
                             std::vector<uint8_t>* inserted,
                             std::vector<PublishedEvent>* published);
  Status Heartbeat(const Event& e);
  Status Resolve(const Event& e, Run* run);
  Status FlushRows(std::span<const Event> events, const Run& run, std::vector<uint8_t>* inserted,
                   std::vector<PublishedEvent>* published);
  Status FlushEntities();
  void Rollback();
  Status ReadSeq();

  Result<int64_t> App(std::string_view app_id, bool create);
  Result<DeviceState*> Device(int64_t app, std::string_view device_id, bool create);
  Result<UserState*> User(int64_t app, std::string_view user_key, std::string_view anon,
                          int64_t time_ms, bool create);
  Result<SessionState*> Session(const std::string& device_key, DeviceState* d,
                                std::string_view session_id, int64_t time_ms, bool is_init,
                                bool create);
  Status LatestSession(DeviceState* d);
  void TouchDevice(const std::string& key, DeviceState* d);
  void TouchUser(const std::string& key, UserState* u);
  void TouchSession(const std::string& key, SessionState* s);
  void NoteSessionStart(DeviceState* d, SessionState* s, int64_t old_start, bool created);
  Status UpsertUserProps(int64_t user, const Event& e);
  Result<bool> IsTombstoned(int64_t app, int64_t hash);
  Result<int64_t> FindEvent(int64_t session_row, int64_t ident);
  void AddCounts(int64_t app, int64_t time_ms, const Counts& delta);

  SqliteDb* db_;
  StringDictionary* dict_;
  std::unordered_map<std::string, int64_t> apps_;
  int64_t default_cut_ = INT64_MIN;
  std::unordered_map<std::string, int64_t> cuts_;
  std::vector<std::string> new_apps_;  // created by the open transaction
  bool has_tombstones_ = false;
  bool legacy_tombstones_ = false;  // the first release's, over the whole hash
  EntityCache<DeviceState> devices_;
  EntityCache<UserState> users_;
  EntityCache<SessionState> sessions_;
  std::vector<Touched<DeviceState>> touched_devices_;
  std::vector<Touched<UserState>> touched_users_;
  std::vector<Touched<SessionState>> touched_sessions_;
  std::vector<std::pair<int64_t, int64_t>> new_memberships_;  // (user, session)
  std::map<std::pair<int64_t, int64_t>, Counts> counts_;      // (app, bucket)
  std::map<int64_t, int64_t> app_users_;                      // app -> users added
  int64_t seq_ = 0;  // the largest event row id ever assigned
  std::vector<PendingRow> pending_;
  std::vector<std::string> bodies_;  // encoded bodies of the pending rows
  static constexpr size_t kRowsPerInsert = 64;
  static constexpr size_t kEventColumns = 9;
  std::vector<SqliteStmt> insert_events_;  // [n]: inserts n rows
};

}  // namespace nucleon
