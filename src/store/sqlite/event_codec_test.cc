// The event body codec: what EncodeBody stores must decode to the event as it
// was sent (the payload's JSON text byte for byte), the scalar props read back
// from a body must be those the decoder computed from the payload, and a
// corrupt or truncated body must be reported, never crash.
#include "store/sqlite/event_codec.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "store/payload_props.h"
#include "store/sqlite/string_dictionary.h"

namespace nucleon {
namespace {

namespace json = boost::json;

// The payload text exactly as the batch decoder makes it: the parsed payload
// object, serialized (ingest/batch_decoder.cc, ReadPayload).
std::string DecoderText(std::string_view client_json) {
  boost::system::error_code ec;
  json::value v = json::parse(client_json, ec);
  EXPECT_FALSE(ec) << client_json;
  EXPECT_TRUE(v.is_object()) << client_json;
  return json::serialize(v);
}

// Encodes and decodes `e` through one dictionary; the event as read back.
Event RoundTrip(const Event& e, std::string_view user_anon, StringDictionary& dict,
                std::string* body_out = nullptr) {
  std::string body;
  EncodeBody(e, user_anon, dict, &body);
  const BodyParts parts = ParseBody(body);
  EXPECT_TRUE(parts.ok);
  Event out;
  DecodeBodyInto(parts, dict, e.user_key, user_anon, &out);
  if (body_out) *body_out = body;
  return out;
}

std::string PayloadRoundTrip(const std::string& payload_json, StringDictionary& dict) {
  Event e;
  e.user_key = "u";
  e.payload_json = payload_json;
  return RoundTrip(e, "", dict).payload_json;
}

// The scalar props a body yields, with the dictionary ids as text.
std::vector<std::pair<std::string, PropValue>> BodyProps(const std::string& payload_json,
                                                         StringDictionary& dict) {
  Event e;
  e.user_key = "u";
  e.payload_json = payload_json;
  std::string body;
  EncodeBody(e, "", dict, &body);
  std::vector<BodyProp> props;
  DecodeBodyProps(ParseBody(body), dict, &props);
  std::vector<std::pair<std::string, PropValue>> out;
  for (const BodyProp& p : props) out.emplace_back(std::string(dict.Text(p.key)), p.value);
  return out;
}

std::string Describe(const std::vector<std::pair<std::string, PropValue>>& props) {
  std::string s;
  for (const auto& [k, v] : props) {
    s += k + "=" + std::to_string(static_cast<int>(v.kind)) + ":" + v.text + "; ";
  }
  return s;
}

TEST(EventCodecTest, PayloadShapesComeBackByteForByte) {
  StringDictionary dict;
  const char* const kPayloads[] = {
      R"({"plan":"pro","age":34})",
      R"({"s":"quote \" backslash \\ slash / controls \b\f\n\r\t \u0001 \u001f nul \u0000"})",
      R"({"unicode":"Grüße, Ελλάδα, 日本語","emoji":"😀👍🏽🇩🇪","\u00e9t\u00e9":"\ud83d\ude00"})",
      R"({"":"empty key","empty":"","both":""})",
      R"({"max":9223372036854775807,"min":-9223372036854775808,"zero":0,"neg":-1})",
      R"({"big":9223372036854775808,"umax":18446744073709551615,"over":18446744073709551616})",
      R"({"a":1.5,"b":0.1,"c":1e21,"d":-0.0,"e":5e-324,"f":1.7976931348623157e308,"g":1.0})",
      R"({"g":-2.5e-7,"h":123456.789,"i":3.141592653589793,"j":2.2250738585072014e-308})",
      R"({"obj":{"nested":{"deeper":[1,2,{"x":null}]},"k":"v"},"arr":[],"emptyobj":{}})",
      R"({"arr":[1,"two",3.5,true,null,[],{}],"mixed":[[[]]]})",
      R"({"n":null,"t":true,"f":false})",
      R"({"only":null})",
      R"({"key with spaces and \"quotes\"":1,"tab\tkey":2,"nl\nkey":3})",
  };
  for (const char* client : kPayloads) {
    const std::string text = DecoderText(client);
    EXPECT_EQ(PayloadRoundTrip(text, dict), text) << client;
  }
}

