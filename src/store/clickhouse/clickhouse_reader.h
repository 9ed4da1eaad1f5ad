// ClickHouseReader: the API's questions asked of the ClickHouse tables. Every
// answer is computed in ClickHouse as docs/semantics.md defines it; deletes
// are applied as the rows are read (a deleted user's rows and the heartbeats a
// delete dropped are left out until a mutation removes them), so a delete
// shows at once. Sessions (start, end, context) are derived from their events
// and credited heartbeats in the same query. The quick glance and the daily
// analytics read the rollups that materialized views keep (per user and
// 15-minute bucket, per session), and the events only where a rollup cannot
// answer exactly (a range's partial buckets, deleted users, the sessions they
// were in, sessions cut by retention).
//
// Thread-safe: holds the client (thread-safe), table names and, under a
// mutex, the short list of duplicate copies every read leaves out.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/event.h"
#include "core/status.h"
#include "store/analytics.h"
#include "store/clickhouse/clickhouse_client.h"
#include "store/clickhouse/clickhouse_schema.h"
#include "store/event_store.h"

namespace nucleon {

class ClickHouseReader {
 public:
  ClickHouseReader(ClickHouseClient* client, ClickHouseTables tables)
      : client_(client), tables_(std::move(tables)) {}

  Result<std::vector<QuickGlanceCounts>> QuickGlances(std::string_view app,
                                                      std::span<const TimeSpan> periods);
  Result<DailyAnalytics> Daily(std::string_view app, const QueryRange& range);
  Result<DailyCounts> EventCounts(std::string_view app, const QueryRange& range, bool errors);
  Result<std::vector<EventPropKeys>> EventProps(std::string_view app, const QueryRange& range);
  Result<std::vector<ValueCount>> EventAttribute(std::string_view app, const QueryRange& range,
                                                 std::string_view event, std::string_view attr);
  Result<std::vector<ErrorGroup>> ErrorGroups(std::string_view app, const QueryRange& range);
  // The sessions starting in range by local day of their start (EventStore::Sessions).
  Result<SessionDays> SessionsByDay(std::string_view app, const QueryRange& range);
  Result<UserList> Users(std::string_view app, int64_t page, int64_t limit,
                         std::string_view search);
  Result<UserDetails> User(std::string_view app, std::string_view user_key);
  Result<std::vector<EventView>> SessionEvents(std::string_view app, std::string_view user_key,
                                               std::string_view session_id,
                                               std::string_view device_id);
  Result<std::vector<EventView>> DeviceContexts(std::string_view app,
                                                std::span<const std::string> device_ids);
  Result<std::vector<EventView>> WithSessionContexts(std::span<const Event> events);
  Result<StoreStats> Stats(std::string_view app);
  // Events oldest first (equal times in storage order), `where` (SQL over
  // the events columns) narrowing them; in pages, so memory stays bounded.
  Status ForEachEvent(std::string_view app, const std::string& where,
                      const std::function<void(const Event&, uint64_t ord)>& sink);
  // Events with a time in [from_ms, to_ms], newest first (equal times in
  // storage order), at most `limit`.
  Result<std::vector<Event>> Recent(std::string_view app, int64_t from_ms, int64_t to_ms,
                                    size_t limit);
  Status StoredBefore(uint64_t before_ord, int64_t from_ms, int64_t to_ms, size_t per_app,
                      const std::function<void(const Event&)>& sink);

  // Whether the user has stored events (not deleted); the hashes of the
  // sessions they are in.
  Result<bool> UserExists(std::string_view app, std::string_view user_key);
  Result<std::vector<uint64_t>> UserSessions(std::string_view app, std::string_view user_key);

  using Rows = std::vector<std::vector<std::string>>;
  Result<Rows> Query(const std::string& sql);

  // Makes the next read load the `duplicates` list again (this node just
  // added to it); otherwise it is reloaded at most every kDuplicatesRefreshMs.
  void ForgetDuplicates();
  static constexpr int64_t kDuplicatesRefreshMs = 1000;

