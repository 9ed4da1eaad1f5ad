#include "store/migrate.h"

#include <chrono>
#include <filesystem>
#include <thread>

#include "store/clickhouse/clickhouse_import.h"
#include "store/sqlite/sqlite_catalog.h"
#include "store/sqlite/sqlite_event_store.h"

namespace nucleon {

Result<MigrationReport> MigrateToClickHouse(
    const std::string& sqlite_dir, const ClickHouseStoreOptions& target,
    const std::function<void(const std::string&)>& progress) {
  if (!std::filesystem::exists(sqlite_dir + "/catalog.db")) {
    return Status::NotFound("no embedded data folder at " + sqlite_dir);
  }
  auto catalog = ReadSqliteCatalog(sqlite_dir);
  if (!catalog.ok()) return catalog.status();
  // Opened as a server would (its user and session answers need the read
  // side), which also brings an older folder to the current schema first.
  SqliteStoreOptions options;
  options.fsync_full = false;
  auto source = OpenSqliteEventStore(sqlite_dir, options);
  if (!source.ok()) return source.status();
  EventStore& store = **source;
  for (int i = 0; i < 6000 && !store.Ready(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!store.Ready()) return Status::Unavailable("the embedded store did not open in time");
  auto import = ClickHouseImport::Open(target);
  if (!import.ok()) return import.status();
  ClickHouseImport& into = **import;

  MigrationReport report;
  for (const auto& app : catalog->apps) {
    NUCLEON_RETURN_IF_ERROR(into.AddApp(app));
    ++report.apps;
  }
  for (const auto& token : catalog->tokens) {
    NUCLEON_RETURN_IF_ERROR(into.AddToken(token));
    ++report.tokens;
  }
  for (const Account& account : catalog->accounts) {
    NUCLEON_RETURN_IF_ERROR(into.AddAccount(account));
    ++report.accounts;
  }
  Status added;
  for (const auto& app : catalog->apps) {
    // The export gives events by time; their storage positions, in the same
    // order, keep "stored before" (ties, creation order) as it was.
    auto positions = ReadSqliteStorageOrder(sqlite_dir, app.app_id);
    if (!positions.ok()) return positions.status();
    size_t next = 0;
    NUCLEON_RETURN_IF_ERROR(store.Export(app.app_id, [&](const Event& e) {
      if (!added.ok()) return;
      if (next >= positions->size()) {
        added = Status::Internal("the export gave more events than the store holds");
        return;
      }
      added = into.AddEvent(e, static_cast<uint64_t>((*positions)[next++]));
    }));
    NUCLEON_RETURN_IF_ERROR(added);
    if (next != positions->size()) {
      return Status::Internal("the export of app " + app.app_id + " gave " + std::to_string(next) +
                              " events, the store holds " + std::to_string(positions->size()));
    }
    progress("events of app " + app.app_id + " copied (" + std::to_string(into.events()) +
             " so far)");
  }
  report.events = into.events();
  // Each session's end.
  for (const auto& app : catalog->apps) {
    NUCLEON_RETURN_IF_ERROR(store.SessionEnds(
        app.app_id, [&](const std::string& device, const std::string& session, int64_t end_ms) {
          ++report.sessions;
          return into.AddSessionEnd(app.app_id, device, session, end_ms);
        }));
  }
  auto tombstones = ReadSqliteTombstones(sqlite_dir);
  if (!tombstones.ok()) return tombstones.status();
  for (const auto& [app, hash] : *tombstones) {
    NUCLEON_RETURN_IF_ERROR(into.AddTombstone(app, hash));
    ++report.tombstones;
  }
  NUCLEON_RETURN_IF_ERROR(into.Finish());
  return report;
}

}  // namespace nucleon
