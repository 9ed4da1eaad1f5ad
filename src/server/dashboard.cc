#include "server/dashboard.h"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include "core/gzip.h"
#include "core/log.h"
#include "core/time_util.h"
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

// A JSON array of `element(item)` for each item.
template <typename T, typename F>
std::string JsonArray(const std::vector<T>& items, F element) {
  std::string out = "[";
  for (const T& item : items) {
    if (out.size() > 1) out += ',';
    out += element(item);
  }
  return out + "]";
}

std::string AccountJson(const Account& a) {
  return "{\"email\":" + JsonQuote(a.email) + ",\"role\":" + JsonQuote(a.role) +
         ",\"apps\":" + JsonArray(a.apps, [](const std::string& s) { return JsonQuote(s); }) +
         ",\"createdAt\":" + JsonQuote(FormatIsoMs(a.created_ms)) + "}";
}

// The JSON object of a request body; InvalidArgument naming `shape` otherwise.
Result<boost::json::object> BodyObject(const HttpRequest& request, const std::string& shape) {
  boost::system::error_code ec;
  boost::json::value body = boost::json::parse(request.body, ec);
  if (ec || !body.is_object()) return Status::InvalidArgument("send " + shape + " as JSON");
  return std::move(body.get_object());
}

// A string member of `o`: nullopt when absent; InvalidArgument when not a string.
Result<std::optional<std::string>> StringMember(const boost::json::object& o, const char* key) {
  const boost::json::value* v = o.if_contains(key);
  if (!v) return std::optional<std::string>();
  if (!v->is_string()) return Status::InvalidArgument(std::string(key) + " must be a string");
  return std::optional<std::string>(std::string(v->get_string()));
}

// role (admin|viewer) and apps (a viewer's, every one an existing app).
Status ReadRoleAndApps(const boost::json::object& o, Catalog& catalog, std::string* role,
                       std::vector<std::string>* apps) {
  auto r = StringMember(o, "role");
  if (!r.ok()) return r.status();
  if (!*r || (**r != "admin" && **r != "viewer")) {
    return Status::InvalidArgument("role must be \"admin\" or \"viewer\"");
  }
  *role = **r;
  apps->clear();
  if (const boost::json::value* v = o.if_contains("apps")) {
    if (!v->is_array()) return Status::InvalidArgument("apps must be an array of app ids");
    for (const boost::json::value& a : v->get_array()) {
      if (!a.is_string()) return Status::InvalidArgument("apps must be an array of app ids");
      apps->emplace_back(a.get_string());
    }
  }
  if (*role == "admin" && !apps->empty()) {
    return Status::InvalidArgument("apps is for viewers: an admin sees every app");
  }
  if (apps->empty()) return Status::Ok();
  auto known = catalog.ListApps();
  if (!known.ok()) return known.status();
  for (const std::string& app : *apps) {
    bool found = false;
    for (const AppInfo& a : *known) found = found || a.app_id == app;
    if (!found) return Status::InvalidArgument("unknown app " + app);
  }
  return Status::Ok();
}

HttpResponse Created(std::string data) { return JsonAnswer(201, "{\"data\":" + data + "}"); }
HttpResponse Answer(std::string data) { return JsonAnswer(200, "{\"data\":" + data + "}"); }

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

