#include "core/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdio>
#include <cstdlib>

namespace nucleon {

Sha256Digest Sha256(std::string_view data) {
  // OpenSSL 3 looks the algorithm up in its provider table on every one-shot
  // SHA256() call, which costs more than hashing a short input; fetch it once.
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  Sha256Digest out;
  unsigned int size = 0;
  if (kSha256 == nullptr ||
      EVP_Digest(data.data(), data.size(), out.data(), &size, kSha256, nullptr) != 1) {
    SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
  }
  return out;
}

std::string HexEncode(const uint8_t* data, size_t size) {
  static const char kHex[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = kHex[data[i] >> 4];
    out[2 * i + 1] = kHex[data[i] & 15];
  }
  return out;
}

std::string Base64UrlEncode(const uint8_t* data, size_t size) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((size * 4 + 2) / 3);
  size_t i = 0;
  for (; i + 2 < size; i += 3) {
    uint32_t v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (size - i == 1) {
    uint32_t v = data[i] << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (size - i == 2) {
    uint32_t v = (data[i] << 16) | (data[i + 1] << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    std::fprintf(stderr, "fatal: no random bytes from the operating system\n");
    std::abort();
  }
  return out;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

int64_t StableHash64(std::string_view data) {
  Sha256Digest d = Sha256(data);
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | d[i];
  return static_cast<int64_t>(v);
}

std::string ErrorHash(std::string_view name, std::string_view message, std::string_view stack) {
  // The first frame is the first line of the stack that starts with "at " once
  // trimmed (V8), else the stack's first line after the message line.
  std::string_view first_frame;
  size_t pos = 0;
  std::string_view fallback;
  int line_no = 0;
  while (pos <= stack.size()) {
    size_t end = stack.find('\n', pos);
    if (end == std::string_view::npos) end = stack.size();
    std::string_view line = stack.substr(pos, end - pos);
    size_t b = line.find_first_not_of(" \t\r");
    line = b == std::string_view::npos ? std::string_view() : line.substr(b);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.rfind("at ", 0) == 0) {
      first_frame = line;
      break;
    }
    if (line_no == 1 && fallback.empty()) fallback = line;
    ++line_no;
    pos = end + 1;
  }
  if (first_frame.empty()) first_frame = fallback;
  std::string material;
  material.reserve(name.size() + message.size() + first_frame.size() + 2);
  material.append(name).push_back('\0');
  material.append(message).push_back('\0');
  material.append(first_frame);
  Sha256Digest d = Sha256(material);
  return HexEncode(d.data(), 16);
}

}  // namespace nucleon
