// Spool: the node's durable queue between an ack and ClickHouse. Append
// writes a record (a block of rows for ClickHouse) to the end of the current
// segment file; Sync makes every record so far durable (fdatasync), and only
// then are its events acknowledged. A reader takes the records in order and,
// once they are in ClickHouse, marks them forwarded so their segments can be
// removed. A restart reads on from the last mark; records after it may have
// reached ClickHouse already, which the forwarder checks (`uncertain`).
//
//   folder:  seg-<16 hex digits>.log, ... ; forwarded ("<segment> <offset>")
//   record:  magic (u32) | length (u32) | checksum (u64, of the payload) | payload
//
// A torn record at the end of the last segment (a crash during a write,
// never acknowledged) is cut off when the spool opens.
//
// Thread-safety: Append/Sync from the writer thread; Read/MarkForwarded from
// the forwarder thread; Backlog from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "core/status.h"

namespace nucleon {

class Spool {
 public:
  struct Position {
    uint64_t segment = 0;
    uint64_t offset = 0;
    bool operator==(const Position&) const = default;
  };

  ~Spool();
  Status Open(const std::string& dir, bool fsync);

  // Appends one record; returns its sequence number (1, 2, ... since open).
  Result<uint64_t> Append(std::string_view payload);
  Status Sync();

  // Reads the records from `*from` on into `*out` (payloads concatenated),
  // at most about `max_bytes`; moves `*from` past them. Returns the number
  // of records read (0 when none is waiting) and adds their size on disk to
  // `*bytes`.
  Result<size_t> Read(Position* from, size_t max_bytes, std::string* out, uint64_t* bytes);
  // Starts a new segment, so that the current one is removed once forwarded
  // (after a user delete, the deleted events leave the disk soon).
  Status Rotate();
  // Where reading starts after an open: the last mark.
  Position Start() const { return start_; }
  // Everything before `to` is in ClickHouse: remembers it and removes the
  // segments wholly before it.
  // `bytes`: the size of the records forwarded since the last mark.
  Status MarkForwarded(Position to, uint64_t bytes);

  // Record bytes appended (since open, plus what was waiting at open), and
  // forwarded: a reader that saw appended() reach N can wait for
  // forwarded() >= N.
  uint64_t appended() const { return appended_bytes_.load(); }
  uint64_t forwarded() const { return forwarded_bytes_.load(); }

 private:
  std::string SegmentPath(uint64_t segment) const;
  Status OpenSegmentForAppend(uint64_t segment);

  std::string dir_;
  bool fsync_ = true;
  int fd_ = -1;  // the segment being appended to
  uint64_t segment_ = 0;
  uint64_t offset_ = 0;
  uint64_t seq_ = 0;
  Position start_;
  std::atomic<uint64_t> appended_bytes_{0};
  std::atomic<uint64_t> forwarded_bytes_{0};
  std::mutex segment_mu_;  // segment_/offset_ as seen by the reader
};

}  // namespace nucleon
