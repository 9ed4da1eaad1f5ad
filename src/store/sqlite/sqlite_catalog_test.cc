#include "store/sqlite/sqlite_catalog.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "core/testing/temp_dir.h"

namespace nucleon {
namespace {

class SqliteCatalogTest : public ::testing::Test {
 protected:
  void SetUp() override { catalog_ = OpenCatalog(); }

  std::unique_ptr<Catalog> OpenCatalog() {
    auto catalog = OpenSqliteCatalog(dir_.path());
    EXPECT_TRUE(catalog.ok()) << catalog.status().ToString();
    return catalog.ok() ? std::move(catalog).value() : nullptr;
  }

  NewCredential CreateApp(const std::string& name) {
    auto cred = catalog_->CreateApp(name);
    EXPECT_TRUE(cred.ok()) << cred.status().ToString();
    return cred.ok() ? *cred : NewCredential{};
  }

  int Revoke(const std::string& prefix) {
    auto n = catalog_->RevokeTokens(prefix);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.ok() ? *n : -1;
  }

  std::shared_ptr<const CatalogSnapshot> Load() {
    auto snap = catalog_->Load();
    EXPECT_TRUE(snap.ok()) << snap.status().ToString();
    return snap.ok() ? *snap : std::make_shared<CatalogSnapshot>();
  }

  // Every value of every row of every table in catalog.db, as text.
  std::vector<std::string> AllStoredText() {
    std::vector<std::string> out;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2((dir_.path() + "/catalog.db").c_str(), &db, SQLITE_OPEN_READONLY,
                        nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "cannot open catalog.db";
      sqlite3_close(db);
      return out;
    }
    std::vector<std::string> tables;
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table'", -1, &stmt,
                       nullptr);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
    }
    sqlite3_finalize(stmt);
    for (const std::string& table : tables) {
      const std::string sql = "SELECT * FROM \"" + table + "\"";
      sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr);
      while (sqlite3_step(stmt) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
          const unsigned char* text = sqlite3_column_text(stmt, c);
          if (text) out.emplace_back(reinterpret_cast<const char*>(text));
        }
      }
      sqlite3_finalize(stmt);
    }
    sqlite3_close(db);
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(SqliteCatalogTest, CreateAppPrintsAnIdAndAToken) {
  NewCredential cred = CreateApp("My App");
  EXPECT_TRUE(std::regex_match(cred.app_id, std::regex("[0-9a-f]{24}"))) << cred.app_id;
  EXPECT_TRUE(std::regex_match(cred.token, std::regex("nct_[A-Za-z0-9_-]{43}"))) << cred.token;
  NewCredential other = CreateApp("My App");  // names need not be unique
  EXPECT_NE(other.app_id, cred.app_id);
  EXPECT_NE(other.token, cred.token);
}

TEST_F(SqliteCatalogTest, TokensAreStoredOnlyAsHashes) {
  NewCredential cred = CreateApp("a");
  auto second = catalog_->CreateToken(cred.app_id);
  ASSERT_TRUE(second.ok());
  std::vector<std::string> stored = AllStoredText();
  ASSERT_FALSE(stored.empty());
  bool hash_found = false;
  for (const std::string& value : stored) {
    for (const std::string& token : {cred.token, second->token}) {
      // Neither the token nor anything past its revocation prefix is stored.
      EXPECT_EQ(value.find(token), std::string::npos) << value;
      EXPECT_EQ(value.find(token.substr(kTokenPrefixChars)), std::string::npos) << value;
    }
    hash_found = hash_found || value == TokenHashHex(cred.token);
  }
  EXPECT_TRUE(hash_found) << "the token's SHA-256 is what identifies it";
  EXPECT_EQ(TokenHashHex(cred.token).size(), 64u);
}

