#include "store/clickhouse/clickhouse_catalog.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <functional>
#include <map>
#include <thread>

#include "core/crypto.h"
#include "core/log.h"
#include "core/time_util.h"
#include "store/clickhouse/clickhouse_client.h"

namespace nucleon {

namespace {

int64_t Int(const std::string& s) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

class ClickHouseCatalog final : public Catalog {
 public:
  ClickHouseCatalog(std::unique_ptr<ClickHouseClient> client, const ClickHouseStoreOptions& options)
      : client_(std::move(client)), options_(options), tables_(options) {}

  Result<NewCredential> CreateApp(const std::string& name) override {
    std::string raw = RandomBytes(12);
    NewCredential cred{HexEncode(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()), ""};
    std::string row;
    AppendTsv(&row, cred.app_id);
    row.push_back('\t');
    AppendTsv(&row, name);
    row += "\t" + std::to_string(NowMs()) + "\n";
    NUCLEON_RETURN_IF_ERROR(Insert("apps", row));
    auto token = InsertToken(cred.app_id);
    if (!token.ok()) return token.status();
    cred.token = *token;
    return cred;
  }

  Result<std::vector<AppInfo>> ListApps() override {
    auto rows = Query("SELECT app_id, any(name), min(created_ms) AS c FROM " + tables_("apps") +
                      " GROUP BY app_id ORDER BY c, app_id");
    if (!rows.ok()) return rows.status();
    auto counts = Query("SELECT app_id, count() FROM " + tables_("tokens") + " WHERE hash NOT IN " +
                        "(SELECT hash FROM " + tables_("revocations") + ") GROUP BY app_id");
    if (!counts.ok()) return counts.status();
    std::map<std::string, int> active;
    for (const auto& r : *counts) active[r[0]] = static_cast<int>(Int(r[1]));
    auto days = RetainDays();
    if (!days.ok()) return days.status();
    std::vector<AppInfo> apps;
    for (const auto& r : *rows) {
      auto d = days->find(r[0]);
      apps.push_back({r[0], r[1], Int(r[2]), active[r[0]], d == days->end() ? 0 : d->second});
    }
    return apps;
  }

  Result<NewCredential> CreateToken(const std::string& app_id) override {
    auto exists =
        Query("SELECT count() FROM " + tables_("apps") + " WHERE app_id = " + SqlQuote(app_id));
    if (!exists.ok()) return exists.status();
    if (exists->empty() || Int((*exists)[0][0]) == 0) {
      return Status::NotFound("unknown app " + app_id);
    }
    auto token = InsertToken(app_id);
    if (!token.ok()) return token.status();
    return NewCredential{app_id, *token};
  }

  Result<std::vector<TokenInfo>> ListTokens(const std::string& app_id) override {
    auto exists =
        Query("SELECT count() FROM " + tables_("apps") + " WHERE app_id = " + SqlQuote(app_id));
    if (!exists.ok()) return exists.status();
    if (exists->empty() || Int((*exists)[0][0]) == 0) {
      return Status::NotFound("unknown app " + app_id);
    }
    auto rows = Query(
        "SELECT prefix, created, revoked FROM (SELECT hash, any(prefix) AS prefix,"
        " min(created_ms) AS created FROM " +
        tables_("tokens") + " WHERE app_id = " + SqlQuote(app_id) +
        " GROUP BY hash) ANY LEFT JOIN (SELECT hash, min(revoked_ms) AS revoked"
        " FROM " +
        tables_("revocations") + " GROUP BY hash) USING hash ORDER BY created, prefix");
    if (!rows.ok()) return rows.status();
    std::vector<TokenInfo> out;
    for (const auto& r : *rows) {
      TokenInfo t{r[0], Int(r[1]), std::nullopt};
      if (Int(r[2]) > 0) t.revoked_ms = Int(r[2]);
      out.push_back(std::move(t));
    }
    return out;
  }

  Status SetRetention(const std::string& app_id, int days) override {
    auto exists =
        Query("SELECT count() FROM " + tables_("apps") + " WHERE app_id = " + SqlQuote(app_id));
    if (!exists.ok()) return exists.status();
    if (exists->empty() || Int((*exists)[0][0]) == 0) {
      return Status::NotFound("unknown app " + app_id);
    }
    std::string row;
    AppendTsv(&row, app_id);
    row += "\t" + std::to_string(std::max(days, 0)) + "\t" + std::to_string(NowMs()) + "\n";
    return Insert("retention", row);
  }

