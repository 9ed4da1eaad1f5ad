// Hashing and randomness, backed by OpenSSL: SHA-256 for token storage and
// stable event hashes, a CSPRNG for app ids and tokens. Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace nucleon {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::string_view data);
std::string HexEncode(const uint8_t* data, size_t size);
std::string Base64UrlEncode(const uint8_t* data, size_t size);

// `n` bytes from the operating system's CSPRNG; aborts if it is unavailable
// (a server that cannot draw random bytes must not hand out tokens).
std::string RandomBytes(size_t n);

// Constant-time comparison of two equally sized byte strings (CRYPTO_memcmp):
// the time depends on the sizes only, never on where the bytes differ. A size
// mismatch answers false at once (sizes are not secret).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// The key equality of containers keyed by secret-derived bytes (token hashes),
// so that a lookup never compares such bytes with an early-exit memcmp.
struct ConstantTimeEqualTo {
  bool operator()(std::string_view a, std::string_view b) const { return ConstantTimeEquals(a, b); }
};

// A stable 64-bit hash (the first 8 bytes of SHA-256, big-endian), used for
// event identity keys: stable across versions and platforms.
int64_t StableHash64(std::string_view data);

// The error_hash of semantics.md: a stable hex hash of the error name, its
// message and the first frame of its stack.
std::string ErrorHash(std::string_view name, std::string_view message, std::string_view stack);

}  // namespace nucleon
