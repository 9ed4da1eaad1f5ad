// Limits on what a client may send, each a documented, configurable default.
// Plain value; thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nucleon {

struct IngestLimits {
  size_t max_body_bytes = 5 * 1024 * 1024;   // HTTP body or WebSocket message
  size_t max_events_per_batch = 10000;
  int max_json_depth = 32;                    // the top-level object is depth 1
  size_t max_name_chars = 256;                // longer names are truncated
  size_t max_payload_keys = 64;               // further keys are dropped
  size_t max_value_bytes = 1024;              // longer strings are truncated; larger objects dropped
  int64_t max_future_ms = 24LL * 3600 * 1000; // later dates are replaced by the receive time
};

}  // namespace nucleon
