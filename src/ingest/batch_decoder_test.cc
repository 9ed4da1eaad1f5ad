#include "ingest/batch_decoder.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "core/crypto.h"
#include "store/event_export.h"

namespace nucleon {
namespace {

namespace json = boost::json;
using Outcome = DecodedEvent::Outcome;
using Kind = PropValue::Kind;

// A receive time after every date of the captured messages (2026-11-26T10:00:00Z).
constexpr int64_t kNow = 1795687200000;
constexpr int64_t kHour = 3600 * 1000;

DecodedBatch MustDecode(std::string_view body, int64_t now_ms = kNow,
                        const IngestLimits& limits = IngestLimits{}) {
  auto batch = DecodeBatch(body, "app1", now_ms, limits);
  EXPECT_TRUE(batch.ok()) << batch.status().ToString() << "\nbody: " << body.substr(0, 300);
  if (!batch.ok()) return {};
  return std::move(batch).value();
}

// Decodes a message holding the one event `event_json` and returns that event.
DecodedEvent DecodeOneEvent(std::string_view event_json, int64_t now_ms = kNow) {
  DecodedBatch batch = MustDecode("{\"data\":[" + std::string(event_json) + "]}", now_ms);
  EXPECT_EQ(batch.events.size(), 1u);
  if (batch.events.size() != 1) return {};
  return batch.events[0];
}

// Parses `text` as a JSON value (for comparisons that should not depend on formatting).
json::value J(std::string_view text) { return json::parse(text); }

using Props = std::vector<std::pair<std::string, PropValue>>;

// ---------------------------------------------------------------------------
// The SDK forms, from tracking-protocol.md.

constexpr const char* kV4Message = R"({"data":[
 {"type":"init","id":308778,"date":1795685879840,"payload":{"plan":"pro","age":34},"sessionId":490330,"userId":"richard","anonId":"hGzKvaoI5Mno","deviceId":"CiF9fH5XFVjD7Xo","client":"js","platform":"Linux","osVersion":"6.18.44","locale":"C"},
 {"type":"userid","id":824369,"date":1795685880355,"sessionId":490330,"userId":"richard","anonId":"hGzKvaoI5Mno","deviceId":"CiF9fH5XFVjD7Xo"},
 {"type":"props","id":110478,"date":1795685880370,"payload":{"plan":"pro","age":34},"sessionId":490330,"userId":"richard","anonId":"hGzKvaoI5Mno","deviceId":"CiF9fH5XFVjD7Xo"},
 {"type":"event","name":"PLAYED_TRACK","id":808676,"date":1795685880384,"payload":{"trackName":"Song","duration":120},"sessionId":490330,"userId":"richard","anonId":"hGzKvaoI5Mno","deviceId":"CiF9fH5XFVjD7Xo"},
 {"type":"nucleus:view","name":"Cart","id":212948,"date":1795685880399,"payload":{"count":5},"sessionId":490330,"userId":"richard","anonId":"hGzKvaoI5Mno","deviceId":"CiF9fH5XFVjD7Xo"},
 {"type":"error","name":"myCustomError","id":125047,"date":1795685880413,"payload":{"stack":"Error: boom\n    at ...","message":"boom"},"sessionId":490330,"userId":"richard","anonId":"hGzKvaoI5Mno","deviceId":"CiF9fH5XFVjD7Xo","client":"js","platform":"Linux","osVersion":"6.18.44","locale":"C"}
]})";

constexpr const char* kV3Message = R"({"data":[
 {"type":"init","name":null,"date":"2026-11-26T09:38:04.549Z","appId":"app456","id":286638,"userId":"bob","machineId":"0035969e...d8370f","sessionId":126166,"payload":{},"client":"nodejs","platform":"Linux","osVersion":"6.18.44","totalRam":23.54,"version":"0.0.0","locale":"C","arch":"x64","moduleVersion":"3.0.9"},
 {"type":"event","name":"SAVED","date":"2026-11-26T09:38:04.577Z","appId":"app456","id":558588,"userId":"bob","machineId":"0035969e...d8370f","sessionId":126166,"payload":{"kind":"doc"}}
]})";

struct Expected {
  EventType type;
  std::string name;
  std::string client_id;
  int64_t time_ms;
  std::string client_date;
  std::string payload_json;
  Props props;
};

void ExpectEvent(const DecodedEvent& d, const Expected& x) {
  EXPECT_EQ(d.outcome, Outcome::kStore) << d.invalid_reason;
  EXPECT_FALSE(d.truncated);
  EXPECT_EQ(d.ack_id, x.client_id);
  const Event& e = d.event;
  EXPECT_EQ(e.app_id, "app1");
  EXPECT_EQ(e.type, x.type);
  EXPECT_EQ(e.name, x.name);
  EXPECT_EQ(e.client_id, x.client_id);
  EXPECT_TRUE(e.HasIdentity());
  EXPECT_EQ(e.time_ms, x.time_ms);
  EXPECT_EQ(e.client_date, x.client_date);
  EXPECT_EQ(J(e.payload_json), J(x.payload_json)) << e.payload_json;
  EXPECT_EQ(e.props, x.props);
  EXPECT_TRUE(e.country.empty());
}

