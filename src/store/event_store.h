// EventStore: where tracked events live. The embedded SQLite backend
// (store/sqlite/) is the default system of record. Every method states its
// contract; implementations are made by their backend's factory and hidden
// behind this interface.
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
#include <unordered_map>
#include <vector>

#include "core/event.h"
#include "core/status.h"
#include "store/analytics.h"
#include "store/shared_live.h"

namespace nucleon {

struct StoreStats {
  int64_t apps = 0;
  int64_t events = 0;
  int64_t sessions = 0;
  int64_t devices = 0;
  int64_t users = 0;
};

// One number a store reports about itself (/metrics), in Prometheus terms.
struct StoreMetric {
  std::string name;  // nucleon_...
  std::string help;
  bool counter = true;  // else a gauge
  double value = 0;
};

// How long each app's events are kept (docs/semantics.md, "Retention"): a
// number of whole UTC days, 0 for ever. An app without its own setting gets
// `default_days`.
struct RetentionPolicy {
  int default_days = 0;
  std::unordered_map<std::string, int> app_days;  // the apps' own settings (> 0)

  int DaysFor(std::string_view app_id) const;
  bool empty() const { return default_days <= 0 && app_days.empty(); }
  bool operator==(const RetentionPolicy&) const = default;
};

// The retention cut at `now_ms` for `days` (> 0): midnight UTC `days` days
// before today's. Events whose time is before it are removed, and new ones
// dated before it are not stored; today and the `days` days before it stay.
int64_t RetentionCutMs(int64_t now_ms, int days);

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

  // Append in steps, so that a writer can start the next commit while the
  // disk and the read side catch up. On Ok the events are committed (a restart
  // finds them) and durable under the fsync policy once a later Sync() returns
  // Ok; the read methods may show them only once `*publish` (when set) has run.
  // The caller runs publish exactly once, on any one thread, in commit order,
  // while `events` is still alive, and before any other write (DeleteUser)
  // starts. The default appends (durably) and publishes at once.
  virtual Status AppendDeferred(std::span<const Event> events, std::vector<uint8_t>* inserted,
                                std::function<void()>* publish) {
    *publish = nullptr;
    return Append(events, inserted);
  }

  // Makes every commit so far durable (one flush for all of them). May run on
  // another thread than the writer, concurrently with the next commit.
  virtual Status Sync() { return Status::Ok(); }

  // A small write that tells whether the storage is writable right now.
  virtual Status Probe() = 0;

  // Whether the read methods answer yet. A backend may need a moment after
  // opening (to load its read side); meanwhile its read methods answer
  // Unavailable while appends are accepted as usual.
  virtual bool Ready() const { return true; }

  // Upkeep the backend wants run on the writer thread between two commits,
  // once every earlier commit is published (for example a checkpoint of its
  // aggregates). `closing`: the last chance before the writer stops.
  virtual bool MaintenanceDue(bool closing) {
    (void)closing;
    return false;
  }
  virtual Status Maintain() { return Status::Ok(); }

  // What the store reports about itself (readiness, checkpoints, caches).
  // Any thread.
  virtual std::vector<StoreMetric> Metrics() const { return {}; }

  // The live view shared with the other nodes in front of the same storage,
  // or null when this node is the only one (the embedded store). Owned by
  // the store.
  virtual SharedLive* shared_live() { return nullptr; }

  // Calls `sink` for every stored event of `app_id`, oldest first.
  virtual Status Export(std::string_view app_id, const std::function<void(const Event&)>& sink) = 0;

  // Export, only the events with a time in [from_ms, to_ms]; `sink` returns
  // false to stop early (its reader went away). The default filters the
  // whole export; a backend may read only the range.
  virtual Status ExportRange(std::string_view app_id, int64_t from_ms, int64_t to_ms,
                             const std::function<bool(const Event&)>& sink) {
    bool more = true;
    return Export(app_id, [&](const Event& e) {
      if (more && e.time_ms >= from_ms && e.time_ms <= to_ms) more = sink(e);
    });
  }

  // Calls `sink(device id, session id, end)` for every session of `app_id`
  // (its end: the latest of its events and of the heartbeats credited to
  // it), for a lossless export; stops at the first error `sink` returns.
  // The default reads them through the users that hold them (a session
  // shared by two users comes twice, with the same end).
  virtual Status SessionEnds(
      std::string_view app_id,
      const std::function<Status(const std::string&, const std::string&, int64_t)>& sink);

  // Calls `sink` with each tombstone hash (store/event_identity.h) the store
  // keeps for the deleted events of `app_id`, for a lossless export. The
  // default knows none.
  virtual Status Tombstones(std::string_view app_id, const std::function<void(int64_t)>& sink) {
    (void)app_id;
    (void)sink;
    return Status::Ok();
  }

