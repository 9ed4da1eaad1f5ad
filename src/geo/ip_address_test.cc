#include "geo/ip_address.h"

#include <gtest/gtest.h>

namespace nucleon {
namespace {

TEST(IpAddressTest, ParsesIpv4) {
  const auto ip = IpAddress::Parse("192.0.2.1");
  ASSERT_TRUE(ip.has_value());
  EXPECT_FALSE(ip->v6);
  EXPECT_EQ(ip->bytes[0], 192);
  EXPECT_EQ(ip->bytes[3], 1);
  EXPECT_EQ(ip->bytes[4], 0);
  EXPECT_EQ(ip->V4Value(), 0xC0000201u);
  EXPECT_EQ(IpAddress::Parse("0.0.0.0")->V4Value(), 0u);
  EXPECT_EQ(IpAddress::Parse("255.255.255.255")->V4Value(), 0xFFFFFFFFu);
}

TEST(IpAddressTest, ParsesIpv6) {
  const auto ip = IpAddress::Parse("2001:db8::1");
  ASSERT_TRUE(ip.has_value());
  EXPECT_TRUE(ip->v6);
  EXPECT_EQ(ip->bytes[0], 0x20);
  EXPECT_EQ(ip->bytes[1], 0x01);
  EXPECT_EQ(ip->bytes[2], 0x0d);
  EXPECT_EQ(ip->bytes[3], 0xb8);
  EXPECT_EQ(ip->bytes[15], 1);
  EXPECT_TRUE(IpAddress::Parse("::")->v6);
  EXPECT_TRUE(IpAddress::Parse("::1")->v6);
  EXPECT_TRUE(IpAddress::Parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")->v6);
  EXPECT_EQ(IpAddress::Parse("2001:DB8:0:0:0:0:0:1"), ip);
}

TEST(IpAddressTest, Ipv4MappedIpv6IsIpv4) {
  const auto mapped = IpAddress::Parse("::ffff:198.51.100.7");
  ASSERT_TRUE(mapped.has_value());
  EXPECT_FALSE(mapped->v6);
  EXPECT_EQ(mapped, IpAddress::Parse("198.51.100.7"));
  EXPECT_EQ(IpAddress::Parse("::ffff:c633:6407"), IpAddress::Parse("198.51.100.7"));
  EXPECT_EQ(IpAddress::Parse("0:0:0:0:0:ffff:198.51.100.7"), IpAddress::Parse("198.51.100.7"));
  // Other embeddings stay IPv6: they are not the same host as the IPv4 address.
  EXPECT_TRUE(IpAddress::Parse("::198.51.100.7")->v6);
  EXPECT_TRUE(IpAddress::Parse("64:ff9b::198.51.100.7")->v6);
}

TEST(IpAddressTest, FromBytes) {
  EXPECT_EQ(IpAddress::V4({10, 1, 2, 3}), IpAddress::Parse("10.1.2.3"));
  EXPECT_EQ(IpAddress::V6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3}),
            IpAddress::Parse("10.1.2.3"));
  EXPECT_EQ(IpAddress::V6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}),
            IpAddress::Parse("2001:db8::1"));
}

TEST(IpAddressTest, RejectsEverythingElse) {
  for (const char* bad : {"",
                          " ",
                          "1.2.3",
                          "1.2.3.4.5",
                          "256.1.1.1",
                          "1.2.3.4 ",
                          " 1.2.3.4",
                          "01.2.3.4",
                          "0x7f.0.0.1",
                          "1.2.3.4:80",
                          "[::1]",
                          "::1%eth0",
                          "2001:db8::1::2",
                          ":::",
                          "12345::",
                          "g::1",
                          "localhost",
                          "unknown",
                          "1.2.3.-4",
                          "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255.1",
                          "0000000000000000000000000000000000000000000000000000000001"}) {
    EXPECT_FALSE(IpAddress::Parse(bad).has_value()) << "'" << bad << "'";
  }
  EXPECT_FALSE(IpAddress::Parse(std::string_view("1.2.3.4\0", 8)).has_value());
  EXPECT_FALSE(IpAddress::Parse(std::string_view("1.2.\0.4", 7)).has_value());
}

}  // namespace
}  // namespace nucleon