TEST(BatchDecoderTest, DecodesThe4xCapturedMessage) {
  DecodedBatch batch = MustDecode(kV4Message);
  ASSERT_EQ(batch.events.size(), 6u);
  EXPECT_EQ(batch.invalid, 0u);
  EXPECT_EQ(batch.truncated, 0u);

  const Props user_props = {{"plan", {Kind::kString, "pro"}}, {"age", {Kind::kNumber, "34"}}};
  const std::vector<Expected> expected = {
      {EventType::kInit, "", "308778", 1795685879840, "1795685879840", R"({"plan":"pro","age":34})",
       user_props},
      {EventType::kUserId, "", "824369", 1795685880355, "1795685880355", "{}", {}},
      {EventType::kProps, "", "110478", 1795685880370, "1795685880370",
       R"({"plan":"pro","age":34})", user_props},
      {EventType::kEvent,
       "PLAYED_TRACK",
       "808676",
       1795685880384,
       "1795685880384",
       R"({"trackName":"Song","duration":120})",
       {{"trackName", {Kind::kString, "Song"}}, {"duration", {Kind::kNumber, "120"}}}},
      {EventType::kView,
       "Cart",
       "212948",
       1795685880399,
       "1795685880399",
       R"({"count":5})",
       {{"count", {Kind::kNumber, "5"}}}},
      {EventType::kError,
       "myCustomError",
       "125047",
       1795685880413,
       "1795685880413",
       R"({"stack":"Error: boom\n    at ...","message":"boom"})",
       {{"stack", {Kind::kString, "Error: boom\n    at ..."}},
        {"message", {Kind::kString, "boom"}}}},
  };
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE("event " + std::to_string(i));
    ExpectEvent(batch.events[i], expected[i]);
    const Event& e = batch.events[i].event;
    EXPECT_EQ(e.device_id, "CiF9fH5XFVjD7Xo");
    EXPECT_EQ(e.session_id, "490330");
    EXPECT_EQ(e.user_id, "richard");
    EXPECT_EQ(e.anon_id, "hGzKvaoI5Mno");
    EXPECT_EQ(e.user_key, "richard");
    if (e.type == EventType::kError) {
      EXPECT_EQ(e.error_hash, ErrorHash("myCustomError", "boom", "Error: boom\n    at ..."));
      EXPECT_FALSE(e.error_hash.empty());
    } else {
      EXPECT_EQ(e.error_hash, "");
    }
  }
  // Context fields are read where the SDK sends them, raw (normalised only when shown).
  const Event& init = batch.events[0].event;
  EXPECT_EQ(init.client, "js");
  EXPECT_EQ(init.platform, "Linux");
  EXPECT_EQ(init.os_version, "6.18.44");
  EXPECT_EQ(init.locale, "C");
  EXPECT_FALSE(init.total_ram.has_value());
  EXPECT_EQ(batch.events[1].event.platform, "");

  EXPECT_EQ(AckJson(batch), "{\"reportedIds\":[308778,824369,110478,808676,212948,125047]}");
}

TEST(BatchDecoderTest, DecodesThe3xCapturedMessage) {
  DecodedBatch batch = MustDecode(kV3Message);
  ASSERT_EQ(batch.events.size(), 2u);
  EXPECT_EQ(batch.invalid, 0u);
  ExpectEvent(
      batch.events[0],
      {EventType::kInit, "", "286638", 1795685884549, "\"2026-11-26T09:38:04.549Z\"", "{}", {}});
  ExpectEvent(batch.events[1], {EventType::kEvent,
                                "SAVED",
                                "558588",
                                1795685884577,
                                "\"2026-11-26T09:38:04.577Z\"",
                                R"({"kind":"doc"})",
                                {{"kind", {Kind::kString, "doc"}}}});
  for (const DecodedEvent& d : batch.events) {
    EXPECT_EQ(d.event.device_id, "0035969e...d8370f");  // machineId is the 3.x device
    EXPECT_EQ(d.event.session_id, "126166");
    EXPECT_EQ(d.event.user_key, "bob");
    EXPECT_EQ(d.event.anon_id, "");
  }
  const Event& init = batch.events[0].event;
  EXPECT_EQ(init.client, "nodejs");
  EXPECT_EQ(init.platform, "Linux");
  EXPECT_EQ(init.version, "0.0.0");
  EXPECT_EQ(init.module_version, "3.0.9");
  EXPECT_EQ(init.arch, "x64");
  ASSERT_TRUE(init.total_ram.has_value());
  EXPECT_DOUBLE_EQ(*init.total_ram, 23.54);
  EXPECT_EQ(AckJson(batch), "{\"reportedIds\":[286638,558588]}");
}

TEST(BatchDecoderTest, SessionIdIsCanonicalText) {
  const DecodedEvent as_number =
      DecodeOneEvent(R"({"type":"init","deviceId":"d1","sessionId":490330})");
  const DecodedEvent as_string =
      DecodeOneEvent(R"({"type":"init","deviceId":"d1","sessionId":"490330"})");
  EXPECT_EQ(as_number.outcome, Outcome::kStore);
  EXPECT_EQ(as_number.event.session_id, "490330");
  EXPECT_EQ(as_string.event.session_id, "490330");
}

