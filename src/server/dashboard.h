// Dashboard: what the server answers for its web interface besides API v1.
//   - /api/session: sign in (POST {"email","password"}), who is signed in
//     (GET), sign out (DELETE, with the CSRF token);
//   - the dashboard's files (WebAssets) at their paths, index.html for `/`
//     and for any other page path (the app routes in the browser), with
//     hashed asset names cached for a year and index.html revalidated;
//   - SessionAccess: whether a request's session cookie lets it call API v1
//     on an app, so that the dashboard reads through the same handlers as
//     any script (one code path, one set of numbers);
//   - /api/admin/...: Settings for admins (apps, tokens, accounts), through
//     the catalog, session cookie only, CSRF-checked on every change
//     (docs/api.md, "Dashboard administration").
// Thread-safe: any network thread.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/http_types.h"
#include "server/app_registry.h"
#include "server/password_hash.h"
#include "server/session_store.h"
#include "store/catalog.h"

namespace nucleon {

inline constexpr std::string_view kSessionCookie = "nucleon_session";
inline constexpr std::string_view kCsrfHeader = "x-csrf-token";

class Dashboard final : public HttpHandler {
 public:
  // `sessions` may be null: no one can sign in (the files are still served).
  // `admin_catalog`: this object's own catalog connection for /api/admin;
  // null: those endpoints answer 501. `password_cost`: of the hashes of
  // passwords set through them.
  Dashboard(SessionStore* sessions, AppRegistry* apps,
            std::unique_ptr<Catalog> admin_catalog = nullptr,
            PasswordCost password_cost = PasswordCost::kInteractive);

  // /api/session, /api/admin/..., and GET/HEAD of the dashboard's files and pages.
  void Handle(const HttpRequest& request, std::string_view path, Respond respond) override;

  // Whether `path` (GET) is the dashboard's: a file, or a page of the app
  // (any path outside /api/, /app/, /healthz and /metrics) asked for as HTML.
  bool Serves(const HttpRequest& request, std::string_view path) const;

  // For API v1: nullopt when the request carries no session cookie (the token
  // decides then); else Ok when the session may make this call on `app`:
  // Unauthenticated for an ended session, NotFound "unknown app" for an app
  // it does not grant (as for a token), Forbidden for a state-changing call
  // without the session's CSRF token, or a delete by a viewer.
  std::optional<Status> SessionAccess(const HttpRequest& request, const std::string& app,
                                      bool is_delete) const;

 private:
  struct File {
    std::string_view content_type;
    std::string_view data;
    std::string gzipped;  // empty when compressing does not pay
    bool immutable = false;
  };
  HttpResponse Serve(const HttpRequest& request, const File& file) const;
  HttpResponse Session(const HttpRequest& request) const;
  HttpResponse Admin(const HttpRequest& request, std::string_view path);
  // The admin endpoints once the caller is known to be a signed-in admin.
  HttpResponse AdminApps(const HttpRequest& request, const std::vector<std::string>& seg);
  HttpResponse AdminAccounts(const HttpRequest& request, const std::vector<std::string>& seg,
                             const Principal& me);

  SessionStore* sessions_;
  AppRegistry* apps_;
  std::unordered_map<std::string_view, File> files_;
  std::mutex admin_mu_;  // guards admin_catalog_ (one thread at a time)
  std::unique_ptr<Catalog> admin_catalog_;
  PasswordCost password_cost_;
};

// The value of cookie `name` in a Cookie header, or "".
std::string_view CookieValue(std::string_view cookie_header, std::string_view name);

}  // namespace nucleon
