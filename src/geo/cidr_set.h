// CidrSet: a set of IPv4/IPv6 networks, used for the trusted reverse proxies whose
// X-Forwarded-For / X-Real-IP headers may be believed. ClientAddress() picks the address a
// request really came from. Both are meant to run per request: no allocation after Parse().
// A CidrSet is immutable after Parse(); thread-safe.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "geo/ip_address.h"

namespace nucleon {

class CidrSet {
 public:
  CidrSet() = default;  // The empty set: trusts no one.

  // `list` is comma-separated: "10.0.0.0/8, 127.0.0.1, ::1/128, fd00::/8". An entry without a
  // prefix length is a single host. Host bits below the prefix are ignored (10.1.2.3/8 is
  // 10.0.0.0/8). An IPv4-mapped IPv6 network (::ffff:10.0.0.0/104) means the IPv4 one.
  // Spaces around entries and empty entries are ignored. Any other entry is an
  // InvalidArgument naming it.
  static Result<CidrSet> Parse(std::string_view list);

  // Linear in the number of networks, which is expected to be a handful.
  bool Contains(const IpAddress& ip) const;
  bool empty() const { return networks_.empty(); }

 private:
  struct Network {
    bool v6;
    IpAddress base;  // Host bits already cleared.
    int prefix;      // 0..32 for IPv4, 0..128 for IPv6.
  };
  std::vector<Network> networks_;
};

// The address a request came from. The socket `peer`, unless it is inside `trusted`; then
// X-Forwarded-For is walked from the right, skipping addresses inside `trusted`, and the
// first address outside it is the answer. The walk stops at an entry that is not an address
// ("unknown", garbage): whatever is left of it came through a hop nobody vouches for. If the
// walk finds no untrusted address, a valid X-Real-IP is the answer, else the peer.
// Entries may carry spaces, "[v6]" brackets and a ":port" ("192.0.2.1:5060",
// "[2001:db8::1]:443"). Never allocates.
IpAddress ClientAddress(const IpAddress& peer, std::string_view x_forwarded_for,
                        std::string_view x_real_ip, const CidrSet& trusted);

}  // namespace nucleon
