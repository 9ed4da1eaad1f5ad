#include "store/sqlite/migration_runner.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/testing/temp_dir.h"

namespace nucleon {
namespace {

class MigrationRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(db_.Open(dir_.path() + "/t.db", true).ok()); }

  int64_t Version() {
    auto v = db_.UserVersion();
    EXPECT_TRUE(v.ok());
    return v.ok() ? *v : -1;
  }

  int64_t Count(const char* table) {
    auto stmt = db_.Prepare(std::string("SELECT count(*) FROM ") + table);
    EXPECT_TRUE(stmt.ok());
    Status st;
    EXPECT_TRUE(stmt->Step(&st));
    return stmt->Int(0);
  }

  TempDir dir_;
  SqliteDb db_;
};

TEST_F(MigrationRunnerTest, AppliesEveryStepOnceInOrder) {
  std::vector<Migration> steps = {
      {"CREATE TABLE a(x INTEGER);", nullptr},
      {"INSERT INTO a VALUES(1);", [](SqliteDb& db) { return db.Exec("INSERT INTO a VALUES(2)"); }},
  };
  ASSERT_TRUE(RunMigrations(db_, "t.db", steps).ok());
  EXPECT_EQ(Version(), 2);
  EXPECT_EQ(Count("a"), 2);
  // Running again applies nothing.
  ASSERT_TRUE(RunMigrations(db_, "t.db", steps).ok());
  EXPECT_EQ(Count("a"), 2);
  // A new step is applied on its own.
  steps.push_back({"INSERT INTO a VALUES(3);", nullptr});
  ASSERT_TRUE(RunMigrations(db_, "t.db", steps).ok());
  EXPECT_EQ(Version(), 3);
  EXPECT_EQ(Count("a"), 3);
}

TEST_F(MigrationRunnerTest, AFailedStepLeavesTheFileAtTheLastWholeVersion) {
  std::vector<Migration> steps = {
      {"CREATE TABLE a(x INTEGER);", nullptr},
      {"INSERT INTO a VALUES(1);", [](SqliteDb&) { return Status::Internal("injected failure"); }},
  };
  Status st = RunMigrations(db_, "t.db", steps);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("schema version 2"), std::string::npos) << st.message();
  EXPECT_EQ(Version(), 1);
  EXPECT_EQ(Count("a"), 0);  // the failed step's insert was rolled back
}

TEST_F(MigrationRunnerTest, AFileNewerThanTheBuildIsRefusedUntouched) {
  ASSERT_TRUE(db_.Exec("CREATE TABLE a(x INTEGER); PRAGMA user_version=5").ok());
  std::vector<Migration> steps = {{"CREATE TABLE b(x INTEGER);", nullptr}};
  Status st = RunMigrations(db_, "t.db", steps);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("newer than this build"), std::string::npos) << st.message();
  EXPECT_EQ(Version(), 5);
  auto b = db_.Prepare("SELECT count(*) FROM b");
  EXPECT_FALSE(b.ok());  // step 1 was not applied
}

}  // namespace
}  // namespace nucleon
