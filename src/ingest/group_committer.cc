#include "ingest/group_committer.h"

#include <chrono>
#include <iterator>

#include "core/log.h"

namespace nucleon {

GroupCommitter::GroupCommitter(EventStore* store, Options options, IngestCounters* counters)
    : store_(store), options_(options), counters_(counters) {
  publisher_ = std::thread([this] { RunPublisher(); });
  thread_ = std::thread([this] { Run(); });
}

GroupCommitter::~GroupCommitter() { Stop(); }

Status GroupCommitter::Submit(std::vector<Event> events, Done done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::Unavailable("server is shutting down");
    if (pending_events_ > 0 && pending_events_ + events.size() > options_.max_pending_events) {
      counters_->rejected_backlog.fetch_add(1, std::memory_order_relaxed);
      return Status::Unavailable("storage is behind; try again shortly");
    }
    pending_events_ += events.size();
    ++submitted_;
    // Moved into the shared queue here, on the caller's thread, so that the
    // writer takes a whole group with one swap.
    queued_events_.insert(queued_events_.end(), std::make_move_iterator(events.begin()),
                          std::make_move_iterator(events.end()));
    queue_.push_back({events.size(), std::move(done), {}, {}});
  }
  cv_.notify_one();
  return Status::Ok();
}

Status GroupCommitter::RunExclusive(std::function<Status()> task,
                                    std::function<void(const Status&)> done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::Unavailable("server is shutting down");
    ++submitted_;
    Pending p;
    p.task = std::move(task);
    p.task_done = std::move(done);
    queue_.push_back(std::move(p));
  }
  cv_.notify_one();
  return Status::Ok();
}

void GroupCommitter::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // The writer is done: the publisher finishes what it was handed, then stops.
  {
    std::lock_guard<std::mutex> lock(pub_mu_);
    pub_stopping_ = true;
  }
  pub_cv_.notify_all();
  if (publisher_.joinable()) publisher_.join();
  // Everything is committed and published: the store's last upkeep (a
  // checkpoint, so the next start has nothing to catch up on).
  if (!maintained_at_stop_) {
    maintained_at_stop_ = true;
    if (store_->MaintenanceDue(/*closing=*/true)) {
      Status st = store_->Maintain();
      if (!st.ok()) LogError("store upkeep at stop failed: " + st.ToString());
    }
  }
}

bool GroupCommitter::MaybeMaintain() {
  if (!store_->MaintenanceDue(/*closing=*/false)) return false;
  WaitPublished();  // the upkeep sees every commit, in the store and its read side
  Status st = store_->Maintain();
  if (!st.ok()) LogError("store upkeep failed: " + st.ToString());
  return st.ok();
}

void GroupCommitter::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t target = submitted_;
  flushed_cv_.wait(lock, [&] { return completed_ >= target || !thread_.joinable(); });
}

void GroupCommitter::EnqueuePublish(Committed c) {
  std::unique_lock<std::mutex> lock(pub_mu_);
  pub_done_cv_.wait(lock, [&] {
    return publishing_.empty() ||
           publishing_events_ + c.events.size() <= kMaxPublishingEvents;
  });
  publishing_events_ += c.events.size();
  publishing_.push_back(std::move(c));
  pub_cv_.notify_one();
}

void GroupCommitter::WaitPublished() {
  std::unique_lock<std::mutex> lock(pub_mu_);
  pub_done_cv_.wait(lock, [&] { return publishing_.empty() && !pub_busy_; });
}

void GroupCommitter::RunPublisher() {
  std::unique_lock<std::mutex> lock(pub_mu_);
  for (;;) {
    pub_cv_.wait(lock, [&] { return pub_stopping_ || !publishing_.empty(); });
    if (publishing_.empty()) return;
    // Everything committed so far is made durable by one flush.
    std::deque<Committed> ready;
    ready.swap(publishing_);
    publishing_events_ = 0;
    pub_busy_ = true;
    pub_done_cv_.notify_all();  // the writer may queue the next group meanwhile
    lock.unlock();
    bool any_committed = false;
    for (const Committed& c : ready) any_committed = any_committed || c.status.ok();
    if (any_committed) {
      Status synced = store_->Sync();
      if (!synced.ok()) {
        // Committed but maybe not on disk: published (the file holds it) but
        // not acked, so the SDK resends and the resend is recognised.
        counters_->commit_failures.fetch_add(1, std::memory_order_relaxed);
        LogError("flush of " + std::to_string(ready.size()) + " commits failed: " +
                 synced.ToString());
        healthy_.store(false, std::memory_order_relaxed);
        for (Committed& c : ready) {
          if (c.status.ok()) {
            if (c.publish) c.publish();
            c.publish = nullptr;
            c.status = synced;
          }
        }
      }
    }
    size_t batches = 0;
    for (Committed& c : ready) {
      Publish(c);
      batches += c.group.size();
    }
    ready.clear();  // the events are freed here, off the writer's path
    {
      std::lock_guard<std::mutex> done_lock(mu_);
      completed_ += batches;
    }
    flushed_cv_.notify_all();
    lock.lock();
    pub_busy_ = false;
    pub_done_cv_.notify_all();
  }
}

