#include "cli/config_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace nucleon {
namespace {

const KnownOptions kKnown = {{"listen", true}, {"max-body", true}, {"demo", false}, {"data", true}};

TEST(ConfigFileTest, ReadsKeyValueLinesCommentsAndBlanks) {
  auto r = ParseConfig(
      "# Nucleon\n"
      "\n"
      "  listen = 0.0.0.0:8080  \n"
      "max_body=1024\r\n"
      "demo = yes\n"
      "data =\n",
      "test.conf", kKnown);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, (OptionMap{{"listen", "0.0.0.0:8080"}, {"max-body", "1024"}, {"demo", "1"}}));
}

TEST(ConfigFileTest, SwitchesTakeTheUsualYesAndNo) {
  for (const char* yes : {"1", "true", "Yes", "ON"}) {
    EXPECT_EQ(ParseConfig(std::string("demo = ") + yes, "c", kKnown)->at("demo"), "1") << yes;
  }
  for (const char* no : {"0", "false", "no", "Off"}) {
    EXPECT_EQ(ParseConfig(std::string("demo = ") + no, "c", kKnown)->at("demo"), "0") << no;
  }
}

TEST(ConfigFileTest, AMalformedFileIsAnErrorNamingTheLine) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : {
           Case{"listen 127.0.0.1:1", "test.conf:1: expected `key = value`"},
           Case{"\n\nport = 8080", "test.conf:3: unknown option \"port\""},
           Case{"= 1", "test.conf:1: unknown option \"\""},
           Case{"demo = maybe", "test.conf:1: demo takes true or false"},
           Case{"listen = a:1\nlisten = b:2", "test.conf:2: listen is set twice"},
       }) {
    auto r = ParseConfig(c.text, "test.conf", kKnown);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message().rfind(c.message, 0), 0u) << r.status().message();
  }
}

TEST(ConfigFileTest, AMissingFileIsEmptyUnlessRequired) {
  const std::string missing = ::testing::TempDir() + "/no-such-nucleon.conf";
  auto optional = ReadConfigFile(missing, /*required=*/false, kKnown);
  ASSERT_TRUE(optional.ok());
  EXPECT_TRUE(optional->empty());
  auto required = ReadConfigFile(missing, /*required=*/true, kKnown);
  ASSERT_FALSE(required.ok());
  EXPECT_NE(required.status().message().find(missing), std::string::npos);

  const std::string path = ::testing::TempDir() + "/nucleon-" + std::to_string(getpid()) + ".conf";
  std::ofstream(path) << "listen = 127.0.0.1:9\nbogus = 1\n";
  auto bad = ReadConfigFile(path, /*required=*/false, kKnown);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().rfind(path + ":2: unknown option", 0), 0u)
      << bad.status().message();
  std::remove(path.c_str());
}

TEST(ConfigFileTest, FlagsBeatTheEnvironmentWhichBeatsTheFileWhichBeatsTheDefault) {
  EXPECT_EQ(OptionEnvName("max-connections-per-ip"), "NUCLEON_MAX_CONNECTIONS_PER_IP");
  const OptionMap file = {{"listen", "file:1"}, {"max-body", "100"}, {"data", "/var/lib/x"}};
  const OptionMap flags = {{"listen", "flag:1"}};
  ::setenv("NUCLEON_LISTEN", "env:1", 1);
  ::setenv("NUCLEON_MAX_BODY", "200", 1);
  ::setenv("NUCLEON_DATA", "", 1);  // empty: not set
  ::unsetenv("NUCLEON_DEMO");
  EXPECT_EQ(ResolveOption(flags, file, "listen", "default:1"), "flag:1");
  EXPECT_EQ(ResolveOption(flags, file, "max-body", "5"), "200");
  EXPECT_EQ(ResolveOption(flags, file, "data", "./data"), "/var/lib/x");
  EXPECT_EQ(ResolveOption(flags, file, "demo", "0"), "0");
  EXPECT_EQ(ResolveOption(flags, {}, "data", "./data"), "./data");
  ::unsetenv("NUCLEON_LISTEN");
  ::unsetenv("NUCLEON_MAX_BODY");
  ::unsetenv("NUCLEON_DATA");
  EXPECT_EQ(ResolveOption({}, file, "listen", "default:1"), "file:1");
}

}  // namespace
}  // namespace nucleon
