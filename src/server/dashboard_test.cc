#include "server/dashboard.h"

#include <gtest/gtest.h>

#include "core/testing/temp_dir.h"
#include "server/password_hash.h"
#include "server/web_assets.h"
#include "store/sqlite/sqlite_catalog.h"

namespace nucleon {
namespace {

HttpRequest Req(std::string method, std::string target,
                std::vector<std::pair<std::string, std::string>> headers, std::string body) {
  HttpRequest r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.headers = std::move(headers);
  r.body = std::move(body);
  return r;
}

TEST(CookieValueTest, FindsTheNamedCookie) {
  EXPECT_EQ(CookieValue("nucleon_session=abc", "nucleon_session"), "abc");
  EXPECT_EQ(CookieValue("a=1; nucleon_session=abc; b=2", "nucleon_session"), "abc");
  EXPECT_EQ(CookieValue("xnucleon_session=abc", "nucleon_session"), "");
  EXPECT_EQ(CookieValue("nucleon_session", "nucleon_session"), "");
  EXPECT_EQ(CookieValue("", "nucleon_session"), "");
}

class DashboardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto admin = std::move(OpenSqliteCatalog(dir_.path())).value();
    app1_ = admin->CreateApp("one")->app_id;
    app2_ = admin->CreateApp("two")->app_id;
    const std::string hash = *HashPassword("password-1", PasswordCost::kMinimal);
    ASSERT_TRUE(admin->AddAccount(Account{"admin@example.com", "admin", {}, hash, 1}).ok());
    ASSERT_TRUE(admin->AddAccount(Account{"viewer@example.com", "viewer", {app1_}, hash, 1}).ok());
    registry_ = std::make_unique<AppRegistry>(std::move(OpenSqliteCatalog(dir_.path())).value());
    ASSERT_TRUE(registry_->Reload().ok());
    SessionStoreOptions options;
    options.dummy_cost = PasswordCost::kMinimal;
    sessions_ = std::make_unique<SessionStore>(std::move(OpenSqliteCatalog(dir_.path())).value(),
                                               options, [] { return int64_t{1}; });
    dashboard_ = std::make_unique<Dashboard>(sessions_.get(), registry_.get(),
                                             std::move(OpenSqliteCatalog(dir_.path())).value(),
                                             PasswordCost::kMinimal);
  }

  HttpResponse Call(const HttpRequest& request) {
    HttpResponse out;
    dashboard_->Handle(request, request.target, [&out](HttpResponse r) { out = std::move(r); });
    return out;
  }

  // Signs in; returns {cookie header, csrf token}.
  std::pair<std::string, std::string> SignIn(const std::string& email) {
    HttpRequest r = Req("POST", "/api/session", {},
                        "{\"email\":\"" + email + "\",\"password\":\"password-1\"}");
    r.client_key = email;
    HttpResponse answer = Call(r);
    EXPECT_EQ(answer.status, 200) << answer.body;
    std::string cookie;
    for (const auto& [k, v] : answer.headers) {
      if (k == "Set-Cookie") cookie = v;
    }
    EXPECT_NE(cookie.find("HttpOnly"), std::string::npos) << cookie;
    EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos) << cookie;
    EXPECT_EQ(cookie.find("Secure"), std::string::npos) << cookie;  // plain HTTP
    const size_t csrf_at = answer.body.find("\"csrfToken\":\"") + 13;
    return {cookie.substr(0, cookie.find(';')),
            answer.body.substr(csrf_at, answer.body.find('"', csrf_at) - csrf_at)};
  }

  static HttpRequest ApiCall(std::string method, std::string cookie, std::string csrf = "") {
    HttpRequest r =
        Req(std::move(method), "/api/v1/apps/x/users", {{"cookie", std::move(cookie)}}, "");
    if (!csrf.empty()) r.headers.emplace_back("x-csrf-token", std::move(csrf));
    return r;
  }

  TempDir dir_;
  std::string app1_, app2_;
  std::unique_ptr<AppRegistry> registry_;
  std::unique_ptr<SessionStore> sessions_;
  std::unique_ptr<Dashboard> dashboard_;
};

TEST_F(DashboardTest, WrongPasswordIsRefused) {
  HttpRequest r =
      Req("POST", "/api/session", {}, R"({"email":"admin@example.com","password":"nope-nope"})");
  HttpResponse answer = Call(r);
  EXPECT_EQ(answer.status, 401);
  for (const auto& [k, v] : answer.headers) EXPECT_NE(k, "Set-Cookie");
  EXPECT_EQ(Call(Req("POST", "/api/session", {}, "not json")).status, 400);
}