TEST(BatchDecoderTest, UserKeyPrecedence) {
  struct Case {
    const char* ids;
    const char* user_key;
  };
  const Case cases[] = {
      {R"("userId":"u","anonId":"a","deviceId":"d")", "u"},
      {R"("anonId":"a","deviceId":"d")", "a"},
      {R"("userId":null,"anonId":"a","deviceId":"d")", "a"},
      {R"("userId":"","anonId":"a","deviceId":"d")", "a"},
      {R"("deviceId":"d")", "d"},
      {R"("machineId":"m")", "m"},
      {R"("userId":"u","machineId":"m")", "u"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.ids);
    DecodedEvent d = DecodeOneEvent(std::string(R"({"type":"init","sessionId":1,)") + c.ids + "}");
    EXPECT_EQ(d.outcome, Outcome::kStore) << d.invalid_reason;
    EXPECT_EQ(d.event.user_key, c.user_key);
  }
}

TEST(BatchDecoderTest, EventTime) {
  struct Case {
    std::optional<std::string> date;  // the "date" member's JSON text; nullopt: none
    int64_t time_ms;
  };
  const Case cases[] = {
      {"1795685879840", 1795685879840},                   // 4.x: milliseconds
      {"\"2026-11-26T09:38:04.549Z\"", 1795685884549},    // 3.x: ISO with Z
      {"\"2026-11-26T09:38:04.549123\"", 1795685884549},  // Python: no offset = UTC
      {"\"2026-11-26T10:38:04.549+01:00\"", 1795685884549},
      {std::nullopt, kNow},  // absent: receive time
      {"null", kNow},
      {"\"yesterday\"", kNow},  // unreadable: receive time
      {"true", kNow},
      {std::to_string(kNow + 24 * kHour), kNow + 24 * kHour},  // exactly 24 h ahead: kept
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.date.value_or("(absent)"));
    std::string ev = R"({"type":"event","name":"E","deviceId":"d","sessionId":1)";
    if (c.date) ev += ",\"date\":" + *c.date;
    ev += "}";
    DecodedEvent d = DecodeOneEvent(ev);
    EXPECT_EQ(d.outcome, Outcome::kStore) << d.invalid_reason;
    EXPECT_EQ(d.event.time_ms, c.time_ms);
  }
}

TEST(BatchDecoderTest, DateMoreThanADayAheadBecomesTheReceiveTime) {
  const std::string ahead = std::to_string(kNow + 24 * kHour + 1);
  DecodedEvent d = DecodeOneEvent(
      R"({"type":"event","name":"E","deviceId":"d","sessionId":1,"id":7,"date":)" + ahead + "}");
  EXPECT_EQ(d.outcome, Outcome::kStore);
  EXPECT_EQ(d.event.time_ms, kNow);
  // The identity still holds the date as sent, so a resend is recognised.
  EXPECT_EQ(d.event.client_date, ahead);

  DecodedEvent iso = DecodeOneEvent(
      R"({"type":"event","name":"E","deviceId":"d","sessionId":1,"date":"2026-11-28T10:00:00Z"})");
  EXPECT_EQ(iso.event.time_ms, kNow);
  // Late events (an offline queue of 48 h) keep their date.
  DecodedEvent late = DecodeOneEvent(
      R"({"type":"event","name":"E","deviceId":"d","sessionId":1,"date":"2026-11-24T10:00:00Z"})");
  EXPECT_EQ(late.event.time_ms, kNow - 48 * kHour);
}

TEST(BatchDecoderTest, PropsKindsAndRenderedText) {
  DecodedEvent d = DecodeOneEvent(
      R"({"type":"event","name":"E","deviceId":"d","sessionId":1,"payload":)"
      R"({"s":"x","i":120,"f":1.5,"neg":-0.25,"t":true,"b":false,"n":null,"o":{"k":1},"a":[1,2]}})");
  ASSERT_EQ(d.outcome, Outcome::kStore) << d.invalid_reason;
  const Props expected = {
      {"s", {Kind::kString, "x"}},   {"i", {Kind::kNumber, "120"}},
      {"f", {Kind::kNumber, "1.5"}}, {"neg", {Kind::kNumber, "-0.25"}},
      {"t", {Kind::kBool, "true"}},  {"b", {Kind::kBool, "false"}},
  };
  EXPECT_EQ(d.event.props, expected);
  // Nulls, objects and arrays are data but not properties.
  EXPECT_EQ(
      J(d.event.payload_json),
      J(R"({"s":"x","i":120,"f":1.5,"neg":-0.25,"t":true,"b":false,"n":null,"o":{"k":1},"a":[1,2]})"));
  EXPECT_FALSE(d.truncated);
}

