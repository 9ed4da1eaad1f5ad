#include <gtest/gtest.h>

#include "core/testing/temp_dir.h"
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
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

// Writes a tiny MaxMind DB with Debian's libmaxmind-db-writer-perl, shaped like
// GeoLite2-Country: {"country": {"iso_code": ..}, "registered_country": {"iso_code": ..}}.
// Arguments: output path, ip_version (4 or 6).
constexpr char kWriter[] = R"perl(
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;
my ($out, $ip_version) = @ARGV;
my %types = (country => 'map', registered_country => 'map', iso_code => 'utf8_string',
             names => 'map', en => 'utf8_string');
my $tree = MaxMind::DB::Writer::Tree->new(
  ip_version => $ip_version, record_size => 24, database_type => 'Nucleon-Test-Country',
  languages => ['en'], description => { en => 'nucleon geo test' },
  remove_reserved_networks => 0,
  map_key_type_callback => sub { $types{ $_[0] } });
$tree->insert_network('1.2.3.0/24', { country => { iso_code => 'DE', names => { en => 'Germany' } },
                                      registered_country => { iso_code => 'AT' } });
$tree->insert_network('1.2.5.0/24', { registered_country => { iso_code => 'NL' } });
$tree->insert_network('1.2.6.0/24', { country => { iso_code => 'se' } });
$tree->insert_network('1.2.7.0/24', { country => { iso_code => 'S1' } });
$tree->insert_network('1.2.8.0/24', { country => { names => { en => 'Nowhere' } } });
if ($ip_version == 6) {
  $tree->insert_network('2001:db8::/32', { country => { iso_code => 'FR' } });
  $tree->insert_network('2001:db8:1::/48', { country => { iso_code => 'BE' } });
}
open my $fh, '>:raw', $out or die "cannot write $out: $!";
$tree->write_tree($fh);
close $fh or die;
)perl";

bool HaveWriter() {
  return std::system("perl -MMaxMind::DB::Writer::Tree -e 1 >/dev/null 2>&1") == 0;
}

// Returns the path of a freshly written database, or "" if writing failed.
std::string MakeDatabase(const TempDir& dir, int ip_version) {
  const std::string script = dir.Write("writer.pl", kWriter);
  const std::string out = dir.path() + "/test-v" + std::to_string(ip_version) + ".mmdb";
  const std::string cmd = "perl '" + script + "' '" + out + "' " + std::to_string(ip_version);
  if (std::system(cmd.c_str()) != 0) return "";
  return out;
}

class MaxmindLookupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveWriter()) {
      GTEST_SKIP() << "perl MaxMind::DB::Writer missing (Debian: libmaxmind-db-writer-perl)";
    }
    path_ = MakeDatabase(dir_, 6);
    ASSERT_FALSE(path_.empty());
    auto lookup = OpenMaxmindCountryLookup(path_);
    ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
    lookup_ = std::move(lookup).value();
  }
  std::string_view Country(std::string_view ip) { return lookup_->Country(Ip(ip)); }

  TempDir dir_;
  std::string path_;
  std::unique_ptr<CountryLookup> lookup_;
};

TEST_F(MaxmindLookupTest, Ipv4) {
  EXPECT_EQ(Country("1.2.3.0"), "DE");
  EXPECT_EQ(Country("1.2.3.255"), "DE");  // country wins over registered_country
  EXPECT_EQ(Country("1.2.2.255"), "");
  EXPECT_EQ(Country("1.2.4.0"), "");
  EXPECT_EQ(Country("9.9.9.9"), "");
}

