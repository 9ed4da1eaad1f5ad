#include "server/dashboard.h"

#include <boost/json.hpp>

#include "core/gzip.h"
#include "server/web_assets.h"

namespace nucleon {

namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// What the dashboard's HTML may load: itself only (no CDN, no inline script).
constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'";

HttpResponse JsonAnswer(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

std::string SessionCookie(std::string_view value, int64_t max_age_seconds, bool secure) {
  std::string c(kSessionCookie);
  c += '=';
  c += value;
  c += "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" + std::to_string(max_age_seconds);
  if (secure) c += "; Secure";
  return c;
}

std::string PrincipalJson(const Principal& p, const std::vector<AppInfo>& apps) {
  std::string out = "{\"email\":" + JsonQuote(p.email) + ",\"role\":" + JsonQuote(p.role) +
                    ",\"csrfToken\":" + JsonQuote(p.csrf_token) + ",\"apps\":[";
  bool first = true;
  for (const AppInfo& a : apps) {
    if (!p.CanRead(a.app_id)) continue;
    if (!first) out += ',';
    first = false;
    out += "{\"appId\":" + JsonQuote(a.app_id) + ",\"name\":" + JsonQuote(a.name) + '}';
  }
  return out + "]}";
}

}  // namespace

std::string_view CookieValue(std::string_view header, std::string_view name) {
  size_t at = 0;
  while (at < header.size()) {
    size_t end = header.find(';', at);
    if (end == std::string_view::npos) end = header.size();
    std::string_view part = header.substr(at, end - at);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.size() > name.size() && StartsWith(part, name) && part[name.size()] == '=') {
      return part.substr(name.size() + 1);
    }
    at = end + 1;
  }
  return {};
}

Dashboard::Dashboard(SessionStore* sessions, AppRegistry* apps) : sessions_(sessions), apps_(apps) {
  for (const WebAsset& a : WebAssets()) {
    File f{a.content_type, a.data, {}, StartsWith(a.path, "/assets/")};
    // Compressed once here, so that each answer is a copy.
    if (a.data.size() > 1024 && !StartsWith(a.content_type, "image/png")) {
      GzipStream gz;
      std::string z = gz.Add(a.data);
      z += gz.Finish();
      if (z.size() < a.data.size()) f.gzipped = std::move(z);
    }
    files_.emplace(a.path, std::move(f));
  }
}

bool Dashboard::Serves(const HttpRequest& request, std::string_view path) const {
  if (request.method != "GET" && request.method != "HEAD") return false;
  if (files_.count(path)) return true;
  if (files_.empty()) return false;
  if (StartsWith(path, "/api/") || StartsWith(path, "/app/") || StartsWith(path, "/assets/") ||
      path == "/api" || path == "/healthz" || path == "/metrics") {
    return false;
  }
  // A page of the app: only when a browser asks for HTML, so that `/` still
  // answers scripts with JSON.
  return request.Header("accept").find("text/html") != std::string_view::npos;
}

void Dashboard::Handle(const HttpRequest& request, std::string_view path, Respond respond) {
  if (path == "/api/session") return respond(Session(request));
  auto it = files_.find(path);
  if (it == files_.end() || path == "/index.html") it = files_.find("/index.html");
  if (it == files_.end()) {
    return respond(ErrorResponse(Status::NotFound("no such endpoint: " + std::string(path))));
  }
  respond(Serve(request, it->second));
}

HttpResponse Dashboard::Serve(const HttpRequest& request, const File& file) const {
  HttpResponse r;
  r.content_type = std::string(file.content_type);
  const bool gzip = !file.gzipped.empty() && AcceptsGzip(request.Header("accept-encoding"));
  r.body = std::string(gzip ? std::string_view(file.gzipped) : file.data);
  if (gzip) r.headers.emplace_back("Content-Encoding", "gzip");
  if (!file.gzipped.empty()) r.headers.emplace_back("Vary", "Accept-Encoding");
  r.headers.emplace_back("Cache-Control",
                         file.immutable ? "public, max-age=31536000, immutable" : "no-cache");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  if (StartsWith(file.content_type, "text/html")) {
    r.headers.emplace_back("Content-Security-Policy", kContentSecurityPolicy);
    r.headers.emplace_back("X-Frame-Options", "DENY");
    r.headers.emplace_back("Referrer-Policy", "same-origin");
  }
  return r;
}

