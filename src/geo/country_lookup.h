// CountryLookup: client address -> ISO 3166-1 alpha-2 country code, the only thing ingest
// keeps of an address. Implementations hide behind OpenCountryLookup(), which picks the
// best data at hand, in this order: a MaxMind-format database given by the operator
// (GeoLite2-Country, DB-IP Lite, ...), else Debian's tor-geoipdb range files, else nothing.
// A lookup is immutable once opened: Country() is thread-safe and never allocates.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"
#include "geo/ip_address.h"

namespace nucleon {

class CountryLookup {
 public:
  virtual ~CountryLookup() = default;

  // The uppercase two-letter code, or "" when unknown. The view points at static storage:
  // it stays valid after the lookup is destroyed. Thread-safe; never allocates.
  virtual std::string_view Country(const IpAddress& ip) const = 0;

  // Where the answers come from, for the startup log: "mmdb:/path/GeoLite2-Country.mmdb",
  // "tor-geoipdb:/usr/share/tor/geoip,/usr/share/tor/geoip6" or "none".
  virtual std::string_view Source() const = 0;
};

// A non-empty `mmdb_path` is opened and must be a MaxMind DB (NotFound when it cannot be
// opened, InvalidArgument when it is not a MaxMind DB, Unavailable on a read error). Otherwise the
// tor-geoipdb files that exist of `tor_v4_path` and `tor_v6_path` are loaded (an existing file that
// cannot be read is Unavailable; existing files with no usable range at all are InvalidArgument).
// Otherwise a lookup that always answers "".
Result<std::unique_ptr<CountryLookup>> OpenCountryLookup(
    const std::string& mmdb_path, const std::string& tor_v4_path = "/usr/share/tor/geoip",
    const std::string& tor_v6_path = "/usr/share/tor/geoip6");

// The backends on their own, for tests and tools.

// Looks up "country" -> "iso_code", falling back to "registered_country" -> "iso_code".
Result<std::unique_ptr<CountryLookup>> OpenMaxmindCountryLookup(const std::string& path);
// An empty path leaves that family out (it then answers ""); a named file must be readable
// (else Unavailable), and together the files must hold a range (else InvalidArgument).
// Lines that do not parse, and ranges whose code is "??" or empty, are skipped.
Result<std::unique_ptr<CountryLookup>> OpenRangeTableCountryLookup(const std::string& v4_path,
                                                                   const std::string& v6_path);
std::unique_ptr<CountryLookup> NewNoCountryLookup();

// Two-letter codes as small integers, so tables can hold a uint16_t instead of a string:
// 0 is unknown (not two ASCII letters, or "??"); 1..676 are "AA".."ZZ", case-folded.
uint16_t CountryCodeId(std::string_view code);
// "" for 0 or out of range; else the uppercase code, in static storage.
std::string_view CountryCodeName(uint16_t id);

}  // namespace nucleon