TEST(EventCodecTest, SixtyFourKeysComeBackInOrder) {
  StringDictionary dict;
  json::object obj;
  for (int i = 63; i >= 0; --i) {
    const std::string key = "k" + std::to_string(i);
    if (i % 4 == 0)
      obj[key] = i;
    else if (i % 4 == 1)
      obj[key] = "v" + std::to_string(i);
    else if (i % 4 == 2)
      obj[key] = i * 0.25;
    else
      obj[key] = json::array{i, nullptr};
  }
  const std::string text = DecoderText(json::serialize(obj));
  EXPECT_EQ(PayloadRoundTrip(text, dict), text);
}

TEST(EventCodecTest, EmptyPayloadIsStoredAsNothing) {
  StringDictionary dict;
  Event e;
  e.user_key = "u";
  e.payload_json = "{}";
  std::string body;
  EncodeBody(e, "", dict, &body);
  EXPECT_TRUE(body.empty()) << "an event with nothing in its body stores no body";
  const BodyParts parts = ParseBody(body);
  EXPECT_TRUE(parts.ok);
  EXPECT_EQ(BodyPayloadJson(parts, dict), "{}");
  Event out;
  DecodeBodyInto(parts, dict, "u", "", &out);
  EXPECT_EQ(out.payload_json, "{}");
  EXPECT_FALSE(out.total_ram.has_value());
  EXPECT_EQ(out.user_id, "");
  EXPECT_EQ(out.anon_id, "");
}

TEST(EventCodecTest, PayloadThatIsNotAnObjectIsKeptAsText) {
  StringDictionary dict;
  // Not produced by the decoder today, but the codec must not lose it.
  for (const std::string text :
       {"[1,2,3]", "\"text\"", "42", "null", "{not json", "{\"a\":Infinity}"}) {
    std::string body;
    Event e;
    e.user_key = "u";
    e.payload_json = text;
    EXPECT_EQ(RoundTrip(e, "", dict, &body).payload_json, text);
    const BodyParts parts = ParseBody(body);
    EXPECT_FALSE(parts.payload_raw.empty()) << text;
    EXPECT_TRUE(parts.payload.empty()) << text;
  }
}

// Doubles the decoder produces from what a client sent must come back as the
// decoder serialized them. Boost.JSON (1.81) does not parse every double
// correctly rounded, so re-parsing the stored text can land on a neighbouring
// double; the codec must not let that change the text or the props.
TEST(EventCodecTest, DoublesThatTheParserRoundsDifferentlyComeBackUnchanged) {
  StringDictionary dict;
  const char* const kClientTexts[] = {
      R"({"x":3.936162278297495E69})",
      R"({"x":2.1829489720880483E41})",
      R"({"x":5.409760742964738E124})",
      R"({"x":1.917377330098547E208})",
  };
  for (const char* client : kClientTexts) {
    boost::system::error_code ec;
    const json::value decoded = json::parse(client, ec);  // what the decoder holds
    ASSERT_FALSE(ec);
    const std::string text = json::serialize(decoded);  // Event::payload_json
    EXPECT_EQ(PayloadRoundTrip(text, dict), text) << "sent " << client;
    // The props the live path counts (Event::props) and those a replay or a
    // raw read of the stored body counts must be the same values.
    EXPECT_EQ(Describe(BodyProps(text, dict)), Describe(ScalarProps(decoded.get_object())))
        << "sent " << client;
  }
}

// Texts the decoder does not produce today still come back as they were, and
// yield the props a JSON parser sees in them.
TEST(EventCodecTest, UnusualPayloadTextsComeBackUnchanged) {
  StringDictionary dict;
  const char* const kTexts[] = {
      R"({ "a" : 1 , "b":"x" })",              // spacing
      R"({"\u00e9":"caf\u00e9","s":"a\/b"})",  // escapes a serializer would not write
      R"({"a":1,"a":2})",                      // a repeated key
      R"({"big":1E400,"n":-0,"e":1e5})",       // numbers as written
      R"({"x":"\ud83d\ude00","y":[1, 2]})",
  };
  for (const char* text : kTexts) {
    EXPECT_EQ(PayloadRoundTrip(text, dict), text);
  }
  // Numbers written in any JSON form are props with their value.
  const auto props = BodyProps(R"({ "n":-0, "e":1e5, "f":2.50, "g":-1.5E-7 })", dict);
  EXPECT_EQ(Describe(props), "n=1:0; e=1:100000; f=1:2.5; g=1:-1.5e-7; ");
}

