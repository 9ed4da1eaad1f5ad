#include "geo/country_lookup.h"

#include <array>
#include <filesystem>
#include <system_error>

namespace nucleon {

namespace {

constexpr int kLetters = 26;
constexpr int kCodes = kLetters * kLetters;

// "AAABAC...ZZ": every two-letter code, so any code can be returned as a static view.
constexpr std::array<char, 2 * kCodes> kAllCodes = [] {
  std::array<char, 2 * kCodes> a{};
  for (int i = 0; i < kCodes; ++i) {
    a[2 * i] = static_cast<char>('A' + i / kLetters);
    a[2 * i + 1] = static_cast<char>('A' + i % kLetters);
  }
  return a;
}();

int LetterIndex(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a';
  return -1;
}

class NoCountryLookup final : public CountryLookup {
 public:
  std::string_view Country(const IpAddress&) const override { return {}; }
  std::string_view Source() const override { return "none"; }
};

// True unless `path` is known to be absent; an unreadable one counts as present so that
// opening it reports why.
bool MayExist(const std::string& path) {
  if (path.empty()) return false;
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (ec) return ec != std::errc::no_such_file_or_directory;
  return std::filesystem::exists(st);
}

}  // namespace

uint16_t CountryCodeId(std::string_view code) {
  if (code.size() != 2) return 0;
  const int a = LetterIndex(code[0]);
  const int b = LetterIndex(code[1]);
  if (a < 0 || b < 0) return 0;
  return static_cast<uint16_t>(1 + a * kLetters + b);
}

std::string_view CountryCodeName(uint16_t id) {
  if (id == 0 || id > kCodes) return {};
  return std::string_view(kAllCodes.data() + 2 * (id - 1), 2);
}

std::unique_ptr<CountryLookup> NewNoCountryLookup() { return std::make_unique<NoCountryLookup>(); }

Result<std::unique_ptr<CountryLookup>> OpenCountryLookup(const std::string& mmdb_path,
                                                         const std::string& tor_v4_path,
                                                         const std::string& tor_v6_path) {
  if (!mmdb_path.empty()) return OpenMaxmindCountryLookup(mmdb_path);
  const bool v4 = MayExist(tor_v4_path);
  const bool v6 = MayExist(tor_v6_path);
  if (v4 || v6) {
    return OpenRangeTableCountryLookup(v4 ? tor_v4_path : std::string(),
                                       v6 ? tor_v6_path : std::string());
  }
  return NewNoCountryLookup();
}

}  // namespace nucleon
