#include "server/session_store.h"

#include <gtest/gtest.h>

#include "core/testing/temp_dir.h"
#include "server/password_hash.h"
#include "store/sqlite/sqlite_catalog.h"

namespace nucleon {
namespace {

TEST(PasswordHashTest, VerifiesTheRightPasswordOnly) {
  auto hash = HashPassword("correct horse", PasswordCost::kMinimal);
  ASSERT_TRUE(hash.ok()) << hash.status().ToString();
  EXPECT_EQ(hash->rfind("$argon2id$", 0), 0u) << *hash;
  EXPECT_TRUE(VerifyPassword(*hash, "correct horse"));
  EXPECT_FALSE(VerifyPassword(*hash, "correct hors"));
  EXPECT_FALSE(VerifyPassword("", "correct horse"));
  EXPECT_FALSE(VerifyPassword("$argon2id$garbage", "correct horse"));
  // Salted: the same password hashes differently each time.
  EXPECT_NE(*HashPassword("correct horse", PasswordCost::kMinimal), *hash);
}

TEST(PasswordHashTest, RefusesShortPasswords) {
  EXPECT_EQ(HashPassword("short").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckPasswordRules(std::string(1025, 'x')).code(), StatusCode::kInvalidArgument);
}

TEST(NormalizeEmailTest, LowercasesTrimsAndRefusesJunk) {
  EXPECT_EQ(*NormalizeEmail("  Ada@Example.COM\n"), "ada@example.com");
  EXPECT_FALSE(NormalizeEmail("ada").ok());
  EXPECT_FALSE(NormalizeEmail("@example.com").ok());
  EXPECT_FALSE(NormalizeEmail("ada@").ok());
  EXPECT_FALSE(NormalizeEmail("a da@example.com").ok());
  EXPECT_FALSE(NormalizeEmail("a,b@example.com").ok());
}

class SessionStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    admin_catalog_ = std::move(OpenSqliteCatalog(dir_.path())).value();
    AddAccount("admin@example.com", "admin", {}, "admin-password");
    AddAccount("viewer@example.com", "viewer", {"app1"}, "viewer-password");
    SessionStoreOptions options;
    options.idle_ms = 1000;
    options.max_age_ms = 5000;
    options.login_limit = RateLimiterOptions{0.001, 3, 100};
    options.dummy_cost = PasswordCost::kMinimal;
    sessions_ = std::make_unique<SessionStore>(std::move(OpenSqliteCatalog(dir_.path())).value(),
                                               options, [this] { return now_; });
  }

  void AddAccount(const std::string& email, const std::string& role, std::vector<std::string> apps,
                  const std::string& password) {
    auto hash = HashPassword(password, PasswordCost::kMinimal);
    ASSERT_TRUE(hash.ok());
    ASSERT_TRUE(admin_catalog_->AddAccount(Account{email, role, std::move(apps), *hash, 1}).ok());
  }

  Result<SessionStore::SignedIn> SignIn(const std::string& email, const std::string& password,
                                        const std::string& client = "client") {
    int retry = 0;
    return sessions_->SignIn(email, password, client, &retry);
  }

  TempDir dir_;
  std::unique_ptr<Catalog> admin_catalog_;  // plays the admin CLI
  std::unique_ptr<SessionStore> sessions_;
  int64_t now_ = 1'000'000;
};

TEST_F(SessionStoreTest, SignsInAndAuthenticates) {
  auto in = SignIn("Admin@Example.com", "admin-password");
  ASSERT_TRUE(in.ok()) << in.status().ToString();
  EXPECT_EQ(in->principal.email, "admin@example.com");
  EXPECT_TRUE(in->principal.admin());
  EXPECT_TRUE(in->principal.CanRead("anything"));
  EXPECT_GE(in->session_id.size(), 40u);
  EXPECT_GE(in->principal.csrf_token.size(), 40u);
  EXPECT_NE(in->session_id, in->principal.csrf_token);
  auto who = sessions_->Authenticate(in->session_id);
  ASSERT_TRUE(who.ok());
  EXPECT_EQ(who->csrf_token, in->principal.csrf_token);
  EXPECT_TRUE(CsrfMatches(*who, in->principal.csrf_token));
  EXPECT_FALSE(CsrfMatches(*who, ""));
  EXPECT_FALSE(CsrfMatches(*who, in->session_id));
}

