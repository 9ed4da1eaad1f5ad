#include <gtest/gtest.h>

#include "core/testing/temp_dir.h"
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "geo/country_lookup.h"

namespace nucleon {
namespace {

IpAddress Ip(std::string_view text) {
  const std::optional<IpAddress> ip = IpAddress::Parse(text);
  EXPECT_TRUE(ip.has_value()) << text;
  return ip.value_or(IpAddress{});
}

// 1.0.0.0 = 16777216.
constexpr char kV4[] =
    "# Comment lines and blank lines are skipped.\n"
    "\n"
    "0,255,AQ\n"                  // 0.0.0.0 - 0.0.0.255: the very first address.
    "16777216,16777471,AU\n"      // 1.0.0.0 - 1.0.0.255
    "16777472,16778239,cn\r\n"    // 1.0.1.0 - 1.0.3.255, lowercase, CRLF
    "16778240,16778495,??\n"      // 1.0.4.0 - 1.0.4.255: explicitly unknown
    "16778752,16779007, JP \n"    // 1.0.6.0 - 1.0.6.255, after a gap (1.0.5.x)
    "4294967040,4294967295,ZZ\n"  // 255.255.255.0 - 255.255.255.255: the very last
    "33554432,33554687,\n"        // 2.0.0.0/24 with an empty code: unknown
    // Malformed lines, each skipped on its own:
    "garbage\n"
    "50331648,50331903\n"           // 3.0.0.0/24, no code
    "50331904,50331648,US\n"        // from > to
    "99999999999,99999999999,US\n"  // beyond 32 bits
    "-5,10,US\n"
    "abc,def,US\n"
    "50332160,50332415,U\n"   // one-letter code
    "50332416,50332671,U1\n"  // not letters
    "50332672,50332927,US,extra\n"
    ",,\n"
    "50333184 50333439 US\n"
    "16779008,16779263,KR";  // 1.0.7.0 - 1.0.7.255, no final newline

constexpr char kV6[] =
    "# IPv6\n"
    "2001:2::,2001:2:0:ffff:ffff:ffff:ffff:ffff,JP\n"
    "2001:4:112::,2001:4:112:ffff:ffff:ffff:ffff:ffff,us\n"
    "2001:db8::,2001:db8::ffff,??\n"
    "::ffff:9.9.9.0,::ffff:9.9.9.255,CH\n"  // IPv4-mapped: answers for 9.9.9.x
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,XA\n"
    "::,::ff,XB\n"
    // Malformed:
    "2001:zz::,2001::1,US\n"
    "2001:5::,2001:4::,US\n"  // from > to
    "2001:6::,9.9.9.9,US\n"   // mixed families
    "2001:7::\n"
    "2001:8::,2001:8::1,USA\n";

class RangeTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto lookup = OpenRangeTableCountryLookup(dir_.Write("geoip", kV4), dir_.Write("geoip6", kV6));
    ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
    lookup_ = std::move(lookup).value();
  }
  std::string_view Country(std::string_view ip) { return lookup_->Country(Ip(ip)); }

  TempDir dir_;
  std::unique_ptr<CountryLookup> lookup_;
};

TEST_F(RangeTableTest, Ipv4Boundaries) {
  EXPECT_EQ(Country("0.255.255.255"), "");
  EXPECT_EQ(Country("1.0.0.0"), "AU");
  EXPECT_EQ(Country("1.0.0.128"), "AU");
  EXPECT_EQ(Country("1.0.0.255"), "AU");
  EXPECT_EQ(Country("1.0.1.0"), "CN");
  EXPECT_EQ(Country("1.0.3.255"), "CN");
  EXPECT_EQ(Country("1.0.4.0"), "");  // "??"
  EXPECT_EQ(Country("1.0.4.255"), "");
  EXPECT_EQ(Country("1.0.5.0"), "");  // gap
  EXPECT_EQ(Country("1.0.5.255"), "");
  EXPECT_EQ(Country("1.0.6.0"), "JP");
  EXPECT_EQ(Country("1.0.6.255"), "JP");
  EXPECT_EQ(Country("1.0.7.0"), "KR");
  EXPECT_EQ(Country("1.0.7.255"), "KR");
  EXPECT_EQ(Country("1.0.8.0"), "");
  EXPECT_EQ(Country("2.0.0.1"), "");  // empty code
}

