#include "store/sqlite/sqlite_catalog.h"

#include <filesystem>

#include "core/time_util.h"
#include "store/sqlite/migration_runner.h"
#include "store/sqlite/sqlite_db.h"

namespace nucleon {

namespace {

const Migration kMigrations[] = {
    // v1
    {"CREATE TABLE apps(id INTEGER PRIMARY KEY, app_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
     " created_ms INTEGER NOT NULL);"
     "CREATE TABLE tokens(id INTEGER PRIMARY KEY, app_id TEXT NOT NULL REFERENCES apps(app_id),"
     " prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL,"
     " revoked_ms INTEGER);"
     "CREATE INDEX tokens_prefix ON tokens(prefix);",
     nullptr},
    // v2: each app's own retention, in days (0: none).
    {"ALTER TABLE apps ADD COLUMN retain_days INTEGER NOT NULL DEFAULT 0;", nullptr},
    // v3: dashboard accounts; `apps` is a viewer's app ids, comma-separated.
    {"CREATE TABLE accounts(email TEXT PRIMARY KEY, role TEXT NOT NULL, apps TEXT NOT NULL,"
     " password_hash TEXT NOT NULL, created_ms INTEGER NOT NULL);",
     nullptr},
};

Account AccountOf(const SqliteStmt& row) {
  return Account{std::string(row.Text(0)), std::string(row.Text(1)), SplitAppIds(row.Text(2)),
                 std::string(row.Text(3)), row.Int(4)};
}

class SqliteCatalog final : public Catalog {
 public:
  Status Open(const std::string& data_dir) {
    std::error_code ec;
    std::filesystem::create_directories(data_dir, ec);
    NUCLEON_RETURN_IF_ERROR(db_.Open(data_dir + "/catalog.db", /*create=*/true));
    NUCLEON_RETURN_IF_ERROR(db_.Exec("PRAGMA synchronous=FULL"));
    return RunMigrations(db_, "catalog.db", kMigrations);
  }

  Result<NewCredential> CreateApp(const std::string& name) override {
    std::string raw = RandomBytes(12);
    return CreateAppWithId(HexEncode(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()),
                           name);
  }

  Result<NewCredential> CreateAppWithId(const std::string& app_id,
                                        const std::string& name) override {
    NewCredential cred{app_id, ""};
    NUCLEON_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
    auto taken = db_.Prepare("SELECT 1 FROM apps WHERE app_id = ?");
    if (!taken.ok()) return Rollback(taken.status());
    taken->Bind(1, app_id);
    Status found;
    if (taken->Step(&found)) return Rollback(Status::InvalidArgument("app " + app_id + " exists"));
    if (!found.ok()) return Rollback(found);
    auto stmt = db_.Prepare("INSERT INTO apps(app_id, name, created_ms) VALUES(?,?,?)");
    if (!stmt.ok()) return Rollback(stmt.status());
    stmt->Bind(1, cred.app_id);
    stmt->Bind(2, name);
    stmt->Bind(3, NowMs());
    if (Status st = stmt->Run(); !st.ok()) return Rollback(st);
    auto token = InsertToken(cred.app_id);
    if (!token.ok()) return Rollback(token.status());
    NUCLEON_RETURN_IF_ERROR(db_.Exec("COMMIT"));
    cred.token = *token;
    return cred;
  }

  Result<std::vector<AppInfo>> ListApps() override {
    auto stmt = db_.Prepare(
        "SELECT a.app_id, a.name, a.created_ms,"
        " (SELECT count(*) FROM tokens t WHERE t.app_id = a.app_id AND t.revoked_ms IS NULL),"
        " a.retain_days FROM apps a ORDER BY a.created_ms, a.id");
    if (!stmt.ok()) return stmt.status();
    std::vector<AppInfo> apps;
    Status st;
    while (stmt->Step(&st)) {
      apps.push_back({std::string(stmt->Text(0)), std::string(stmt->Text(1)), stmt->Int(2),
                      static_cast<int>(stmt->Int(3)), static_cast<int>(stmt->Int(4))});
    }
    if (!st.ok()) return st;
    return apps;
  }

  Result<NewCredential> CreateToken(const std::string& app_id) override {
    NUCLEON_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
    auto exists = db_.Prepare("SELECT 1 FROM apps WHERE app_id = ?");
    if (!exists.ok()) return Rollback(exists.status());
    exists->Bind(1, app_id);
    Status st;
    if (!exists->Step(&st))
      return Rollback(st.ok() ? Status::NotFound("unknown app " + app_id) : st);
    auto token = InsertToken(app_id);
    if (!token.ok()) return Rollback(token.status());
    NUCLEON_RETURN_IF_ERROR(db_.Exec("COMMIT"));
    return NewCredential{app_id, *token};
  }

