#include "geo/country_lookup.h"

#include <gtest/gtest.h>

#include "core/testing/temp_dir.h"
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace nucleon {
namespace {

IpAddress Ip(std::string_view text) {
  const std::optional<IpAddress> ip = IpAddress::Parse(text);
  EXPECT_TRUE(ip.has_value()) << text;
  return ip.value_or(IpAddress{});
}

TEST(CountryCodeTest, IdsRoundTripUppercased) {
  EXPECT_EQ(CountryCodeId("AA"), 1);
  EXPECT_EQ(CountryCodeId("ZZ"), 676);
  EXPECT_EQ(CountryCodeName(CountryCodeId("de")), "DE");
  EXPECT_EQ(CountryCodeName(CountryCodeId("dE")), "DE");
  EXPECT_EQ(CountryCodeName(CountryCodeId("US")), "US");
  for (uint16_t id = 1; id <= 676; ++id) {
    ASSERT_EQ(CountryCodeId(CountryCodeName(id)), id);
  }
}

TEST(CountryCodeTest, NonCodesAreUnknown) {
  for (const char* bad :
       {"", "?", "??", "D", "DEU", "D1", "1D", "D-", " D", "@A", "[A", "`a", "{a", "\xc3\x84Z"}) {
    EXPECT_EQ(CountryCodeId(bad), 0) << bad;
  }
  EXPECT_EQ(CountryCodeName(0), "");
  EXPECT_EQ(CountryCodeName(677), "");
  EXPECT_EQ(CountryCodeName(65535), "");
}

TEST(NoCountryLookupTest, AlwaysUnknown) {
  const auto lookup = NewNoCountryLookup();
  EXPECT_EQ(lookup->Country(Ip("8.8.8.8")), "");
  EXPECT_EQ(lookup->Country(Ip("2001:4860::8888")), "");
  EXPECT_EQ(lookup->Source(), "none");
}

TEST(OpenCountryLookupTest, TorFilesWhenNoDatabase) {
  TempDir dir;
  const std::string v4 = dir.Write("geoip", "16777216,16777471,AU\n");
  const std::string v6 = dir.Write("geoip6", "2001:2::,2001:2::ffff,JP\n");
  auto lookup = OpenCountryLookup("", v4, v6);
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  EXPECT_EQ((*lookup)->Source(), "tor-geoipdb:" + v4 + "," + v6);
  EXPECT_EQ((*lookup)->Country(Ip("1.0.0.1")), "AU");
  EXPECT_EQ((*lookup)->Country(Ip("2001:2::1")), "JP");
}

TEST(OpenCountryLookupTest, WhicheverTorFileIsPresent) {
  TempDir dir;
  const std::string v6 = dir.Write("geoip6", "2001:2::,2001:2::ffff,JP\n");
  auto lookup = OpenCountryLookup("", dir.path() + "/geoip", v6);
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  EXPECT_EQ((*lookup)->Source(), "tor-geoipdb:" + v6);
  EXPECT_EQ((*lookup)->Country(Ip("2001:2::1")), "JP");
  EXPECT_EQ((*lookup)->Country(Ip("1.0.0.1")), "");
}

TEST(OpenCountryLookupTest, NothingInstalledMeansNoCountry) {
  TempDir dir;
  auto lookup = OpenCountryLookup("", dir.path() + "/geoip", dir.path() + "/geoip6");
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  EXPECT_EQ((*lookup)->Source(), "none");
  EXPECT_EQ((*lookup)->Country(Ip("1.0.0.1")), "");
  auto no_paths = OpenCountryLookup("", "", "");
  ASSERT_TRUE(no_paths.ok());
  EXPECT_EQ((*no_paths)->Source(), "none");
}

TEST(OpenCountryLookupTest, PresentButBrokenTorDataIsAnError) {
  TempDir dir;
  auto lookup = OpenCountryLookup("", dir.Write("geoip", "nothing useful\n"), "");
  ASSERT_FALSE(lookup.ok());
  EXPECT_EQ(lookup.status().code(), StatusCode::kInvalidArgument);
}

TEST(OpenCountryLookupTest, DefaultsOpenOnThisMachine) {
  auto lookup = OpenCountryLookup("");
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  std::printf("[ source   ] %.*s\n", static_cast<int>((*lookup)->Source().size()),
              (*lookup)->Source().data());
}

}  // namespace
}  // namespace nucleon