TEST_F(MaxmindLookupTest, Ipv6AndMapped) {
  EXPECT_EQ(Country("2001:db8::1"), "FR");
  EXPECT_EQ(Country("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), "FR");
  EXPECT_EQ(Country("2001:db8:1::"), "BE");
  EXPECT_EQ(Country("2001:db8:1:ffff::1"), "BE");
  EXPECT_EQ(Country("2001:db9::"), "");
  // The database has no ::ffff:0:0/96 alias: mapped addresses must be looked up as IPv4.
  EXPECT_EQ(Country("::ffff:1.2.3.4"), "DE");
}

TEST_F(MaxmindLookupTest, RegisteredCountryIsTheFallback) { EXPECT_EQ(Country("1.2.5.1"), "NL"); }

TEST_F(MaxmindLookupTest, CodesAreCheckedAndUppercased) {
  EXPECT_EQ(Country("1.2.6.1"), "SE");
  EXPECT_EQ(Country("1.2.7.1"), "");  // "S1" is not a code
  EXPECT_EQ(Country("1.2.8.1"), "");  // a country without iso_code
}

TEST_F(MaxmindLookupTest, Source) { EXPECT_EQ(lookup_->Source(), "mmdb:" + path_); }

TEST_F(MaxmindLookupTest, ConcurrentLookupsAgree) {
  std::vector<std::thread> threads;
  std::vector<int> wrong(4, 0);
  const IpAddress de = Ip("1.2.3.4"), fr = Ip("2001:db8::5");
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i) {
        wrong[t] += lookup_->Country(de) != "DE";
        wrong[t] += lookup_->Country(fr) != "FR";
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int w : wrong) EXPECT_EQ(w, 0);
}

TEST_F(MaxmindLookupTest, PrintsLookupCost) {
  constexpr int kN = 1 << 20;
  const IpAddress ips[] = {Ip("1.2.3.4"), Ip("9.9.9.9"), Ip("2001:db8:1::7"), Ip("2a00::1")};
  size_t found = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kN; ++i) found += !lookup_->Country(ips[i & 3]).empty();
  const std::chrono::duration<double, std::nano> d = std::chrono::steady_clock::now() - start;
  std::printf("[ cost     ] tiny mmdb lookup %.0f ns (%zu/%d known)\n", d.count() / kN, found, kN);
}

TEST_F(MaxmindLookupTest, OpenCountryLookupPrefersTheDatabase) {
  const std::string tor = dir_.Write("geoip", "16909056,16909311,US\n");  // 1.2.3.0/24
  auto lookup = OpenCountryLookup(path_, tor, "");
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  EXPECT_EQ((*lookup)->Source(), "mmdb:" + path_);
  EXPECT_EQ((*lookup)->Country(Ip("1.2.3.4")), "DE");
}

TEST(MaxmindLookupV4Test, Ipv6InAnIpv4DatabaseIsUnknown) {
  if (!HaveWriter()) GTEST_SKIP() << "perl MaxMind::DB::Writer missing";
  TempDir dir;
  const std::string path = MakeDatabase(dir, 4);
  ASSERT_FALSE(path.empty());
  auto lookup = OpenMaxmindCountryLookup(path);
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  EXPECT_EQ((*lookup)->Country(Ip("1.2.3.4")), "DE");
  EXPECT_EQ((*lookup)->Country(Ip("::ffff:1.2.3.4")), "DE");
  EXPECT_EQ((*lookup)->Country(Ip("2001:db8::1")), "");
}

// These need no writer: they run everywhere.
TEST(MaxmindOpenTest, MissingFileIsNotFound) {
  TempDir dir;
  auto lookup = OpenMaxmindCountryLookup(dir.path() + "/GeoLite2-Country.mmdb");
  ASSERT_FALSE(lookup.ok());
  EXPECT_EQ(lookup.status().code(), StatusCode::kNotFound);
  EXPECT_NE(lookup.status().message().find("GeoLite2-Country.mmdb"), std::string::npos);
}

TEST(MaxmindOpenTest, NotADatabaseIsInvalidArgument) {
  TempDir dir;
  for (const std::string& content : {std::string("16777216,16777471,AU\n"), std::string(4096, '\0'),
                                     std::string("x"), std::string("\xab\xcd\xefMaxMind.com")}) {
    const std::string path = dir.Write("bogus.mmdb", content);
    auto lookup = OpenMaxmindCountryLookup(path);
    ASSERT_FALSE(lookup.ok());
    EXPECT_EQ(lookup.status().code(), StatusCode::kInvalidArgument) << lookup.status().ToString();
    EXPECT_NE(lookup.status().message().find(path), std::string::npos);
  }
}

TEST(MaxmindOpenTest, EmptyFileOrDirectoryIsInvalidArgument) {
  TempDir dir;
  auto empty = OpenMaxmindCountryLookup(dir.Write("empty.mmdb", ""));
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument) << empty.status().ToString();
  auto directory = OpenMaxmindCountryLookup(dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.status().code(), StatusCode::kInvalidArgument);
}

TEST(MaxmindOpenTest, OpenCountryLookupDoesNotFallBackWhenTheDatabaseFails) {
  TempDir dir;
  const std::string tor = dir.Write("geoip", "16777216,16777471,AU\n");
  auto lookup = OpenCountryLookup(dir.path() + "/missing.mmdb", tor, "");
  EXPECT_FALSE(lookup.ok());
}

}  // namespace
}  // namespace nucleon