  Result<std::vector<TokenInfo>> ListTokens(const std::string& app_id) override {
    auto exists = db_.Prepare("SELECT 1 FROM apps WHERE app_id = ?");
    if (!exists.ok()) return exists.status();
    exists->Bind(1, app_id);
    Status st;
    if (!exists->Step(&st)) return st.ok() ? Status::NotFound("unknown app " + app_id) : st;
    auto stmt = db_.Prepare(
        "SELECT prefix, created_ms, revoked_ms FROM tokens WHERE app_id = ? ORDER BY id");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, app_id);
    std::vector<TokenInfo> out;
    while (stmt->Step(&st)) {
      TokenInfo t{std::string(stmt->Text(0)), stmt->Int(1), std::nullopt};
      if (!stmt->IsNull(2)) t.revoked_ms = stmt->Int(2);
      out.push_back(std::move(t));
    }
    NUCLEON_RETURN_IF_ERROR(st);
    return out;
  }

  Status SetRetention(const std::string& app_id, int days) override {
    auto stmt = db_.Prepare("UPDATE apps SET retain_days = ? WHERE app_id = ?");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, static_cast<int64_t>(std::max(days, 0)));
    stmt->Bind(2, app_id);
    NUCLEON_RETURN_IF_ERROR(stmt->Run());
    if (db_.Changes() == 0) return Status::NotFound("unknown app " + app_id);
    return Status::Ok();
  }

  Result<int> RevokeTokens(const std::string& prefix) override {
    NUCLEON_RETURN_IF_ERROR(CheckRevokePrefix(prefix));
    std::string head = prefix.substr(0, std::min(prefix.size(), kTokenPrefixChars));
    auto stmt = db_.Prepare(
        "UPDATE tokens SET revoked_ms = ? WHERE revoked_ms IS NULL AND substr(prefix, 1, ?) = ?"
        " AND (? = 0 OR hash = ?)");
    if (!stmt.ok()) return stmt.status();
    const bool whole = prefix.size() > kTokenPrefixChars;
    stmt->Bind(1, NowMs());
    stmt->Bind(2, static_cast<int64_t>(head.size()));
    stmt->Bind(3, head);
    stmt->Bind(4, static_cast<int64_t>(whole ? 1 : 0));
    stmt->Bind(5, whole ? TokenHashHex(prefix) : std::string());
    NUCLEON_RETURN_IF_ERROR(stmt->Run());
    return db_.Changes();
  }

  Result<std::shared_ptr<const CatalogSnapshot>> Load() override {
    auto snap = std::make_shared<CatalogSnapshot>();
    auto apps = db_.Prepare("SELECT app_id, retain_days FROM apps");
    if (!apps.ok()) return apps.status();
    Status st;
    while (apps->Step(&st)) {
      snap->apps.emplace(apps->Text(0));
      if (apps->Int(1) > 0) {
        snap->retain_days.emplace(apps->Text(0), static_cast<int>(apps->Int(1)));
      }
    }
    if (!st.ok()) return st;
    auto tokens = db_.Prepare("SELECT hash, app_id FROM tokens WHERE revoked_ms IS NULL");
    if (!tokens.ok()) return tokens.status();
    while (tokens->Step(&st)) snap->token_apps.emplace(tokens->Text(0), tokens->Text(1));
    if (!st.ok()) return st;
    return std::shared_ptr<const CatalogSnapshot>(std::move(snap));
  }

  Result<int64_t> DataVersion() override {
    auto stmt = db_.Prepare("PRAGMA data_version");
    if (!stmt.ok()) return stmt.status();
    Status st;
    if (!stmt->Step(&st)) return st.ok() ? Status::Internal("no data_version") : st;
    return stmt->Int(0);
  }