HttpResponse Dashboard::Session(const HttpRequest& request) const {
  if (!sessions_) {
    return ErrorResponse(Status::Unimplemented("this server has no dashboard accounts"));
  }
  const std::string_view cookie = CookieValue(request.Header("cookie"), kSessionCookie);
  if (request.method == "GET") {
    auto principal = sessions_->Authenticate(cookie);
    if (!principal.ok()) return ErrorResponse(principal.status());
    auto apps = sessions_->ListApps();
    if (!apps.ok()) return ErrorResponse(apps.status());
    return JsonAnswer(200, "{\"data\":" + PrincipalJson(*principal, *apps) + "}");
  }
  if (request.method == "DELETE") {
    auto principal = sessions_->Authenticate(cookie);
    if (principal.ok() && !CsrfMatches(*principal, request.Header(kCsrfHeader))) {
      return ErrorResponse(Status::Forbidden("missing or wrong CSRF token (X-CSRF-Token)"));
    }
    sessions_->SignOut(cookie);
    HttpResponse r = JsonAnswer(200, "{\"data\":{\"signedOut\":true}}");
    r.headers.emplace_back("Set-Cookie", SessionCookie("", 0, request.https));
    return r;
  }
  if (request.method != "POST") {
    return ErrorResponse(Status::MethodNotAllowed("use GET, POST or DELETE for /api/session"));
  }
  // A sign-in: a JSON body {"email","password"}.
  std::string email, password;
  boost::system::error_code ec;
  boost::json::value body = boost::json::parse(request.body, ec);
  if (!ec && body.is_object()) {
    const auto& o = body.get_object();
    if (auto* e = o.if_contains("email"); e && e->is_string()) email = e->get_string();
    if (auto* p = o.if_contains("password"); p && p->is_string()) password = p->get_string();
  }
  if (email.empty() || password.empty()) {
    return ErrorResponse(
        Status::InvalidArgument("send {\"email\": ..., \"password\": ...} as JSON to sign in"));
  }
  int retry_after = 0;
  auto signed_in = sessions_->SignIn(email, password, request.client_key, &retry_after);
  if (!signed_in.ok()) {
    HttpResponse r = ErrorResponse(signed_in.status());
    if (retry_after > 0) r.headers.emplace_back("Retry-After", std::to_string(retry_after));
    return r;
  }
  auto apps = sessions_->ListApps();
  if (!apps.ok()) return ErrorResponse(apps.status());
  HttpResponse r = JsonAnswer(200, "{\"data\":" + PrincipalJson(signed_in->principal, *apps) + "}");
  r.headers.emplace_back("Set-Cookie",
                         SessionCookie(signed_in->session_id, 7 * 24 * 3600, request.https));
  return r;
}

std::optional<Status> Dashboard::SessionAccess(const HttpRequest& request, const std::string& app,
                                               bool is_delete) const {
  const std::string_view cookie = CookieValue(request.Header("cookie"), kSessionCookie);
  if (cookie.empty() || !sessions_) return std::nullopt;
  auto principal = sessions_->Authenticate(cookie);
  if (!principal.ok()) return principal.status();
  if (!principal->CanRead(app) || !apps_->AppExists(app)) {
    return Status::NotFound("unknown app " + app);
  }
  const bool reads = request.method == "GET" || request.method == "HEAD";
  if (!reads && !CsrfMatches(*principal, request.Header(kCsrfHeader))) {
    return Status::Forbidden("missing or wrong CSRF token (X-CSRF-Token)");
  }
  if (is_delete && !principal->admin()) {
    return Status::Forbidden("a viewer cannot delete; ask an admin");
  }
  return Status::Ok();
}

}  // namespace nucleon
