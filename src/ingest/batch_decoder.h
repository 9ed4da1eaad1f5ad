// Decoding of one tracking message (`{"data":[event, ...]}`) into events:
// every SDK generation's field names and date forms, validation and the caps of
// IngestLimits. Pure function of its inputs; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/event.h"
#include "core/limits.h"
#include "core/status.h"

namespace nucleon {

struct DecodedEvent {
  enum class Outcome : uint8_t {
    kStore,      // a valid event: store it (or recognise it as a resend)
    kHeartbeat,  // extends a session and keeps the device live; never stored as an event
    kInvalid,    // acked so the SDK stops resending it, but not stored
  };
  Outcome outcome = Outcome::kStore;
  std::string ack_id;          // the id as it arrived, JSON text; empty: nothing to ack
  std::string invalid_reason;  // for kInvalid
  bool truncated = false;      // a name or value was cut to its cap
  Event event;                 // for kStore and kHeartbeat
};

struct DecodedBatch {
  std::vector<DecodedEvent> events;
  size_t invalid = 0;
  size_t truncated = 0;
};

// Decodes `body` sent for `app_id` at `now_ms`. A malformed message (bad JSON,
// too deep, no `data` array) is an InvalidArgument; too many events a
// PayloadTooLarge. Invalid events inside a good message are not an error: they
// come back with Outcome::kInvalid.
Result<DecodedBatch> DecodeBatch(std::string_view body, std::string_view app_id, int64_t now_ms,
                                 const IngestLimits& limits);

// One record of an export (store/event_export.h), for `nucleon import`.
struct ExportRecord {
  enum class Kind : uint8_t { kEvent, kSessionEnd, kTombstone };
  Kind kind = Kind::kEvent;
  Event event;            // kEvent; kSessionEnd as the heartbeat that extends its session
  int64_t tombstone = 0;  // kTombstone
};

// Decodes one NDJSON record of an export of `app_id` back into the event as
// it was stored: every field as exported, nothing recomputed but the payload's
// properties (and the user key when the record has none). InvalidArgument
// for a line that is not one.
Result<ExportRecord> DecodeExportRecord(std::string_view line, std::string_view app_id);

// Whether `line` is a tracking message (`{"data":[...]}`) rather than an
// export record; a cheap look at its first member name.
bool LooksLikeBatch(std::string_view line);

// {"reportedIds":[...]} for the ids of `batch` (each exactly as it arrived).
std::string AckJson(const DecodedBatch& batch);

}  // namespace nucleon
