#include "store/sqlite/sqlite_db.h"

#include <mutex>

#include "store/sqlite/scrubbing_vfs.h"

namespace nucleon {

SqliteStmt& SqliteStmt::operator=(SqliteStmt&& o) noexcept {
  if (this != &o) {
    if (stmt_) sqlite3_finalize(stmt_);
    db_ = o.db_;
    stmt_ = o.stmt_;
    o.stmt_ = nullptr;
  }
  return *this;
}

SqliteStmt::~SqliteStmt() {
  if (stmt_) sqlite3_finalize(stmt_);
}

bool SqliteStmt::Step(Status* status) {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) {
    int ext = sqlite3_extended_errcode(db_);
    std::string msg = std::string("sqlite: ") + sqlite3_errmsg(db_);
    *status = (ext == SQLITE_FULL || rc == SQLITE_FULL || rc == SQLITE_IOERR || rc == SQLITE_BUSY ||
               rc == SQLITE_READONLY || rc == SQLITE_CANTOPEN || rc == SQLITE_LOCKED)
                  ? Status::Unavailable(msg)
                  : Status::Internal(msg);
  }
  return false;
}

Status SqliteStmt::Run() {
  Status st;
  while (Step(&st)) {
  }
  sqlite3_reset(stmt_);
  return st;
}

std::string_view SqliteStmt::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  if (!p) return {};
  return std::string_view(reinterpret_cast<const char*>(p),
                          static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

std::string_view SqliteStmt::Blob(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  if (!p) return {};
  return std::string_view(static_cast<const char*>(p),
                          static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

SqliteDb::~SqliteDb() { Close(); }

void SqliteDb::Close() {
  cached_.clear();
  if (db_) sqlite3_close_v2(db_);
  db_ = nullptr;
}

Status SqliteDb::Error(std::string_view what) const {
  std::string msg = std::string(what) + ": " + (db_ ? sqlite3_errmsg(db_) : "no database");
  int rc = db_ ? sqlite3_errcode(db_) : SQLITE_CANTOPEN;
  if (rc == SQLITE_FULL || rc == SQLITE_IOERR || rc == SQLITE_BUSY || rc == SQLITE_READONLY ||
      rc == SQLITE_CANTOPEN || rc == SQLITE_LOCKED) {
    return Status::Unavailable(msg);
  }
  return Status::Internal(msg);
}

Status SqliteDb::Open(const std::string& path, bool create, bool read_only) {
  // Every connection is used by one thread at a time (NOMUTEX below), and
  // nothing reads SQLite's memory statistics: without them sqlite3_malloc takes
  // no global mutex. Must run before SQLite initialises itself.
  static std::once_flag configured;
  std::call_once(configured, [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  path_ = path;
  int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (create && !read_only) flags |= SQLITE_OPEN_CREATE;
  flags |= SQLITE_OPEN_NOMUTEX;
  // Through the scrubbing VFS: no older copy of a row lingers in free space.
  if (sqlite3_open_v2(path.c_str(), &db_, flags, ScrubbingVfsName()) != SQLITE_OK) {
    Status st = Status::Unavailable("cannot open " + path + ": " +
                                    (db_ ? sqlite3_errmsg(db_) : "out of memory"));
    Close();
    return st;
  }
  sqlite3_busy_timeout(db_, 10000);
  sqlite3_extended_result_codes(db_, 0);
  if (!read_only) NUCLEON_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
  return Status::Ok();
}

Status SqliteDb::Exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    Status st = Error("sqlite exec");
    return Status(st.code(), "sqlite: " + msg);
  }
  return Status::Ok();
}

Result<SqliteStmt> SqliteDb::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                         &stmt, nullptr) != SQLITE_OK) {
    return Error("sqlite prepare");
  }
  return SqliteStmt(db_, stmt);
}

Result<StmtLease> SqliteDb::Cached(std::string_view sql) {
  auto it = cached_.find(std::string(sql));
  if (it == cached_.end()) {
    auto stmt = Prepare(sql);
    if (!stmt.ok()) return stmt.status();
    it = cached_.emplace(std::string(sql), std::make_unique<SqliteStmt>(std::move(*stmt))).first;
  }
  return StmtLease(it->second.get());
}

Result<int64_t> SqliteDb::UserVersion() {
  auto st = Prepare("PRAGMA user_version");
  if (!st.ok()) return st.status();
  Status s;
  if (!st->Step(&s)) return s.ok() ? Status::Internal("no user_version") : s;
  return st->Int(0);
}

}  // namespace nucleon
