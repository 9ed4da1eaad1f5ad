#include "store/sqlite/legacy_import.h"

#include <string>
#include <vector>

#include "core/log.h"
#include "store/payload_props.h"

namespace nucleon {

namespace {

constexpr int64_t kChunk = 20000;
// The progress values besides an event id: -1 the events are in, -2 nothing
// to import, kCompactionPending the old tables are gone but not their pages.
constexpr int64_t kCompactionPending = -3;

Result<int64_t> Progress(SqliteDb& db) {
  auto q = db.Prepare("SELECT value FROM meta WHERE key = 'legacy_import'");
  if (!q.ok()) return q.status();
  Status st;
  if (q->Step(&st)) return std::stoll(std::string(q->Text(0)));
  NUCLEON_RETURN_IF_ERROR(st);
  return int64_t{-2};  // nothing to import
}

Status SetProgress(SqliteDb& db, int64_t value) {
  auto q = db.Prepare("UPDATE meta SET value = ? WHERE key = 'legacy_import'");
  if (!q.ok()) return q.status();
  q->Bind(1, std::to_string(value));
  return q->Run();
}

}  // namespace

Result<bool> LegacyImportPending(SqliteDb& db) {
  auto p = Progress(db);
  if (!p.ok()) return p.status();
  return *p != -2;
}

Status ImportLegacy(SqliteDb& db, EventWriter& writer,
                    const std::function<Status(std::vector<PublishedEvent>&)>& after_chunk,
                    const std::function<void(int64_t done, int64_t total)>& progress) {
  auto done = Progress(db);
  if (!done.ok()) return done.status();
  if (*done == -2 || *done == kCompactionPending) return Status::Ok();
  int64_t last = *done;
  int64_t total = 0, imported = 0;
  {
    auto q = db.Prepare(
        "SELECT count(*), (SELECT count(*) FROM legacy_events WHERE id <= ?) FROM legacy_events");
    if (!q.ok()) return q.status();
    q->Bind(1, last < 0 ? INT64_MAX : last);
    Status st;
    if (q->Step(&st)) {
      total = q->Int(0);
      imported = q->Int(1);
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }
  std::vector<Event> events;
  std::vector<int64_t> idents;
  std::vector<uint8_t> inserted;
  std::vector<PublishedEvent> published;
  // Phase 1 (progress >= 0): the events, in storage order.
  while (last >= 0) {
    events.clear();
    idents.clear();
    int64_t chunk_last = last;
    {
      auto q = db.Prepare(
          "SELECT e.id, a.app_id, d.device_key, s.session_key, u.user_key, e.type, e.name, "
          "e.time_ms,"
          " e.ident, e.client_id, e.user_id, e.anon_id, e.platform, e.os_version, e.locale, "
          "e.version,"
          " e.module_version, e.arch, e.client, e.total_ram, e.country, e.payload, e.error_hash"
          " FROM legacy_events e JOIN legacy_apps a ON a.id = e.app"
          " JOIN legacy_devices d ON d.id = e.device JOIN legacy_sessions s ON s.id = e.session"
          " JOIN legacy_users u ON u.id = e.user WHERE e.id > ? ORDER BY e.id LIMIT ?");
      if (!q.ok()) return q.status();
      q->Bind(1, last);
      q->Bind(2, kChunk);
      Status st;
      while (q->Step(&st)) {
        chunk_last = q->Int(0);
        Event e;
        e.app_id = std::string(q->Text(1));
        e.device_id = std::string(q->Text(2));
        e.session_id = std::string(q->Text(3));
        e.user_key = std::string(q->Text(4));
        e.type = static_cast<EventType>(q->Int(5));
        e.name = std::string(q->Text(6));
        e.time_ms = q->Int(7);
        e.client_id = std::string(q->Text(9));
        e.user_id = std::string(q->Text(10));
        e.anon_id = std::string(q->Text(11));
        e.platform = std::string(q->Text(12));
        e.os_version = std::string(q->Text(13));
        e.locale = std::string(q->Text(14));
        e.version = std::string(q->Text(15));
        e.module_version = std::string(q->Text(16));
        e.arch = std::string(q->Text(17));
        e.client = std::string(q->Text(18));
        if (!q->IsNull(19)) e.total_ram = q->Double(19);
        e.country = std::string(q->Text(20));
        e.payload_json = q->IsNull(21) ? "{}" : std::string(q->Text(21));
        e.error_hash = std::string(q->Text(22));
        if (e.type == EventType::kInit || e.type == EventType::kEvent ||
            e.type == EventType::kProps || e.type == EventType::kUserId) {
          e.props = ParsePayloadProps(e.payload_json);
        }
        // A stored event keeps its identity: with a client id, the hash the
        // first release computed (its client date is not stored).
        idents.push_back(q->IsNull(8) ? 0 : q->Int(8));
        events.push_back(std::move(e));
      }
      NUCLEON_RETURN_IF_ERROR(st);
    }  // the statement is done before the writer's transaction
    if (events.empty()) {
      last = -1;
      NUCLEON_RETURN_IF_ERROR(SetProgress(db, last));
      break;
    }
    const int64_t next = chunk_last;
    NUCLEON_RETURN_IF_ERROR(writer.Append(events, idents, &inserted, &published,
                                          [&] { return SetProgress(db, next); }));
    NUCLEON_RETURN_IF_ERROR(after_chunk(published));
    last = next;
    imported += static_cast<int64_t>(events.size());
    if (progress) progress(imported, total);
  }
  LogInfo("upgrade: the sessions' last heartbeats");
  // Phase 2: heartbeats extended sessions past their last event; replay them,
  // a chunk of sessions at a time.
  for (int64_t after = 0;;) {
    events.clear();
    {
      auto q = db.Prepare(
          "SELECT s.id, a.app_id, d.device_key, s.session_key, s.end_ms FROM legacy_sessions s"
          " JOIN legacy_devices d ON d.id = s.device JOIN legacy_apps a ON a.id = s.app"
          " WHERE s.id > ? ORDER BY s.id LIMIT ?");
      if (!q.ok()) return q.status();
      q->Bind(1, after);
      q->Bind(2, kChunk);
      Status st;
      while (q->Step(&st)) {
        after = q->Int(0);
        Event e;
        e.type = EventType::kHeartbeat;
        e.app_id = std::string(q->Text(1));
        e.device_id = std::string(q->Text(2));
        e.session_id = std::string(q->Text(3));
        e.time_ms = q->Int(4);
        events.push_back(std::move(e));
      }
      NUCLEON_RETURN_IF_ERROR(st);
    }
    if (events.empty()) break;
    NUCLEON_RETURN_IF_ERROR(writer.Append(events, {}, &inserted, &published, nullptr));
  }
  LogInfo("upgrade: removing the old tables");
  // Phase 3: the old tables go. Their pages are not zeroed one by one (that
  // holds every page of them in memory until the commit): the caller compacts
  // the file next, which leaves no free page behind.
  NUCLEON_RETURN_IF_ERROR(db.Exec("PRAGMA secure_delete=OFF"));
  NUCLEON_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  Status st = db.Exec(
      "DROP TABLE legacy_events; DROP TABLE legacy_sessions; DROP TABLE legacy_devices;"
      " DROP TABLE legacy_users; DROP TABLE legacy_apps;");
  if (st.ok()) st = SetProgress(db, kCompactionPending);
  if (st.ok()) st = db.Exec("COMMIT");
  if (!st.ok()) (void)db.Exec("ROLLBACK");
  const Status restored = db.Exec("PRAGMA secure_delete=ON");
  return st.ok() ? restored : st;
}

Status FinishLegacyImport(SqliteDb& db) {
  return db.Exec("DELETE FROM meta WHERE key = 'legacy_import'");
}

}  // namespace nucleon