TEST(BatchDecoderTest, ClientIdIsEchoedAsItsRawJsonText) {
  DecodedBatch batch = MustDecode(R"({"data":[
    {"type":"event","name":"E","deviceId":"d","sessionId":1,"id":123},
    {"type":"event","name":"E","deviceId":"d","sessionId":1,"id":"123"},
    {"type":"event","name":"E","deviceId":"d","sessionId":1,"id":"abc"},
    {"type":"event","name":"E","deviceId":"d","sessionId":1},
    {"type":"event","name":"E","deviceId":"d","sessionId":1,"id":null}
  ]})");
  ASSERT_EQ(batch.events.size(), 5u);
  EXPECT_EQ(batch.events[0].event.client_id, "123");
  EXPECT_EQ(batch.events[1].event.client_id, "\"123\"");
  EXPECT_EQ(batch.events[2].event.client_id, "\"abc\"");
  EXPECT_EQ(batch.events[3].event.client_id, "");
  EXPECT_EQ(batch.events[4].event.client_id, "");
  EXPECT_FALSE(batch.events[3].event.HasIdentity());
  EXPECT_EQ(batch.events[3].event.client_date, "");  // no identity without an id
  EXPECT_EQ(AckJson(batch), "{\"reportedIds\":[123,\"123\",\"abc\"]}");
}

TEST(BatchDecoderTest, EventKeyIsAnAliasOfTypeOrName) {
  // Python's heartbeat.
  DecodedEvent hb = DecodeOneEvent(R"({"event":"nucleus:heartbeat","machineId":"py-machine"})");
  EXPECT_EQ(hb.outcome, Outcome::kHeartbeat);
  EXPECT_EQ(hb.event.type, EventType::kHeartbeat);
  EXPECT_EQ(hb.event.device_id, "py-machine");
  EXPECT_EQ(hb.event.session_id, "");
  EXPECT_EQ(hb.event.time_ms, kNow);
  EXPECT_EQ(hb.ack_id, "");

  DecodedEvent named = DecodeOneEvent(R"({"event":"X","deviceId":"d","sessionId":1})");
  EXPECT_EQ(named.outcome, Outcome::kStore);
  EXPECT_EQ(named.event.type, EventType::kEvent);
  EXPECT_EQ(named.event.name, "X");

  DecodedEvent typed_named =
      DecodeOneEvent(R"({"type":"event","event":"Y","deviceId":"d","sessionId":1})");
  EXPECT_EQ(typed_named.event.type, EventType::kEvent);
  EXPECT_EQ(typed_named.event.name, "Y");

  DecodedEvent init = DecodeOneEvent(R"({"event":"init","deviceId":"d","sessionId":1})");
  EXPECT_EQ(init.outcome, Outcome::kStore);
  EXPECT_EQ(init.event.type, EventType::kInit);
}

TEST(BatchDecoderTest, Heartbeats) {
  // 4.x heartbeat: the session it extends, never a date of its own.
  DecodedEvent v4 = DecodeOneEvent(
      R"({"type":"heartbeat","sessionId":490330,"userId":"richard","anonId":"a","deviceId":"D","date":1})");
  EXPECT_EQ(v4.outcome, Outcome::kHeartbeat);
  EXPECT_EQ(v4.event.session_id, "490330");
  EXPECT_EQ(v4.event.user_key, "richard");
  EXPECT_EQ(v4.event.time_ms, kNow);
  // 3.x heartbeat: only the machine.
  DecodedEvent v3 = DecodeOneEvent(R"({"type":"heartbeat","machineId":"M"})");
  EXPECT_EQ(v3.outcome, Outcome::kHeartbeat);
  EXPECT_EQ(v3.event.device_id, "M");
  // Browser heartbeat without a device cannot be attributed.
  DecodedEvent no_device = DecodeOneEvent(R"({"type":"heartbeat","sessionId":5})");
  EXPECT_EQ(no_device.outcome, Outcome::kInvalid);
}

TEST(BatchDecoderTest, InvalidEventsAreReportedAndKeepTheirAckId) {
  const char* cases[] = {
      R"({"id":1,"type":"init","sessionId":1})",                            // no device
      R"({"id":2,"type":"event","name":"E","deviceId":"d"})",               // no session
      R"({"id":3,"type":"event","deviceId":"d","sessionId":1})",            // event, no name
      R"({"id":4,"type":"error","deviceId":"d","sessionId":1})",            // error, no name
      R"({"id":5,"type":"nucleus:view","deviceId":"d","sessionId":1})",     // view, no name
      R"({"id":6,"type":"event","name":"","deviceId":"d","sessionId":1})",  // empty name
      R"({"id":7,"type":"event","name":"E","deviceId":"d","sessionId":1,"payload":[1]})",
      R"({"id":8,"type":"event","name":"E","deviceId":"d","sessionId":1,"payload":"x"})",
      R"({"id":9,"type":"event","name":"E","deviceId":"d","sessionId":1,"payload":3})",
      R"({"id":"ten","type":"init","deviceId":"","sessionId":1})",  // empty device
  };
  std::string body = "{\"data\":[";
  for (size_t i = 0; i < std::size(cases); ++i) body += (i ? "," : "") + std::string(cases[i]);
  body += ",5]}";  // not an object: invalid, nothing to ack
  DecodedBatch batch = MustDecode(body);
  ASSERT_EQ(batch.events.size(), std::size(cases) + 1);
  EXPECT_EQ(batch.invalid, std::size(cases) + 1);
  for (size_t i = 0; i < batch.events.size(); ++i) {
    SCOPED_TRACE(i < std::size(cases) ? cases[i] : "5");
    EXPECT_EQ(batch.events[i].outcome, Outcome::kInvalid);
    EXPECT_FALSE(batch.events[i].invalid_reason.empty());
  }
  EXPECT_EQ(batch.events.back().ack_id, "");
  // Acked so the SDK stops resending them.
  EXPECT_EQ(AckJson(batch), "{\"reportedIds\":[1,2,3,4,5,6,7,8,9,\"ten\"]}");
}

