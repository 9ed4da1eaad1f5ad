// Ingestor: the tracking protocol's entry point, shared by the HTTP and the
// WebSocket transports. Decodes one message, logs and counts invalid events,
// queues the rest for a group commit and answers with the ack once they are
// durable. Thread-safe.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/limits.h"
#include "ingest/batch_decoder.h"
#include "ingest/group_committer.h"

namespace nucleon {

// Told which devices a tracking WebSocket delivered events or heartbeats for
// (live presence). Called on network threads as messages are decoded.
class PresenceSink {
 public:
  virtual ~PresenceSink() = default;
  virtual void Seen(uint64_t connection, std::string_view app_id, const Event& event,
                    int64_t now_ms) = 0;
  // The WebSocket closed: its devices are no longer live through it.
  virtual void Closed(uint64_t connection) = 0;
};

class Ingestor {
 public:
  // Runs exactly once: Ok with the ack text (`{"reportedIds":[...]}`), or the
  // error to answer with. May run on the calling thread or on the writer thread.
  using Reply = std::function<void(const Status&, std::string ack)>;

  Ingestor(GroupCommitter* committer, IngestCounters* counters, IngestLimits limits)
      : committer_(committer), counters_(counters), limits_(limits) {}

  const IngestLimits& limits() const { return limits_; }

  void SetPresenceSink(PresenceSink* sink) { presence_ = sink; }

  // `country` (ISO alpha-2 or empty) is stamped on the message's events.
  // `connection` identifies a tracking WebSocket (0 for HTTP, which is not live).
  void Ingest(std::string_view app_id, std::string_view body, std::string_view country,
              uint64_t connection, Reply reply);

 private:
  GroupCommitter* committer_;
  IngestCounters* counters_;
  IngestLimits limits_;
  PresenceSink* presence_ = nullptr;
};

}  // namespace nucleon
