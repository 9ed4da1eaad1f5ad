#include "store/sqlite/migration_runner.h"

#include <string>

namespace nucleon {

Status RunMigrations(SqliteDb& db, std::string_view file, std::span<const Migration> migrations) {
  auto version = db.UserVersion();
  if (!version.ok()) return version.status();
  const int64_t target = static_cast<int64_t>(migrations.size());
  if (*version > target) {
    return Status::Internal(std::string(file) + " has schema version " + std::to_string(*version) +
                            ", newer than this build knows (" + std::to_string(target) +
                            "): run the release that wrote it, or a newer one");
  }
  for (int64_t v = *version; v < target; ++v) {
    const Migration& m = migrations[static_cast<size_t>(v)];
    NUCLEON_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
    Status st;
    if (m.sql) st = db.Exec(m.sql);
    if (st.ok() && m.code) st = m.code(db);
    if (st.ok()) st = db.Exec("PRAGMA user_version=" + std::to_string(v + 1));
    if (st.ok()) st = db.Exec("COMMIT");
    if (!st.ok()) {
      (void)db.Exec("ROLLBACK");
      return Status(st.code(), std::string(file) + ": migration to schema version " +
                                   std::to_string(v + 1) + " failed: " + st.message());
    }
  }
  return Status::Ok();
}

}  // namespace nucleon
