#include "geo/cidr_set.h"

#include <charconv>
#include <string>

namespace nucleon {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Clears every bit of `ip` below `prefix` (counted over 32 bits for IPv4, 128 for IPv6).
IpAddress Masked(IpAddress ip, int prefix) {
  const int total = ip.v6 ? 16 : 4;
  for (int i = 0; i < total; ++i) {
    const int keep = prefix - 8 * i;  // Bits of this byte to keep.
    if (keep >= 8) continue;
    ip.bytes[i] = keep <= 0 ? 0 : static_cast<uint8_t>(ip.bytes[i] & (0xff << (8 - keep)));
  }
  return ip;
}

Status BadEntry(std::string_view entry, std::string_view why) {
  return Status::InvalidArgument("trusted proxy list: bad entry \"" + std::string(entry) +
                                 "\": " + std::string(why));
}

// One X-Forwarded-For / X-Real-IP element, forgiving the decorations proxies add.
std::optional<IpAddress> ParseHeaderAddress(std::string_view s) {
  s = Trim(s);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = Trim(s.substr(1, s.size() - 2));
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return std::nullopt;
    return IpAddress::Parse(s.substr(1, close - 1));
  }
  // A single colon can only be IPv4 with a port; IPv6 text has at least two.
  const size_t colon = s.find(':');
  if (colon != std::string_view::npos && s.find(':', colon + 1) == std::string_view::npos) {
    s = s.substr(0, colon);
  }
  return IpAddress::Parse(s);
}

}  // namespace

Result<CidrSet> CidrSet::Parse(std::string_view list) {
  CidrSet set;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view entry = Trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (entry.empty()) continue;

    const size_t slash = entry.find('/');
    const std::string_view addr_text = entry.substr(0, slash);
    const std::optional<IpAddress> addr = IpAddress::Parse(addr_text);
    if (!addr) return BadEntry(entry, "not an IP address");
    const bool written_as_v6 = addr_text.find(':') != std::string_view::npos;
    const int written_max = written_as_v6 ? 128 : 32;

    int prefix = written_max;
    if (slash != std::string_view::npos) {
      const std::string_view len = entry.substr(slash + 1);
      const auto [end, ec] = std::from_chars(len.data(), len.data() + len.size(), prefix);
      if (len.empty() || ec != std::errc() || end != len.data() + len.size() || prefix < 0 ||
          prefix > written_max) {
        return BadEntry(entry, "prefix length must be 0.." + std::to_string(written_max));
      }
    }
    if (written_as_v6 && !addr->v6) {  // ::ffff:a.b.c.d/N, held as IPv4.
      if (prefix < 96) return BadEntry(entry, "an IPv4-mapped network needs a prefix >= 96");
      prefix -= 96;
    }
    set.networks_.push_back({addr->v6, Masked(*addr, prefix), prefix});
  }
  return set;
}

bool CidrSet::Contains(const IpAddress& ip) const {
  for (const Network& n : networks_) {
    if (n.v6 == ip.v6 && Masked(ip, n.prefix) == n.base) return true;
  }
  return false;
}

IpAddress ClientAddress(const IpAddress& peer, std::string_view x_forwarded_for,
                        std::string_view x_real_ip, const CidrSet& trusted) {
  if (!trusted.Contains(peer)) return peer;
  std::string_view rest = x_forwarded_for;
  while (!Trim(rest).empty()) {
    const size_t comma = rest.rfind(',');
    const std::string_view entry = comma == std::string_view::npos ? rest : rest.substr(comma + 1);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
    if (Trim(entry).empty()) continue;  // "a,,b" or a trailing comma says nothing.
    const std::optional<IpAddress> hop = ParseHeaderAddress(entry);
    if (!hop) break;
    if (!trusted.Contains(*hop)) return *hop;
  }
  if (const std::optional<IpAddress> real = ParseHeaderAddress(x_real_ip)) return *real;
  return peer;
}

}  // namespace nucleon