TEST_F(DashboardTest, SessionAnswerListsTheGrantedApps) {
  auto [cookie, csrf] = SignIn("viewer@example.com");
  HttpResponse who = Call(Req("GET", "/api/session", {{"cookie", cookie}}, ""));
  EXPECT_EQ(who.status, 200);
  EXPECT_NE(who.body.find(app1_), std::string::npos);
  EXPECT_EQ(who.body.find(app2_), std::string::npos);
  EXPECT_NE(who.body.find("\"role\":\"viewer\""), std::string::npos);
  EXPECT_EQ(Call(Req("GET", "/api/session", {}, "")).status, 401);
}

TEST_F(DashboardTest, SessionAccessForApiCalls) {
  auto [admin, admin_csrf] = SignIn("admin@example.com");
  auto [viewer, viewer_csrf] = SignIn("viewer@example.com");
  // No cookie: the token decides.
  EXPECT_FALSE(dashboard_->SessionAccess(ApiCall("GET", ""), app1_, false).has_value());
  EXPECT_EQ(
      dashboard_->SessionAccess(ApiCall("GET", "nucleon_session=forged"), app1_, false)->code(),
      StatusCode::kUnauthenticated);
  EXPECT_TRUE(dashboard_->SessionAccess(ApiCall("GET", admin), app2_, false)->ok());
  EXPECT_EQ(dashboard_->SessionAccess(ApiCall("GET", admin), "missing", false)->code(),
            StatusCode::kNotFound);
  EXPECT_TRUE(dashboard_->SessionAccess(ApiCall("GET", viewer), app1_, false)->ok());
  EXPECT_EQ(dashboard_->SessionAccess(ApiCall("GET", viewer), app2_, false)->code(),
            StatusCode::kNotFound);
  // State-changing calls need the session's CSRF token.
  EXPECT_EQ(dashboard_->SessionAccess(ApiCall("DELETE", admin), app1_, true)->code(),
            StatusCode::kForbidden);
  EXPECT_EQ(dashboard_->SessionAccess(ApiCall("DELETE", admin, viewer_csrf), app1_, true)->code(),
            StatusCode::kForbidden);
  EXPECT_TRUE(dashboard_->SessionAccess(ApiCall("DELETE", admin, admin_csrf), app1_, true)->ok());
  EXPECT_EQ(dashboard_->SessionAccess(ApiCall("POST", viewer), app1_, false)->code(),
            StatusCode::kForbidden);
  // A viewer never deletes.
  EXPECT_EQ(dashboard_->SessionAccess(ApiCall("DELETE", viewer, viewer_csrf), app1_, true)->code(),
            StatusCode::kForbidden);
}

TEST_F(DashboardTest, SignOutNeedsTheCsrfTokenAndEndsTheSession) {
  auto [cookie, csrf] = SignIn("admin@example.com");
  EXPECT_EQ(Call(Req("DELETE", "/api/session", {{"cookie", cookie}}, "")).status, 403);
  EXPECT_EQ(Call(Req("GET", "/api/session", {{"cookie", cookie}}, "")).status, 200);
  HttpResponse out =
      Call(Req("DELETE", "/api/session", {{"cookie", cookie}, {"x-csrf-token", csrf}}, ""));
  EXPECT_EQ(out.status, 200);
  EXPECT_EQ(Call(Req("GET", "/api/session", {{"cookie", cookie}}, "")).status, 401);
}

// An admin call with the session's cookie (and CSRF token when given).
HttpRequest AdminCall(std::string method, std::string target, const std::string& cookie,
                      const std::string& csrf, std::string body = "") {
  std::vector<std::pair<std::string, std::string>> headers = {{"cookie", cookie}};
  if (!csrf.empty()) headers.emplace_back("x-csrf-token", csrf);
  return Req(std::move(method), std::move(target), std::move(headers), std::move(body));
}

// The value of the first string member `key` in a JSON text.
std::string Member(const std::string& json, const std::string& key) {
  const std::string head = "\"" + key + "\":\"";
  const size_t at = json.find(head);
  if (at == std::string::npos) return "";
  const size_t from = at + head.size();
  return json.substr(from, json.find('"', from) - from);
}