// A nested value the decoder let through without a JSON form (a number too
// large for a double, printed as Infinity) must not cost the event its other
// props nor its payload.
TEST(EventCodecTest, NestedValueWithoutAJsonFormKeepsTheOtherProps) {
  StringDictionary dict;
  json::object decoded;
  decoded["plan"] = "pro";
  decoded["a"] = json::object{{"b", std::numeric_limits<double>::infinity()}};
  const std::string text = json::serialize(decoded);  // what ReadPayload stores
  EXPECT_EQ(PayloadRoundTrip(text, dict), text);
  EXPECT_EQ(Describe(BodyProps(text, dict)), Describe(ScalarProps(decoded)));
}

TEST(EventCodecTest, ContextFieldsAndRamRoundTrip) {
  StringDictionary dict;
  Event e;
  e.user_key = "u";
  e.platform = "Linux";
  e.os_version = "6.18.44";
  e.locale = "en-US";
  e.version = "1.2.3";
  e.module_version = "4.0.3";
  e.arch = "x64";
  e.client = "js";
  e.country = "DE";
  e.total_ram = 23.54;
  Event out = RoundTrip(e, "", dict);
  EXPECT_EQ(out.platform, "Linux");
  EXPECT_EQ(out.os_version, "6.18.44");
  EXPECT_EQ(out.locale, "en-US");
  EXPECT_EQ(out.version, "1.2.3");
  EXPECT_EQ(out.module_version, "4.0.3");
  EXPECT_EQ(out.arch, "x64");
  EXPECT_EQ(out.client, "js");
  EXPECT_EQ(out.country, "DE");
  ASSERT_TRUE(out.total_ram.has_value());
  EXPECT_EQ(*out.total_ram, 23.54);

  // Each field alone (the mask bit of every position), and RAM edge values
  // bit for bit.
  std::string* fields[] = {&e.platform,       &e.os_version, &e.locale, &e.version,
                           &e.module_version, &e.arch,       &e.client, &e.country};
  for (size_t i = 0; i < kCtxFields; ++i) {
    Event one;
    one.user_key = "u";
    Event* target = &one;
    std::string* one_fields[] = {&target->platform, &target->os_version,     &target->locale,
                                 &target->version,  &target->module_version, &target->arch,
                                 &target->client,   &target->country};
    *one_fields[i] = *fields[i] + "-only";
    Event back = RoundTrip(one, "", dict);
    std::string* back_fields[] = {&back.platform, &back.os_version,     &back.locale,
                                  &back.version,  &back.module_version, &back.arch,
                                  &back.client,   &back.country};
    for (size_t j = 0; j < kCtxFields; ++j) {
      EXPECT_EQ(*back_fields[j], i == j ? *fields[i] + "-only" : "") << i << " " << j;
    }
    EXPECT_FALSE(back.total_ram.has_value());
  }
  for (double ram : {0.0, -0.0, 0.5, 1e300, 5e-324, 7.999999999999999}) {
    Event r;
    r.user_key = "u";
    r.total_ram = ram;
    Event back = RoundTrip(r, "", dict);
    ASSERT_TRUE(back.total_ram.has_value());
    EXPECT_EQ(std::memcmp(&*back.total_ram, &ram, sizeof ram), 0) << ram;
  }
}

