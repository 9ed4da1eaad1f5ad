// The schema of events.db, as the ordered migrations the shared runner applies
// (migration_runner.h). Versions 1 to 3 are the first release's layout; version
// 4 is the current one (compact event rows, entity state in indexed columns,
// persisted rollups), reached from 3 by renaming the old tables `legacy_*` and
// importing them (legacy_import.h) before the store serves.
#pragma once

#include <span>

#include "store/sqlite/migration_runner.h"

namespace nucleon {

std::span<const Migration> EventsMigrations();

}  // namespace nucleon
