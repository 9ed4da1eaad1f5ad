// The upgrade from the first release's layout (events.db schema version 3):
// its tables, renamed `legacy_*` by migration 4, are read back in storage
// order and stored again through the writer, exactly as if their events had
// just arrived (same identities, so resends and tombstones keep working), then
// the sessions' heartbeat-extended ends are replayed as heartbeats, and the
// old tables are dropped. Progress is committed with every chunk, so an
// interrupted upgrade resumes where it stopped.
//
// Thread-safety: runs on the thread that opens the store, before it serves.
#pragma once

#include <functional>

#include "core/status.h"
#include "store/sqlite/event_writer.h"
#include "store/sqlite/sqlite_db.h"

namespace nucleon {

// True when the file still holds tables to import.
Result<bool> LegacyImportPending(SqliteDb& db);

// Imports everything. `after_chunk` runs after each committed chunk with the
// events the writer stored (for the rollups); `progress` is told how many
// events were imported so far. The old tables' pages are left free, not
// zeroed: the caller compacts the file (VACUUM), then calls
// FinishLegacyImport. Until then the import stays pending, so a start after an
// interruption compacts the file again.
Status ImportLegacy(SqliteDb& db, EventWriter& writer,
                    const std::function<Status(std::vector<PublishedEvent>&)>& after_chunk,
                    const std::function<void(int64_t done, int64_t total)>& progress);

// Marks the upgrade done, once the file is compacted.
Status FinishLegacyImport(SqliteDb& db);

}  // namespace nucleon