  // Retention: from now on every read leaves out the events older than their
  // app's cut (a mutation removes them later), so an answer is as if they
  // had never been received as soon as the policy is set.
  void SetRetention(const RetentionPolicy& policy);
  // The condition a row of `app` (every app when empty) must meet to be kept,
  // over its `column` of time in ms, at `now_ms`; "" when everything is kept.
  std::string RetentionKeep(std::string_view app, const std::string& column, int64_t now_ms) const;

 private:
  struct SessionRow;
  class SessionIndex;
  // The stored, not deleted events of `app` (every app when empty) matching
  // `where`, as a subquery with the columns app, user_h, ord, then `columns`.
  // `table`: events, or a table views fill with some of its columns
  // (event_times, user_events).
  std::string Live(std::string_view app, const std::string& where, const std::string& columns,
                   std::string_view table = "events") const;
  // One row per session of `app` whose events match `where`: sess_h,
  // device, session, created, inits, start, end, actions, errors, and with
  // `context` the init context (i_*) and the latest carrying event's (c_*).
  std::string Sessions(std::string_view app, const std::string& where, bool context) const;
  Result<std::vector<SessionRow>> LoadSessions(std::string_view app, const std::string& where);
  Result<std::vector<UserSummary>> Summaries(std::string_view app,
                                             const std::vector<std::string>& keys,
                                             std::vector<std::vector<SessionSummary>>* sessions);

  // "ord NOT IN (...)" (or "(app, ord) NOT IN (...)" over every app) for the
  // hidden copies of `app`'s events; "" without any.
  std::string DuplicatesClause(std::string_view app) const;
  // The hidden copies (app, ord) of `app`'s events (every app's when empty).
  std::vector<std::pair<std::string, uint64_t>> DuplicateCopies(std::string_view app) const;

  // Reading the rollups (see clickhouse_reader.cc): which buckets, users and
  // sessions come from them for a range, and which from the events.
  struct RollupPlan;
  Result<RollupPlan> PlanRollups(std::string_view app, int64_t from_ms, int64_t to_ms);
  // The plan's sessions rebuilt from the events, listed (before any
  // statement that merges the sessions).
  Status ListSessions(RollupPlan* plan);
  // Runs `merge` (statements that merge the sessions) with the plan's
  // sessions listed. The list is read on every answer, but `merge` starts
  // meanwhile with the list the app's last answer found, and runs again
  // only when the list read now differs: usually the two at once rather
  // than one after the other. Only a run with the list read now counts, so
  // `merge` must leave nothing but its results, which a second run
  // replaces.
  Status WithListedSessions(RollupPlan* plan,
                            const std::function<Status(const RollupPlan&)>& merge);
  // What a subquery of numbers gives, as a list for IN (...) when short; the
  // subquery itself when long.
  Result<std::string> Listed(const std::string& subquery);
  // One row per session of `app` (quoted) in session_parts, its parts
  // merged: sess_h, then `columns` (over the merged states), for the
  // sessions matching `where` (key columns only).
  std::string MergedSessions(const std::string& app, const std::string& columns,
                             const std::string& where = "") const;
  // Every session of the plan's app as (dev_h: its device's hash, sstart, send).
  std::string RollupSessions(const RollupPlan& plan) const;
  // Sessions starting in range by local day.
  Result<SessionDays> SessionDaysOf(const RollupPlan& plan, const QueryRange& range);
  // Both from one merge of the sessions: the devices whose first session
  // starts in range, and the sessions starting in range by local day.
  struct SessionStatsOf {
    int64_t installs = 0;
    SessionDays days;
  };
  Result<SessionStatsOf> SessionStats(const RollupPlan& plan, const QueryRange& range);
  ClickHouseClient* client_;
  ClickHouseTables tables_;
  mutable std::mutex duplicates_mu_;
  mutable std::vector<std::pair<std::string, uint64_t>> duplicates_;  // (app, ord)
  mutable int64_t duplicates_loaded_ms_ = 0;
  std::mutex listed_mu_;
  // App and unlisted sessions subquery -> the list last read.
  std::map<std::string, std::string> listed_;  // under listed_mu_
  mutable std::mutex retention_mu_;
  RetentionPolicy retention_;  // under retention_mu_
};

}  // namespace nucleon
