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

class Ingestor {
 public:
  // Runs exactly once: Ok with the ack text (`{"reportedIds":[...]}`), or the
  // error to answer with. May run on the calling thread or on the writer thread.
  using Reply = std::function<void(const Status&, std::string ack)>;

  Ingestor(GroupCommitter* committer, IngestCounters* counters, IngestLimits limits)
      : committer_(committer), counters_(counters), limits_(limits) {}

  const IngestLimits& limits() const { return limits_; }

  // `country` (ISO alpha-2 or empty) is stamped on the message's events.
  void Ingest(std::string_view app_id, std::string_view body, std::string_view country,
              Reply reply);

 private:
  GroupCommitter* committer_;
  IngestCounters* counters_;
  IngestLimits limits_;
};

}  // namespace nucleon