TEST_F(RangeTableTest, EndsOfTheAddressSpace) {
  EXPECT_EQ(Country("0.0.0.0"), "AQ");
  EXPECT_EQ(Country("0.0.0.255"), "AQ");
  EXPECT_EQ(Country("0.0.1.0"), "");
  EXPECT_EQ(Country("255.255.254.255"), "");
  EXPECT_EQ(Country("255.255.255.0"), "ZZ");
  EXPECT_EQ(Country("255.255.255.255"), "ZZ");
  EXPECT_EQ(Country("::"), "XB");
  EXPECT_EQ(Country("::ff"), "XB");
  EXPECT_EQ(Country("::100"), "");
  EXPECT_EQ(Country("ffff:ffff:ffff:ffff:ffff:ffff:ffff:feff"), "");
  EXPECT_EQ(Country("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00"), "XA");
  EXPECT_EQ(Country("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), "XA");
}

TEST_F(RangeTableTest, MalformedLinesAreSkipped) {
  for (const char* ip : {"3.0.0.0", "3.0.0.255", "3.0.1.0", "3.0.2.0", "3.0.3.0", "3.0.4.0",
                         "3.0.5.0", "3.0.6.0", "2001:5::", "2001:6::", "2001:7::", "2001:8::"}) {
    EXPECT_EQ(Country(ip), "") << ip;
  }
}

TEST_F(RangeTableTest, Ipv6Boundaries) {
  EXPECT_EQ(Country("2001:1:ffff:ffff:ffff:ffff:ffff:ffff"), "");
  EXPECT_EQ(Country("2001:2::"), "JP");
  EXPECT_EQ(Country("2001:2:0:1234::1"), "JP");
  EXPECT_EQ(Country("2001:2:0:ffff:ffff:ffff:ffff:ffff"), "JP");
  EXPECT_EQ(Country("2001:2:1::"), "");
  EXPECT_EQ(Country("2001:4:112::"), "US");
  EXPECT_EQ(Country("2001:4:112:ffff:ffff:ffff:ffff:ffff"), "US");
  EXPECT_EQ(Country("2001:4:113::"), "");
  EXPECT_EQ(Country("2001:db8::1"), "");
}

TEST_F(RangeTableTest, Ipv4MappedIpv6LooksUpIpv4) {
  EXPECT_EQ(Country("::ffff:1.0.0.7"), "AU");
  EXPECT_EQ(Country("::ffff:1.0.5.7"), "");
  // A mapped range in the IPv6 file lands in the IPv4 table.
  EXPECT_EQ(Country("9.9.9.0"), "CH");
  EXPECT_EQ(Country("::ffff:9.9.9.255"), "CH");
  EXPECT_EQ(Country("9.9.10.0"), "");
}

TEST_F(RangeTableTest, ConcurrentLookupsAgree) {
  std::vector<std::thread> threads;
  std::vector<int> wrong(4, 0);
  const IpAddress au = Ip("1.0.0.7"), jp = Ip("2001:2::7");
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i) {
        wrong[t] += lookup_->Country(au) != "AU";
        wrong[t] += lookup_->Country(jp) != "JP";
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int w : wrong) EXPECT_EQ(w, 0);
}

TEST_F(RangeTableTest, SourceNamesTheFiles) {
  EXPECT_EQ(lookup_->Source(), "tor-geoipdb:" + dir_.path() + "/geoip," + dir_.path() + "/geoip6");
}

TEST(RangeTableLookupTest, TouchingRangesMergeAndStillAnswer) {
  TempDir dir;
  auto lookup = OpenRangeTableCountryLookup(
      dir.Write("v4", "10,19,DE\n20,29,DE\n30,39,FR\n0,9,DE\n"),
      dir.Write("v6",
                // Touching across the 64-bit boundary of the 128-bit key.
                "2001:db8::,2001:db8::ffff:ffff:ffff:ffff,NL\n"
                "2001:db8:0:1::,2001:db8:0:1::ffff,NL\n"
                "2001:db8:0:1::1:0,2001:db8:0:1::1:ffff,BE\n"));
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  const CountryLookup& l = **lookup;
  EXPECT_EQ(l.Country(Ip("0.0.0.0")), "DE");
  EXPECT_EQ(l.Country(Ip("0.0.0.19")), "DE");
  EXPECT_EQ(l.Country(Ip("0.0.0.29")), "DE");
  EXPECT_EQ(l.Country(Ip("0.0.0.30")), "FR");
  EXPECT_EQ(l.Country(Ip("0.0.0.39")), "FR");
  EXPECT_EQ(l.Country(Ip("0.0.0.40")), "");
  EXPECT_EQ(l.Country(Ip("2001:db8::ffff:ffff:ffff:ffff")), "NL");
  EXPECT_EQ(l.Country(Ip("2001:db8:0:1::")), "NL");
  EXPECT_EQ(l.Country(Ip("2001:db8:0:1::ffff")), "NL");
  EXPECT_EQ(l.Country(Ip("2001:db8:0:1::1:0")), "BE");
  EXPECT_EQ(l.Country(Ip("2001:db8:0:1::2:0")), "");
}

TEST(RangeTableLookupTest, OverlappingRangesKeepTheFirstAndDoNotBreakTheSearch) {
  TempDir dir;
  auto lookup = OpenRangeTableCountryLookup(
      dir.Write("v4", "100,200,DE\n150,300,FR\n100,120,IT\n400,500,ES\n"), "");
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  const CountryLookup& l = **lookup;
  // Sorted by (start, end), IT comes first; DE overlaps it and goes; FR then overlaps nothing kept.
  EXPECT_EQ(l.Country(Ip("0.0.0.100")), "IT");
  EXPECT_EQ(l.Country(Ip("0.0.0.120")), "IT");
  EXPECT_EQ(l.Country(Ip("0.0.0.121")), "");
  EXPECT_EQ(l.Country(Ip("0.0.0.150")), "FR");
  EXPECT_EQ(l.Country(Ip("0.0.1.44")), "FR");  // 300
  EXPECT_EQ(l.Country(Ip("0.0.1.45")), "");
  EXPECT_EQ(l.Country(Ip("0.0.1.144")), "ES");
}

TEST(RangeTableLookupTest, OneFamilyOnly) {
  TempDir dir;
  auto v4_only = OpenRangeTableCountryLookup(dir.Write("v4", "16777216,16777471,AU\n"), "");
  ASSERT_TRUE(v4_only.ok());
  EXPECT_EQ((*v4_only)->Country(Ip("1.0.0.1")), "AU");
  EXPECT_EQ((*v4_only)->Country(Ip("2001:2::1")), "");
  EXPECT_EQ((*v4_only)->Source(), "tor-geoipdb:" + dir.path() + "/v4");

  auto v6_only = OpenRangeTableCountryLookup("", dir.Write("v6", "2001:2::,2001:2::ff,JP\n"));
  ASSERT_TRUE(v6_only.ok());
  EXPECT_EQ((*v6_only)->Country(Ip("2001:2::1")), "JP");
  EXPECT_EQ((*v6_only)->Country(Ip("1.0.0.1")), "");
}

TEST(RangeTableLookupTest, UnreadableOrUselessFilesAreErrors) {
  TempDir dir;
  auto missing = OpenRangeTableCountryLookup(dir.path() + "/missing", "");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(missing.status().message().find("/missing"), std::string::npos);

  auto directory = OpenRangeTableCountryLookup(dir.path(), "");
  EXPECT_FALSE(directory.ok());

  auto useless =
      OpenRangeTableCountryLookup(dir.Write("v4", "# nothing\n0,5,??\nxx\n"), dir.Write("v6", ""));
  ASSERT_FALSE(useless.ok());
  EXPECT_EQ(useless.status().code(), StatusCode::kInvalidArgument);
}

TEST(RangeTableLookupTest, RangesAcrossIndexBuckets) {
  TempDir dir;
  auto lookup = OpenRangeTableCountryLookup(
      dir.Write("v4",
                "1.255.255.0,2.0.0.255,DE\n"    // straddles a /16 (and /8) boundary
                "3.0.0.0,5.255.255.255,FR\n"    // many whole /16s
                "6.0.255.255,6.0.255.255,IT\n"  // last address of a /16
                "6.1.0.0,6.1.0.0,ES\n"),        // first address of the next
      dir.Write("v6",
                "2001:ffff:ffff::,2002::ff,NL\n"
                "2003::,2fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,BE\n"));
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  const CountryLookup& l = **lookup;
  EXPECT_EQ(l.Country(Ip("1.255.254.255")), "");
  EXPECT_EQ(l.Country(Ip("1.255.255.0")), "DE");
  EXPECT_EQ(l.Country(Ip("2.0.0.0")), "DE");
  EXPECT_EQ(l.Country(Ip("2.0.0.255")), "DE");
  EXPECT_EQ(l.Country(Ip("2.0.1.0")), "");
  EXPECT_EQ(l.Country(Ip("2.255.255.255")), "");
  EXPECT_EQ(l.Country(Ip("3.0.0.0")), "FR");
  EXPECT_EQ(l.Country(Ip("4.128.7.9")), "FR");
  EXPECT_EQ(l.Country(Ip("5.255.255.255")), "FR");
  EXPECT_EQ(l.Country(Ip("6.0.0.0")), "");
  EXPECT_EQ(l.Country(Ip("6.0.255.254")), "");
  EXPECT_EQ(l.Country(Ip("6.0.255.255")), "IT");
  EXPECT_EQ(l.Country(Ip("6.1.0.0")), "ES");
  EXPECT_EQ(l.Country(Ip("6.1.0.1")), "");
  EXPECT_EQ(l.Country(Ip("2001:ffff:fffe:ffff:ffff:ffff:ffff:ffff")), "");
  EXPECT_EQ(l.Country(Ip("2001:ffff:ffff::")), "NL");
  EXPECT_EQ(l.Country(Ip("2002::")), "NL");
  EXPECT_EQ(l.Country(Ip("2002::ff")), "NL");
  EXPECT_EQ(l.Country(Ip("2002::100")), "");
  EXPECT_EQ(l.Country(Ip("2003::")), "BE");
  EXPECT_EQ(l.Country(Ip("2abc::1")), "BE");
  EXPECT_EQ(l.Country(Ip("2fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), "BE");
  EXPECT_EQ(l.Country(Ip("3000::")), "");
}

// Random disjoint ranges against a linear scan, probing every boundary.
TEST(RangeTableLookupTest, AgreesWithALinearScan) {
  struct Range {
    uint32_t start, end;
    const char* code;
  };
  const char* const kCodes[] = {"DE", "FR", "IT", "??"};
  std::mt19937 rng(1234);
  std::vector<Range> ranges;
  uint32_t next = 0x01000000;
  while (ranges.size() < 5000) {
    const uint32_t gap = rng() % 3 == 0 ? 0 : rng() % 70000;
    const uint32_t width = rng() % 4 == 0 ? rng() % 300000 : rng() % 300;
    if (next > 0xF0000000) break;
    ranges.push_back({next + gap, next + gap + width, kCodes[rng() % 4]});
    next = next + gap + width + 1;
  }
  std::string text;
  for (const Range& r : ranges) {
    text += std::to_string(r.start) + "," + std::to_string(r.end) + "," + r.code + "\n";
  }
  TempDir dir;
  auto lookup = OpenRangeTableCountryLookup(dir.Write("v4", text), "");
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();

  auto expected = [&](uint32_t x) -> std::string_view {
    for (const Range& r : ranges) {
      if (r.start <= x && x <= r.end) return std::string_view(r.code) == "??" ? "" : r.code;
    }
    return "";
  };
  std::vector<uint32_t> probes;
  for (const Range& r : ranges) {
    probes.insert(probes.end(), {r.start - 1, r.start, r.start + 1, r.end - 1, r.end, r.end + 1});
  }
  for (int i = 0; i < 5000; ++i) probes.push_back(0x01000000 + rng() % 0x80000000u);
  for (const uint32_t x : probes) {
    const IpAddress ip =
        IpAddress::V4({static_cast<uint8_t>(x >> 24), static_cast<uint8_t>(x >> 16),
                       static_cast<uint8_t>(x >> 8), static_cast<uint8_t>(x)});
    ASSERT_EQ((*lookup)->Country(ip), expected(x)) << x;
  }
}

TEST(RangeTableLookupTest, BinaryJunkDoesNotCrash) {
  TempDir dir;
  std::string junk;
  std::mt19937 rng(42);
  for (int i = 0; i < 100000; ++i) junk.push_back(static_cast<char>(rng()));
  junk += "\n16777216,16777471,AU\n";
  auto lookup = OpenRangeTableCountryLookup(dir.Write("v4", junk), dir.Write("v6", junk));
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  EXPECT_EQ((*lookup)->Country(Ip("1.0.0.1")), "AU");
}

// Loads Debian's tor-geoipdb when installed and prints what loading and a lookup cost.
// Measures, never asserts a time.
TEST(RangeTableLookupTest, RealTorGeoipdbCost) {
  const std::string v4 = "/usr/share/tor/geoip";
  const std::string v6 = "/usr/share/tor/geoip6";
  if (!std::filesystem::exists(v4) || !std::filesystem::exists(v6)) {
    GTEST_SKIP() << "tor-geoipdb is not installed";
  }
  const auto load_start = std::chrono::steady_clock::now();
  auto lookup = OpenRangeTableCountryLookup(v4, v6);
  const auto load_end = std::chrono::steady_clock::now();
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  const CountryLookup& l = **lookup;
  EXPECT_EQ(l.Country(Ip("10.1.2.3")), "");  // Private: never in the data.
  EXPECT_NE(l.Country(Ip("8.8.8.8")), "");   // Long-allocated public blocks.
  EXPECT_NE(l.Country(Ip("2001:4860::8888")), "");

  constexpr int kN = 1 << 20;
  std::mt19937_64 rng(7);
  std::vector<IpAddress> v4_ips(kN), v6_ips(kN);
  for (int i = 0; i < kN; ++i) {
    const uint64_t r = rng();
    v4_ips[i] = IpAddress::V4({static_cast<uint8_t>(r), static_cast<uint8_t>(r >> 8),
                               static_cast<uint8_t>(r >> 16), static_cast<uint8_t>(r >> 24)});
    std::array<uint8_t, 16> b{};
    b[0] = static_cast<uint8_t>(0x20 + (r >> 32) % 16);  // 2000::/4, where allocations are.
    for (int j = 1; j < 16; ++j) b[j] = static_cast<uint8_t>(rng());
    v6_ips[i] = IpAddress::V6(b);
  }
  auto time = [&](const std::vector<IpAddress>& ips, size_t* found) {
    const auto start = std::chrono::steady_clock::now();
    for (const IpAddress& ip : ips) *found += !l.Country(ip).empty();
    const std::chrono::duration<double, std::nano> d = std::chrono::steady_clock::now() - start;
    return d.count() / static_cast<double>(ips.size());
  };
  size_t found4 = 0, found6 = 0;
  const double ns4 = time(v4_ips, &found4);
  const double ns6 = time(v6_ips, &found6);
  std::printf(
      "[ cost     ] tor-geoipdb load %.0f ms; lookup IPv4 %.0f ns (%zu/%d known), "
      "IPv6 %.0f ns (%zu/%d known)\n",
      std::chrono::duration<double, std::milli>(load_end - load_start).count(), ns4, found4, kN,
      ns6, found6, kN);
}

}  // namespace
}  // namespace nucleon
