// Fuzz target: the tracking batch decoder, on one message as any SDK
// generation sends it (4.x and 3.x field names, Python and Swift quirks,
// every date form). Each input is decoded twice: under the default limits
// and under tiny ones, so that the caps (batch size, nesting, names, payload
// keys, value sizes) are reached by small inputs. The ack of a decoded batch
// must be exactly `{"reportedIds":[...]}` with one id per acked event: the
// Swift SDK crashes on anything else.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/limits.h"
#include "ingest/batch_decoder.h"

namespace nucleon {
namespace {

// A receive time just after the captured messages' dates (2026-11-26T10:00:00Z).
constexpr int64_t kNowMs = 1795687200000;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "batch_decoder_fuzzer: %s\n", what.c_str());
  std::abort();
}

void DecodeAndCheck(std::string_view body, const IngestLimits& limits) {
  auto batch = DecodeBatch(body, "fuzzApp1", kNowMs, limits);
  if (!batch.ok()) return;
  if (batch->events.size() > limits.max_events_per_batch) Fail("more events than the cap");
  size_t acked = 0, invalid = 0;
  for (const DecodedEvent& d : batch->events) {
    if (!d.ack_id.empty()) ++acked;
    if (d.outcome == DecodedEvent::Outcome::kInvalid) ++invalid;
  }
  if (invalid != batch->invalid) Fail("invalid count disagrees with the events");
  const std::string ack = AckJson(*batch);
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(ack, ec);  // strict: an SDK parses it
  if (ec || !v.is_object() || v.get_object().size() != 1 ||
      !v.get_object().contains("reportedIds") || !v.get_object().at("reportedIds").is_array() ||
      v.get_object().at("reportedIds").get_array().size() != acked) {
    Fail("bad ack: " + ack);
  }
}

}  // namespace
}  // namespace nucleon

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nucleon::IngestLimits;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  nucleon::DecodeAndCheck(body, IngestLimits{});
  IngestLimits tiny;
  tiny.max_events_per_batch = 3;
  tiny.max_json_depth = 4;
  tiny.max_name_chars = 5;
  tiny.max_payload_keys = 2;
  tiny.max_value_bytes = 8;
  tiny.max_future_ms = 1000;
  nucleon::DecodeAndCheck(body, tiny);
  return 0;
}
