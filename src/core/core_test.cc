#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>

#include "core/crypto.h"
#include "core/http_types.h"
#include "core/gzip.h"
#include "core/log.h"
#include "core/normalize.h"
#include "core/time_util.h"

namespace nucleon {
namespace {

TEST(TimeUtilTest, ParsesTheSdkDateForms) {
  EXPECT_EQ(ParseIsoTime("2026-11-26T09:38:04.549Z"), 1795685884549);
  // Python: local time without an offset is taken as UTC; microseconds cut to ms.
  EXPECT_EQ(ParseIsoTime("2026-11-26T09:38:04.549123"), 1795685884549);
  EXPECT_EQ(ParseIsoTime("2026-11-26T10:38:04.549+01:00"), 1795685884549);
  EXPECT_EQ(ParseIsoTime("2026-11-26T04:08:04.549-0530"), 1795685884549);
  EXPECT_EQ(ParseIsoTime("2026-11-26 09:38:04Z"), 1795685884000);
  EXPECT_EQ(ParseIsoTime("1970-01-01"), 0);
  EXPECT_EQ(ParseIsoTime("1969-12-31T23:59:59.999Z"), -1);
}

TEST(TimeUtilTest, RejectsMalformedDates) {
  for (const char* bad : {"", "2026", "2026-13-01", "2026-02-30", "2026-11-26T25:00",
                          "2026-11-26T09:38:04.Z", "2026-11-26T09:38:04Zjunk", "yesterday",
                          "2026-11-26T09:38:04+1"}) {
    EXPECT_FALSE(ParseIsoTime(bad).has_value()) << bad;
  }
}

TEST(TimeUtilTest, FormatsAndKeysDays) {
  EXPECT_EQ(FormatIsoMs(1795685884549), "2026-11-26T09:38:04.549Z");
  EXPECT_EQ(FormatIsoMs(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatIsoMs(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatIsoMs(-62167219200000), "0000-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatIsoMs(253402300799999), "9999-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatIsoMs(253402300800000), "10000-01-01T00:00:00.000Z");
  EXPECT_EQ(DayKey(0), "1970-01-01");
  EXPECT_EQ(DayKey(-1), "1969-12-31");
  EXPECT_EQ(DayKey(DaysFromCivil(2024, 2, 29)), "2024-02-29");
  EXPECT_EQ(FloorDiv(-1, 86400), -1);
  EXPECT_EQ(FloorDiv(86399, 86400), 0);
}

TEST(NormalizeTest, Platforms) {
  for (const char* mac : {"Darwin", "darwin", "mac", "macos", "macOS"}) {
    EXPECT_EQ(NormalizePlatform(mac), "mac") << mac;
  }
  for (const char* win : {"Windows_NT", "win32", "windows"}) EXPECT_EQ(NormalizePlatform(win), "win");
  EXPECT_EQ(NormalizePlatform("Linux"), "linux");
  EXPECT_EQ(NormalizePlatform("iPadOS"), "ipados");
  EXPECT_EQ(NormalizePlatform(""), "");
}

TEST(NormalizeTest, Languages) {
  EXPECT_EQ(LanguageOf("en-US"), "en");
  EXPECT_EQ(LanguageOf("en_US.UTF-8"), "en");
  EXPECT_EQ(LanguageOf("FR"), "fr");
  EXPECT_EQ(LanguageOf("C"), "");
  EXPECT_EQ(LanguageOf("POSIX"), "");
  EXPECT_EQ(LanguageOf(""), "");
  EXPECT_EQ(LanguageOf("C.UTF-8"), "");
}

TEST(NormalizeTest, RamAndNumbers) {
  EXPECT_EQ(RamBucket(23.54), "24");
  EXPECT_EQ(RamBucket(7.5), "8");
  EXPECT_EQ(RamBucket(8), "8");
  EXPECT_EQ(RenderNumber(120), "120");
  EXPECT_EQ(RenderNumber(1.5), "1.5");
  EXPECT_EQ(RenderNumber(-0.25), "-0.25");
  EXPECT_EQ(RenderNumber(0.1 + 0.2), "0.30000000000000004");
  // As JavaScript's String(number) shows them.
  EXPECT_EQ(RenderNumber(1e-7), "1e-7");
  EXPECT_EQ(RenderNumber(0.00002), "0.00002");
  EXPECT_EQ(RenderNumber(0.000001), "0.000001");
  EXPECT_EQ(RenderNumber(1e20), "100000000000000000000");
  EXPECT_EQ(RenderNumber(1e21), "1e+21");
  EXPECT_EQ(RenderNumber(1.5e21), "1.5e+21");
  EXPECT_EQ(RenderNumber(-1.25e-9), "-1.25e-9");
  EXPECT_EQ(RenderNumber(123456789012), "123456789012");
  EXPECT_EQ(RenderNumber(5e-324), "5e-324");
  EXPECT_EQ(RenderNumber(1.7976931348623157e308), "1.7976931348623157e+308");
}

TEST(JsonQuoteTest, EscapesWhereNeededAndCopiesTheRest) {
  EXPECT_EQ(JsonQuote(""), "\"\"");
  EXPECT_EQ(JsonQuote("plain text, ünïcödé"), "\"plain text, ünïcödé\"");
  EXPECT_EQ(JsonQuote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(JsonQuote("tab\there\nnew\x01"), "\"tab\\there\\nnew\\u0001\"");
  EXPECT_EQ(JsonQuote(std::string_view("nul\0in", 6)), "\"nul\\u0000in\"");
}

TEST(CryptoTest, HashesAreStableAndTokensRandom) {
  Sha256Digest d = Sha256("abc");
  EXPECT_EQ(HexEncode(d.data(), d.size()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(StableHash64("abc"), static_cast<int64_t>(0xba7816bf8f01cfeaULL));
  EXPECT_NE(RandomBytes(32), RandomBytes(32));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  const uint8_t bytes[] = {0xfb, 0xff};
  EXPECT_EQ(Base64UrlEncode(bytes, 2), "-_8");
}

// Token hashes are compared with CRYPTO_memcmp: equal only when every byte is,
// whichever byte differs, and usable as the key equality of a hash map.
TEST(CryptoTest, ConstantTimeEqualityOfSecretDerivedBytes) {
  const std::string a = HexEncode(Sha256("nct_a").data(), 32);
  std::string first = a, last = a;
  first[0] = first[0] == '0' ? '1' : '0';
  last[63] = last[63] == '0' ? '1' : '0';
  EXPECT_TRUE(ConstantTimeEquals(a, std::string(a)));
  EXPECT_FALSE(ConstantTimeEquals(a, first));
  EXPECT_FALSE(ConstantTimeEquals(a, last));
  EXPECT_FALSE(ConstantTimeEquals(a, a.substr(0, 63)));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));

  const ConstantTimeEqualTo eq;
  EXPECT_TRUE(eq(a, std::string(a)));
  EXPECT_FALSE(eq(a, last));
  std::unordered_map<std::string, std::string, std::hash<std::string>, ConstantTimeEqualTo> apps;
  apps.emplace(a, "app1");
  EXPECT_EQ(apps.count(a), 1u);
  EXPECT_EQ(apps.count(first), 0u);
  EXPECT_EQ(apps.count(last), 0u);
  EXPECT_EQ(apps.at(a), "app1");
}

TEST(CryptoTest, ErrorHashUsesNameMessageAndFirstFrame) {
  const std::string a = ErrorHash("TypeError", "boom", "Error: boom\n    at f (a.js:1:1)\n    at g (b.js:2:2)");
  // Deeper frames do not change the group.
  EXPECT_EQ(a, ErrorHash("TypeError", "boom", "Error: boom\n    at f (a.js:1:1)\n    at h (c.js:9:9)"));
  EXPECT_NE(a, ErrorHash("TypeError", "boom", "Error: boom\n    at z (a.js:1:1)"));
  EXPECT_NE(a, ErrorHash("TypeError", "bang", "Error: boom\n    at f (a.js:1:1)"));
  EXPECT_NE(a, ErrorHash("RangeError", "boom", "Error: boom\n    at f (a.js:1:1)"));
  EXPECT_EQ(a.size(), 32u);
}

}  // namespace
}  // namespace nucleon

namespace nucleon {
namespace {

int CountLines(const std::string& text, std::string_view needle) {
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
}

TEST(LogTest, AFloodOfWarningsIsCappedAndCountedButErrorsAreNot) {
  testing::internal::CaptureStderr();
  for (int i = 0; i < 1000; ++i) LogWarn("client sent garbage");
  for (int i = 0; i < 300; ++i) LogError("storage failed");
  // The next second's first warning reports what was dropped.
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  std::this_thread::sleep_for(std::chrono::milliseconds(
      1001 - std::chrono::duration_cast<std::chrono::milliseconds>(now).count() % 1000));
  LogWarn("client sent garbage");
  const std::string out = testing::internal::GetCapturedStderr();
  // The loop may straddle one second boundary: at most two windows of 100.
  EXPECT_LE(CountLines(out, "client sent garbage"), 201);
  EXPECT_GE(CountLines(out, "client sent garbage"), 100);
  EXPECT_GE(CountLines(out, "more warnings were not logged"), 1);
  EXPECT_EQ(CountLines(out, "storage failed"), 300);
}

TEST(LogTest, JsonFormatWritesOneObjectPerLineWithItsFields) {
  testing::internal::CaptureStderr();
  SetLogFormat(LogFormat::kJson);
  LogInfo("listening on \"x\"\n", {{"address", "127.0.0.1:8080"}, {"empty", ""}});
  LogError("plain");
  SetLogFormat(LogFormat::kText);
  LogInfo("text again", {{"data", "/var/lib/nucleon"}, {"countries", "two words"}});
  const std::string out = testing::internal::GetCapturedStderr();
  std::istringstream in(out);
  std::string json1, json2, text;
  std::getline(in, json1);
  std::getline(in, json2);
  std::getline(in, text);
  ASSERT_EQ(json1.substr(0, 9), "{\"time\":\"");
  EXPECT_EQ(json1.substr(33),
            "\",\"level\":\"info\",\"message\":\"listening on \\\"x\\\"\\n\","
            "\"address\":\"127.0.0.1:8080\"}");
  EXPECT_NE(json2.find("\"level\":\"error\",\"message\":\"plain\"}"), std::string::npos);
  EXPECT_EQ(text.substr(25), "info text again data=/var/lib/nucleon countries=\"two words\"");
}

}  // namespace
TEST(GzipTest, StreamInflatesToWhatWasAdded) {
  std::string plain, zipped;
  GzipStream zip;
  for (int i = 0; i < 5000; ++i) {
    const std::string line = "{\"n\":" + std::to_string(i) + "}\n";
    plain += line;
    zipped += zip.Add(line);
  }
  zipped += zip.Finish();
  ASSERT_LT(zipped.size(), plain.size());
  z_stream z{};
  ASSERT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  std::string out(plain.size() + 16, '\0');
  z.next_in = reinterpret_cast<Bytef*>(zipped.data());
  z.avail_in = static_cast<uInt>(zipped.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  inflateEnd(&z);
  EXPECT_EQ(out, plain);
}

TEST(GzipTest, AcceptEncoding) {
  EXPECT_TRUE(AcceptsGzip("gzip"));
  EXPECT_TRUE(AcceptsGzip("deflate, GZIP;q=0.5, br"));
  EXPECT_TRUE(AcceptsGzip("*"));
  EXPECT_FALSE(AcceptsGzip(""));
  EXPECT_FALSE(AcceptsGzip("br, deflate"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip; q=0.0"));
}

}  // namespace nucleon