TEST_F(DashboardTest, AdminEndpointsAreForSignedInAdminsWithTheCsrfToken) {
  auto [admin, admin_csrf] = SignIn("admin@example.com");
  auto [viewer, viewer_csrf] = SignIn("viewer@example.com");
  // Not signed in: 401; a viewer: 403, reads and changes alike.
  EXPECT_EQ(Call(Req("GET", "/api/admin/apps", {}, "")).status, 401);
  EXPECT_EQ(Call(AdminCall("GET", "/api/admin/apps", viewer, "")).status, 403);
  EXPECT_EQ(Call(AdminCall("GET", "/api/admin/accounts", viewer, "")).status, 403);
  HttpResponse refused =
      Call(AdminCall("POST", "/api/admin/apps", viewer, viewer_csrf, R"({"name":"x"})"));
  EXPECT_EQ(refused.status, 403);
  EXPECT_NE(refused.body.find("\"error\""), std::string::npos) << refused.body;
  // An admin without (or with another session's) CSRF token changes nothing.
  EXPECT_EQ(Call(AdminCall("POST", "/api/admin/apps", admin, "", R"({"name":"x"})")).status, 403);
  EXPECT_EQ(
      Call(AdminCall("POST", "/api/admin/apps", admin, viewer_csrf, R"({"name":"x"})")).status,
      403);
  HttpResponse apps = Call(AdminCall("GET", "/api/admin/apps", admin, ""));
  EXPECT_EQ(apps.status, 200);
  EXPECT_EQ(apps.body.find("\"name\":\"x\""), std::string::npos) << apps.body;
  EXPECT_EQ(Call(AdminCall("GET", "/api/admin/nothing", admin, "")).status, 404);
}

TEST_F(DashboardTest, AdminCreatesAnAppAndManagesItsTokens) {
  auto [admin, csrf] = SignIn("admin@example.com");
  HttpResponse created =
      Call(AdminCall("POST", "/api/admin/apps", admin, csrf, R"({"name":"Three"})"));
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string app = Member(created.body, "appId");
  const std::string token = Member(created.body, "token");
  ASSERT_FALSE(app.empty());
  EXPECT_EQ(registry_->AppForToken(token), app) << "works at once";
  EXPECT_EQ(Call(AdminCall("POST", "/api/admin/apps", admin, csrf, R"({"name":""})")).status, 400);
  EXPECT_EQ(Call(AdminCall("POST", "/api/admin/apps", admin, csrf, "nope")).status, 400);

  HttpResponse second = Call(AdminCall("POST", "/api/admin/apps/" + app + "/tokens", admin, csrf));
  ASSERT_EQ(second.status, 201) << second.body;
  const std::string token2 = Member(second.body, "token");
  EXPECT_EQ(Member(second.body, "prefix"), token2.substr(0, kTokenPrefixChars));
  HttpResponse list = Call(AdminCall("GET", "/api/admin/apps/" + app + "/tokens", admin, ""));
  ASSERT_EQ(list.status, 200);
  EXPECT_NE(list.body.find(token.substr(0, kTokenPrefixChars)), std::string::npos);
  EXPECT_EQ(list.body.find(token), std::string::npos) << "never the whole token";
  EXPECT_EQ(Call(AdminCall("GET", "/api/admin/apps/missing/tokens", admin, "")).status, 404);

  const std::string revoke =
      "/api/admin/apps/" + app + "/tokens/" + token.substr(0, kTokenPrefixChars);
  EXPECT_EQ(Call(AdminCall("DELETE", revoke, admin, "")).status, 403) << "CSRF";
  EXPECT_EQ(registry_->AppForToken(token), app);
  // Another app's token is not revoked through this app.
  EXPECT_EQ(
      Call(AdminCall("DELETE",
                     "/api/admin/apps/" + app1_ + "/tokens/" + token.substr(0, kTokenPrefixChars),
                     admin, csrf))
          .status,
      404);
  HttpResponse revoked = Call(AdminCall("DELETE", revoke, admin, csrf));
  EXPECT_EQ(revoked.status, 200) << revoked.body;
  EXPECT_NE(revoked.body.find("\"revoked\":1"), std::string::npos);
  EXPECT_EQ(registry_->AppForToken(token), "") << "refused at once";
  EXPECT_EQ(registry_->AppForToken(token2), app);
  EXPECT_EQ(Call(AdminCall("DELETE", revoke, admin, csrf)).status, 404) << "already revoked";
  list = Call(AdminCall("GET", "/api/admin/apps/" + app + "/tokens", admin, ""));
  EXPECT_NE(list.body.find("\"revokedAt\":\""), std::string::npos) << list.body;
  EXPECT_NE(list.body.find("\"revokedAt\":null"), std::string::npos) << list.body;
}

