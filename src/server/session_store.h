// SessionStore: who is signed in to the dashboard. Signing in checks an
// account's password (argon2id) and opens a session: a random id, sent only
// in an HttpOnly cookie, and a CSRF token of its own that the dashboard sends
// back in the X-CSRF-Token header of every state-changing call. Sessions live
// in memory (a restart signs everyone out) and end after `idle_ms` without use
// or `max_age_ms` in all. Every use reads the account again from the catalog:
// a removed account, or one whose password changed, ends its sessions at once,
// and a viewer's apps and role are always the current ones.
// Sign-in attempts are rate-limited per client address and per email.
// Thread-safe: one mutex guards the sessions and the catalog connection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/crypto.h"
#include "server/password_hash.h"
#include "server/rate_limiter.h"
#include "store/catalog.h"

namespace nucleon {

struct SessionStoreOptions {
  int64_t idle_ms = 12LL * 3600 * 1000;         // unused this long: signed out
  int64_t max_age_ms = 7LL * 24 * 3600 * 1000;  // at most this long in all
  size_t max_sessions = 10000;                  // the oldest go first beyond
  // Sign-in attempts (right or wrong) per client address and per email: a
  // burst, then one every 1 / rate seconds.
  RateLimiterOptions login_limit{1.0 / 6, 10, 10000};
  // The cost of the hash an unknown email is checked against: that of the
  // accounts' own hashes, so both take the same time (tests: minimal).
  PasswordCost dummy_cost = PasswordCost::kInteractive;
};

// The signed-in account behind a request.
struct Principal {
  std::string email;
  std::string role;               // "admin" or "viewer"
  std::vector<std::string> apps;  // a viewer's apps
  std::string csrf_token;
  bool admin() const { return role == "admin"; }
  bool CanRead(std::string_view app) const;
};

class SessionStore {
 public:
  // `catalog` is this store's own connection. `now_ms` is the clock (tests drive it).
  SessionStore(std::unique_ptr<Catalog> catalog, SessionStoreOptions options,
               std::function<int64_t()> now_ms);

  struct SignedIn {
    std::string session_id;  // for the cookie only
    Principal principal;
  };
  // Unauthenticated "wrong email or password" for an unknown email or a wrong
  // password (the two are not told apart, and take the same time);
  // RateLimited with the seconds to wait; another error when the catalog fails.
  Result<SignedIn> SignIn(std::string_view email, std::string_view password,
                          std::string_view client_key, int* retry_after_seconds);
  void SignOut(std::string_view session_id);
  // The principal of a session id; Unauthenticated when there is no such
  // session, it expired, or its account was removed or changed its password.
  Result<Principal> Authenticate(std::string_view session_id);

  // Every app with its name (for the dashboard's app picker).
  Result<std::vector<AppInfo>> ListApps();

  size_t size() const;

 private:
  struct Session {
    std::string email;
    std::string password_hash;  // as at sign-in: a new password ends the session
    std::string csrf_token;
    int64_t created_ms = 0;
    int64_t last_used_ms = 0;
  };
  void DropOldest();  // mu_ held

  std::unique_ptr<Catalog> catalog_;
  SessionStoreOptions options_;
  std::function<int64_t()> now_ms_;
  RateLimiter login_limiter_;
  const std::string dummy_hash_;  // verified against for unknown emails
  mutable std::mutex mu_;
  std::unordered_map<std::string, Session, std::hash<std::string>, ConstantTimeEqualTo> sessions_;
};

// The lowercased, trimmed email; InvalidArgument when it has no '@' or is
// longer than 254 characters or holds a control character, space or comma.
Result<std::string> NormalizeEmail(std::string_view email);

// Whether a CSRF header value equals the session's token (constant time).
bool CsrfMatches(const Principal& principal, std::string_view header_value);

}  // namespace nucleon
