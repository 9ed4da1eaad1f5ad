#include "geo/cidr_set.h"

#include <gtest/gtest.h>

#include <string>

namespace nucleon {
namespace {

IpAddress Ip(std::string_view text) {
  const std::optional<IpAddress> ip = IpAddress::Parse(text);
  EXPECT_TRUE(ip.has_value()) << text;
  return ip.value_or(IpAddress{});
}

CidrSet Set(std::string_view list) {
  Result<CidrSet> set = CidrSet::Parse(list);
  EXPECT_TRUE(set.ok()) << set.status().ToString();
  return set.ok() ? std::move(set).value() : CidrSet();
}

TEST(CidrSetTest, EmptyListTrustsNoOne) {
  EXPECT_TRUE(Set("").empty());
  EXPECT_TRUE(Set(" , ,").empty());
  EXPECT_FALSE(Set("").Contains(Ip("127.0.0.1")));
  EXPECT_FALSE(CidrSet().Contains(Ip("::1")));
}

TEST(CidrSetTest, Ipv4Networks) {
  const CidrSet set = Set("10.0.0.0/8, 192.168.1.7 ,172.16.0.0/12");
  EXPECT_FALSE(set.empty());
  EXPECT_TRUE(set.Contains(Ip("10.0.0.0")));
  EXPECT_TRUE(set.Contains(Ip("10.255.255.255")));
  EXPECT_FALSE(set.Contains(Ip("11.0.0.0")));
  EXPECT_FALSE(set.Contains(Ip("9.255.255.255")));
  EXPECT_TRUE(set.Contains(Ip("192.168.1.7")));
  EXPECT_FALSE(set.Contains(Ip("192.168.1.8")));
  EXPECT_TRUE(set.Contains(Ip("172.31.255.255")));
  EXPECT_FALSE(set.Contains(Ip("172.32.0.0")));
  // IPv4-mapped peers from a dual-stack socket match IPv4 networks.
  EXPECT_TRUE(set.Contains(Ip("::ffff:10.1.2.3")));
  // An IPv6 address never matches an IPv4 network, even with the same leading bytes.
  EXPECT_FALSE(set.Contains(Ip("a00::")));
}

TEST(CidrSetTest, PrefixExtremes) {
  const CidrSet all4 = Set("0.0.0.0/0");
  EXPECT_TRUE(all4.Contains(Ip("0.0.0.0")));
  EXPECT_TRUE(all4.Contains(Ip("255.255.255.255")));
  EXPECT_FALSE(all4.Contains(Ip("::1")));

  const CidrSet all6 = Set("::/0");
  EXPECT_TRUE(all6.Contains(Ip("::1")));
  EXPECT_TRUE(all6.Contains(Ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(all6.Contains(Ip("1.2.3.4")));

  const CidrSet host4 = Set("203.0.113.9/32");
  EXPECT_TRUE(host4.Contains(Ip("203.0.113.9")));
  EXPECT_FALSE(host4.Contains(Ip("203.0.113.8")));
  EXPECT_FALSE(host4.Contains(Ip("203.0.113.10")));

  const CidrSet host6 = Set("2001:db8::1/128,::1");
  EXPECT_TRUE(host6.Contains(Ip("2001:db8::1")));
  EXPECT_FALSE(host6.Contains(Ip("2001:db8::2")));
  EXPECT_FALSE(host6.Contains(Ip("2001:db8::")));
  EXPECT_TRUE(host6.Contains(Ip("::1")));
}

TEST(CidrSetTest, Ipv6NetworksOnOddPrefixes) {
  const CidrSet set = Set("fd00::/7,2001:db8:ab80::/41");
  EXPECT_TRUE(set.Contains(Ip("fc00::")));
  EXPECT_TRUE(set.Contains(Ip("fdff:ffff::1")));
  EXPECT_FALSE(set.Contains(Ip("fe00::")));
  EXPECT_FALSE(set.Contains(Ip("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_TRUE(set.Contains(Ip("2001:db8:ab80::")));
  EXPECT_TRUE(set.Contains(Ip("2001:db8:abff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(set.Contains(Ip("2001:db8:ab7f:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(set.Contains(Ip("2001:db8:ac00::")));
}

TEST(CidrSetTest, HostBitsAreIgnored) {
  const CidrSet set = Set("10.1.2.3/8,2001:db8::77/32");
  EXPECT_TRUE(set.Contains(Ip("10.200.0.1")));
  EXPECT_TRUE(set.Contains(Ip("2001:db8:ffff::1")));
}

TEST(CidrSetTest, Ipv4MappedNetworkMeansIpv4) {
  const CidrSet set = Set("::ffff:10.0.0.0/104");
  EXPECT_TRUE(set.Contains(Ip("10.9.9.9")));
  EXPECT_FALSE(set.Contains(Ip("11.0.0.0")));
  EXPECT_TRUE(Set("::ffff:1.2.3.4").Contains(Ip("1.2.3.4")));
  EXPECT_FALSE(CidrSet::Parse("::ffff:10.0.0.0/95").ok());
}

TEST(CidrSetTest, BadEntriesAreInvalidArgumentNamingTheEntry) {
  for (const std::string bad : {"10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/", "10.0.0.0/8x",
                                "10.0.0.0/ 8", "10.0.0/8", "example.com", "/8", "1.2.3.4/8/8",
                                "::1/+5", "unknown", "10.0.0.0/99999999999999999999"}) {
    const Result<CidrSet> set = CidrSet::Parse("127.0.0.1, " + bad + ", ::1");
    ASSERT_FALSE(set.ok()) << bad;
    EXPECT_EQ(set.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(set.status().message().find("\"" + bad + "\""), std::string::npos)
        << set.status().message();
  }
}

class ClientAddressTest : public ::testing::Test {
 protected:
  IpAddress Client(std::string_view peer, std::string_view xff, std::string_view real = "") {
    return ClientAddress(Ip(peer), xff, real, trusted_);
  }
  CidrSet trusted_ = Set("10.0.0.0/8, ::1, fd00::/8");
};

TEST_F(ClientAddressTest, UntrustedPeerIsTheClientWhateverTheHeadersSay) {
  EXPECT_EQ(Client("198.51.100.1", "203.0.113.5", "203.0.113.6"), Ip("198.51.100.1"));
  EXPECT_EQ(ClientAddress(Ip("10.0.0.1"), "203.0.113.5", "203.0.113.6", CidrSet()), Ip("10.0.0.1"));
}

TEST_F(ClientAddressTest, TrustedPeerWithoutHeadersIsTheClient) {
  EXPECT_EQ(Client("10.0.0.1", ""), Ip("10.0.0.1"));
  EXPECT_EQ(Client("::1", "  "), Ip("::1"));
}

TEST_F(ClientAddressTest, SingleHop) {
  EXPECT_EQ(Client("10.0.0.1", "203.0.113.5"), Ip("203.0.113.5"));
  EXPECT_EQ(Client("::ffff:10.0.0.1", "2001:db8::5"), Ip("2001:db8::5"));
}

TEST_F(ClientAddressTest, MultiHopTakesRightMostUntrusted) {
  // The client forged the first entry; our two proxies appended the rest.
  EXPECT_EQ(Client("10.0.0.1", "1.1.1.1, 203.0.113.5, 10.0.0.2, fd00::3"), Ip("203.0.113.5"));
  EXPECT_EQ(Client("10.0.0.1", "1.1.1.1,203.0.113.5,10.0.0.2"), Ip("203.0.113.5"));
}

TEST_F(ClientAddressTest, AllTrustedFallsBackToRealIpThenPeer) {
  EXPECT_EQ(Client("10.0.0.1", "10.0.0.3, 10.0.0.2", "203.0.113.9"), Ip("203.0.113.9"));
  EXPECT_EQ(Client("10.0.0.1", "10.0.0.3, 10.0.0.2"), Ip("10.0.0.1"));
}

TEST_F(ClientAddressTest, RealIpWhenNoForwardedFor) {
  EXPECT_EQ(Client("10.0.0.1", "", " 203.0.113.9 "), Ip("203.0.113.9"));
  EXPECT_EQ(Client("10.0.0.1", "", "garbage"), Ip("10.0.0.1"));
}

TEST_F(ClientAddressTest, PortsBracketsAndQuotesAreStripped) {
  EXPECT_EQ(Client("10.0.0.1", "203.0.113.5:4711"), Ip("203.0.113.5"));
  EXPECT_EQ(Client("10.0.0.1", "[2001:db8::5]:443"), Ip("2001:db8::5"));
  EXPECT_EQ(Client("10.0.0.1", "[2001:db8::5]"), Ip("2001:db8::5"));
  EXPECT_EQ(Client("10.0.0.1", "\"[2001:db8::5]:443\""), Ip("2001:db8::5"));
  EXPECT_EQ(Client("10.0.0.1", "", "[2001:db8::6]:80"), Ip("2001:db8::6"));
}

TEST_F(ClientAddressTest, GarbageStopsTheWalk) {
  // Squid with forwarded_for off writes "unknown": what is left of it is the client's word.
  EXPECT_EQ(Client("10.0.0.1", "203.0.113.5, unknown"), Ip("10.0.0.1"));
  EXPECT_EQ(Client("10.0.0.1", "203.0.113.5, unknown", "198.51.100.2"), Ip("198.51.100.2"));
  EXPECT_EQ(Client("10.0.0.1", "203.0.113.5, unknown, 10.0.0.2"), Ip("10.0.0.1"));
  // Garbage left of the answer does not matter.
  EXPECT_EQ(Client("10.0.0.1", "<script>, 999.1.1.1, 203.0.113.5, 10.0.0.2"), Ip("203.0.113.5"));
  for (const char* junk : {"[2001:db8::5", "[2001:db8::5]x", "[]", "1.2.3.4:5:6:7", ":",
                           "1.2.3.4 5.6.7.8", "\"", "[", "]", ";;;"}) {
    EXPECT_EQ(Client("10.0.0.1", junk), Ip("10.0.0.1")) << junk;
  }
}

TEST_F(ClientAddressTest, EmptyElementsAreSkipped) {
  EXPECT_EQ(Client("10.0.0.1", "203.0.113.5, , 10.0.0.2,"), Ip("203.0.113.5"));
  EXPECT_EQ(Client("10.0.0.1", ",,,"), Ip("10.0.0.1"));
}

}  // namespace
}  // namespace nucleon