Dashboard::Dashboard(SessionStore* sessions, AppRegistry* apps,
                     std::unique_ptr<Catalog> admin_catalog, PasswordCost password_cost)
    : sessions_(sessions),
      apps_(apps),
      admin_catalog_(std::move(admin_catalog)),
      password_cost_(password_cost) {
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
  if (path == "/api/admin" || StartsWith(path, "/api/admin/")) {
    try {
      return respond(Admin(request, path));
    } catch (const std::exception& ex) {
      LogError(std::string("dashboard administration failed: ") + ex.what());
      return respond(ErrorResponse(Status::Internal("internal error")));
    }
  }
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

HttpResponse Dashboard::Admin(const HttpRequest& request, std::string_view path) {
  if (!sessions_ || !admin_catalog_) {
    return ErrorResponse(Status::Unimplemented("this server has no dashboard accounts"));
  }
  auto me = sessions_->Authenticate(CookieValue(request.Header("cookie"), kSessionCookie));
  if (!me.ok()) return ErrorResponse(me.status());
  if (!me->admin()) {
    return ErrorResponse(Status::Forbidden("only admins manage apps, tokens and accounts"));
  }
  const bool reads = request.method == "GET" || request.method == "HEAD";
  if (!reads && !CsrfMatches(*me, request.Header(kCsrfHeader))) {
    return ErrorResponse(Status::Forbidden("missing or wrong CSRF token (X-CSRF-Token)"));
  }
  // The non-empty segments after /api/admin, percent-decoded (an email in a
  // path: `%40` for `@`).
  auto url = boost::urls::parse_origin_form(request.target);
  if (!url) return ErrorResponse(Status::InvalidArgument("malformed path " + std::string(path)));
  std::vector<std::string> seg;
  for (std::string s : url->segments()) {
    if (!s.empty()) seg.push_back(std::move(s));
  }
  seg.erase(seg.begin(), seg.begin() + std::min<size_t>(seg.size(), 2));  // "api", "admin"
  std::lock_guard<std::mutex> lock(admin_mu_);
  if (!seg.empty() && seg[0] == "apps") return AdminApps(request, seg);
  if (!seg.empty() && seg[0] == "accounts") return AdminAccounts(request, seg, *me);
  return ErrorResponse(Status::NotFound("no such endpoint: " + std::string(path)));
}

HttpResponse Dashboard::AdminApps(const HttpRequest& request, const std::vector<std::string>& seg) {
  Catalog& catalog = *admin_catalog_;
  const std::string& method = request.method;
  if (seg.size() == 1) {  // /api/admin/apps
    if (method == "GET") {
      auto apps = catalog.ListApps();
      if (!apps.ok()) return ErrorResponse(apps.status());
      return Answer(JsonArray(*apps, [](const AppInfo& a) {
        return "{\"appId\":" + JsonQuote(a.app_id) + ",\"name\":" + JsonQuote(a.name) +
               ",\"createdAt\":" + JsonQuote(FormatIsoMs(a.created_ms)) +
               ",\"activeTokens\":" + std::to_string(a.active_tokens) +
               ",\"retainDays\":" + std::to_string(a.retain_days) + "}";
      }));
    }
    if (method != "POST") return ErrorResponse(Status::MethodNotAllowed("use GET or POST"));
    auto body = BodyObject(request, "{\"name\": ...}");
    if (!body.ok()) return ErrorResponse(body.status());
    auto name = StringMember(*body, "name");
    if (!name.ok()) return ErrorResponse(name.status());
    if (!*name || (*name)->empty() || (*name)->size() > 200) {
      return ErrorResponse(Status::InvalidArgument("name must be 1 to 200 bytes"));
    }
    auto cred = catalog.CreateApp(**name);
    if (!cred.ok()) return ErrorResponse(cred.status());
    (void)apps_->Reload();  // the new app and token work at once
    return Created("{\"appId\":" + JsonQuote(cred->app_id) + ",\"name\":" + JsonQuote(**name) +
                   ",\"token\":" + JsonQuote(cred->token) + "}");
  }
  const std::string& app = seg[1];
  if (seg.size() == 3 && seg[2] == "tokens") {  // /api/admin/apps/:appId/tokens
    if (method == "GET") {
      auto tokens = catalog.ListTokens(app);
      if (!tokens.ok()) return ErrorResponse(tokens.status());
      return Answer(JsonArray(*tokens, [](const TokenInfo& t) {
        return "{\"prefix\":" + JsonQuote(t.prefix) +
               ",\"createdAt\":" + JsonQuote(FormatIsoMs(t.created_ms)) + ",\"revokedAt\":" +
               (t.revoked_ms ? JsonQuote(FormatIsoMs(*t.revoked_ms)) : std::string("null")) + "}";
      }));
    }
    if (method != "POST") return ErrorResponse(Status::MethodNotAllowed("use GET or POST"));
    auto cred = catalog.CreateToken(app);
    if (!cred.ok()) return ErrorResponse(cred.status());
    (void)apps_->Reload();
    return Created("{\"appId\":" + JsonQuote(cred->app_id) +
                   ",\"token\":" + JsonQuote(cred->token) +
                   ",\"prefix\":" + JsonQuote(cred->token.substr(0, kTokenPrefixChars)) + "}");
  }
  if (seg.size() == 4 && seg[2] == "tokens") {  // /api/admin/apps/:appId/tokens/:prefix
    if (method != "DELETE") return ErrorResponse(Status::MethodNotAllowed("use DELETE"));
    // Only a token of this app, named by the prefix the list shows.
    auto tokens = catalog.ListTokens(app);
    if (!tokens.ok()) return ErrorResponse(tokens.status());
    bool active = false;
    for (const TokenInfo& t : *tokens) active = active || (t.prefix == seg[3] && !t.revoked_ms);
    if (!active) {
      return ErrorResponse(Status::NotFound("app " + app + " has no active token " + seg[3]));
    }
    auto revoked = catalog.RevokeTokens(seg[3]);
    if (!revoked.ok()) return ErrorResponse(revoked.status());
    (void)apps_->Reload();  // refused from now on
    return Answer("{\"revoked\":" + std::to_string(*revoked) + "}");
  }
  return ErrorResponse(Status::NotFound("no such endpoint"));
}

HttpResponse Dashboard::AdminAccounts(const HttpRequest& request,
                                      const std::vector<std::string>& seg, const Principal& me) {
  Catalog& catalog = *admin_catalog_;
  const std::string& method = request.method;
  if (seg.size() == 1) {  // /api/admin/accounts
    if (method == "GET") {
      auto accounts = catalog.ListAccounts();
      if (!accounts.ok()) return ErrorResponse(accounts.status());
      return Answer(JsonArray(*accounts, AccountJson));
    }
    if (method != "POST") return ErrorResponse(Status::MethodNotAllowed("use GET or POST"));
    auto body = BodyObject(request, "{\"email\", \"role\", \"apps\", \"password\"}");
    if (!body.ok()) return ErrorResponse(body.status());
    auto email_in = StringMember(*body, "email");
    if (!email_in.ok()) return ErrorResponse(email_in.status());
    auto email = NormalizeEmail(email_in->value_or(""));
    if (!email.ok()) return ErrorResponse(email.status());
    Account account{*email, "", {}, "", NowMs()};
    if (Status st = ReadRoleAndApps(*body, catalog, &account.role, &account.apps); !st.ok()) {
      return ErrorResponse(st);
    }
    auto password = StringMember(*body, "password");
    if (!password.ok()) return ErrorResponse(password.status());
    if (Status st = CheckPasswordRules(password->value_or("")); !st.ok()) return ErrorResponse(st);
    auto hash = HashPassword(**password, password_cost_);
    if (!hash.ok()) return ErrorResponse(hash.status());
    account.password_hash = *hash;
    if (Status st = catalog.AddAccount(account); !st.ok()) return ErrorResponse(st);
    return Created(AccountJson(account));
  }
  if (seg.size() != 2) return ErrorResponse(Status::NotFound("no such endpoint"));
  auto email = NormalizeEmail(seg[1]);  // /api/admin/accounts/:email
  if (!email.ok()) return ErrorResponse(email.status());
  if (method == "PATCH") {
    if (*email == me.email) {
      return ErrorResponse(
          Status::InvalidArgument("you cannot change your own role or apps; ask another admin"));
    }
    auto body = BodyObject(request, "{\"role\", \"apps\"}");
    if (!body.ok()) return ErrorResponse(body.status());
    std::string role;
    std::vector<std::string> apps;
    if (Status st = ReadRoleAndApps(*body, catalog, &role, &apps); !st.ok()) {
      return ErrorResponse(st);
    }
    auto changed = catalog.UpdateAccount(*email, role, apps);
    if (!changed.ok()) return ErrorResponse(changed.status());
    if (!*changed) return ErrorResponse(Status::NotFound("no account " + *email));
    auto account = catalog.FindAccount(*email);
    if (!account.ok()) return ErrorResponse(account.status());
    if (!account->has_value()) return ErrorResponse(Status::NotFound("no account " + *email));
    return Answer(AccountJson(**account));
  }
  if (method == "DELETE") {
    if (*email == me.email) {
      return ErrorResponse(
          Status::InvalidArgument("you cannot remove your own account; ask another admin"));
    }
    auto removed = catalog.RemoveAccount(*email);
    if (!removed.ok()) return ErrorResponse(removed.status());
    if (!*removed) return ErrorResponse(Status::NotFound("no account " + *email));
    return Answer("{\"removed\":" + JsonQuote(*email) + "}");
  }
  return ErrorResponse(Status::MethodNotAllowed("use PATCH or DELETE"));
}

}  // namespace nucleon