void GroupCommitter::Publish(Committed& c) {
  std::vector<Event>& events = c.events;
  if (c.status.ok()) {
    if (c.publish) c.publish();
    uint64_t stored = 0, hb = 0;
    for (size_t i = 0; i < events.size(); ++i) {
      if (events[i].type == EventType::kHeartbeat) ++hb;
      else if (c.inserted[i]) ++stored;
    }
    counters_->events_stored.fetch_add(stored, std::memory_order_relaxed);
    counters_->heartbeats.fetch_add(hb, std::memory_order_relaxed);
    counters_->events_duplicate.fetch_add(events.size() - stored - hb, std::memory_order_relaxed);
    if (observer_) observer_->OnCommitted(std::move(events), c.inserted);
  }
  std::vector<uint8_t> slice;
  size_t offset = 0;
  for (Pending& p : c.group) {
    const size_t n = p.count;
    if (c.status.ok()) {
      slice.assign(c.inserted.begin() + static_cast<std::ptrdiff_t>(offset),
                   c.inserted.begin() + static_cast<std::ptrdiff_t>(offset + n));
    } else {
      slice.assign(n, 0);
    }
    offset += n;
    try {
      p.done(c.status, slice);
    } catch (const std::exception& ex) {
      LogError(std::string("ack completion threw: ") + ex.what());
    }
  }
}

void GroupCommitter::Run() {
  std::vector<Pending> group;
  std::vector<Event> events;
  auto last_activity = std::chrono::steady_clock::now();
  for (;;) {
    group.clear();
    {
      std::unique_lock<std::mutex> lock(mu_);
      const auto probe_every = std::chrono::milliseconds(options_.probe_interval_ms);
      cv_.wait_until(lock, last_activity + probe_every,
                     [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        if (stopping_) break;
        lock.unlock();
        // More upkeep in steps (retention): go on while nothing is queued,
        // without waiting for the next probe (unless it failed).
        if (MaybeMaintain() && store_->MaintenanceDue(/*closing=*/false)) continue;
        Status st = store_->Probe();
        if (healthy_.exchange(st.ok()) != st.ok()) {
          st.ok() ? LogInfo("storage is writable again") : LogError("storage probe failed: " + st.ToString());
        }
        last_activity = std::chrono::steady_clock::now();
        continue;
      }
      if (queue_.front().task) {
        Pending p = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        WaitPublished();  // the task sees every earlier batch, in the store and its index
        Status st = p.task();
        last_activity = std::chrono::steady_clock::now();
        p.task_done(st);
        lock.lock();
        ++completed_;
        flushed_cv_.notify_all();
        continue;
      }
      size_t n = 0;
      while (!queue_.empty() && !queue_.front().task &&
             (group.empty() || n + queue_.front().count <= options_.max_group_events)) {
        n += queue_.front().count;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      pending_events_ -= n;
      events.clear();
      if (n == queued_events_.size()) {
        events.swap(queued_events_);
      } else {
        const auto end = queued_events_.begin() + static_cast<std::ptrdiff_t>(n);
        events.assign(std::make_move_iterator(queued_events_.begin()),
                      std::make_move_iterator(end));
        queued_events_.erase(queued_events_.begin(), end);
      }
    }
    Committed c;
    c.status = store_->AppendDeferred(events, &c.inserted, &c.publish);
    last_activity = std::chrono::steady_clock::now();
    if (healthy_.exchange(c.status.ok()) != c.status.ok() && c.status.ok()) {
      LogInfo("storage is writable again");
    }
    if (c.status.ok()) {
      counters_->commits.fetch_add(1, std::memory_order_relaxed);
    } else {
      counters_->commit_failures.fetch_add(1, std::memory_order_relaxed);
      LogError("commit of " + std::to_string(events.size()) + " events failed: " +
               c.status.ToString());
    }
    // Moving a vector keeps its elements where they are: what `publish` views stays valid.
    c.events = std::move(events);
    events = {};
    c.group = std::move(group);
    group = {};
    EnqueuePublish(std::move(c));
    MaybeMaintain();
  }
}

}  // namespace nucleon