TEST_F(DashboardTest, AdminManagesAccounts) {
  auto [admin, csrf] = SignIn("admin@example.com");
  HttpResponse list = Call(AdminCall("GET", "/api/admin/accounts", admin, ""));
  ASSERT_EQ(list.status, 200);
  EXPECT_NE(list.body.find("viewer@example.com"), std::string::npos);
  EXPECT_EQ(list.body.find("password"), std::string::npos) << "hashes never leave";

  const std::string add = R"({"email":" New@Example.com","role":"viewer","apps":[")" + app1_ +
                          R"("],"password":"password-2"})";
  HttpResponse added = Call(AdminCall("POST", "/api/admin/accounts", admin, csrf, add));
  ASSERT_EQ(added.status, 201) << added.body;
  EXPECT_EQ(Member(added.body, "email"), "new@example.com");
  EXPECT_EQ(Call(AdminCall("POST", "/api/admin/accounts", admin, csrf, add)).status, 400)
      << "taken";
  for (const std::string& bad : std::vector<std::string>{
           R"({"email":"a@b.c","role":"owner","password":"password-2"})",
           R"({"email":"a@b.c","role":"viewer","apps":["nope"],"password":"password-2"})",
           R"({"email":"a@b.c","role":"admin","apps":[")" + app1_ +
               R"("],"password":"password-2"})",
           R"({"email":"a@b.c","role":"viewer","password":"short"})",
           R"({"email":"no-at-sign","role":"viewer","password":"password-2"})"}) {
    EXPECT_EQ(Call(AdminCall("POST", "/api/admin/accounts", admin, csrf, bad)).status, 400) << bad;
  }
  // The new account signs in and sees its app only.
  HttpRequest sign_in =
      Req("POST", "/api/session", {}, R"({"email":"new@example.com","password":"password-2"})");
  sign_in.client_key = "new";
  ASSERT_EQ(Call(sign_in).status, 200);

  const std::string one = "/api/admin/accounts/new%40example.com";
  HttpResponse promoted = Call(AdminCall("PATCH", one, admin, csrf, R"({"role":"admin"})"));
  ASSERT_EQ(promoted.status, 200) << promoted.body;
  EXPECT_NE(promoted.body.find("\"role\":\"admin\",\"apps\":[]"), std::string::npos)
      << promoted.body;
  EXPECT_EQ(Call(AdminCall("PATCH", one, admin, "", R"({"role":"viewer"})")).status, 403);
  EXPECT_EQ(Call(AdminCall("PATCH", "/api/admin/accounts/admin%40example.com", admin, csrf,
                           R"({"role":"viewer"})"))
                .status,
            400)
      << "not one's own role";
  EXPECT_EQ(
      Call(AdminCall("DELETE", "/api/admin/accounts/admin%40example.com", admin, csrf)).status, 400)
      << "not one's own account";
  EXPECT_EQ(Call(AdminCall("DELETE", one, admin, csrf)).status, 200);
  EXPECT_EQ(Call(AdminCall("DELETE", one, admin, csrf)).status, 404);
  EXPECT_EQ(Call(sign_in).status, 401) << "removed";
}

TEST_F(DashboardTest, ServesPagesToBrowsersOnly) {
  if (WebAssets().empty()) GTEST_SKIP() << "built without the dashboard";
  HttpRequest html = Req("GET", "/", {{"accept", "text/html,*/*"}}, "");
  EXPECT_TRUE(dashboard_->Serves(html, "/"));
  EXPECT_TRUE(dashboard_->Serves(html, "/live"));
  EXPECT_FALSE(dashboard_->Serves(html, "/api/v1/apps"));
  EXPECT_FALSE(dashboard_->Serves(html, "/healthz"));
  EXPECT_FALSE(dashboard_->Serves(html, "/assets/missing.js"));
  EXPECT_FALSE(dashboard_->Serves(Req("GET", "/", {}, ""), "/"));  // a script: JSON
  EXPECT_FALSE(dashboard_->Serves(Req("POST", "/", {{"accept", "text/html"}}, ""), "/"));
  HttpRequest page =
      Req("GET", "/live", {{"accept", "text/html"}, {"accept-encoding", "gzip"}}, "");
  HttpResponse index = Call(page);
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.content_type, "text/html; charset=utf-8");
  bool no_cache = false, csp = false;
  for (const auto& [k, v] : index.headers) {
    no_cache = no_cache || (k == "Cache-Control" && v == "no-cache");
    csp = csp || k == "Content-Security-Policy";
  }
  EXPECT_TRUE(no_cache && csp);
  for (const WebAsset& a : WebAssets()) {
    if (a.path.rfind("/assets/", 0) != 0) continue;
    EXPECT_TRUE(dashboard_->Serves(Req("GET", std::string(a.path), {}, ""), a.path));
    HttpResponse asset = Call(Req("GET", std::string(a.path), {}, ""));
    EXPECT_EQ(asset.body, a.data);  // no Accept-Encoding: as stored
    bool immutable = false;
    for (const auto& [k, v] : asset.headers) {
      immutable = immutable || (k == "Cache-Control" && v.find("immutable") != std::string::npos);
    }
    EXPECT_TRUE(immutable) << a.path;
  }
}

}  // namespace
}  // namespace nucleon
