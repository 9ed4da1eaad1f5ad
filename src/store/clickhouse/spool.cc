#include "store/clickhouse/spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/crypto.h"

namespace nucleon {

namespace {

constexpr uint32_t kMagic = 0x4e53504c;  // "NSPL"
constexpr size_t kHeader = 16;
// A new segment once the current one is this large, so forwarded data is
// given back to the disk in steps.
constexpr uint64_t kSegmentBytes = 64ull << 20;

uint64_t Checksum(std::string_view payload) { return static_cast<uint64_t>(StableHash64(payload)); }

Status Errno(const std::string& what) {
  return Status::Internal(what + ": " + std::strerror(errno));
}

bool ReadExact(int fd, uint64_t offset, char* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, buf + done, n - done, static_cast<off_t>(offset + done));
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

// The length of the next whole, intact record at `offset` of `fd`, or 0.
size_t RecordAt(int fd, uint64_t offset, uint64_t file_size, std::string* payload) {
  if (offset + kHeader > file_size) return 0;
  char head[kHeader];
  if (!ReadExact(fd, offset, head, kHeader)) return 0;
  uint32_t magic, length;
  uint64_t sum;
  std::memcpy(&magic, head, 4);
  std::memcpy(&length, head + 4, 4);
  std::memcpy(&sum, head + 8, 8);
  if (magic != kMagic || offset + kHeader + length > file_size) return 0;
  payload->resize(length);
  if (!ReadExact(fd, offset + kHeader, payload->data(), length)) return 0;
  if (Checksum(*payload) != sum) return 0;
  return kHeader + length;
}

std::vector<uint64_t> Segments(const std::string& dir) {
  std::vector<uint64_t> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() == 24 && name.rfind("seg-", 0) == 0 && name.ends_with(".log")) {
      out.push_back(std::strtoull(name.substr(4, 16).c_str(), nullptr, 16));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Spool::~Spool() {
  if (fd_ >= 0) ::close(fd_);
}

std::string Spool::SegmentPath(uint64_t segment) const {
  char name[32];
  std::snprintf(name, sizeof name, "seg-%016llx.log", static_cast<unsigned long long>(segment));
  return dir_ + "/" + name;
}

Status Spool::Open(const std::string& dir, bool fsync) {
  dir_ = dir;
  fsync_ = fsync;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Internal("cannot create " + dir + ": " + ec.message());
  {
    std::ifstream in(dir + "/forwarded");
    unsigned long long seg = 0, off = 0;
    if (in >> seg >> off) start_ = {seg, off};
  }
  std::vector<uint64_t> segments = Segments(dir);
  // A mark into a segment already removed means that segment was forwarded.
  if (!segments.empty() && start_.segment < segments.front()) start_ = {segments.front(), 0};
  uint64_t last = segments.empty() ? std::max<uint64_t>(start_.segment, 1) : segments.back();
  if (start_.segment == 0) start_ = {last, 0};
  NUCLEON_RETURN_IF_ERROR(OpenSegmentForAppend(last));
  // Cut a torn tail: keep the whole records only.
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return Errno("spool");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  uint64_t good = 0;
  std::string payload;
  while (size_t n = RecordAt(fd_, good, size, &payload)) good += n;
  if (good != size) {
    if (::ftruncate(fd_, static_cast<off_t>(good)) != 0) return Errno("spool truncate");
    if (::fsync(fd_) != 0) return Errno("spool fsync");
  }
  offset_ = good;
  uint64_t backlog = 0;
  for (uint64_t s : segments) {
    if (s < start_.segment) continue;
    std::error_code size_ec;
    const uint64_t bytes = s == last ? good : std::filesystem::file_size(SegmentPath(s), size_ec);
    backlog += bytes - (s == start_.segment ? std::min(bytes, start_.offset) : 0);
  }
  appended_bytes_ = backlog;
  return Status::Ok();
}

Status Spool::OpenSegmentForAppend(uint64_t segment) {
  const std::string path = SegmentPath(segment);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("cannot open " + path);
  if (fd_ >= 0) ::close(fd_);
  std::lock_guard lock(segment_mu_);
  fd_ = fd;
  segment_ = segment;
  offset_ = 0;
  // The new file's name must survive a crash with the records in it.
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    if (fsync_) (void)::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

Result<uint64_t> Spool::Append(std::string_view payload) {
  if (offset_ >= kSegmentBytes) {
    // The reader may still be in the old segment: it notices the end by the
    // segment number moving on.
    if (fsync_ && ::fdatasync(fd_) != 0) return Errno("spool fsync");
    NUCLEON_RETURN_IF_ERROR(OpenSegmentForAppend(segment_ + 1));
  }
  char head[kHeader];
  const uint32_t magic = kMagic, length = static_cast<uint32_t>(payload.size());
  const uint64_t sum = Checksum(payload);
  std::memcpy(head, &magic, 4);
  std::memcpy(head + 4, &length, 4);
  std::memcpy(head + 8, &sum, 8);
  // Header and payload in one write, without copying the payload.
  const size_t size = kHeader + payload.size();
  size_t done = 0;
  while (done < size) {
    iovec parts[2];
    int n = 0;
    if (done < kHeader) parts[n++] = {head + done, kHeader - done};
    const size_t in_payload = done > kHeader ? done - kHeader : 0;
    parts[n++] = {const_cast<char*>(payload.data()) + in_payload, payload.size() - in_payload};
    ssize_t w = ::pwritev(fd_, parts, n, static_cast<off_t>(offset_ + done));
    if (w < 0) {
      const Status st = Errno("spool write");
      // Leave no partial record behind: the next open would cut it anyway,
      // but a later append must not follow garbage.
      (void)::ftruncate(fd_, static_cast<off_t>(offset_));
      return st;
    }
    done += static_cast<size_t>(w);
  }
  {
    std::lock_guard lock(segment_mu_);
    offset_ += size;
  }
  appended_bytes_ += size;
  return ++seq_;
}

Status Spool::Sync() {
  if (fsync_ && ::fdatasync(fd_) != 0) return Errno("spool fsync");
  return Status::Ok();
}

Result<size_t> Spool::Read(Position* from, size_t max_bytes, std::string* out, uint64_t* bytes) {
  size_t records = 0;
  while (out->size() < max_bytes) {
    uint64_t segment, end;
    {
      std::lock_guard lock(segment_mu_);
      segment = segment_;
      end = offset_;
    }
    if (from->segment > segment) return records;
    const bool current = from->segment == segment;
    const std::string path = SegmentPath(from->segment);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno != ENOENT || current) return Errno("cannot read " + path);
      *from = {from->segment + 1, 0};  // removed: already forwarded
      continue;
    }
    if (!current) {
      struct stat st {};
      end = ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    }
    std::string payload;
    while (out->size() < max_bytes) {
      size_t n = RecordAt(fd, from->offset, end, &payload);
      if (n == 0) break;
      out->append(payload);
      from->offset += n;
      *bytes += n;
      ++records;
    }
    ::close(fd);
    if (current || out->size() >= max_bytes) return records;
    // This segment is done (a damaged record in a finished segment ends it:
    // it was never acknowledged whole).
    *from = {from->segment + 1, 0};
  }
  return records;
}

Status Spool::Rotate() {
  if (offset_ == 0) return Status::Ok();
  if (fsync_ && ::fdatasync(fd_) != 0) return Errno("spool fsync");
  return OpenSegmentForAppend(segment_ + 1);
}

Status Spool::MarkForwarded(Position to, uint64_t bytes) {
  forwarded_bytes_ += bytes;
  const std::string tmp = dir_ + "/forwarded.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << to.segment << " " << to.offset << "\n";
    if (!out) return Status::Internal("cannot write " + tmp);
  }
  // Not fsynced: a mark lost in a crash only makes the forwarder check again
  // that those records reached ClickHouse.
  if (std::rename(tmp.c_str(), (dir_ + "/forwarded").c_str()) != 0) {
    return Errno("cannot write the spool mark");
  }
  uint64_t current;
  {
    std::lock_guard lock(segment_mu_);
    current = segment_;
  }
  for (uint64_t s : Segments(dir_)) {
    if (s >= to.segment || s >= current) break;
    std::error_code ec;
    std::filesystem::remove(SegmentPath(s), ec);
  }
  return Status::Ok();
}

}  // namespace nucleon