TEST(BatchDecoderTest, InitAndUseridNeedNoName) {
  DecodedBatch batch = MustDecode(R"({"data":[
    {"type":"init","deviceId":"d","sessionId":1},
    {"type":"userid","deviceId":"d","sessionId":1,"userId":"u","payload":{"plan":"x"}},
    {"type":"props","deviceId":"d","sessionId":1,"payload":{"plan":"y"}}
  ]})");
  ASSERT_EQ(batch.events.size(), 3u);
  for (const DecodedEvent& d : batch.events) EXPECT_EQ(d.outcome, Outcome::kStore);
  // Python's set_props: a userid event with a payload of props.
  EXPECT_EQ(batch.events[1].event.props, (Props{{"plan", {Kind::kString, "x"}}}));
}

// ---------------------------------------------------------------------------
// Caps.

std::string Repeat(std::string_view s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

size_t CodePoints(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

TEST(BatchDecoderTest, LongNamesAreCutTo256CodePoints) {
  struct Case {
    std::string name;
    std::string expected;
    bool truncated;
  };
  const Case cases[] = {
      {Repeat("a", 256), Repeat("a", 256), false},
      {Repeat("a", 257), Repeat("a", 256), true},
      {Repeat("a", 255) + "\xC3\xA9\xC3\xBC", Repeat("a", 255) + "\xC3\xA9", true},  // é ü
      {Repeat("\xC3\xA9", 300), Repeat("\xC3\xA9", 256), true},
      {Repeat("\xE2\x82\xAC", 256), Repeat("\xE2\x82\xAC", 256), false},         // € x 256
      {Repeat("\xF0\x9F\x98\x80", 257), Repeat("\xF0\x9F\x98\x80", 256), true},  // 😀
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name.substr(0, 12) + "... (" + std::to_string(c.name.size()) + " bytes)");
    DecodedBatch batch =
        MustDecode(R"({"data":[{"type":"event","deviceId":"d","sessionId":1,"name":)" +
                   json::serialize(json::string(c.name)) + "}]}");
    ASSERT_EQ(batch.events.size(), 1u);
    const DecodedEvent& d = batch.events[0];
    EXPECT_EQ(d.outcome, Outcome::kStore);
    EXPECT_EQ(d.event.name, c.expected);
    EXPECT_LE(CodePoints(d.event.name), 256u);
    EXPECT_EQ(d.truncated, c.truncated);
    EXPECT_EQ(batch.truncated, c.truncated ? 1u : 0u);
  }
}

TEST(BatchDecoderTest, PayloadKeysAreCappedAt64) {
  json::object payload;
  for (int i = 0; i < 70; ++i) payload["k" + std::to_string(i)] = i;
  DecodedEvent d =
      DecodeOneEvent(R"({"type":"event","name":"E","deviceId":"d","sessionId":1,"payload":)" +
                     json::serialize(payload) + "}");
  ASSERT_EQ(d.outcome, Outcome::kStore);
  EXPECT_TRUE(d.truncated);
  ASSERT_EQ(d.event.props.size(), 64u);
  EXPECT_EQ(d.event.props.front().first, "k0");
  EXPECT_EQ(d.event.props.back().first, "k63");
  const json::object kept = J(d.event.payload_json).as_object();
  EXPECT_EQ(kept.size(), 64u);
  EXPECT_TRUE(kept.contains("k63"));
  EXPECT_FALSE(kept.contains("k64"));

  json::object exactly;
  for (int i = 0; i < 64; ++i) exactly["k" + std::to_string(i)] = i;
  DecodedEvent full =
      DecodeOneEvent(R"({"type":"event","name":"E","deviceId":"d","sessionId":1,"payload":)" +
                     json::serialize(exactly) + "}");
  EXPECT_FALSE(full.truncated);
  EXPECT_EQ(full.event.props.size(), 64u);
}

TEST(BatchDecoderTest, LongStringValuesAreCutAtAUtf8Boundary) {
  struct Case {
    std::string value;
    std::string expected;
    bool truncated;
  };
  const Case cases[] = {
      {Repeat("a", 1024), Repeat("a", 1024), false},
      {Repeat("a", 1025), Repeat("a", 1024), true},
      {Repeat("a", 1023) + "\xC3\xA9", Repeat("a", 1023), true},          // é would straddle
      {Repeat("a", 1022) + "\xE2\x82\xAC", Repeat("a", 1022), true},      // € would straddle
      {Repeat("a", 1021) + "\xF0\x9F\x98\x80", Repeat("a", 1021), true},  // 😀 would straddle
      {Repeat("a", 1020) + "\xF0\x9F\x98\x80" + "b", Repeat("a", 1020) + "\xF0\x9F\x98\x80", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.value.size()) + " bytes");
    json::object payload;
    payload["v"] = c.value;
    DecodedEvent d =
        DecodeOneEvent(R"({"type":"event","name":"E","deviceId":"d","sessionId":1,"payload":)" +
                       json::serialize(payload) + "}");
    ASSERT_EQ(d.outcome, Outcome::kStore);
    ASSERT_EQ(d.event.props.size(), 1u);
    EXPECT_EQ(d.event.props[0].second.text, c.expected);
    EXPECT_LE(d.event.props[0].second.text.size(), 1024u);
    EXPECT_EQ(d.truncated, c.truncated);
    // The stored payload holds the cut value too (and is valid JSON, hence valid UTF-8).
    EXPECT_EQ(J(d.event.payload_json).as_object().at("v").as_string(), c.expected);
  }
}