  Result<int> RevokeTokens(const std::string& prefix) override {
    NUCLEON_RETURN_IF_ERROR(CheckRevokePrefix(prefix));
    const std::string head = prefix.substr(0, std::min(prefix.size(), kTokenPrefixChars));
    std::string sql = "SELECT hash FROM " + tables_("tokens") + " WHERE startsWith(prefix, " +
                      SqlQuote(head) + ") AND hash NOT IN (SELECT hash FROM " +
                      tables_("revocations") + ")";
    if (prefix.size() > kTokenPrefixChars) sql += " AND hash = " + SqlQuote(TokenHashHex(prefix));
    auto rows = Query(sql);
    if (!rows.ok()) return rows.status();
    std::string data;
    const std::string now = std::to_string(NowMs());
    for (const auto& r : *rows) {
      AppendTsv(&data, r[0]);
      data += "\t" + now + "\n";
    }
    if (!data.empty()) NUCLEON_RETURN_IF_ERROR(Insert("revocations", data));
    return static_cast<int>(rows->size());
  }

  Result<std::shared_ptr<const CatalogSnapshot>> Load() override {
    auto snap = std::make_shared<CatalogSnapshot>();
    auto apps = Query("SELECT DISTINCT app_id FROM " + tables_("apps"));
    if (!apps.ok()) return apps.status();
    for (const auto& r : *apps) snap->apps.insert(r[0]);
    auto tokens =
        Query("SELECT hash, any(app_id) FROM " + tables_("tokens") +
              " WHERE hash NOT IN (SELECT hash FROM " + tables_("revocations") + ") GROUP BY hash");
    if (!tokens.ok()) return tokens.status();
    for (const auto& r : *tokens) snap->token_apps.emplace(r[0], r[1]);
    auto days = RetainDays();
    if (!days.ok()) return days.status();
    for (const auto& [app, d] : *days) {
      if (d > 0 && snap->apps.count(app)) snap->retain_days.emplace(app, d);
    }
    return std::shared_ptr<const CatalogSnapshot>(std::move(snap));
  }

  // Rows are only ever added, so their total count changes with every change.
  Result<int64_t> DataVersion() override {
    auto rows =
        Query("SELECT (SELECT count() FROM " + tables_("apps") + ") + (SELECT count() FROM " +
              tables_("tokens") + ") + (SELECT count() FROM " + tables_("revocations") +
              ") + (SELECT count() FROM " + tables_("retention") + ") + (SELECT count() FROM " +
              tables_("accounts") + ")");
    if (!rows.ok()) return rows.status();
    return rows->empty() ? 0 : Int((*rows)[0][0]);
  }

  // Accounts: two nodes adding one email at the same moment may both
  // succeed (the later row wins); everything else is as in the embedded catalog.
  Status AddAccount(const Account& account) override {
    auto existing = FindAccount(account.email);
    if (!existing.ok()) return existing.status();
    if (existing->has_value())
      return Status::InvalidArgument("account " + account.email + " exists");
    Account a = account;
    if (a.created_ms == 0) a.created_ms = NowMs();
    if (a.role == "admin") a.apps.clear();
    return WriteAccount(a, false);
  }

  Result<std::vector<Account>> ListAccounts() override { return ReadAccounts(""); }

  Result<std::optional<Account>> FindAccount(const std::string& email) override {
    auto found = ReadAccounts(email);
    if (!found.ok()) return found.status();
    if (found->empty()) return std::optional<Account>();
    return std::optional<Account>(std::move(found->front()));
  }

  Result<bool> RemoveAccount(const std::string& email) override {
    return ChangeAccount(email, [](Account*) { return true; });
  }

  Result<bool> SetPasswordHash(const std::string& email, const std::string& hash) override {
    return ChangeAccount(email, [&hash](Account* a) {
      a->password_hash = hash;
      return false;
    });
  }

  Result<bool> UpdateAccount(const std::string& email, const std::string& role,
                             const std::vector<std::string>& apps) override {
    return ChangeAccount(email, [&](Account* a) {
      a->role = role;
      a->apps = role == "admin" ? std::vector<std::string>() : apps;
      return false;
    });
  }

 private:
  // The current accounts (of `email` only, when given), by email.
  Result<std::vector<Account>> ReadAccounts(const std::string& email) {
    std::string sql =
        "SELECT email, argMax(role, set_ms), argMax(apps, set_ms), argMax(password_hash, set_ms),"
        " argMax(created_ms, set_ms), argMax(removed, set_ms) AS gone FROM " +
        tables_("accounts");
    if (!email.empty()) sql += " WHERE email = " + SqlQuote(email);
    auto rows = Query(sql + " GROUP BY email HAVING gone = 0 ORDER BY email");
    if (!rows.ok()) return rows.status();
    std::vector<Account> out;
    for (const auto& r : *rows)
      out.push_back(Account{r[0], r[1], SplitAppIds(r[2]), r[3], Int(r[4])});
    return out;
  }

