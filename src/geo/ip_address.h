// IpAddress: an IPv4 or IPv6 address as plain bytes, small enough to pass by value and to
// look up without allocating. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is always held as
// the IPv4 address it maps, so a dual-stack socket's peer and a proxy's dotted quad compare
// equal and look up in the same table. There is deliberately no ToString(): client addresses
// are looked up and dropped, never stored or logged. Immutable value; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace nucleon {

struct IpAddress {
  bool v6 = false;
  // Network byte order. An IPv4 address uses bytes[0..3]; the other 12 bytes are zero.
  std::array<uint8_t, 16> bytes{};

  // Accepts a bare IPv4 dotted quad ("192.0.2.1", decimal only) or an IPv6 address in any
  // RFC 4291 text form, including an embedded dotted quad. No brackets, port, zone or
  // surrounding spaces. Returns nullopt for anything else.
  static std::optional<IpAddress> Parse(std::string_view text);

  static IpAddress V4(const std::array<uint8_t, 4>& b);
  // An IPv4-mapped address comes back as IPv4.
  static IpAddress V6(const std::array<uint8_t, 16>& b);

  // The IPv4 address as a host-order integer; meaningful only when !v6.
  uint32_t V4Value() const {
    return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
           uint32_t{bytes[3]};
  }

  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

}  // namespace nucleon