TEST(EventCodecTest, UserAndAnonymousIdsInEveryFlagCase) {
  StringDictionary dict;
  struct Case {
    std::string user_key, user_id, anon_id, user_anon;
  };
  const Case kCases[] = {
      {"alice", "alice", "", ""},              // user id is the key
      {"alice", "alice", "anon-1", "anon-1"},  // anon id is the user's recorded one
      {"alice", "alice", "anon-2", "anon-1"},  // another anon id: inline
      {"anon-1", "", "anon-1", "anon-1"},      // anon id is the key (and the recorded one)
      {"anon-1", "", "anon-1", ""},            // anon id is the key, nothing recorded
      {"dev-1", "", "", ""},                   // neither: the device is the key
      {"bob", "robert", "", ""},               // user id differs from the key: inline
      {"bob", "robert", "x", ""},              // both inline
      {"k", "", "anon-9", ""},                 // anon inline, no recorded anon id
      {"k", "", "", "anon-9"},                 // recorded anon id, none sent
      {"ünï", "ünï", "😀", "😀"},                // non-ASCII ids
  };
  for (const Case& c : kCases) {
    Event e;
    e.user_key = c.user_key;
    e.user_id = c.user_id;
    e.anon_id = c.anon_id;
    Event out = RoundTrip(e, c.user_anon, dict);
    EXPECT_EQ(out.user_id, c.user_id) << c.user_key << "/" << c.user_id << "/" << c.anon_id;
    EXPECT_EQ(out.anon_id, c.anon_id) << c.user_key << "/" << c.user_id << "/" << c.anon_id;
  }
  // The flags really save the bytes: an id equal to the key or the recorded
  // anon id is not stored inline.
  Event e;
  e.user_key = "a-rather-long-user-key-0123456789";
  e.user_id = e.user_key;
  e.anon_id = "a-rather-long-anonymous-id-0123456789";
  std::string body;
  RoundTrip(e, e.anon_id, dict, &body);
  EXPECT_LT(body.size(), 8u);
  const BodyParts parts = ParseBody(body);
  EXPECT_TRUE(parts.user_id_is_key);
  EXPECT_TRUE(parts.anon_id_is_user_anon);
}

TEST(EventCodecTest, ErrorHashesStoredRawOnlyWhenLowercaseHex) {
  StringDictionary dict;
  struct Case {
    std::string hash;
    bool raw;
  };
  const Case kCases[] = {
      {"0123456789abcdef0123456789abcdef", true},
      {"ffffffffffffffffffffffffffffffff", true},
      {"00000000000000000000000000000000", true},
      {"0123456789ABCDEF0123456789abcdef", false},   // uppercase: kept as sent
      {"0123456789abcdef0123456789abcde", false},    // 31 digits
      {"0123456789abcdef0123456789abcdef0", false},  // 33 digits
      {"0123456789abcdef", false},                   // 16 digits
      {"g123456789abcdef0123456789abcdef", false},   // not hex
      {"not a hash at all", false},
  };
  for (const Case& c : kCases) {
    Event e;
    e.user_key = "u";
    e.type = EventType::kError;
    e.error_hash = c.hash;
    std::string body;
    Event out = RoundTrip(e, "", dict, &body);
    EXPECT_EQ(out.error_hash, c.hash);
    const BodyParts parts = ParseBody(body);
    EXPECT_EQ(parts.error_hash_raw, c.raw) << c.hash;
    if (c.raw) {
      EXPECT_EQ(parts.error_hash.size(), 16u);
    }
  }
}

TEST(EventCodecTest, EveryFieldTogetherRoundTrips) {
  StringDictionary dict;
  Event e;
  e.user_key = "richard";
  e.user_id = "richard";
  e.anon_id = "hGzKvaoI5Mno";
  e.platform = "Linux";
  e.locale = "de_DE.UTF-8";
  e.country = "AT";
  e.total_ram = 15.5;
  e.error_hash = "00112233445566778899aabbccddeeff";
  e.payload_json = DecoderText(R"({"stack":"Error: boom\n  at x","message":"boom","n":[1,2]})");
  Event out = RoundTrip(e, "", dict);
  EXPECT_EQ(out.payload_json, e.payload_json);
  EXPECT_EQ(out.user_id, e.user_id);
  EXPECT_EQ(out.anon_id, e.anon_id);
  EXPECT_EQ(out.platform, e.platform);
  EXPECT_EQ(out.locale, e.locale);
  EXPECT_EQ(out.country, e.country);
  EXPECT_EQ(out.total_ram, e.total_ram);
  EXPECT_EQ(out.error_hash, e.error_hash);
  EXPECT_EQ(out.version, "");
}