  // Writes the account of `email` as `change` leaves it (removed when it
  // returns true); whether there was such an account.
  Result<bool> ChangeAccount(const std::string& email,
                             const std::function<bool(Account*)>& change) {
    auto found = FindAccount(email);
    if (!found.ok()) return found.status();
    if (!found->has_value()) return false;
    Account a = std::move(**found);
    const bool removed = change(&a);
    NUCLEON_RETURN_IF_ERROR(WriteAccount(a, removed));
    return true;
  }

  Status WriteAccount(const Account& a, bool removed) {
    // Later than any row this object wrote, so its own changes never tie.
    last_set_ms_ = std::max(NowMs(), last_set_ms_ + 1);
    std::string row;
    AppendAccountRow(&row, a, removed, last_set_ms_);
    return Insert("accounts", row);
  }

  // app -> its latest retention setting (0 included).
  Result<std::map<std::string, int>> RetainDays() {
    auto rows = Query("SELECT app_id, argMax(days, set_ms) FROM " + tables_("retention") +
                      " GROUP BY app_id");
    if (!rows.ok()) return rows.status();
    std::map<std::string, int> out;
    for (const auto& r : *rows) out[r[0]] = static_cast<int>(Int(r[1]));
    return out;
  }

  Result<std::vector<std::vector<std::string>>> Query(const std::string& sql) {
    auto body = client_->Execute(sql + " FORMAT TabSeparated");
    if (!body.ok()) return body.status();
    return ParseTsv(*body);
  }

  Status Insert(const char* table, const std::string& rows) {
    auto st = client_->Execute("INSERT INTO " + tables_(table) + " FORMAT TabSeparated", rows,
                               InsertSettings(options_));
    return st.ok() ? Status::Ok() : st.status();
  }

  Result<std::string> InsertToken(const std::string& app_id) {
    std::string token = NewToken();
    std::string row;
    AppendTsv(&row, TokenHashHex(token));
    row.push_back('\t');
    AppendTsv(&row, std::string_view(token).substr(0, kTokenPrefixChars));
    row.push_back('\t');
    AppendTsv(&row, app_id);
    row += "\t" + std::to_string(NowMs()) + "\n";
    NUCLEON_RETURN_IF_ERROR(Insert("tokens", row));
    return token;
  }

  std::unique_ptr<ClickHouseClient> client_;
  ClickHouseStoreOptions options_;
  ClickHouseTables tables_;
  int64_t last_set_ms_ = 0;
};

}  // namespace

void AppendAccountRow(std::string* out, const Account& a, bool removed, int64_t set_ms) {
  for (const std::string* field : {&a.email, &a.role}) {
    AppendTsv(out, *field);
    out->push_back('\t');
  }
  AppendTsv(out, JoinAppIds(a.apps));
  out->push_back('\t');
  AppendTsv(out, a.password_hash);
  *out += "\t" + std::to_string(a.created_ms) + "\t" + (removed ? "1" : "0") + "\t" +
          std::to_string(set_ms) + "\n";
}

Result<std::unique_ptr<Catalog>> OpenClickHouseCatalog(const ClickHouseStoreOptions& options) {
  ClickHouseClientOptions client_options = ClientOptionsFor(options);
  if (client_options.urls.empty()) {
    return Status::InvalidArgument("the ClickHouse store needs --clickhouse URL[,URL...]");
  }
  auto client = ClickHouseClient::Create(client_options);
  if (!client.ok()) return client.status();
  const ClickHouseTables tables(options);
  // A node may start while ClickHouse restarts: it waits a while for it.
  Status st = EnsureClickHouseSchema(**client, tables);
  for (int waited_s = 0; !st.ok() && st.code() == StatusCode::kUnavailable && waited_s < 30;
       ++waited_s) {
    if (waited_s == 0) LogWarn("waiting for ClickHouse: " + st.ToString());
    std::this_thread::sleep_for(std::chrono::seconds(1));
    st = EnsureClickHouseSchema(**client, tables);
  }
  if (!st.ok()) {
    return Status::Unavailable("ClickHouse at " + options.urls.front() +
                               " does not answer: " + st.message());
  }
  return std::unique_ptr<Catalog>(std::make_unique<ClickHouseCatalog>(std::move(*client), options));
}

}  // namespace nucleon