TEST_F(SessionStoreTest, WrongPasswordAndUnknownEmailLookTheSame) {
  auto wrong = SignIn("admin@example.com", "not-the-password");
  auto unknown = SignIn("nobody@example.com", "admin-password");
  EXPECT_EQ(wrong.status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(unknown.status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(wrong.status().message(), unknown.status().message());
  EXPECT_EQ(sessions_->size(), 0u);
}

TEST_F(SessionStoreTest, ViewerSeesGrantedAppsOnly) {
  auto in = SignIn("viewer@example.com", "viewer-password");
  ASSERT_TRUE(in.ok());
  EXPECT_FALSE(in->principal.admin());
  EXPECT_TRUE(in->principal.CanRead("app1"));
  EXPECT_FALSE(in->principal.CanRead("app2"));
}

TEST_F(SessionStoreTest, SignInsAreRateLimitedPerClientAndPerEmail) {
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(SignIn("admin@example.com", "wrong-password").ok());
  int retry = 0;
  auto limited = sessions_->SignIn("admin@example.com", "admin-password", "client", &retry);
  EXPECT_EQ(limited.status().code(), StatusCode::kRateLimited);
  EXPECT_GE(retry, 1);
  // Another address is still refused for this email (the email's own bucket).
  EXPECT_EQ(SignIn("admin@example.com", "admin-password", "other").status().code(),
            StatusCode::kRateLimited);
  // ...but may sign in to another account.
  EXPECT_TRUE(SignIn("viewer@example.com", "viewer-password", "other").ok());
}

TEST_F(SessionStoreTest, SessionsEndWhenIdleOrTooOld) {
  auto in = SignIn("admin@example.com", "admin-password");
  ASSERT_TRUE(in.ok());
  for (int i = 0; i < 4; ++i) {
    now_ += 900;
    ASSERT_TRUE(sessions_->Authenticate(in->session_id).ok()) << i;
  }
  now_ += 1500;  // past max_age since sign-in
  EXPECT_EQ(sessions_->Authenticate(in->session_id).status().code(), StatusCode::kUnauthenticated);
  auto again = SignIn("viewer@example.com", "viewer-password");
  ASSERT_TRUE(again.ok());
  now_ += 1001;  // idle
  EXPECT_FALSE(sessions_->Authenticate(again->session_id).ok());
}

TEST_F(SessionStoreTest, SignOutRemovalAndNewPasswordEndSessions) {
  auto a = SignIn("admin@example.com", "admin-password");
  auto v = SignIn("viewer@example.com", "viewer-password");
  ASSERT_TRUE(a.ok() && v.ok());
  sessions_->SignOut(a->session_id);
  EXPECT_FALSE(sessions_->Authenticate(a->session_id).ok());

  auto again = SignIn("admin@example.com", "admin-password", "c2");
  ASSERT_TRUE(again.ok());
  auto hash = HashPassword("a-new-password", PasswordCost::kMinimal);
  ASSERT_TRUE(admin_catalog_->SetPasswordHash("admin@example.com", *hash).ok());
  EXPECT_FALSE(sessions_->Authenticate(again->session_id).ok());

  ASSERT_TRUE(*admin_catalog_->RemoveAccount("viewer@example.com"));
  EXPECT_FALSE(sessions_->Authenticate(v->session_id).ok());
  EXPECT_FALSE(sessions_->Authenticate("").ok());
  EXPECT_FALSE(sessions_->Authenticate("made-up").ok());
}

TEST_F(SessionStoreTest, CatalogKeepsAccounts) {
  auto hash = HashPassword("third-password", PasswordCost::kMinimal);
  EXPECT_EQ(admin_catalog_->AddAccount(Account{"admin@example.com", "admin", {}, *hash, 1}).code(),
            StatusCode::kInvalidArgument);
  auto list = admin_catalog_->ListAccounts();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].email, "viewer@example.com");
  EXPECT_EQ((*list)[1].apps, std::vector<std::string>{"app1"});
  EXPECT_FALSE(*admin_catalog_->RemoveAccount("nobody@example.com"));
  EXPECT_FALSE(*admin_catalog_->SetPasswordHash("nobody@example.com", *hash));
  EXPECT_FALSE(admin_catalog_->FindAccount("nobody@example.com")->has_value());
}

}  // namespace
}  // namespace nucleon