TEST(EventCodecTest, BodyPropsEqualTheDecodersScalarProps) {
  StringDictionary dict;
  const char* const kPayloads[] = {
      R"({"s":"x","i":120,"si":"120","neg":-7,"d":1.5,"t":true,"f":false,"n":null})",
      R"({"big":18446744073709551615,"min":-9223372036854775808,"max":9223372036854775807})",
      R"({"tiny":5e-324,"e21":1e21,"e20":1e20,"negzero":-0.0,"small":1e-7,"p":0.1})",
      R"({"whole":2.0,"huge":1.7976931348623157e308,"over":18446744073709551616})",
      R"({"obj":{"a":1},"arr":[1],"":"empty key","emptystr":""})",
      R"({})",
  };
  for (const char* client : kPayloads) {
    boost::system::error_code ec;
    const json::value decoded = json::parse(client, ec);
    ASSERT_FALSE(ec);
    const std::string text = json::serialize(decoded);
    EXPECT_EQ(Describe(BodyProps(text, dict)), Describe(ScalarProps(decoded.get_object())))
        << client;
  }
  // A payload stored as text yields the same props as when parsed (the raw
  // fallback path of DecodeBodyProps).
  Event e;
  e.user_key = "u";
  e.payload_json = "[1]";
  std::string body;
  EncodeBody(e, "", dict, &body);
  std::vector<BodyProp> props(3);  // stale entries must be dropped
  DecodeBodyProps(ParseBody(body), dict, &props);
  EXPECT_TRUE(props.empty());
}

// ---- Randomized: generated objects of every value kind.

class JsonGen {
 public:
  explicit JsonGen(uint64_t seed) : rng_(seed) {}

  json::object Object(int depth) {
    json::object o;
    const int n = Pick(depth == 0 ? 65 : 5);
    for (int i = 0; i < n; ++i) o[Text(8)] = Value(depth);
    return o;
  }

  std::string Text(int max_len) {
    static const char* const kPieces[] = {"a",  "b",  "Z",  "0",      " ",    "\"",    "\\",
                                          "/",  "\n", "\t", "\x01",   "\x1f", "(nul)", "é",
                                          "日", "😀",  "🇩🇪", "\u2028", "key",  "{",     "}"};
    std::string s;
    const int n = Pick(max_len + 1);
    for (int i = 0; i < n; ++i) {
      const int k = Pick(std::size(kPieces));
      if (k == 12)
        s.push_back('\0');
      else
        s += kPieces[k];
    }
    return s;
  }

  json::value Value(int depth) {
    switch (Pick(depth < 2 ? 10 : 8)) {
      case 0:
        return nullptr;
      case 1:
        return Pick(2) == 0;
      case 2: {
        static const int64_t kInts[] = {0,
                                        1,
                                        -1,
                                        120,
                                        INT64_MAX,
                                        INT64_MIN,
                                        INT64_MAX - 1,
                                        INT64_MIN + 1,
                                        1LL << 53,
                                        -(1LL << 53) - 1};
        return Pick(2) ? json::value(kInts[Pick(std::size(kInts))])
                       : json::value(static_cast<int64_t>(rng_()));
      }
      case 3:
        return static_cast<uint64_t>(INT64_MAX) + 1 + (rng_() >> 1);
      case 4: {
        static const double kDoubles[] = {
            1.5,        0.1,   1e21, -0.0, 5e-324, 1e-7, 2.0, -2.5e-8, 1.7976931348623157e308,
            123456.789, 3.0e20};
        if (Pick(3) == 0) return kDoubles[Pick(std::size(kDoubles))];
        // Everyday doubles (fractions, timings) and any finite double at all;
        // the decoder parses them from their shortest text, as a client sends them.
        double d = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * (Pick(2) ? 1000 : 1);
        if (Pick(2)) {
          do {
            const uint64_t bits = rng_();
            std::memcpy(&d, &bits, sizeof d);
          } while (!std::isfinite(d));
        }
        boost::system::error_code ec;
        return json::parse(json::serialize(json::value(d)), ec);
      }
      case 5:
      case 6:
      case 7:
        return json::string(Text(12));
      case 8: {
        json::array a;
        const int n = Pick(4);
        for (int i = 0; i < n; ++i) a.push_back(Value(depth + 1));
        return a;
      }
      default:
        return Object(depth + 1);
    }
  }

  int Pick(size_t n) { return static_cast<int>(rng_() % n); }

 private:
  std::mt19937_64 rng_;
};

TEST(EventCodecTest, RandomPayloadsRoundTripAndYieldTheDecodersProps) {
  StringDictionary dict;
  JsonGen gen(20240611);
  for (int i = 0; i < 1500; ++i) {
    const json::object generated = gen.Object(0);
    // As the decoder holds it: parsed from what a client would send.
    boost::system::error_code ec;
    const json::value decoded = json::parse(json::serialize(generated), ec);
    ASSERT_FALSE(ec);
    const std::string text = json::serialize(decoded);
    ASSERT_EQ(PayloadRoundTrip(text, dict), text) << "case " << i;
    ASSERT_EQ(Describe(BodyProps(text, dict)), Describe(ScalarProps(decoded.get_object())))
        << "case " << i << ": " << text;
  }
}

