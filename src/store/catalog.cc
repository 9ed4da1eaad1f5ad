#include "store/catalog.h"

namespace nucleon {

std::string NewToken() {
  std::string raw = RandomBytes(32);
  return "nct_" + Base64UrlEncode(reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
}

size_t NewTokenLength() { return 4 + 43; }

std::string JoinAppIds(const std::vector<std::string>& apps) {
  std::string out;
  for (const std::string& a : apps) {
    if (!out.empty()) out += ',';
    out += a;
  }
  return out;
}

std::vector<std::string> SplitAppIds(std::string_view text) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t comma = text.find(',', at);
    if (comma == std::string_view::npos) comma = text.size();
    if (comma > at) out.emplace_back(text.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

Status CheckRevokePrefix(const std::string& prefix) {
  if (prefix.size() < 8) {
    return Status::InvalidArgument("a token prefix needs at least 8 characters");
  }
  if (prefix.size() > kTokenPrefixChars && prefix.size() != NewTokenLength()) {
    return Status::InvalidArgument("give the first " + std::to_string(kTokenPrefixChars) +
                                   " characters of a token (or fewer), or the whole token");
  }
  return Status::Ok();
}

std::string TokenHashHex(std::string_view token) {
  Sha256Digest d = Sha256(token);
  return HexEncode(d.data(), d.size());
}

}  // namespace nucleon
