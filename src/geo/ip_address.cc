#include "geo/ip_address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace nucleon {

namespace {

// Longest valid text: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" (45 chars).
constexpr size_t kMaxTextLength = 45;

bool IsV4Mapped(const std::array<uint8_t, 16>& b) {
  for (int i = 0; i < 10; ++i) {
    if (b[i] != 0) return false;
  }
  return b[10] == 0xff && b[11] == 0xff;
}

}  // namespace

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.empty() || text.size() > kMaxTextLength) return std::nullopt;
  // inet_pton wants a NUL-terminated string; copy onto the stack so parsing never allocates.
  char buf[kMaxTextLength + 1];
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\0') return std::nullopt;
    buf[i] = text[i];
  }
  buf[text.size()] = '\0';

  if (text.find(':') == std::string_view::npos) {
    std::array<uint8_t, 4> b;
    if (inet_pton(AF_INET, buf, b.data()) != 1) return std::nullopt;
    return V4(b);
  }
  std::array<uint8_t, 16> b;
  if (inet_pton(AF_INET6, buf, b.data()) != 1) return std::nullopt;
  return V6(b);
}

IpAddress IpAddress::V4(const std::array<uint8_t, 4>& b) {
  IpAddress ip;
  ip.v6 = false;
  std::copy(b.begin(), b.end(), ip.bytes.begin());
  return ip;
}

IpAddress IpAddress::V6(const std::array<uint8_t, 16>& b) {
  if (IsV4Mapped(b)) return V4({b[12], b[13], b[14], b[15]});
  IpAddress ip;
  ip.v6 = true;
  ip.bytes = b;
  return ip;
}

}  // namespace nucleon
