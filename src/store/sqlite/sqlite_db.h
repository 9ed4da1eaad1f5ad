// Thin RAII wrappers over the SQLite C API: a connection and a prepared
// statement, with errors returned as Status. A Db is used by one thread at a
// time (SQLite's multi-thread mode); statements belong to their Db.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/status.h"

namespace nucleon {

class SqliteStmt {
 public:
  SqliteStmt() = default;
  SqliteStmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  SqliteStmt(SqliteStmt&& o) noexcept : db_(o.db_), stmt_(o.stmt_) { o.stmt_ = nullptr; }
  SqliteStmt& operator=(SqliteStmt&& o) noexcept;
  SqliteStmt(const SqliteStmt&) = delete;
  SqliteStmt& operator=(const SqliteStmt&) = delete;
  ~SqliteStmt();

  // Binding (1-based indexes). Empty optional binds NULL.
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  void Bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void BindBlob(int i, const void* data, size_t size) {
    sqlite3_bind_blob(stmt_, i, data, static_cast<int>(size), SQLITE_TRANSIENT);
  }
  void BindNull(int i) { sqlite3_bind_null(stmt_, i); }
  void BindTextOrNull(int i, std::string_view v) {
    if (v.empty()) BindNull(i); else Bind(i, v);
  }
  // Without a copy: `v` must stay alive and unchanged until Reset.
  void BindView(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
  void BindViewOrNull(int i, std::string_view v) {
    if (v.empty()) BindNull(i); else BindView(i, v);
  }
  bool valid() const { return stmt_ != nullptr; }

  // Steps once: true when a row is available, false when done; errors in *status.
  bool Step(Status* status);
  // Runs to completion (for writes).
  Status Run();
  void Reset() { sqlite3_reset(stmt_); sqlite3_clear_bindings(stmt_); }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  int Type(int col) const { return sqlite3_column_type(stmt_, col); }
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string_view Text(int col) const;
  std::string_view Blob(int col) const;

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// A statement borrowed from a connection's cache (SqliteDb::Cached): reset,
// with its bindings cleared, when the lease ends.
class StmtLease {
 public:
  explicit StmtLease(SqliteStmt* stmt) : stmt_(stmt) {}
  StmtLease(StmtLease&& o) noexcept : stmt_(o.stmt_) { o.stmt_ = nullptr; }
  StmtLease& operator=(StmtLease&&) = delete;
  ~StmtLease() {
    if (stmt_) stmt_->Reset();
  }
  SqliteStmt* operator->() const { return stmt_; }
  SqliteStmt& operator*() const { return *stmt_; }

 private:
  SqliteStmt* stmt_;
};

class SqliteDb {
 public:
  SqliteDb() = default;
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;
  ~SqliteDb();

  // Opens (creating when `create`) the file, WAL mode, a busy timeout.
  Status Open(const std::string& path, bool create, bool read_only = false);
  void Close();
  Status Exec(std::string_view sql);
  Result<SqliteStmt> Prepare(std::string_view sql);
  // The connection's own prepared copy of `sql`, kept for its lifetime. One
  // lease per statement at a time (a statement is not reentrant).
  Result<StmtLease> Cached(std::string_view sql);
  int64_t LastInsertRowid() const { return sqlite3_last_insert_rowid(db_); }
  int Changes() const { return sqlite3_changes(db_); }
  Status Error(std::string_view what) const;
  // Reads PRAGMA user_version.
  Result<int64_t> UserVersion();
  sqlite3* raw() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
  std::unordered_map<std::string, std::unique_ptr<SqliteStmt>> cached_;
};

}  // namespace nucleon
