#include "store/clickhouse/spool.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/testing/temp_dir.h"

namespace nucleon {
namespace {

// Everything readable from `from` on, as one string, and where reading ended.
std::string ReadAll(Spool& spool, Spool::Position* from, uint64_t* bytes = nullptr) {
  std::string out;
  uint64_t ignored = 0;
  for (int i = 0; i < 1000; ++i) {
    std::string chunk;
    auto n = spool.Read(from, 1 << 20, &chunk, bytes ? bytes : &ignored);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    if (!n.ok() || *n == 0) break;
    out += chunk;
  }
  return out;
}

std::vector<std::string> SegmentFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("seg-", 0) == 0) out.push_back(name);
  }
  return out;
}

TEST(SpoolTest, RecordsComeBackInOrderAndSurviveAReopen) {
  TempDir dir;
  {
    Spool spool;
    ASSERT_TRUE(spool.Open(dir.path(), /*fsync=*/false).ok());
    EXPECT_EQ(*spool.Append("one\n"), 1u);
    EXPECT_EQ(*spool.Append("two\n"), 2u);
    ASSERT_TRUE(spool.Sync().ok());
    Spool::Position from = spool.Start();
    uint64_t bytes = 0;
    EXPECT_EQ(ReadAll(spool, &from, &bytes), "one\ntwo\n");
    EXPECT_EQ(bytes, spool.appended()) << "the reader counts what the writer wrote";
  }
  // Nothing was marked forwarded: a reopen reads it all again.
  Spool spool;
  ASSERT_TRUE(spool.Open(dir.path(), false).ok());
  Spool::Position from = spool.Start();
  EXPECT_EQ(ReadAll(spool, &from), "one\ntwo\n");
  EXPECT_EQ(spool.forwarded(), 0u);
  EXPECT_GT(spool.appended(), 0u) << "the backlog found at open counts as appended";
}

TEST(SpoolTest, AMarkIsWhereTheNextOpenStarts) {
  TempDir dir;
  {
    Spool spool;
    ASSERT_TRUE(spool.Open(dir.path(), false).ok());
    ASSERT_TRUE(spool.Append("a\n").ok());
    Spool::Position from = spool.Start();
    uint64_t bytes = 0;
    EXPECT_EQ(ReadAll(spool, &from, &bytes), "a\n");
    ASSERT_TRUE(spool.MarkForwarded(from, bytes).ok());
    EXPECT_EQ(spool.forwarded(), spool.appended());
    ASSERT_TRUE(spool.Append("b\n").ok());
  }
  Spool spool;
  ASSERT_TRUE(spool.Open(dir.path(), false).ok());
  Spool::Position from = spool.Start();
  EXPECT_EQ(ReadAll(spool, &from), "b\n");
}

TEST(SpoolTest, ATornTailIsCutAndTheNextAppendFollowsTheLastWholeRecord) {
  TempDir dir;
  std::string segment;
  {
    Spool spool;
    ASSERT_TRUE(spool.Open(dir.path(), false).ok());
    ASSERT_TRUE(spool.Append("whole\n").ok());
    ASSERT_TRUE(spool.Append("torn record\n").ok());
    segment = dir.path() + "/" + SegmentFiles(dir.path()).at(0);
  }
  // A crash in the middle of the second write: its last bytes never made it.
  const auto size = std::filesystem::file_size(segment);
  std::filesystem::resize_file(segment, size - 3);
  Spool spool;
  ASSERT_TRUE(spool.Open(dir.path(), false).ok());
  ASSERT_TRUE(spool.Append("next\n").ok());
  Spool::Position from = spool.Start();
  EXPECT_EQ(ReadAll(spool, &from), "whole\nnext\n");
}

TEST(SpoolTest, ADamagedRecordEndsTheRead) {
  TempDir dir;
  std::string segment;
  {
    Spool spool;
    ASSERT_TRUE(spool.Open(dir.path(), false).ok());
    ASSERT_TRUE(spool.Append("first\n").ok());
    ASSERT_TRUE(spool.Append("second\n").ok());
    segment = dir.path() + "/" + SegmentFiles(dir.path()).at(0);
  }
  // Flip a byte of the second record's payload: its checksum no longer holds.
  {
    std::fstream f(segment, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-2, std::ios::end);
    f.put('X');
  }
  Spool spool;
  ASSERT_TRUE(spool.Open(dir.path(), false).ok());
  Spool::Position from = spool.Start();
  EXPECT_EQ(ReadAll(spool, &from), "first\n");
}

TEST(SpoolTest, RotatedSegmentsAreReadInTurnAndRemovedOnceForwarded) {
  TempDir dir;
  Spool spool;
  ASSERT_TRUE(spool.Open(dir.path(), false).ok());
  ASSERT_TRUE(spool.Append("old\n").ok());
  ASSERT_TRUE(spool.Rotate().ok());
  ASSERT_TRUE(spool.Append("new\n").ok());
  EXPECT_EQ(SegmentFiles(dir.path()).size(), 2u);
  Spool::Position from = spool.Start();
  uint64_t bytes = 0;
  EXPECT_EQ(ReadAll(spool, &from, &bytes), "old\nnew\n");
  ASSERT_TRUE(spool.MarkForwarded(from, bytes).ok());
  EXPECT_EQ(SegmentFiles(dir.path()).size(), 1u) << "the forwarded old segment is gone";
  // An empty segment is not rotated again.
  ASSERT_TRUE(spool.Rotate().ok());
  ASSERT_TRUE(spool.Rotate().ok());
  EXPECT_LE(SegmentFiles(dir.path()).size(), 2u);
}

TEST(SpoolTest, AReaderStopsAtTheBytesAskedForAndGoesOnFromThere) {
  TempDir dir;
  Spool spool;
  ASSERT_TRUE(spool.Open(dir.path(), false).ok());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(spool.Append(std::string(100, 'a' + i % 26)).ok());
  Spool::Position from = spool.Start();
  std::string chunk;
  uint64_t bytes = 0;
  auto n = spool.Read(&from, 1000, &chunk, &bytes);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 10u) << "records up to the size asked for";
  EXPECT_EQ(chunk.size(), 1000u);
  std::string rest = ReadAll(spool, &from);
  EXPECT_EQ(rest.size(), 9000u);
}

}  // namespace
}  // namespace nucleon
