// The one way a SQLite file of Nucleon moves from the schema version it has to
// the one this build knows: an ordered list of steps, each applied in its own
// transaction together with PRAGMA user_version, so a crash leaves the file at
// a whole version. A file newer than the build (written by a later release) is
// refused instead of being misread. Used by the catalog and the event store.
//
// Thread-safety: runs on the caller's thread with the caller's connection.
#pragma once

#include <functional>
#include <span>
#include <string_view>

#include "core/status.h"
#include "store/sqlite/sqlite_db.h"

namespace nucleon {

// One schema step: SQL, and/or code run inside the same transaction after it.
struct Migration {
  const char* sql = nullptr;
  std::function<Status(SqliteDb&)> code;
};

// Applies migrations[v..] to `db`, where v is its user_version. `file` names
// the file in errors ("events.db"). Ok when the file is at (or brought to) the
// last version; an error, touching nothing, when the file is newer than
// `migrations` knows.
Status RunMigrations(SqliteDb& db, std::string_view file, std::span<const Migration> migrations);

}  // namespace nucleon
