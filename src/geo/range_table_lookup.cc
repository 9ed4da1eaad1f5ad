// The tor-geoipdb backend: Debian's /usr/share/tor/geoip ("FROM,TO,CC" with integer IPv4
// addresses) and /usr/share/tor/geoip6 ("FROM,TO,CC" with textual IPv6 addresses) loaded into
// sorted arrays of range starts, ends and country ids; a lookup is one binary search.
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "geo/country_lookup.h"

namespace nucleon {

namespace {

struct U128 {
  uint64_t hi = 0;
  uint64_t lo = 0;
  friend auto operator<=>(const U128&, const U128&) = default;
};

// The top 16 bits of a key: the bucket of the first-level index.
uint32_t Prefix16(uint32_t k) { return k >> 16; }
uint32_t Prefix16(U128 k) { return static_cast<uint32_t>(k.hi >> 48); }

U128 ToU128(const IpAddress& ip) {
  U128 v;
  for (int i = 0; i < 8; ++i) v.hi = (v.hi << 8) | ip.bytes[i];
  for (int i = 8; i < 16; ++i) v.lo = (v.lo << 8) | ip.bytes[i];
  return v;
}

// True when `b` is the address right after `a`, so [.., a] and [b, ..] can merge.
bool Adjacent(uint32_t a, uint32_t b) {
  return a != std::numeric_limits<uint32_t>::max() && a + 1 == b;
}
bool Adjacent(U128 a, U128 b) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  if (a.lo != kMax) return b.hi == a.hi && b.lo == a.lo + 1;
  return a.hi != kMax && b.hi == a.hi + 1 && b.lo == 0;
}

// Disjoint [start, end] ranges with a country id each, sorted by start. A binary search over
// all of them would miss the cache on most of its ~18 steps, so a first-level index by the
// key's top 16 bits narrows each search to the few ranges that can hold the key.
template <typename Key>
class RangeTable {
 public:
  void Add(Key start, Key end, uint16_t code) { staging_.push_back({start, end, code}); }

  // Sorts, drops ranges that overlap one already kept (binary search needs disjoint ranges;
  // tor's files have none), merges touching ranges of the same country, and packs the rest
  // into three arrays so the search walks only the starts.
  void Finish() {
    std::sort(staging_.begin(), staging_.end(), [](const Range& a, const Range& b) {
      return a.start < b.start || (a.start == b.start && a.end < b.end);
    });
    for (const Range& r : staging_) {
      if (!starts_.empty()) {
        if (r.start <= ends_.back()) continue;
        if (codes_.back() == r.code && Adjacent(ends_.back(), r.start)) {
          ends_.back() = r.end;
          continue;
        }
      }
      starts_.push_back(r.start);
      ends_.push_back(r.end);
      codes_.push_back(r.code);
    }
    std::vector<Range>().swap(staging_);
    starts_.shrink_to_fit();
    ends_.shrink_to_fit();
    codes_.shrink_to_fit();
    // first_[p]: the first range that ends at or after the first key with prefix p. A range
    // holding a key with prefix p lies in [first_[p], first_[p + 1]]: any later one starts
    // after the end of range first_[p + 1], which is already past prefix p.
    first_.assign(kBuckets + 1, 0);
    uint32_t i = 0;
    for (uint32_t p = 0; p <= kBuckets; ++p) {
      while (i < ends_.size() && Prefix16(ends_[i]) < p) ++i;
      first_[p] = i;
    }
  }

  uint16_t Find(Key key) const {
    if (starts_.empty()) return 0;
    const uint32_t p = Prefix16(key);
    const auto lo = starts_.begin() + first_[p];
    const auto hi = starts_.begin() + std::min<size_t>(first_[p + 1] + 1, starts_.size());
    const auto it = std::upper_bound(lo, hi, key);
    if (it == lo) return 0;
    const size_t i = static_cast<size_t>(it - starts_.begin()) - 1;
    return key <= ends_[i] ? codes_[i] : 0;
  }

  size_t size() const { return starts_.size(); }

