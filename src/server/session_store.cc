#include "server/session_store.h"

#include <algorithm>

#include "server/password_hash.h"

namespace nucleon {

namespace {

std::string RandomToken() {
  const std::string raw = RandomBytes(32);
  return Base64UrlEncode(reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
}

std::string DummyHash(PasswordCost cost) {
  auto hash = HashPassword(RandomToken(), cost);
  return hash.ok() ? *hash : std::string();
}

}  // namespace

bool Principal::CanRead(std::string_view app) const {
  if (admin()) return true;
  return std::find(apps.begin(), apps.end(), app) != apps.end();
}

Result<std::string> NormalizeEmail(std::string_view email) {
  while (!email.empty() && (email.front() == ' ' || email.front() == '\t')) email.remove_prefix(1);
  while (!email.empty() && (email.back() == ' ' || email.back() == '\t' || email.back() == '\n' ||
                            email.back() == '\r')) {
    email.remove_suffix(1);
  }
  const size_t at = email.find('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == email.size() || email.size() > 254) {
    return Status::InvalidArgument("an email looks like name@example.com");
  }
  std::string out;
  out.reserve(email.size());
  for (char c : email) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == ',') {
      return Status::InvalidArgument("an email holds no spaces, commas or control characters");
    }
    out += static_cast<char>(std::tolower(u));
  }
  return out;
}

bool CsrfMatches(const Principal& principal, std::string_view header_value) {
  return !principal.csrf_token.empty() && ConstantTimeEquals(principal.csrf_token, header_value);
}

SessionStore::SessionStore(std::unique_ptr<Catalog> catalog, SessionStoreOptions options,
                           std::function<int64_t()> now_ms)
    : catalog_(std::move(catalog)),
      options_(options),
      now_ms_(std::move(now_ms)),
      login_limiter_(options.login_limit),
      dummy_hash_(DummyHash(options.dummy_cost)) {}

Result<SessionStore::SignedIn> SessionStore::SignIn(std::string_view email_in,
                                                    std::string_view password,
                                                    std::string_view client_key,
                                                    int* retry_after_seconds) {
  *retry_after_seconds = 0;
  const Status wrong = Status::Unauthenticated("wrong email or password");
  auto email = NormalizeEmail(email_in);
  const std::string key_email = "e:" + (email.ok() ? *email : std::string(email_in));
  for (const std::string& key : {"a:" + std::string(client_key), key_email}) {
    RateLimiter::Decision d = login_limiter_.Take(key);
    if (!d.allowed) {
      *retry_after_seconds = d.retry_after_seconds;
      return Status::RateLimited("too many sign-in attempts; retry after " +
                                 std::to_string(d.retry_after_seconds) + " s");
    }
  }
  std::optional<Account> account;
  if (email.ok()) {
    std::lock_guard lock(mu_);
    auto found = catalog_->FindAccount(*email);
    if (!found.ok()) return found.status();
    account = std::move(*found);
  }
  // An unknown email costs one verification too, so that timing does not
  // tell which emails have accounts.
  const bool match = VerifyPassword(account ? account->password_hash : dummy_hash_, password);
  if (!account || !match) return wrong;

  SignedIn out;
  out.session_id = RandomToken();
  out.principal = Principal{account->email, account->role, account->apps, RandomToken()};
  const int64_t now = now_ms_();
  std::lock_guard lock(mu_);
  if (sessions_.size() >= options_.max_sessions) DropOldest();
  sessions_[out.session_id] =
      Session{account->email, account->password_hash, out.principal.csrf_token, now, now};
  return out;
}

void SessionStore::SignOut(std::string_view session_id) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(std::string(session_id));
  if (it != sessions_.end()) sessions_.erase(it);
}

Result<Principal> SessionStore::Authenticate(std::string_view session_id) {
  const Status gone = Status::Unauthenticated("not signed in (or the session ended)");
  if (session_id.empty()) return gone;
  const int64_t now = now_ms_();
  std::lock_guard lock(mu_);
  auto it = sessions_.find(std::string(session_id));
  if (it == sessions_.end()) return gone;
  Session& s = it->second;
  if (now - s.last_used_ms > options_.idle_ms || now - s.created_ms > options_.max_age_ms) {
    sessions_.erase(it);
    return gone;
  }
  auto account = catalog_->FindAccount(s.email);
  if (!account.ok()) return account.status();
  if (!account->has_value() || (*account)->password_hash != s.password_hash) {
    sessions_.erase(it);
    return gone;
  }
  s.last_used_ms = now;
  const Account& a = **account;
  return Principal{a.email, a.role, a.apps, s.csrf_token};
}

Result<std::vector<AppInfo>> SessionStore::ListApps() {
  std::lock_guard lock(mu_);
  return catalog_->ListApps();
}

size_t SessionStore::size() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

void SessionStore::DropOldest() {
  auto oldest = sessions_.begin();
  for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
    if (it->second.last_used_ms < oldest->second.last_used_ms) oldest = it;
  }
  if (oldest != sessions_.end()) sessions_.erase(oldest);
}

}  // namespace nucleon