TEST(BatchDecoderTest, NestedValuesOver1KiBAreDropped) {
  json::object payload;
  payload["big"] = json::object{{"s", Repeat("x", 1100)}};
  payload["small"] = json::object{{"a", 1}};
  payload["list"] = json::array{1, 2, 3};
  payload["s"] = "kept";
  DecodedEvent d =
      DecodeOneEvent(R"({"type":"event","name":"E","deviceId":"d","sessionId":1,"payload":)" +
                     json::serialize(payload) + "}");
  ASSERT_EQ(d.outcome, Outcome::kStore);
  EXPECT_TRUE(d.truncated);
  EXPECT_EQ(J(d.event.payload_json), J(R"({"small":{"a":1},"list":[1,2,3],"s":"kept"})"));
  EXPECT_EQ(d.event.props, (Props{{"s", {Kind::kString, "kept"}}}));
}

TEST(BatchDecoderTest, NestedValueOfExactly1KiBIsKept) {
  // {"s":"xxx..."} serialises to 8 + n bytes.
  for (size_t n : {1016u, 1017u}) {
    SCOPED_TRACE(n);
    json::object payload;
    payload["o"] = json::object{{"s", Repeat("x", n)}};
    ASSERT_EQ(json::serialize(payload["o"]).size(), 8 + n);
    DecodedEvent d =
        DecodeOneEvent(R"({"type":"event","name":"E","deviceId":"d","sessionId":1,"payload":)" +
                       json::serialize(payload) + "}");
    ASSERT_EQ(d.outcome, Outcome::kStore);
    EXPECT_EQ(J(d.event.payload_json).as_object().contains("o"), n == 1016);
    EXPECT_EQ(d.truncated, n == 1017);
  }
}

TEST(BatchDecoderTest, LimitsAreConfigurable) {
  IngestLimits limits;
  limits.max_name_chars = 3;
  limits.max_payload_keys = 1;
  limits.max_value_bytes = 2;
  DecodedBatch batch = MustDecode(
      R"({"data":[{"type":"event","name":"ABCDE","deviceId":"d","sessionId":1,"payload":{"a":"xyz","b":"c"}}]})",
      kNow, limits);
  ASSERT_EQ(batch.events.size(), 1u);
  const Event& e = batch.events[0].event;
  EXPECT_EQ(e.name, "ABC");
  EXPECT_EQ(e.props, (Props{{"a", {Kind::kString, "xy"}}}));
}

// ---------------------------------------------------------------------------
// Malformed messages.

