#include "store/sqlite/scrubbing_vfs.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "core/testing/temp_dir.h"
#include "store/sqlite/sqlite_db.h"

namespace nucleon {
namespace {

void Put2(unsigned char* p, unsigned v) {
  p[0] = static_cast<unsigned char>(v >> 8);
  p[1] = static_cast<unsigned char>(v & 0xFF);
}

// A table leaf page of 512 bytes: two cells at the end, a free block between
// them holding old bytes, and old bytes in the gap after the cell pointers.
std::vector<unsigned char> LeafPage() {
  std::vector<unsigned char> page(512, 'x');  // 'x': stale bytes everywhere
  page[0] = 13;                               // table leaf
  Put2(&page[3], 2);                          // two cells
  Put2(&page[5], 400);                        // content starts at 400
  page[7] = 0;
  Put2(&page[8], 480);               // cell 0
  Put2(&page[10], 400);              // cell 1
  std::memset(&page[400], 'A', 40);  // cell 1's bytes
  std::memset(&page[480], 'B', 32);  // cell 0's bytes
  Put2(&page[1], 440);               // a free block at 440, 40 bytes
  Put2(&page[440], 0);
  Put2(&page[442], 40);
  return page;
}

TEST(ScrubPageTest, ZeroesTheGapAndFreeBlocksAndKeepsTheCells) {
  std::vector<unsigned char> page = LeafPage();
  ASSERT_TRUE(ScrubPage(page.data(), page.size(), page.size(), 2));
  for (size_t i = 12; i < 400; ++i) ASSERT_EQ(page[i], 0) << i;   // the gap
  for (size_t i = 444; i < 480; ++i) ASSERT_EQ(page[i], 0) << i;  // the free block's body
  EXPECT_EQ(page[440], 0);                                        // its head stays: next = 0
  EXPECT_EQ(page[443], 40);                                       // size
  for (size_t i = 400; i < 440; ++i) ASSERT_EQ(page[i], 'A') << i;
  for (size_t i = 480; i < 512; ++i) ASSERT_EQ(page[i], 'B') << i;
  EXPECT_EQ(page[0], 13);
}

TEST(ScrubPageTest, PageOneKeepsTheFileHeader) {
  std::vector<unsigned char> page(1024, 'h');
  std::vector<unsigned char> leaf = LeafPage();
  // The same b-tree page, 100 bytes in (offsets in the page shifted by 100).
  page[100] = 13;
  Put2(&page[103], 0);
  Put2(&page[105], 900);
  Put2(&page[101], 0);
  ASSERT_TRUE(ScrubPage(page.data(), page.size(), page.size(), 1));
  for (size_t i = 0; i < 100; ++i) ASSERT_EQ(page[i], 'h') << i;
  for (size_t i = 108; i < 900; ++i) ASSERT_EQ(page[i], 0) << i;
  for (size_t i = 900; i < 1024; ++i) ASSERT_EQ(page[i], 'h') << i;
}

TEST(ScrubPageTest, LeavesAnythingInconsistentUnchanged) {
  const std::vector<unsigned char> good = LeafPage();
  auto unchanged = [](std::vector<unsigned char> page, unsigned number = 2) {
    const std::vector<unsigned char> before = page;
    EXPECT_FALSE(ScrubPage(page.data(), page.size(), page.size(), number));
    EXPECT_EQ(page, before);
  };
  std::vector<unsigned char> p = good;
  p[0] = 0;  // an overflow or freelist page (first byte of a page number)
  unchanged(p);
  p = good;
  Put2(&p[5], 600);  // content beyond the page
  unchanged(p);
  p = good;
  Put2(&p[3], 300);  // cell pointers running into the content
  unchanged(p);
  p = good;
  Put2(&p[10], 100);  // a cell pointer into the gap
  unchanged(p);
  p = good;
  Put2(&p[442], 200);  // a free block running past the page
  unchanged(p);
  p = good;
  Put2(&p[440], 440);  // a free block chain that loops
  unchanged(p);
  p = good;
  Put2(&p[1], 100);  // a free block in the gap
  unchanged(p);
}

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Rows rewritten many times and moved by splits, then deleted: through the
// scrubbing VFS no old copy of a deleted value is left in the file, and the
// file stays sound.
TEST(ScrubbingVfsTest, RewrittenAndDeletedRowsLeaveNoCopiesAndTheFileStaysSound) {
  ASSERT_NE(ScrubbingVfsName(), nullptr);
  TempDir dir;
  const std::string path = dir.path() + "/t.db";
  SqliteDb db;
  ASSERT_TRUE(db.Open(path, true).ok());
  ASSERT_TRUE(
      db.Exec("PRAGMA secure_delete=ON; PRAGMA wal_autocheckpoint=100;"
              "CREATE TABLE p(a INTEGER, b INTEGER, v BLOB, PRIMARY KEY(a, b)) WITHOUT ROWID;"
              "CREATE TABLE k(id INTEGER PRIMARY KEY, key TEXT UNIQUE)")
          .ok());
  std::mt19937 rng(7);
  auto marker = [](int user) { return "secret-of-user-" + std::to_string(1000 + user) + "-end"; };
  for (int round = 0; round < 40; ++round) {
    ASSERT_TRUE(db.Exec("BEGIN").ok());
    for (int a = 0; a < 120; ++a) {
      std::string v;
      for (int u = std::max(0, round - 8); u <= round; ++u)
        v += marker(u) + std::string(rng() % 60, 'y');
      auto q = db.Prepare("INSERT OR REPLACE INTO p VALUES(?, ?, ?)");
      ASSERT_TRUE(q.ok());
      q->Bind(1, static_cast<int64_t>(rng() % 500));
      q->Bind(2, static_cast<int64_t>(a % 3));
      q->BindBlob(3, v.data(), v.size());
      ASSERT_TRUE(q->Run().ok());
    }
    auto k = db.Prepare("INSERT OR IGNORE INTO k(key) VALUES(?)");
    ASSERT_TRUE(k.ok());
    k->Bind(1, "key-" + marker(round));
    ASSERT_TRUE(k->Run().ok());
    ASSERT_TRUE(db.Exec("COMMIT").ok());
  }
  // Users 0..30 go: every row that holds them is deleted.
  ASSERT_TRUE(db.Exec("BEGIN").ok());
  for (int u = 0; u <= 30; ++u) {
    auto del = db.Prepare("DELETE FROM p WHERE instr(v, ?) > 0");
    ASSERT_TRUE(del.ok());
    del->Bind(1, marker(u));
    ASSERT_TRUE(del->Run().ok());
    auto delk = db.Prepare("DELETE FROM k WHERE key = ?");
    ASSERT_TRUE(delk.ok());
    delk->Bind(1, "key-" + marker(u));
    ASSERT_TRUE(delk->Run().ok());
  }
  ASSERT_TRUE(db.Exec("COMMIT").ok());
  ASSERT_EQ(
      sqlite3_wal_checkpoint_v2(db.raw(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr),
      SQLITE_OK);
  {
    auto check = db.Prepare("PRAGMA integrity_check");
    ASSERT_TRUE(check.ok());
    Status st;
    ASSERT_TRUE(check->Step(&st));
    EXPECT_EQ(check->Text(0), "ok");
  }
  const std::string file = FileBytes(path);
  for (int u = 0; u <= 30; ++u) {
    EXPECT_EQ(file.find(marker(u)), std::string::npos) << "user " << u << " is still in the file";
  }
  EXPECT_NE(file.find(marker(39)), std::string::npos) << "a kept user must still be there";
}

}  // namespace
}  // namespace nucleon
