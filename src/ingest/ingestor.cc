#include "ingest/ingestor.h"

#include <memory>

#include "core/log.h"
#include "core/time_util.h"

namespace nucleon {

void Ingestor::Ingest(std::string_view app_id, std::string_view body, std::string_view country,
                      uint64_t connection, Reply reply) {
  const int64_t now = NowMs();
  auto decoded = DecodeBatch(body, app_id, now, limits_);
  if (!decoded.ok()) {
    reply(decoded.status(), {});
    return;
  }
  DecodedBatch& batch = *decoded;
  counters_->batches.fetch_add(1, std::memory_order_relaxed);
  counters_->events_received.fetch_add(batch.events.size(), std::memory_order_relaxed);
  if (batch.truncated) counters_->events_truncated.fetch_add(batch.truncated, std::memory_order_relaxed);
  if (batch.invalid) {
    counters_->events_invalid.fetch_add(batch.invalid, std::memory_order_relaxed);
    for (const DecodedEvent& d : batch.events) {
      if (d.outcome == DecodedEvent::Outcome::kInvalid) {
        LogWarn("app " + std::string(app_id) + ": invalid event acked and dropped: " +
                d.invalid_reason);
      }
    }
  }
  std::string ack = AckJson(batch);
  std::vector<Event> events;
  events.reserve(batch.events.size());
  const Event* previous = nullptr;
  for (DecodedEvent& d : batch.events) {
    if (d.outcome == DecodedEvent::Outcome::kInvalid) continue;
    d.event.country = std::string(country);
    // Presence once per run of events from one device (an SDK's message is one device).
    if (presence_ && connection != 0 &&
        (!previous || previous->device_id != d.event.device_id ||
         previous->user_key != d.event.user_key || !d.event.platform.empty())) {
      presence_->Seen(connection, app_id, d.event, now);
    }
    events.push_back(std::move(d.event));
    previous = &events.back();
  }
  if (events.empty()) {
    reply(Status::Ok(), std::move(ack));
    return;
  }
  auto shared_reply = std::make_shared<Reply>(std::move(reply));
  Status st = committer_->Submit(
      std::move(events),
      [shared_reply, ack = std::move(ack)](const Status& status, const std::vector<uint8_t>&) {
        if (status.ok()) {
          (*shared_reply)(Status::Ok(), ack);
        } else {
          (*shared_reply)(Status::Unavailable("storage unavailable: " + status.message()), {});
        }
      });
  if (!st.ok()) (*shared_reply)(st, {});
}

}  // namespace nucleon
