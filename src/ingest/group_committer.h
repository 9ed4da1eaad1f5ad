// GroupCommitter: turns many connections' batches into few durable commits.
// Connections Submit() decoded events; one writer thread takes everything
// queued (up to a cap), appends it to the EventStore in one transaction and
// only then runs each batch's completion, which sends the acks. So an ack never
// leaves before its events are durable, and an fsync is shared by every batch
// that arrived while the previous commit was running.
//
// Two threads share the work: the writer commits (EventStore::AppendDeferred)
// and moves straight on to the next group, while the publisher makes the
// committed groups durable (EventStore::Sync, one flush for all that are
// ready), visible to queries, tells the observer, runs the completions (the
// acks) and frees the events, strictly in commit order. So an ack means that
// the event is durable and that the API shows it.
//
// Between groups, and when idle, the writer also runs the store's upkeep when
// it asks for it (EventStore::MaintenanceDue), after the publisher caught up.
//
// Thread-safety: Submit, Healthy and the counters may be called from any
// thread; completions run on the publisher thread and must not block.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/event.h"
#include "core/status.h"
#include "store/event_store.h"

namespace nucleon {

struct IngestCounters {
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> events_received{0};
  std::atomic<uint64_t> events_stored{0};
  std::atomic<uint64_t> events_duplicate{0};
  std::atomic<uint64_t> events_invalid{0};
  std::atomic<uint64_t> events_truncated{0};
  std::atomic<uint64_t> heartbeats{0};
  std::atomic<uint64_t> commits{0};
  std::atomic<uint64_t> commit_failures{0};
  std::atomic<uint64_t> rejected_backlog{0};
};

// Told about every committed group (live presence, the recent-events window).
class CommitObserver {
 public:
  virtual ~CommitObserver() = default;
  // Runs on the writer thread after a successful commit, before the acks;
  // must not block. `inserted[i]` tells whether events[i] was newly stored.
  // The events are handed over: the observer may keep (move from) them.
  virtual void OnCommitted(std::vector<Event>&& events,
                           const std::vector<uint8_t>& inserted) = 0;
};

class GroupCommitter {
 public:
  struct Options {
    size_t max_group_events = 20000;     // events in one commit (whole batches are never split)
    size_t max_pending_events = 100000;  // backlog beyond which Submit refuses (about 1 KiB each)
    int probe_interval_ms = 2000;        // idle health probe of the storage
  };
  // Called after the commit with Ok, or with the error that made it fail
  // (nothing of the batch is stored then). `inserted[i]` as EventStore::Append.
  using Done = std::function<void(const Status&, const std::vector<uint8_t>& inserted)>;

  GroupCommitter(EventStore* store, Options options, IngestCounters* counters);
  ~GroupCommitter();

  // Queues a batch for the next commit. Unavailable (and `done` never runs)
  // when the backlog is full or the committer is stopping.
  Status Submit(std::vector<Event> events, Done done);

  // Runs `task` on the writer thread between two commits, once every earlier
  // batch is committed and published (so it is ordered with all of them),
  // then `done` with its status.
  Status RunExclusive(std::function<Status()> task, std::function<void(const Status&)> done);

  // Set before the first Submit.
  void SetObserver(CommitObserver* observer) { observer_ = observer; }

  // Commits everything queued, runs its completions, then stops the thread.
  void Stop();

  // False while the last commit or probe failed: storage is not writable.
  bool Healthy() const { return healthy_.load(std::memory_order_relaxed); }

  // Blocks until everything submitted before the call has been committed.
  void Flush();

 private:
  struct Pending {
    size_t count = 0;  // its events, in queued_events_
    Done done;
    std::function<Status()> task;  // set for RunExclusive entries
    std::function<void(const Status&)> task_done;
  };
  // A committed (or failed) group on its way through the publisher.
  struct Committed {
    Status status;
    std::function<void()> publish;  // may be empty
    std::vector<Event> events;
    std::vector<uint8_t> inserted;
    std::vector<Pending> group;
  };
  void Run();
  void RunPublisher();
  void Publish(Committed& c);
  // Hands `c` to the publisher; waits while it is kMaxPublishing groups behind.
  void EnqueuePublish(Committed c);
  // Blocks until the publisher has finished everything handed to it.
  void WaitPublished();
  // Runs the store's upkeep (EventStore::Maintain) when it is due, on the
  // writer thread, once everything committed is published.
  bool MaybeMaintain();  // true when it ran and succeeded

  EventStore* store_;
  Options options_;
  IngestCounters* counters_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable flushed_cv_;
  std::deque<Pending> queue_;
  std::vector<Event> queued_events_;  // the events of queue_'s batches, in order
  size_t pending_events_ = 0;
  uint64_t submitted_ = 0;
  uint64_t completed_ = 0;
  bool stopping_ = false;
  bool maintained_at_stop_ = false;
  CommitObserver* observer_ = nullptr;
  std::atomic<bool> healthy_{true};
  std::thread thread_;

  // Events committed but not yet durable or published: beyond this the writer
  // waits (bounded memory). Any number of groups may share one flush.
  static constexpr size_t kMaxPublishingEvents = 100000;
  std::mutex pub_mu_;
  std::condition_variable pub_cv_;       // work for the publisher
  std::condition_variable pub_done_cv_;  // the publisher made progress
  std::deque<Committed> publishing_;
  size_t publishing_events_ = 0;  // in publishing_
  bool pub_busy_ = false;
  bool pub_stopping_ = false;
  std::thread publisher_;
};

}  // namespace nucleon