  Status AddAccount(const Account& account) override {
    auto stmt = db_.Prepare(
        "INSERT INTO accounts(email, role, apps, password_hash, created_ms) VALUES(?,?,?,?,?)"
        " ON CONFLICT(email) DO NOTHING");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, account.email);
    stmt->Bind(2, account.role);
    stmt->Bind(3, JoinAppIds(account.apps));
    stmt->Bind(4, account.password_hash);
    stmt->Bind(5, account.created_ms != 0 ? account.created_ms : NowMs());
    NUCLEON_RETURN_IF_ERROR(stmt->Run());
    if (db_.Changes() == 0) return Status::InvalidArgument("account " + account.email + " exists");
    return Status::Ok();
  }

  Result<std::vector<Account>> ListAccounts() override {
    auto stmt = db_.Prepare(
        "SELECT email, role, apps, password_hash, created_ms FROM accounts ORDER BY email");
    if (!stmt.ok()) return stmt.status();
    std::vector<Account> out;
    Status st;
    while (stmt->Step(&st)) out.push_back(AccountOf(*stmt));
    NUCLEON_RETURN_IF_ERROR(st);
    return out;
  }

  Result<std::optional<Account>> FindAccount(const std::string& email) override {
    auto stmt = db_.Prepare(
        "SELECT email, role, apps, password_hash, created_ms FROM accounts WHERE email = ?");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, email);
    Status st;
    if (stmt->Step(&st)) return std::optional<Account>(AccountOf(*stmt));
    NUCLEON_RETURN_IF_ERROR(st);
    return std::optional<Account>();
  }

  Result<bool> RemoveAccount(const std::string& email) override {
    auto stmt = db_.Prepare("DELETE FROM accounts WHERE email = ?");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, email);
    NUCLEON_RETURN_IF_ERROR(stmt->Run());
    return db_.Changes() > 0;
  }

  Result<bool> UpdateAccount(const std::string& email, const std::string& role,
                             const std::vector<std::string>& apps) override {
    auto stmt = db_.Prepare("UPDATE accounts SET role = ?, apps = ? WHERE email = ?");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, role);
    stmt->Bind(2, role == "admin" ? std::string() : JoinAppIds(apps));
    stmt->Bind(3, email);
    NUCLEON_RETURN_IF_ERROR(stmt->Run());
    return db_.Changes() > 0;
  }

  Result<bool> SetPasswordHash(const std::string& email, const std::string& hash) override {
    auto stmt = db_.Prepare("UPDATE accounts SET password_hash = ? WHERE email = ?");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, hash);
    stmt->Bind(2, email);
    NUCLEON_RETURN_IF_ERROR(stmt->Run());
    return db_.Changes() > 0;
  }

 private:
  Result<std::string> InsertToken(const std::string& app_id) {
    std::string token = NewToken();
    auto stmt = db_.Prepare("INSERT INTO tokens(app_id, prefix, hash, created_ms) VALUES(?,?,?,?)");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, app_id);
    stmt->Bind(2, std::string_view(token).substr(0, kTokenPrefixChars));
    stmt->Bind(3, TokenHashHex(token));
    stmt->Bind(4, NowMs());
    NUCLEON_RETURN_IF_ERROR(stmt->Run());
    return token;
  }

  Status Rollback(Status st) {
    (void)db_.Exec("ROLLBACK");
    return st;
  }

  SqliteDb db_;
};

}  // namespace

Result<CatalogContents> ReadSqliteCatalog(const std::string& data_dir) {
  SqliteDb db;
  NUCLEON_RETURN_IF_ERROR(db.Open(data_dir + "/catalog.db", /*create=*/false, /*read_only=*/true));
  CatalogContents out;
  // A catalog older than per-app retention (opened read-only, so not brought
  // up to date) has none.
  bool has_retention = false;
  Status st;
  {
    auto column =
        db.Prepare("SELECT count(*) FROM pragma_table_info('apps') WHERE name = 'retain_days'");
    if (!column.ok()) return column.status();
    has_retention = column->Step(&st) && column->Int(0) > 0;
    NUCLEON_RETURN_IF_ERROR(st);
  }
  auto apps = db.Prepare(has_retention
                             ? "SELECT app_id, name, created_ms, retain_days FROM apps ORDER BY id"
                             : "SELECT app_id, name, created_ms, 0 FROM apps ORDER BY id");
  if (!apps.ok()) return apps.status();
  while (apps->Step(&st)) {
    out.apps.push_back({std::string(apps->Text(0)), std::string(apps->Text(1)), apps->Int(2),
                        static_cast<int>(apps->Int(3))});
  }
  NUCLEON_RETURN_IF_ERROR(st);
  auto tokens =
      db.Prepare("SELECT hash, prefix, app_id, created_ms, revoked_ms FROM tokens ORDER BY id");
  if (!tokens.ok()) return tokens.status();
  while (tokens->Step(&st)) {
    CatalogContents::Token t{std::string(tokens->Text(0)), std::string(tokens->Text(1)),
                             std::string(tokens->Text(2)), tokens->Int(3), std::nullopt};
    if (!tokens->IsNull(4)) t.revoked_ms = tokens->Int(4);
    out.tokens.push_back(std::move(t));
  }
  NUCLEON_RETURN_IF_ERROR(st);
  // A catalog written before accounts existed has none.
  auto has_accounts =
      db.Prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'accounts'");
  if (!has_accounts.ok()) return has_accounts.status();
  if (!has_accounts->Step(&st)) return out;
  auto accounts = db.Prepare(
      "SELECT email, role, apps, password_hash, created_ms FROM accounts ORDER BY email");
  if (!accounts.ok()) return accounts.status();
  while (accounts->Step(&st)) out.accounts.push_back(AccountOf(*accounts));
  NUCLEON_RETURN_IF_ERROR(st);
  return out;
}

Result<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& data_dir) {
  auto catalog = std::make_unique<SqliteCatalog>();
  NUCLEON_RETURN_IF_ERROR(catalog->Open(data_dir));
  return std::unique_ptr<Catalog>(std::move(catalog));
}

}  // namespace nucleon
