#include "store/clickhouse/event_rows.h"

#include <gtest/gtest.h>

#include "store/clickhouse/clickhouse_client.h"

namespace nucleon {
namespace {

// The columns of an `events` row, in the table's order (clickhouse_schema.cc).
enum Column : size_t { kApp, kNode, kOrd, kTime, kType, kName, kDevice, kSession, kSessH };

Event Sample() {
  Event e;
  e.app_id = "app\t1";
  e.type = EventType::kError;
  e.name = "TypeError";
  e.client_id = "\"abc\"";
  e.device_id = "dev\\ice";
  e.session_id = "s\n1";
  e.user_key = "user-1";
  e.user_id = "user-1";
  e.anon_id = "anon";
  e.time_ms = -1234;
  e.client_date = "\"2026-11-30T10:00:00Z\"";
  e.platform = "darwin";
  e.locale = "fr_FR.UTF-8";
  e.version = "1.2";
  e.country = "FR";
  e.total_ram = 15.6;
  e.payload_json = R"({"message":"x","n":1.5,"ok":true,"q":"it's"})";
  e.props = {{"message", {PropValue::Kind::kString, "x"}},
             {"n", {PropValue::Kind::kNumber, "1.5"}},
             {"ok", {PropValue::Kind::kBool, "true"}},
             {"q", {PropValue::Kind::kString, "it's"}}};
  e.error_hash = "0123456789abcdef0123456789abcdef";
  return e;
}

TEST(EventRowsTest, ARowCarriesEveryFieldAndTheNormalisedValues) {
  std::string row;
  AppendEventRow(Sample(), 7, 99, &row);
  auto rows = ParseTsv(row);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 1u);
  const auto& f = (*rows)[0];
  ASSERT_EQ(f.size(), 34u) << "the events table's columns";
  EXPECT_EQ(f[kApp], "app\t1");
  EXPECT_EQ(f[kNode], "7");
  EXPECT_EQ(f[kOrd], "99");
  EXPECT_EQ(f[kTime], "-1234");
  EXPECT_EQ(f[kType], "3");
  EXPECT_EQ(f[kSession], "s\n1");
  EXPECT_EQ(f[kSessH], std::to_string(SessionHash("app\t1", "dev\\ice", "s\n1")));
  // The property arrays as ClickHouse reads them: array literals quoted as
  // SQL, not escaped once more (ClickHouse does not unescape them first).
  std::vector<std::string_view> raw;
  for (size_t at = 0, tab = 0; tab != std::string::npos; at = tab + 1) {
    tab = row.find('\t', at);
    raw.push_back(std::string_view(row).substr(at, tab == std::string::npos ? row.size() - at - 1
                                                                            : tab - at));
  }
  ASSERT_EQ(raw.size(), 34u) << "no raw tab inside a field";
  EXPECT_EQ(raw[kPropArrayFields[0]], "['message','n','ok','q']");
  EXPECT_EQ(raw[kPropArrayFields[1]], "[0,1,2,0]");
  EXPECT_EQ(raw[kPropArrayFields[2]], "['x','1.5','true','it\\'s']");
  EXPECT_EQ(f[31], "mac") << "platform, normalised for breakdowns";
  EXPECT_EQ(f[32], "fr") << "language of the locale";
  EXPECT_EQ(f[33], "16") << "RAM bucket";
}

TEST(EventRowsTest, DecodingGivesBackTheEventAsStored) {
  const Event e = Sample();
  std::string row;
  AppendEventRow(e, 7, 99, &row);
  auto rows = ParseTsv(row);
  ASSERT_TRUE(rows.ok());
  const auto& f = (*rows)[0];
  // A query selects `ord, app, kEventSelectColumns`: rebuild that row from
  // the table's columns.
  const std::vector<std::string> selected = {
      f[kOrd], f[kApp], f[kType], f[kName], f[13], f[kDevice], f[kSession], f[9],
      f[11],   f[12],   f[kTime], f[14],    f[16], f[17],      f[18],       f[19],
      f[20],   f[21],   f[22],    f[23],    f[24], f[25],      f[26],       f[30]};
  uint64_t ord = 0;
  auto back = DecodeEventRow(selected, &ord);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(ord, 99u);
  EXPECT_EQ(back->app_id, e.app_id);
  EXPECT_EQ(back->type, e.type);
  EXPECT_EQ(back->name, e.name);
  EXPECT_EQ(back->client_id, e.client_id);
  EXPECT_EQ(back->device_id, e.device_id);
  EXPECT_EQ(back->session_id, e.session_id);
  EXPECT_EQ(back->user_key, e.user_key);
  EXPECT_EQ(back->anon_id, e.anon_id);
  EXPECT_EQ(back->time_ms, e.time_ms);
  EXPECT_EQ(back->client_date, e.client_date);
  EXPECT_EQ(back->platform, e.platform);
  EXPECT_EQ(back->locale, e.locale);
  EXPECT_EQ(back->country, e.country);
  ASSERT_TRUE(back->total_ram.has_value());
  EXPECT_EQ(*back->total_ram, 15.6) << "the RAM round-trips exactly";
  EXPECT_EQ(back->payload_json, e.payload_json);
  EXPECT_EQ(back->props, e.props) << "properties derived from the payload as at ingest";
  EXPECT_EQ(back->error_hash, e.error_hash);
}

TEST(EventRowsTest, IdentityFollowsTheFieldsThatMakeIt) {
  Event a = Sample();
  EXPECT_EQ(IdentityHash(a).size(), 32u);
  Event b = a;
  b.payload_json = "{}";  // the payload is not part of the identity
  EXPECT_EQ(IdentityHash(a), IdentityHash(b));
  b.client_date = "";
  EXPECT_NE(IdentityHash(a), IdentityHash(b)) << "the date as sent is";
  b = a;
  b.client_id = "abc";
  EXPECT_NE(IdentityHash(a), IdentityHash(b)) << "\"abc\" and abc differ";
  b.client_id = "";
  EXPECT_EQ(IdentityHash(b), "") << "no id, no identity";
}

TEST(EventRowsTest, AnIdentityIsKeptUnderTheClientDateAsSent) {
  EXPECT_EQ(IdentityTime("1795685879840"), 1795685879840);
  EXPECT_EQ(IdentityTime("1795685879840.7"), 1795685879840);
  EXPECT_EQ(IdentityTime("\"2026-11-26T09:38:04.549Z\""), 1795685884549);
  EXPECT_EQ(IdentityTime("\"2026-11-26T10:38:04.549+01:00\""), 1795685884549);
  // No date, or none that reads as one: all under 0.
  for (const char* none :
       {"", "null", "true", "\"soon\"", "\"2026-11-26\\u0054\"", "1e300", "12abc", "{}"}) {
    EXPECT_EQ(IdentityTime(none), 0) << none;
  }
  // The key follows the text alone, never the receive time: every copy of
  // an event (same identity, so same date text) has the same one.
  Event e;
  e.app_id = "a";
  e.device_id = "d";
  e.session_id = "s";
  e.client_id = "1";
  e.type = EventType::kEvent;
  e.name = "N";
  e.client_date = "1795685879840";
  std::string first, second;
  AppendIdentityRow(e, 7, 100, &first);
  e.time_ms = 5;  // another receive time
  AppendIdentityRow(e, 9, 200, &second);
  EXPECT_EQ(first, "a\t1795685879840\t" + IdentityHash(e) + "\t7\t100\n");
  EXPECT_EQ(second, "a\t1795685879840\t" + IdentityHash(e) + "\t9\t200\n");
  e.client_id.clear();
  std::string none;
  AppendIdentityRow(e, 7, 100, &none);
  EXPECT_EQ(none, "") << "an event without an id has no identity";
}

TEST(EventRowsTest, OrdersIncreaseOnANodeEvenWhenTheClockStandsStillOrGoesBack) {
  OrderClock clock(3);
  uint64_t last = 0;
  for (int i = 0; i < 40000; ++i) {
    const uint64_t ord = clock.Next(i < 20000 ? 1000 : 999);
    ASSERT_GT(ord, last);
    last = ord;
  }
  EXPECT_GE(OrderClock::TimeOf(last), 1000) << "a full millisecond borrows the next one";
  EXPECT_LT(OrderClock::First(1000), OrderClock(9).Next(1000));
  EXPECT_LT(OrderClock(200).Next(1000), OrderClock::First(1001)) << "time first, then node";
}

}  // namespace
}  // namespace nucleon