TEST(BatchDecoderTest, MalformedMessagesAreInvalidArgument) {
  const std::string cases[] = {
      "",
      "{",
      "{\"data\":[}",
      "not json",
      "{\"data\":[]} trailing",
      "{\"data\":[{\"name\":\"\xff\"}]}",          // invalid UTF-8
      "{\"data\":[{\"name\":\"\xC3\"}]}",          // truncated sequence
      "{\"data\":[{\"name\":\"\xED\xA0\x80\"}]}",  // a UTF-16 surrogate encoded as UTF-8
      "{}",
      "[]",
      "{\"data\":{}}",
      "{\"data\":\"x\"}",
      "{\"data\":null}",
      "{\"Data\":[]}",
      "42",
  };
  for (const std::string& body : cases) {
    SCOPED_TRACE(body);
    auto batch = DecodeBatch(body, "app1", kNow, IngestLimits{});
    ASSERT_FALSE(batch.ok());
    EXPECT_EQ(batch.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(BatchDecoderTest, LoneSurrogateEscapesBecomeReplacementCharacters) {
  // JavaScript cuts strings inside emoji; one such value must not lose the queue.
  // A proper pair stays, and an escaped backslash before "u" is plain text.
  DecodedBatch batch = MustDecode(
      R"({"data":[{"id":1,"type":"event","name":"A\ud83dB","deviceId":"d","sessionId":1,)"
      R"("payload":{"pair":"\ud83d\ude00","text":"\\ud800","low":"x\udc00"}}]})");
  ASSERT_EQ(batch.events.size(), 1u);
  const Event& e = batch.events[0].event;
  EXPECT_EQ(batch.events[0].outcome, Outcome::kStore);
  EXPECT_EQ(e.name,
            "A\xEF\xBF\xBD"
            "B");
  EXPECT_EQ(e.props, (Props{{"pair", {Kind::kString, "\xF0\x9F\x98\x80"}},
                            {"text", {Kind::kString, "\\ud800"}},
                            {"low", {Kind::kString, "x\xEF\xBF\xBD"}}}));
  EXPECT_EQ(AckJson(batch), "{\"reportedIds\":[1]}");
}

TEST(BatchDecoderTest, NonFiniteNumbersHaveNoJsonForm) {
  DecodedBatch batch =
      MustDecode(R"({"data":[{"id":1.5,"type":"event","name":"E","deviceId":"d","sessionId":1e400,)"
                 R"("totalRam":1e400,"payload":{"big":1e400,"n":2}}]})");
  ASSERT_EQ(batch.events.size(), 1u);
  const DecodedEvent& d = batch.events[0];
  EXPECT_EQ(d.ack_id, "1.5");  // echoed as sent, not "1.5E0"
  EXPECT_EQ(d.event.session_id, "");
  EXPECT_EQ(d.outcome, Outcome::kInvalid);  // no session id left
  DecodedEvent ok =
      DecodeOneEvent(R"({"type":"event","name":"E","deviceId":"d","sessionId":1,"totalRam":1e400,)"
                     R"("payload":{"big":1e400,"n":2}})");
  ASSERT_EQ(ok.outcome, Outcome::kStore);
  EXPECT_FALSE(ok.event.total_ram.has_value());
  EXPECT_EQ(J(ok.event.payload_json), J(R"({"big":null,"n":2})"));
  EXPECT_EQ(ok.event.props, (Props{{"n", {Kind::kNumber, "2"}}}));
  // Inside a kept object or array too: the stored payload is always valid JSON.
  DecodedEvent nested =
      DecodeOneEvent(R"({"type":"event","name":"E","deviceId":"d","sessionId":1,)"
                     R"("payload":{"o":{"b":1e400,"c":[1,-1e999,{"d":1e400}]},"n":2}})");
  ASSERT_EQ(nested.outcome, Outcome::kStore);
  EXPECT_EQ(nested.event.payload_json, R"({"o":{"b":null,"c":[1,null,{"d":null}]},"n":2})");
}

TEST(BatchDecoderTest, EmptyDataIsAnEmptyAck) {
  DecodedBatch batch = MustDecode("{\"data\":[]}");
  EXPECT_TRUE(batch.events.empty());
  EXPECT_EQ(AckJson(batch), "{\"reportedIds\":[]}");
}

// A message whose deepest value sits at `depth`, the top-level object being depth 1:
// {"data":[{"type":"event",...,"payload":{"n":{"n":...{}}}}]}.
std::string MessageOfDepth(int depth) {
  // Depth 1 = root object, 2 = data array, 3 = the event, 4 = its payload.
  std::string inner = "{}";
  for (int d = depth; d > 4; --d) inner = "{\"n\":" + inner + "}";
  return R"({"data":[{"type":"event","name":"E","deviceId":"d","sessionId":1,"payload":)" + inner +
         "}]}";
}

TEST(BatchDecoderTest, DepthLimitBoundaryIs32) {
  auto ok = DecodeBatch(MessageOfDepth(32), "app1", kNow, IngestLimits{});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  ASSERT_EQ(ok->events.size(), 1u);
  EXPECT_EQ(ok->events[0].outcome, Outcome::kStore);

  auto too_deep = DecodeBatch(MessageOfDepth(33), "app1", kNow, IngestLimits{});
  ASSERT_FALSE(too_deep.ok());
  EXPECT_EQ(too_deep.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(too_deep.status().message().find("32"), std::string::npos)
      << too_deep.status().message();

  // Arrays count as levels too.
  std::string arrays = "[]";
  for (int d = 32; d > 2; --d) arrays = "[" + arrays + "]";  // depth 2..32 inside data
  EXPECT_TRUE(DecodeBatch("{\"data\":" + arrays + "}", "app1", kNow, IngestLimits{}).ok());
  EXPECT_FALSE(DecodeBatch("{\"data\":[" + arrays + "]}", "app1", kNow, IngestLimits{}).ok());

  // A very deep message is refused, not a stack overflow.
  std::string bomb = Repeat("[", 100000);
  EXPECT_FALSE(DecodeBatch(bomb, "app1", kNow, IngestLimits{}).ok());
}

TEST(BatchDecoderTest, MoreThan10000EventsIsPayloadTooLarge) {
  auto body = [](size_t n) {
    std::string s = "{\"data\":[";
    for (size_t i = 0; i < n; ++i) s += i ? ",{}" : "{}";
    return s + "]}";
  };
  auto at_cap = DecodeBatch(body(10000), "app1", kNow, IngestLimits{});
  ASSERT_TRUE(at_cap.ok()) << at_cap.status().ToString();
  EXPECT_EQ(at_cap->events.size(), 10000u);
  auto over = DecodeBatch(body(10001), "app1", kNow, IngestLimits{});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), StatusCode::kPayloadTooLarge);
}

TEST(BatchDecoderTest, ResendsDecodeToTheSameIdentity) {
  // The captured 4.x message arrived twice; both decodes carry identical identities.
  DecodedBatch first = MustDecode(kV4Message, kNow);
  DecodedBatch again = MustDecode(kV4Message, kNow + 20000);
  ASSERT_EQ(first.events.size(), again.events.size());
  for (size_t i = 0; i < first.events.size(); ++i) {
    const Event& a = first.events[i].event;
    const Event& b = again.events[i].event;
    EXPECT_EQ(std::tie(a.app_id, a.device_id, a.session_id, a.client_id, a.type, a.name,
                       a.client_date, a.time_ms),
              std::tie(b.app_id, b.device_id, b.session_id, b.client_id, b.type, b.name,
                       b.client_date, b.time_ms));
  }
}

TEST(BatchDecoderTest, ErrorHashDependsOnNameMessageAndStack) {
  auto hash = [](const char* name, const char* message) {
    return DecodeOneEvent(std::string(R"({"type":"error","deviceId":"d","sessionId":1,"name":")") +
                          name + R"(","payload":{"message":")" + message +
                          R"js(","stack":"Error\n    at f (a.js:1:1)"}})js")
        .event.error_hash;
  };
  EXPECT_FALSE(hash("uncaughtException", "boom").empty());
  EXPECT_EQ(hash("uncaughtException", "boom"), hash("uncaughtException", "boom"));
  EXPECT_NE(hash("uncaughtException", "boom"), hash("uncaughtException", "bang"));
  EXPECT_NE(hash("uncaughtException", "boom"), hash("windowError", "boom"));
  // An error without a payload still gets a hash.
  EXPECT_FALSE(DecodeOneEvent(R"({"type":"error","name":"E","deviceId":"d","sessionId":1})")
                   .event.error_hash.empty());
}

// An export record decodes back into the event it was written from, every
// field included; a session end into its heartbeat.
TEST(BatchDecoderTest, ExportRecordsRoundTrip) {
  Event e;
  e.app_id = "app";
  e.type = EventType::kError;
  e.name = "TypeError";
  e.client_id = "\"c-1\"";
  e.device_id = "dev";
  e.session_id = "42";
  e.user_key = "anon";
  e.anon_id = "anon";
  e.time_ms = 1795686480384;
  e.ident_hash = int64_t{-123} << 16;
  e.platform = "darwin";
  e.os_version = "14.1";
  e.locale = "fr_FR";
  e.version = "1.1";
  e.module_version = "4.0.1";
  e.arch = "arm64";
  e.client = "nucleus-js";
  e.country = "NL";
  e.total_ram = 15.6;
  // As stored: the JSON text the decoder serialised (a double as 1.5E0).
  e.payload_json = R"({"message":"bad","n":1.5E0,"ok":true,"o":{"a":[1]}})";
  e.error_hash = "abc123";
  auto r = DecodeExportRecord(ExportRecordJson(e), "app");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->kind, ExportRecord::Kind::kEvent);
  const Event& d = r->event;
  EXPECT_EQ(ExportRecordJson(d), ExportRecordJson(e));
  EXPECT_EQ(std::tie(d.app_id, d.type, d.name, d.client_id, d.device_id, d.session_id, d.user_key,
                     d.user_id, d.anon_id, d.time_ms, d.ident_hash, d.total_ram, d.payload_json,
                     d.error_hash, d.country),
            std::tie(e.app_id, e.type, e.name, e.client_id, e.device_id, e.session_id, e.user_key,
                     e.user_id, e.anon_id, e.time_ms, e.ident_hash, e.total_ram, e.payload_json,
                     e.error_hash, e.country));
  ASSERT_EQ(d.props.size(), 3u);  // the payload's scalar members
  EXPECT_EQ(d.props[1].second.text, "1.5");

  // A client date kept as sent (a store that keeps it) comes back as it was.
  e.client_date = "\"2026-11-26T09:38:00.384Z\"";
  e.ident_hash.reset();
  e.user_id = "anon";  // identified
  r = DecodeExportRecord(ExportRecordJson(e), "app");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->event.client_date, e.client_date);
  EXPECT_EQ(r->event.user_id, "anon");
  EXPECT_FALSE(r->event.ident_hash);

  r = DecodeExportRecord(R"({"type":"heartbeat","deviceId":"dev","sessionId":"42",)"
                         R"("time":"2026-11-26T09:52:31.000Z"})",
                         "app");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, ExportRecord::Kind::kSessionEnd);
  EXPECT_EQ(r->event.type, EventType::kHeartbeat);
  r = DecodeExportRecord(R"({"type":"tombstone","hash":"-77"})", "app");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, ExportRecord::Kind::kTombstone);
  EXPECT_EQ(r->tombstone, -77);
  EXPECT_FALSE(DecodeExportRecord(R"({"type":"event","name":"x"})", "app").ok());
  EXPECT_FALSE(DecodeExportRecord("not json", "app").ok());
  EXPECT_TRUE(LooksLikeBatch(R"( {"data":[]})"));
  EXPECT_FALSE(LooksLikeBatch(R"({"type":"event"})"));
}

}  // namespace
}  // namespace nucleon
