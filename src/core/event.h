// The event model: one tracked event after decoding, validation and
// normalisation, independent of which SDK generation sent it and of which
// backend stores it. Plain values; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nucleon {

// Stored as its integer value: never renumber.
enum class EventType : uint8_t {
  kInit = 1,
  kEvent = 2,
  kError = 3,
  kUserId = 4,
  kProps = 5,
  kView = 6,       // "nucleus:view": page or screen view
  kHeartbeat = 7,  // never stored as an event
};

std::string_view EventTypeName(EventType type);
std::optional<EventType> ParseEventType(std::string_view name);

// A scalar payload value. `text` is the value rendered as the API shows it:
// strings as they are, numbers in their shortest round-trip form ("120", "1.5"),
// booleans as "true"/"false".
struct PropValue {
  enum class Kind : uint8_t { kString = 0, kNumber = 1, kBool = 2 };
  Kind kind = Kind::kString;
  std::string text;
  bool operator==(const PropValue&) const = default;
};

std::string_view PropKindName(PropValue::Kind kind);

struct Event {
  std::string app_id;
  EventType type = EventType::kEvent;
  std::string name;        // event name, error type or view name; empty when none
  std::string client_id;   // the client's id as JSON text (`123`, `"abc"`); empty when absent
  std::string device_id;
  std::string session_id;  // canonical text; empty only for a heartbeat without one
  std::string user_key;    // userId, else anonId, else device id
  std::string user_id;     // as sent, empty when absent
  std::string anon_id;     // as sent, empty when absent
  int64_t time_ms = 0;     // event time (after the future-date rule)
  std::string client_date; // the date exactly as the client sent it (JSON text), for identity

  // Context carried by init and error events (raw as sent; shown normalised).
  std::string platform, os_version, locale, version, module_version, arch, client, country;
  std::optional<double> total_ram;

  std::string payload_json = "{}";  // the (capped) payload object as JSON text
  std::vector<std::pair<std::string, PropValue>> props;  // its scalar members, in order
  std::string error_hash;           // error events only
  // The identity hash (store/event_identity.h), when the event was read back
  // from a store that keeps that hash rather than the date as sent (the
  // embedded one keeps its top 48 bits): an export carries it, so that an
  // import recognises the same resends and tombstones.
  std::optional<int64_t> ident_hash;

  // True for events whose resend must be recognised: those that carry an id.
  bool HasIdentity() const { return !client_id.empty(); }
};

}  // namespace nucleon