TEST_F(SqliteCatalogTest, ListApps) {
  auto empty = catalog_->ListApps();
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());

  NewCredential a = CreateApp("first");
  NewCredential b = CreateApp("second");
  ASSERT_TRUE(catalog_->CreateToken(b.app_id).ok());
  auto apps = catalog_->ListApps();
  ASSERT_TRUE(apps.ok());
  ASSERT_EQ(apps->size(), 2u);
  EXPECT_EQ((*apps)[0].app_id, a.app_id);
  EXPECT_EQ((*apps)[0].name, "first");
  EXPECT_EQ((*apps)[0].active_tokens, 1);
  EXPECT_GT((*apps)[0].created_ms, 0);
  EXPECT_EQ((*apps)[1].app_id, b.app_id);
  EXPECT_EQ((*apps)[1].name, "second");
  EXPECT_EQ((*apps)[1].active_tokens, 2);

  EXPECT_EQ(Revoke(a.token), 1);
  apps = catalog_->ListApps();
  ASSERT_TRUE(apps.ok());
  EXPECT_EQ((*apps)[0].active_tokens, 0);
  EXPECT_EQ((*apps)[1].active_tokens, 2);
}

TEST_F(SqliteCatalogTest, CreateTokenForUnknownAppIsNotFound) {
  auto token = catalog_->CreateToken("0123456789abcdef01234567");
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), StatusCode::kNotFound);
  // The failed transaction was rolled back: the catalog still works.
  NewCredential cred = CreateApp("after");
  auto next = catalog_->CreateToken(cred.app_id);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->app_id, cred.app_id);
  EXPECT_NE(next->token, cred.token);
}

TEST_F(SqliteCatalogTest, RevokeNeedsAtLeastEightCharacters) {
  NewCredential cred = CreateApp("a");
  for (const std::string& prefix : {std::string(), std::string("nct_"), cred.token.substr(0, 7)}) {
    auto n = catalog_->RevokeTokens(prefix);
    ASSERT_FALSE(n.ok()) << prefix;
    EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(Load()->token_apps.count(TokenHashHex(cred.token)), 1u);
}

TEST_F(SqliteCatalogTest, RevokeByPrefix) {
  NewCredential a = CreateApp("a");
  NewCredential b = CreateApp("b");
  const std::string unused = a.token[4] == 'z' || b.token[4] == 'z' ? "nct_yyyy" : "nct_zzzz";
  EXPECT_EQ(Revoke(unused), 0);
  EXPECT_EQ(Revoke(a.token.substr(0, 8)), 1);
  EXPECT_EQ(Revoke(a.token.substr(0, 8)), 0);  // already revoked
  auto snap = Load();
  EXPECT_EQ(snap->token_apps.count(TokenHashHex(a.token)), 0u);
  EXPECT_EQ(snap->token_apps.count(TokenHashHex(b.token)), 1u);
  EXPECT_EQ(Revoke(b.token.substr(0, kTokenPrefixChars)), 1);
  EXPECT_TRUE(Load()->token_apps.empty());
}

TEST_F(SqliteCatalogTest, RevokeByPrefixLongerThanTheStoredPrefixIsRefused) {
  // Only 12 characters are stored: a longer prefix that is not the whole token
  // cannot be checked, so it is refused rather than silently matching nothing.
  NewCredential a = CreateApp("a");
  auto n = catalog_->RevokeTokens(a.token.substr(0, 20));
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Load()->token_apps.count(TokenHashHex(a.token)), 1u);
}

TEST_F(SqliteCatalogTest, RevokeByWholeToken) {
  NewCredential a = CreateApp("a");
  auto second = catalog_->CreateToken(a.app_id);
  ASSERT_TRUE(second.ok());
  // Same stored prefix, different token: nothing revoked.
  std::string forged = a.token;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(Revoke(forged), 0);
  EXPECT_EQ(Revoke(a.token), 1);
  auto snap = Load();
  EXPECT_EQ(snap->token_apps.count(TokenHashHex(a.token)), 0u);
  EXPECT_EQ(snap->token_apps.count(TokenHashHex(second->token)), 1u);
  EXPECT_EQ(snap->apps.count(a.app_id), 1u);  // the app stays
}

