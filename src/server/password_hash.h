// Password hashing for dashboard accounts: argon2id through libsodium's
// crypto_pwhash_str, whose output string carries the algorithm, its cost and
// a random salt. Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace nucleon {

// How much a hash costs: interactive (libsodium's INTERACTIVE limits: 2
// passes over 64 MiB, about 0.1 s) for accounts; minimal for unit tests.
enum class PasswordCost { kInteractive, kMinimal };

// A password is 8 to 1024 bytes; InvalidArgument (saying so) otherwise.
Status CheckPasswordRules(std::string_view password);

// The argon2id string of `password` (CheckPasswordRules first).
Result<std::string> HashPassword(std::string_view password,
                                 PasswordCost cost = PasswordCost::kInteractive);

// Whether `password` matches `hash`; false for a malformed hash.
bool VerifyPassword(const std::string& hash, std::string_view password);

}  // namespace nucleon
