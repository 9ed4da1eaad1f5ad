// Dashboard: what the server answers for its web interface besides API v1.
//   - /api/session: sign in (POST {"email","password"}), who is signed in
//     (GET), sign out (DELETE, with the CSRF token);
//   - the dashboard's files (WebAssets) at their paths, index.html for `/`
//     and for any other page path (the app routes in the browser), with
//     hashed asset names cached for a year and index.html revalidated;
//   - SessionAccess: whether a request's session cookie lets it call API v1
//     on an app, so that the dashboard reads through the same handlers as
//     any script (one code path, one set of numbers).
// Thread-safe: any network thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/http_types.h"
#include "server/app_registry.h"
#include "server/session_store.h"

namespace nucleon {

inline constexpr std::string_view kSessionCookie = "nucleon_session";
inline constexpr std::string_view kCsrfHeader = "x-csrf-token";

class Dashboard final : public HttpHandler {
 public:
  // `sessions` may be null: no one can sign in (the files are still served).
  Dashboard(SessionStore* sessions, AppRegistry* apps);

  // /api/session, and GET/HEAD of the dashboard's files and pages.
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

  SessionStore* sessions_;
  AppRegistry* apps_;
  std::unordered_map<std::string_view, File> files_;
};

// The value of cookie `name` in a Cookie header, or "".
std::string_view CookieValue(std::string_view cookie_header, std::string_view name);

}  // namespace nucleon
