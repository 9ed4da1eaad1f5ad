#include "store/catalog.h"

namespace nucleon {

std::string NewToken() {
  std::string raw = RandomBytes(32);
  return "nct_" + Base64UrlEncode(reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
}

size_t NewTokenLength() { return 4 + 43; }

std::string TokenHashHex(std::string_view token) {
  Sha256Digest d = Sha256(token);
  return HexEncode(d.data(), d.size());
}

}  // namespace nucleon