 private:
  struct Range {
    Key start;
    Key end;
    uint16_t code;
  };
  std::vector<Range> staging_;
  std::vector<Key> starts_;
  std::vector<Key> ends_;
  std::vector<uint16_t> codes_;
  static constexpr uint32_t kBuckets = 1 << 16;
  std::vector<uint32_t> first_;  // kBuckets + 1 entries once Finish()ed.
};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// Splits "a,b,c" into exactly three trimmed fields.
bool SplitLine(std::string_view line, std::string_view (&f)[3]) {
  for (int i = 0; i < 2; ++i) {
    const size_t comma = line.find(',');
    if (comma == std::string_view::npos) return false;
    f[i] = Trim(line.substr(0, comma));
    line.remove_prefix(comma + 1);
  }
  if (line.find(',') != std::string_view::npos) return false;
  f[2] = Trim(line);
  return true;
}

// An IPv4 address as tor writes it (a decimal integer), or a dotted quad.
bool ParseV4(std::string_view s, uint32_t* out) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc() && end == s.data() + s.size()) {
    if (s.empty() || v > std::numeric_limits<uint32_t>::max()) return false;
    *out = static_cast<uint32_t>(v);
    return true;
  }
  const std::optional<IpAddress> ip = IpAddress::Parse(s);
  if (!ip || ip->v6) return false;
  *out = ip->V4Value();
  return true;
}

Status ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::Unavailable("cannot open tor-geoipdb file " + path + ": " +
                               std::strerror(errno));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::Unavailable("cannot read tor-geoipdb file " + path);
  *out = std::move(ss).str();
  return Status::Ok();
}

// Calls fn(line) for every line that is neither blank nor a '#' comment.
template <typename Fn>
void ForEachDataLine(std::string_view text, Fn fn) {
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    fn(line);
  }
}

class RangeTableCountryLookup final : public CountryLookup {
 public:
  explicit RangeTableCountryLookup(std::string source) : source_(std::move(source)) {}

  Status LoadV4(const std::string& path) {
    std::string text;
    NUCLEON_RETURN_IF_ERROR(ReadFile(path, &text));
    ForEachDataLine(text, [this](std::string_view line) {
      std::string_view f[3];
      uint32_t from, to;
      if (!SplitLine(line, f) || !ParseV4(f[0], &from) || !ParseV4(f[1], &to) || from > to) {
        return;
      }
      if (const uint16_t code = CountryCodeId(f[2])) v4_.Add(from, to, code);
    });
    return Status::Ok();
  }

  Status LoadV6(const std::string& path) {
    std::string text;
    NUCLEON_RETURN_IF_ERROR(ReadFile(path, &text));
    ForEachDataLine(text, [this](std::string_view line) {
      std::string_view f[3];
      if (!SplitLine(line, f)) return;
      const std::optional<IpAddress> from = IpAddress::Parse(f[0]);
      const std::optional<IpAddress> to = IpAddress::Parse(f[1]);
      const uint16_t code = CountryCodeId(f[2]);
      if (!from || !to || code == 0) return;
      if (from->v6 && to->v6) {
        if (ToU128(*from) <= ToU128(*to)) v6_.Add(ToU128(*from), ToU128(*to), code);
      } else if (!from->v6 && !to->v6) {  // ::ffff:a.b.c.d ranges belong to IPv4.
        if (from->V4Value() <= to->V4Value()) v4_.Add(from->V4Value(), to->V4Value(), code);
      }
    });
    return Status::Ok();
  }

  void Finish() {
    v4_.Finish();
    v6_.Finish();
  }
  size_t size() const { return v4_.size() + v6_.size(); }

  std::string_view Country(const IpAddress& ip) const override {
    return CountryCodeName(ip.v6 ? v6_.Find(ToU128(ip)) : v4_.Find(ip.V4Value()));
  }
  std::string_view Source() const override { return source_; }

 private:
  std::string source_;
  RangeTable<uint32_t> v4_;
  RangeTable<U128> v6_;
};

}  // namespace

Result<std::unique_ptr<CountryLookup>> OpenRangeTableCountryLookup(const std::string& v4_path,
                                                                   const std::string& v6_path) {
  std::string source = "tor-geoipdb:" + v4_path;
  if (!v4_path.empty() && !v6_path.empty()) source += ",";
  source += v6_path;
  auto lookup = std::make_unique<RangeTableCountryLookup>(source);
  if (!v4_path.empty()) NUCLEON_RETURN_IF_ERROR(lookup->LoadV4(v4_path));
  if (!v6_path.empty()) NUCLEON_RETURN_IF_ERROR(lookup->LoadV6(v6_path));
  lookup->Finish();
  if (lookup->size() == 0) {
    return Status::InvalidArgument("no usable country range in " + source);
  }
  return std::unique_ptr<CountryLookup>(std::move(lookup));
}

}  // namespace nucleon
