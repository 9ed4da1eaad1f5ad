// The string dictionary: dense ids handed out once per text (also under
// concurrent Intern), written by the writer's transaction, kept pending when
// that transaction rolls back, and restored with the same ids by Load.
#include "store/sqlite/string_dictionary.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/testing/temp_dir.h"
#include "store/sqlite/events_schema.h"
#include "store/sqlite/migration_runner.h"

namespace nucleon {
namespace {

class StringDictionaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(db_.Open(dir_.path() + "/events.db", true).ok());
    ASSERT_TRUE(RunMigrations(db_, "events.db", EventsMigrations()).ok());
  }

  // The `strings` table as id -> text.
  std::map<int64_t, std::string> Rows() {
    std::map<int64_t, std::string> out;
    auto q = db_.Prepare("SELECT id, text FROM strings");
    EXPECT_TRUE(q.ok());
    Status st;
    while (q->Step(&st)) out[q->Int(0)] = std::string(q->Text(1));
    EXPECT_TRUE(st.ok());
    return out;
  }

  // FlushPending inside a transaction that commits (or rolls back).
  void Flush(StringDictionary& dict, bool commit) {
    ASSERT_TRUE(db_.Exec("BEGIN IMMEDIATE").ok());
    ASSERT_TRUE(dict.FlushPending(db_).ok());
    if (commit) {
      ASSERT_TRUE(db_.Exec("COMMIT").ok());
      dict.CommitFlushed();
    } else {
      ASSERT_TRUE(db_.Exec("ROLLBACK").ok());
      dict.DropFlushed();
    }
  }

  TempDir dir_;
  SqliteDb db_;
};

TEST_F(StringDictionaryTest, InternFindText) {
  StringDictionary dict;
  EXPECT_EQ(dict.Intern(""), StringDictionary::kEmpty);
  EXPECT_EQ(dict.Find(""), StringDictionary::kEmpty);
  EXPECT_EQ(dict.Text(StringDictionary::kEmpty), "");
  EXPECT_EQ(dict.Find("click"), StringDictionary::kMissing);

  const uint32_t click = dict.Intern("click");
  const uint32_t view = dict.Intern("view");
  EXPECT_EQ(click, 1u) << "ids are dense from 1";
  EXPECT_EQ(view, 2u);
  EXPECT_EQ(dict.Intern("click"), click);
  EXPECT_EQ(dict.Find("click"), click);
  EXPECT_EQ(dict.Text(click), "click");
  EXPECT_EQ(dict.Text(view), "view");
  EXPECT_EQ(dict.Text(999), "") << "an unknown id";
  EXPECT_EQ(dict.size(), 3u);

  // Texts that differ only in case, bytes or a NUL are different.
  const std::string nul("a\0b", 3);
  const uint32_t a = dict.Intern(nul);
  EXPECT_NE(a, dict.Intern("a"));
  EXPECT_NE(dict.Intern("Click"), click);
  EXPECT_EQ(dict.Text(a), nul);

  // Views stay valid while the dictionary grows past a chunk.
  const std::string_view held = dict.Text(click);
  for (int i = 0; i < 10000; ++i) dict.Intern("grow-" + std::to_string(i));
  EXPECT_EQ(held, "click");
  EXPECT_EQ(dict.Text(dict.Find("grow-9999")), "grow-9999");
}

TEST_F(StringDictionaryTest, ConcurrentInternGivesOneIdPerText) {
  StringDictionary dict;
  constexpr int kThreads = 4;
  constexpr int kTexts = 3000;
  std::vector<std::vector<uint32_t>> ids(kThreads, std::vector<uint32_t>(kTexts));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Every thread interns every text, in a different order, while also
      // reading texts back.
      for (int k = 0; k < kTexts; ++k) {
        const int i = t % 2 ? kTexts - 1 - k : (k * 7 + t) % kTexts;
        ids[t][i] = dict.Intern("text-" + std::to_string(i));
        EXPECT_EQ(dict.Text(ids[t][i]), "text-" + std::to_string(i));
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint32_t> distinct;
  for (int i = 0; i < kTexts; ++i) {
    for (int t = 1; t < kThreads; ++t) ASSERT_EQ(ids[t][i], ids[0][i]) << "text " << i;
    distinct.insert(ids[0][i]);
    EXPECT_EQ(dict.Text(ids[0][i]), "text-" + std::to_string(i));
  }
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kTexts));
  EXPECT_EQ(dict.size(), static_cast<size_t>(kTexts) + 1) << "ids stay dense";
  EXPECT_EQ(*distinct.begin(), 1u);
  EXPECT_EQ(*distinct.rbegin(), static_cast<uint32_t>(kTexts));

  // Every id is written exactly once.
  Flush(dict, true);
  const auto rows = Rows();
  EXPECT_EQ(rows.size(), static_cast<size_t>(kTexts));
  for (int i = 0; i < kTexts; ++i) EXPECT_EQ(rows.at(ids[0][i]), "text-" + std::to_string(i));
}

