#include "server/password_hash.h"

#include <sodium.h>

namespace nucleon {

namespace {

bool SodiumReady() {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

}  // namespace

Status CheckPasswordRules(std::string_view password) {
  if (password.size() < 8) return Status::InvalidArgument("a password has at least 8 characters");
  if (password.size() > 1024) return Status::InvalidArgument("a password has at most 1024 bytes");
  return Status::Ok();
}

Result<std::string> HashPassword(std::string_view password, PasswordCost cost) {
  NUCLEON_RETURN_IF_ERROR(CheckPasswordRules(password));
  if (!SodiumReady()) return Status::Internal("libsodium did not initialise");
  const bool minimal = cost == PasswordCost::kMinimal;
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(
          out, password.data(), password.size(),
          minimal ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE,
          minimal ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE,
          crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return Status::Internal("out of memory hashing a password");
  }
  return std::string(out);
}

bool VerifyPassword(const std::string& hash, std::string_view password) {
  if (!SodiumReady() || hash.empty()) return false;
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

}  // namespace nucleon
