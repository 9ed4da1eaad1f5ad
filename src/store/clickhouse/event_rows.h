// How an event travels to and from ClickHouse: the `events` row (TabSeparated,
// the table's column order), the spool's heartbeat row, the hashes that let a
// delete name a user or a session without keeping its text, and the order
// (`ord`) that stands for "stored before" across nodes.
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/event.h"
#include "core/status.h"

namespace nucleon {

// The columns a query selects, after `ord, app`, to rebuild an Event
// (DecodeEventRow reads ord, app, then these).
extern const char* const kEventSelectColumns;

// 64-bit hashes (the first 8 bytes of SHA-256) of a session and of a user
// within their app. Stored with each row so a delete can name them.
uint64_t SessionHash(std::string_view app, std::string_view device, std::string_view session);
uint64_t UserHash(std::string_view app, std::string_view user_key);
// The identity of an event that has one (§1.9), 32 hex digits; "" without.
std::string IdentityHash(const Event& e);
// Where an identity is kept in `identities`: the client's date as sent
// (`client_date`, JSON text) in ms, 0 when absent or unreadable. A function
// of that text alone, so every copy of one identity (a resend, late or not,
// to any node) has the same one, and a round's lookups read only the few
// granules around the dates it holds. Never change it: stored rows keep it.
int64_t IdentityTime(std::string_view client_date);

// Appends the `identities` row of an event that has an identity (nothing
// for one without).
void AppendIdentityRow(const Event& e, uint64_t node, uint64_t ord, std::string* out);

// Appends one `events` row (with its trailing newline). The property
// arrays (kPropArrayFields) are array literals, written as they are.
void AppendEventRow(const Event& e, uint64_t node, uint64_t ord, std::string* out);
// The same with the row's hashes given (IdentityHash, SessionHash, UserHash
// of `e`): a writer computes them once, and once per session of a batch.
struct RowHashes {
  std::string_view ident;
  uint64_t session = 0;
  uint64_t user = 0;
};
void AppendEventRow(const Event& e, uint64_t node, uint64_t ord, const RowHashes& hashes,
                    std::string* out);

// Where the property keys, kinds and values are in an `events` row.
inline constexpr size_t kPropArrayFields[] = {27, 28, 29};

// Rebuilds an event from one result row of `ord, app, kEventSelectColumns`;
// `*ord` receives its order.
Result<Event> DecodeEventRow(const std::vector<std::string>& fields, uint64_t* ord);

// The order of stored things: the receive time in ms, then the node's slot,
// then a counter, packed so that comparing two orders compares those.
// Strictly increasing on one node.
class OrderClock {
 public:
  explicit OrderClock(uint64_t node) : slot_(node & 0xff) {}
  uint64_t Next(int64_t now_ms);
  // The ms part of an order.
  static int64_t TimeOf(uint64_t ord) { return static_cast<int64_t>(ord >> 22); }
  static uint64_t First(int64_t ms) { return static_cast<uint64_t>(ms) << 22; }

 private:
  uint64_t slot_;
  int64_t ms_ = 0;
  uint64_t counter_ = 0;
};

}  // namespace nucleon