// ---- Corruption.

std::string FullBody(StringDictionary& dict) {
  Event e;
  e.user_key = "richard";
  e.user_id = "someone-else";
  e.anon_id = "anon-inline";
  e.platform = "Linux";
  e.os_version = "6.1";
  e.locale = "en-US";
  e.version = "1.0";
  e.module_version = "2.0";
  e.arch = "arm64";
  e.client = "py";
  e.country = "FR";
  e.total_ram = 8;
  e.error_hash = "00112233445566778899aabbccddeeff";
  e.payload_json = DecoderText(
      R"({"s":"text","i":-5,"u":18446744073709551615,"d":0.5,"t":true,"n":null,"o":{"a":[1]}})");
  std::string body;
  EncodeBody(e, "", dict, &body);
  return body;
}

TEST(EventCodecTest, EveryTruncationOfABodyIsReportedCorrupt) {
  StringDictionary dict;
  std::vector<std::string> bodies = {FullBody(dict)};
  {
    Event raw;  // the text payload and the text error hash
    raw.user_key = "u";
    raw.payload_json = "[1,2,3]";
    raw.error_hash = "not-hex";
    bodies.emplace_back();
    EncodeBody(raw, "", dict, &bodies.back());
  }
  for (const std::string& body : bodies) {
    ASSERT_TRUE(ParseBody(body).ok);
    for (size_t n = 1; n < body.size(); ++n) {
      const std::string cut = body.substr(0, n);
      const BodyParts parts = ParseBody(cut);
      EXPECT_FALSE(parts.ok) << "prefix of " << n << " of " << body.size() << " bytes";
      // Whatever a caller does with it must not crash.
      Event out;
      DecodeBodyInto(parts, dict, "u", "", &out);
      std::vector<BodyProp> props;
      DecodeBodyProps(parts, dict, &props);
      (void)BodyPayloadJson(parts, dict);
    }
  }
}

TEST(EventCodecTest, GarbageBodiesNeverCrash) {
  StringDictionary dict;
  const std::string good = FullBody(dict);
  std::mt19937_64 rng(7);
  size_t rejected = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string body = good;
    if (i % 2 == 0) {
      // A few flipped bytes in a valid body.
      for (int k = 0; k < 1 + i % 3; ++k)
        body[rng() % body.size()] ^= static_cast<char>(1 + rng() % 255);
    } else {
      body.resize(1 + rng() % 64);
      for (char& c : body) c = static_cast<char>(rng());
    }
    const BodyParts parts = ParseBody(body);
    if (!parts.ok) ++rejected;
    Event out;
    DecodeBodyInto(parts, dict, "u", "", &out);
    std::vector<BodyProp> props;
    DecodeBodyProps(parts, dict, &props);
    (void)BodyPayloadJson(parts, dict);
  }
  EXPECT_GT(rejected, 0u);
}

TEST(EventCodecTest, ClientIdColumn) {
  struct Case {
    std::string text;
    bool is_int;
    int64_t value;
  };
  const Case kCases[] = {
      {"123", true, 123},
      {"-5", true, -5},
      {"0", true, 0},
      {"999999999999999999", true, 999999999999999999},  // 18 digits
      {"9223372036854775807", false, 0},                 // longer than 18 characters
      {"-0", false, 0},                                  // would render back as "0"
      {"007", false, 0},
      {"+5", false, 0},
      {"1.0", false, 0},
      {"1e3", false, 0},
      {"\"123\"", false, 0},  // a string id
      {"\"abc\"", false, 0},
      {"", false, 0},
      {" 1", false, 0},
  };
  for (const Case& c : kCases) {
    const ClientIdColumn col = EncodeClientId(c.text);
    EXPECT_EQ(col.is_int, c.is_int) << c.text;
    if (c.is_int) {
      EXPECT_EQ(col.int_value, c.value) << c.text;
      EXPECT_EQ(std::to_string(col.int_value), c.text) << "an integer column renders back the same";
    } else {
      EXPECT_EQ(col.text, c.text);
    }
  }
}

}  // namespace
}  // namespace nucleon