  // The events of every app with a time in [from_ms, to_ms] that were stored
  // before this store was opened (those stored since were seen being stored),
  // at most the last `per_app` stored of each app, in storage order: what a
  // live view shows again after a restart.
  virtual Status StoredBeforeOpen(int64_t from_ms, int64_t to_ms, size_t per_app,
                                  const std::function<void(const Event&)>& sink) {
    (void)from_ms;
    (void)to_ms;
    (void)per_app;
    (void)sink;
    return Status::Ok();
  }

  // Counts; over all apps when `app_id` is empty.
  virtual Result<StoreStats> Stats(std::string_view app_id) = 0;

  // --- The API's questions. An app without events answers with empty
  // results; whether the app exists is the catalog's business. Ranges are
  // inclusive; every number is as semantics.md defines it.

  // The quick glance's counts of each period, in order (the endpoint shows
  // a day beside the day before: a backend may share work between them).
  virtual Result<std::vector<QuickGlanceCounts>> QuickGlances(
      std::string_view app_id, std::span<const TimeSpan> periods) = 0;
  // One period's.
  Result<QuickGlanceCounts> QuickGlance(std::string_view app_id, int64_t from_ms, int64_t to_ms);
  virtual Result<DailyAnalytics> Daily(std::string_view app_id, const QueryRange& range) = 0;
  // name -> local day -> count, over `event` events (or `error` events).
  virtual Result<DailyCounts> EventCounts(std::string_view app_id, const QueryRange& range,
                                          bool errors) = 0;
  // The `error` events in range grouped by name: most frequent first (equal
  // counts: name in byte order).
  virtual Result<std::vector<ErrorGroup>> ErrorGroups(std::string_view app_id,
                                                      const QueryRange& range) = 0;
  // The sessions whose start is in range, by the local day of their start:
  // exactly those avgSessionDuration (Daily) averages. Only days with sessions.
  virtual Result<SessionDays> Sessions(std::string_view app_id, const QueryRange& range) = 0;
  virtual Result<std::vector<EventPropKeys>> EventProps(std::string_view app_id,
                                                        const QueryRange& range) = 0;
  virtual Result<std::vector<ValueCount>> EventAttribute(std::string_view app_id,
                                                         const QueryRange& range,
                                                         std::string_view event,
                                                         std::string_view attr) = 0;
  // Sorted by last seen, newest first; `page` from 1. A non-empty `search`
  // keeps only the users whose user key contains it, ASCII letters matching
  // in either case; `total` then counts those.
  virtual Result<UserList> Users(std::string_view app_id, int64_t page, int64_t limit,
                                 std::string_view search) = 0;
  // NotFound for an unknown user.
  virtual Result<UserDetails> User(std::string_view app_id, std::string_view user_key) = 0;
  // The events of the user's sessions with that id (on `device_id` only, when
  // given), oldest first. NotFound for an unknown user or session.
  virtual Result<std::vector<EventView>> SessionEvents(std::string_view app_id,
                                                       std::string_view user_key,
                                                       std::string_view session_id,
                                                       std::string_view device_id) = 0;
  // The context (platform, OS version, country…) of each device's latest
  // session, in the order asked; an empty view for a device without one. One
  // call per answer, so that a remote store pays one round trip for them all.
  virtual Result<std::vector<EventView>> DeviceContexts(
      std::string_view app_id, std::span<const std::string> device_ids) = 0;
  // Each event with its missing context fields filled from its session's init
  // and first_time set, in the order given; an event whose session is unknown
  // as it is.
  virtual Result<std::vector<EventView>> WithSessionContexts(std::span<const Event> events) = 0;

  // Removes every event, session, device and prop of the user so that every
  // answer is as if the user never existed, and remembers the identities of
  // the removed events so their late resends are not stored again. Called on
  // the writer thread (between commits). NotFound for an unknown user.
  virtual Status DeleteUser(std::string_view app_id, std::string_view user_key) = 0;
  // Optional, on the caller's thread just before DeleteUser is queued: reads
  // what that delete will read, so that the writer thread (which ingestion
  // waits for) spends its time writing, not waiting for the disk. Changes
  // nothing; failures only lose the head start.
  virtual void PrepareDeleteUser(std::string_view /*app_id*/, std::string_view /*user_key*/) {}

  // The retention in force from now on (any thread; the server calls it at
  // start and whenever the catalog's settings change). From then on the
  // store refuses new events dated before an app's cut (as resends are: not
  // stored, still acknowledged) and removes the stored ones in the
  // background, in steps that each leave every answer as if the removed
  // events had never been received, without holding tracking up for long.
  // The cut moves on at each UTC midnight. The default keeps everything.
  virtual void SetRetention(const RetentionPolicy& policy) { (void)policy; }
};

}  // namespace nucleon
