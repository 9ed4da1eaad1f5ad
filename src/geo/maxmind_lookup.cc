// The MaxMind DB backend (GeoLite2-Country, GeoIP2-Country/City, DB-IP Lite, ...) over
// libmaxminddb. The file is memory-mapped; a lookup walks the search tree and decodes the
// two map keys of the country code in place, without allocating.
#include <arpa/inet.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "geo/country_lookup.h"

namespace nucleon {

namespace {

class MaxmindCountryLookup final : public CountryLookup {
 public:
  explicit MaxmindCountryLookup(std::string path)
      : source_("mmdb:" + path), path_(std::move(path)) {}
  ~MaxmindCountryLookup() override {
    if (open_) MMDB_close(&mmdb_);
  }
  MaxmindCountryLookup(const MaxmindCountryLookup&) = delete;
  MaxmindCountryLookup& operator=(const MaxmindCountryLookup&) = delete;

  Status Open() {
    // libmaxminddb reports these as a failed mmap ("No such device", "Invalid argument").
    std::error_code ec;
    if (std::filesystem::is_directory(path_, ec)) {
      return Status::InvalidArgument("MaxMind database " + path_ + " is a directory");
    }
    if (std::filesystem::is_regular_file(path_, ec) && std::filesystem::file_size(path_, ec) == 0) {
      return Status::InvalidArgument("MaxMind database " + path_ + " is empty");
    }
    errno = 0;
    const int rc = MMDB_open(path_.c_str(), MMDB_MODE_MMAP, &mmdb_);
    if (rc == MMDB_SUCCESS) {
      open_ = true;
      return Status::Ok();
    }
    std::string why = MMDB_strerror(rc);
    // libmaxminddb leaves errno from the failing open/stat/mmap/read.
    if ((rc == MMDB_FILE_OPEN_ERROR || rc == MMDB_IO_ERROR) && errno != 0) {
      why += std::string(" (") + std::strerror(errno) + ")";
    }
    if (rc == MMDB_FILE_OPEN_ERROR) {
      return Status::NotFound("cannot open MaxMind database " + path_ + ": " + why);
    }
    if (rc == MMDB_IO_ERROR) {
      return Status::Unavailable("cannot read MaxMind database " + path_ + ": " + why);
    }
    return Status::InvalidArgument("not a usable MaxMind database " + path_ + ": " + why);
  }

  std::string_view Country(const IpAddress& ip) const override {
    // MMDB_lookup_sockaddr takes a socket address; build one on the stack.
    sockaddr_storage ss{};
    if (ip.v6) {
      auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
      sa->sin6_family = AF_INET6;
      std::memcpy(&sa->sin6_addr, ip.bytes.data(), 16);
    } else {
      auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
      sa->sin_family = AF_INET;
      std::memcpy(&sa->sin_addr, ip.bytes.data(), 4);
    }
    int mmdb_error = MMDB_SUCCESS;
    MMDB_lookup_result_s result =
        MMDB_lookup_sockaddr(&mmdb_, reinterpret_cast<const sockaddr*>(&ss), &mmdb_error);
    if (mmdb_error != MMDB_SUCCESS || !result.found_entry) return {};
    // GeoLite2 leaves "country" out for some networks (anycast, satellite providers) and
    // only has the country the block is registered to.
    static const char* const kCountry[] = {"country", "iso_code", nullptr};
    static const char* const kRegistered[] = {"registered_country", "iso_code", nullptr};
    for (const char* const* path : {kCountry, kRegistered}) {
      MMDB_entry_data_s data;
      if (MMDB_aget_value(&result.entry, &data, path) == MMDB_SUCCESS && data.has_data &&
          data.type == MMDB_DATA_TYPE_UTF8_STRING) {
        if (const uint16_t id = CountryCodeId(std::string_view(data.utf8_string, data.data_size))) {
          return CountryCodeName(id);
        }
      }
    }
    return {};
  }

  std::string_view Source() const override { return source_; }

 private:
  const std::string source_;
  const std::string path_;
  MMDB_s mmdb_{};  // Read-only after Open(); libmaxminddb lookups on it are thread-safe.
  bool open_ = false;
};

}  // namespace

Result<std::unique_ptr<CountryLookup>> OpenMaxmindCountryLookup(const std::string& path) {
  auto lookup = std::make_unique<MaxmindCountryLookup>(path);
  NUCLEON_RETURN_IF_ERROR(lookup->Open());
  return std::unique_ptr<CountryLookup>(std::move(lookup));
}

}  // namespace nucleon