TEST_F(SqliteCatalogTest, LoadMapsTokenHashesToApps) {
  NewCredential a = CreateApp("a");
  NewCredential b = CreateApp("b");
  auto b2 = catalog_->CreateToken(b.app_id);
  ASSERT_TRUE(b2.ok());
  auto snap = Load();
  EXPECT_EQ(snap->apps, (std::unordered_set<std::string>{a.app_id, b.app_id}));
  ASSERT_EQ(snap->token_apps.size(), 3u);
  EXPECT_EQ(snap->token_apps.at(TokenHashHex(a.token)), a.app_id);
  EXPECT_EQ(snap->token_apps.at(TokenHashHex(b.token)), b.app_id);
  EXPECT_EQ(snap->token_apps.at(TokenHashHex(b2->token)), b.app_id);
  EXPECT_EQ(snap->token_apps.count(a.token), 0u);  // keyed by hash, never by token

  EXPECT_EQ(Revoke(b.token), 1);
  auto after = Load();
  EXPECT_EQ(after->token_apps.size(), 2u);
  EXPECT_EQ(after->token_apps.count(TokenHashHex(b.token)), 0u);
  EXPECT_EQ(after->apps.size(), 2u);
  // The earlier snapshot is immutable.
  EXPECT_EQ(snap->token_apps.size(), 3u);
}

TEST_F(SqliteCatalogTest, StateSurvivesReopen) {
  NewCredential a = CreateApp("a");
  catalog_.reset();
  catalog_ = OpenCatalog();
  ASSERT_NE(catalog_, nullptr);
  auto snap = Load();
  EXPECT_EQ(snap->apps.count(a.app_id), 1u);
  EXPECT_EQ(snap->token_apps.count(TokenHashHex(a.token)), 1u);
}

TEST_F(SqliteCatalogTest, DataVersionChangesWhenAnotherConnectionCommits) {
  std::unique_ptr<Catalog> cli = OpenCatalog();  // the admin CLI, same folder
  ASSERT_NE(cli, nullptr);
  auto v1 = catalog_->DataVersion();
  ASSERT_TRUE(v1.ok());
  auto again = catalog_->DataVersion();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *v1);  // nothing changed

  auto cred = cli->CreateApp("from the cli");
  ASSERT_TRUE(cred.ok());
  auto v2 = catalog_->DataVersion();
  ASSERT_TRUE(v2.ok());
  EXPECT_NE(*v2, *v1);
  // The server reloads and sees the app.
  EXPECT_EQ(Load()->apps.count(cred->app_id), 1u);

  ASSERT_TRUE(cli->RevokeTokens(cred->token).ok());
  auto v3 = catalog_->DataVersion();
  ASSERT_TRUE(v3.ok());
  EXPECT_NE(*v3, *v2);
  EXPECT_EQ(Load()->token_apps.count(TokenHashHex(cred->token)), 0u);
}

TEST_F(SqliteCatalogTest, DataVersionIgnoresThisConnectionsOwnCommits) {
  // catalog.h: only another connection's commits change it (the server reloads
  // what the CLI changed; its own writes need no reload).
  auto v1 = catalog_->DataVersion();
  ASSERT_TRUE(v1.ok());
  CreateApp("same connection");
  auto v2 = catalog_->DataVersion();
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(*v2, *v1);
}

TEST(TokenTest, NewTokenShapeAndHash) {
  const std::string t = NewToken();
  EXPECT_EQ(t.size(), 4u + 43u);
  EXPECT_EQ(t.rfind("nct_", 0), 0u);
  EXPECT_NE(NewToken(), t);
  EXPECT_EQ(TokenHashHex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace nucleon
