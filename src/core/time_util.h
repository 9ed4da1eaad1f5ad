// Time helpers: ISO 8601 parsing in the forms the SDKs send, formatting of
// timestamps and local day keys. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nucleon {

// Milliseconds since 1970 now (system clock).
int64_t NowMs();

// Parses "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS[.fff...]]" with an optional "Z" or
// "+HH:MM"/"-HH:MM"/"+HHMM" offset; a space may stand for "T". Without an offset
// the time is taken as UTC. Returns milliseconds since 1970.
std::optional<int64_t> ParseIsoTime(std::string_view text);

// "2021-03-23T06:51:38.633Z".
std::string FormatIsoMs(int64_t ms);

// Days since 1970-01-01 for a civil date, and back.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d);
void CivilFromDays(int64_t days, int64_t* y, unsigned* m, unsigned* d);

// "YYYY-MM-DD" of a day number (days since 1970-01-01).
std::string DayKey(int64_t day);

// Floor division that rounds toward negative infinity.
inline int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace nucleon
