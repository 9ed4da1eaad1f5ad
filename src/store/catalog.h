// The catalog: apps and their API tokens, and the dashboard's accounts. Shared by the server and
// the admin CLI, which may run at the same time on the same data folder; the server notices the
// CLI's changes through DataVersion(). Tokens are stored only as SHA-256 hashes plus a short prefix
// for revocation. A Catalog object is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/crypto.h"
#include "core/status.h"

namespace nucleon {

struct AppInfo {
  std::string app_id;
  std::string name;
  int64_t created_ms = 0;
  int active_tokens = 0;
  int retain_days = 0;  // the app's own retention in days; 0: none (the server's default)
};

// A token as the catalog shows it: never its text, only its first
// kTokenPrefixChars characters (enough to revoke it).
struct TokenInfo {
  std::string prefix;
  int64_t created_ms = 0;
  std::optional<int64_t> revoked_ms;
};

struct NewCredential {
  std::string app_id;
  std::string token;  // shown once, never stored
};

// What the server needs at request time, loaded whole and replaced on change.
struct CatalogSnapshot {
  std::unordered_set<std::string> apps;
  // hex SHA-256 of a token -> the app it grants. Keys are compared in
  // constant time: a lookup reveals nothing of how close a guess came.
  std::unordered_map<std::string, std::string, std::hash<std::string>, ConstantTimeEqualTo>
      token_apps;
  // app -> its own retention in days (apps with one only).
  std::unordered_map<std::string, int> retain_days;
};

// A dashboard account. An admin sees every app and may change things; a
// viewer sees the apps listed and changes nothing.
struct Account {
  std::string email;              // lowercased; the key
  std::string role;               // "admin" or "viewer"
  std::vector<std::string> apps;  // a viewer's apps (an admin's list is ignored)
  // libsodium's crypto_pwhash_str (argon2id, with its own salt and cost); the
  // password itself is never kept.
  std::string password_hash;
  int64_t created_ms = 0;
};

// Every row of a catalog, revoked tokens included, and the accounts, for
// moving it to another backend (nucleon migrate), with each app's own
// retention. Token hashes and password hashes only: a token's text or a
// password is never kept.
struct CatalogContents {
  struct App {
    std::string app_id, name;
    int64_t created_ms = 0;
    int retain_days = 0;  // the app's own retention in days; 0: none
  };
  struct Token {
    std::string hash, prefix, app_id;
    int64_t created_ms = 0;
    std::optional<int64_t> revoked_ms;
  };
  std::vector<App> apps;
  std::vector<Token> tokens;
  std::vector<Account> accounts;
};

class Catalog {
 public:
  virtual ~Catalog() = default;
  virtual Result<NewCredential> CreateApp(const std::string& name) = 0;
  // CreateApp with a given id (an import re-creating an app elsewhere).
  // InvalidArgument when the id is taken; a backend may not offer it.
  virtual Result<NewCredential> CreateAppWithId(const std::string& app_id,
                                                const std::string& name) {
    (void)app_id;
    (void)name;
    return Status::InvalidArgument("this catalog creates apps with new ids only");
  }
  virtual Result<std::vector<AppInfo>> ListApps() = 0;
  virtual Result<NewCredential> CreateToken(const std::string& app_id) = 0;
  // The app's tokens, revoked ones included, oldest first. NotFound for an
  // unknown app.
  virtual Result<std::vector<TokenInfo>> ListTokens(const std::string& app_id) = 0;
  // Sets the app's own retention to `days` whole days (0: none, the server's
  // default applies). NotFound for an unknown app.
  virtual Status SetRetention(const std::string& app_id, int days) = 0;
  // Revokes every active token whose text starts with `prefix` (8 to 12
  // characters), or the one token equal to `prefix` (a whole token).
  virtual Result<int> RevokeTokens(const std::string& prefix) = 0;
  virtual Result<std::shared_ptr<const CatalogSnapshot>> Load() = 0;
  // Changes whenever another connection (another process, such as the admin
  // CLI) committed a change to the catalog; this object's own commits do not
  // change it (SQLite's PRAGMA data_version).
  virtual Result<int64_t> DataVersion() = 0;

  // Accounts. A backend that keeps none answers Unimplemented (saying so).
  // AddAccount: InvalidArgument when the email is taken.
  virtual Status AddAccount(const Account& account) {
    (void)account;
    return AccountsUnsupported();
  }
  // Every account, by email.
  virtual Result<std::vector<Account>> ListAccounts() { return AccountsUnsupported(); }
  // The account of `email`, or nullopt.
  virtual Result<std::optional<Account>> FindAccount(const std::string& email) {
    (void)email;
    return AccountsUnsupported();
  }
  // Whether there was such an account.
  virtual Result<bool> RemoveAccount(const std::string& email) {
    (void)email;
    return AccountsUnsupported();
  }
  virtual Result<bool> SetPasswordHash(const std::string& email, const std::string& hash) {
    (void)email;
    (void)hash;
    return AccountsUnsupported();
  }
  // Sets the account's role and apps (a viewer's; an admin's are cleared).
  // Whether there was such an account.
  virtual Result<bool> UpdateAccount(const std::string& email, const std::string& role,
                                     const std::vector<std::string>& apps) {
    (void)email;
    (void)role;
    (void)apps;
    return AccountsUnsupported();
  }

 private:
  static Status AccountsUnsupported() {
    return Status::Unimplemented("this catalog keeps no dashboard accounts");
  }
};

// A viewer's app ids as a catalog stores them: comma-separated (app ids
// never hold a comma), and back (empty items dropped).
std::string JoinAppIds(const std::vector<std::string>& apps);
std::vector<std::string> SplitAppIds(std::string_view text);

// Token text: "nct_" + 43 base64url characters (256 random bits).
std::string NewToken();
std::string TokenHashHex(std::string_view token);
size_t NewTokenLength();
inline constexpr size_t kTokenPrefixChars = 12;
// What RevokeTokens accepts: 8 to kTokenPrefixChars characters of a token, or
// the whole token. InvalidArgument (saying so) for anything else.
Status CheckRevokePrefix(const std::string& prefix);

}  // namespace nucleon
