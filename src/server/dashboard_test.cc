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
    dashboard_ = std::make_unique<Dashboard>(sessions_.get(), registry_.get());
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