TEST_F(StringDictionaryTest, FlushCommitWritesRowsOnce) {
  StringDictionary dict;
  const uint32_t a = dict.Intern("alpha");
  const uint32_t b = dict.Intern("beta");
  dict.Intern("");  // never stored
  Flush(dict, true);
  EXPECT_EQ(Rows(), (std::map<int64_t, std::string>{{a, "alpha"}, {b, "beta"}}));
  // Nothing pending: a second flush writes nothing new.
  ASSERT_TRUE(db_.Exec("DELETE FROM strings").ok());
  Flush(dict, true);
  EXPECT_TRUE(Rows().empty()) << "committed ids are not written again";

  const uint32_t c = dict.Intern("gamma");
  Flush(dict, true);
  EXPECT_EQ(Rows(), (std::map<int64_t, std::string>{{c, "gamma"}}));
}

TEST_F(StringDictionaryTest, RolledBackFlushStaysPending) {
  StringDictionary dict;
  const uint32_t a = dict.Intern("alpha");
  Flush(dict, false);
  EXPECT_TRUE(Rows().empty());
  // Interned meanwhile, after the failed flush: both are written next time.
  const uint32_t b = dict.Intern("beta");
  Flush(dict, true);
  EXPECT_EQ(Rows(), (std::map<int64_t, std::string>{{a, "alpha"}, {b, "beta"}}));
}

TEST_F(StringDictionaryTest, InternDuringAnOpenFlushIsKeptForTheNext) {
  StringDictionary dict;
  const uint32_t a = dict.Intern("alpha");
  ASSERT_TRUE(db_.Exec("BEGIN IMMEDIATE").ok());
  ASSERT_TRUE(dict.FlushPending(db_).ok());
  // Another thread (the publisher) interns while the writer's transaction is open.
  uint32_t b = 0;
  std::thread([&] { b = dict.Intern("beta"); }).join();
  ASSERT_TRUE(db_.Exec("COMMIT").ok());
  dict.CommitFlushed();
  EXPECT_EQ(Rows(), (std::map<int64_t, std::string>{{a, "alpha"}}));
  Flush(dict, true);
  EXPECT_EQ(Rows(), (std::map<int64_t, std::string>{{a, "alpha"}, {b, "beta"}}));
}

TEST_F(StringDictionaryTest, LoadRestoresTheSameIds) {
  std::map<std::string, uint32_t> ids;
  {
    StringDictionary dict;
    for (int i = 0; i < 5000; ++i) {
      const std::string text =
          i % 3 ? "name-" + std::to_string(i) : std::string("nul\0", 4) + std::to_string(i);
      ids[text] = dict.Intern(text);
    }
    ids["Grüße 😀"] = dict.Intern("Grüße 😀");
    Flush(dict, true);
  }
  StringDictionary loaded;
  ASSERT_TRUE(loaded.Load(db_).ok());
  EXPECT_EQ(loaded.size(), ids.size() + 1);
  for (const auto& [text, id] : ids) {
    EXPECT_EQ(loaded.Find(text), id) << text;
    EXPECT_EQ(loaded.Text(id), text);
  }
  // New texts continue after the loaded ids; nothing loaded is pending.
  const uint32_t next = loaded.Intern("new");
  EXPECT_EQ(next, ids.size() + 1);
  ASSERT_TRUE(db_.Exec("DELETE FROM strings").ok());
  Flush(loaded, true);
  EXPECT_EQ(Rows(), (std::map<int64_t, std::string>{{next, "new"}}));
}

}  // namespace
}  // namespace nucleon
